"""`tribunal bench tiers`: each tier's CPU per item at saturation, one tier at a time.

Preloads N items under a fresh prefix, then runs each worker process alone over that backlog
until its group has committed every item, then the aggregator alone over the items and the
votes, until every item has a label or a judge request (the topics stay: their prefix starts
`benchtiers-`). CPU time comes from /proc (Linux),
counted from the first progress to the end, so start-up and imports are left out. Without the
other tiers on the same cores this is the cost of a tier's own path, not of a shared machine.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import TopicPartition

from tribunal.bench.probes import cpu_seconds
from tribunal.core import kafka
from tribunal.core.settings import Settings, settings_env
from tribunal.core.topics import create_topics
from tribunal.schemas.codec import encode, key
from tribunal.schemas.messages import Item

__all__ = ["bench_tiers"]

WORKERS = ("w1", "w2", "w3")
POLL_S = 0.2


async def _preload(settings: Settings, count: int) -> None:
    producer = kafka.idempotent_producer(settings.kafka)
    await producer.start()
    try:
        for n in range(count):
            item = Item(id=f"load-{n}", text=f"benchmark message number {n} about a parcel", task="sentiment")
            await producer.send(settings.topics.items_topic, encode(item), key=key(item.id))
        await producer.flush()
    finally:
        await producer.stop()


async def _committed(settings: Settings, group: str) -> int:
    """Items the group has committed past, over all partitions."""
    admin = kafka.admin_client(settings.kafka)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(o.offset for o in offsets.values() if o.offset > 0)


class _Decided:
    """Counts records on labels and judge (read_committed, from the start): items decided."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumer = kafka.consumer(settings.kafka, settings.runtime, group_id=None)
        self.count = 0

    async def start(self) -> None:
        t = self._settings.topics
        tps = [TopicPartition(t.labels_topic, p) for p in range(t.labels_partitions)]
        tps += [TopicPartition(t.judge_topic, p) for p in range(t.judge_partitions)]
        await self._consumer.start()
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)

    async def __call__(self) -> int:
        batch = await self._consumer.getmany(timeout_ms=100, max_records=50_000)
        self.count += sum(len(records) for records in batch.values())
        return self.count

    async def stop(self) -> None:
        await self._consumer.stop()


def _committed_by(settings: Settings, group: str) -> Callable[[], Awaitable[int]]:
    return lambda: _committed(settings, group)


async def _run_alone(
    settings: Settings, args: tuple[str, ...], progress: Callable[[], Awaitable[int]], goal: int
) -> dict[str, float]:
    """Run one tier process until `progress()` reaches `goal`; its CPU and wall time per unit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUNAL_")}
    env.update(settings_env(settings), TRIBUNAL_RUNTIME__INSTANCE_ID=f"tiers-{args[-1]}", TRIBUNAL_LOG_LEVEL="warning")
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "tribunal.cli", *args, env=env)
    try:
        start: tuple[float, float, int] | None = None
        while (done := await progress()) < goal:
            if start is None and done > 0:
                start = (cpu_seconds(process.pid) or 0.0, time.monotonic(), done)
            if process.returncode is not None:
                raise RuntimeError(f"{' '.join(args)} exited with {process.returncode}")
            await asyncio.sleep(POLL_S)
        cpu_end, wall_end = cpu_seconds(process.pid) or 0.0, time.monotonic()
    finally:
        process.terminate()
        await process.wait()
    cpu_start, wall_start, done_start = start or (0.0, wall_end, 0)
    units = max(1, goal - done_start)
    wall = max(wall_end - wall_start, 1e-9)
    return {"cpu_us_per_item": round((cpu_end - cpu_start) * 1e6 / units, 1), "items_per_s": round(units / wall, 1)}


async def bench_tiers(settings: Settings, count: int) -> dict[str, Any]:
    """Preload `count` items; each worker alone, then the aggregator alone (module docstring)."""
    prefix = f"benchtiers-{uuid.uuid4().hex[:8]}-"
    settings = settings.model_copy(update={"topics": settings.topics.model_copy(update={"prefix": prefix})})
    await create_topics(settings)
    await _preload(settings, count)
    report: dict[str, Any] = {"items": count, "load_1m_before": round(os.getloadavg()[0], 2)}
    for worker in WORKERS:
        args = ("worker", "--name", worker, "--classifier", f"hash:{worker}")
        report[worker] = await _run_alone(
            settings, args, _committed_by(settings, f"{prefix}tribunal-worker-{worker}"), count
        )
    decided = _Decided(settings)
    await decided.start()
    try:
        report["aggregator"] = await _run_alone(settings, ("aggregator",), decided, count)
    finally:
        await decided.stop()
    report["load_1m_after"] = round(os.getloadavg()[0], 2)
    return report
