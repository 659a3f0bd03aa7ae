"""`tribunal bench pipeline|ingest`: measured figures, printed, never asserted.

`pipeline` runs every tier as its own OS process with instant classifiers against a real broker,
publishes items and follows `labels` with a read_committed consumer. It reports end-to-end
throughput, latency from item produce to label commit (p50/p95/p99, at saturation and at a
fixed rate), exactly-once accounting (labelled, duplicates, missing), and beside it the raw
broker round trip (aiokafka produce + consume of the same number of messages) in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from tribunal.core import kafka
from tribunal.core.settings import Settings, settings_env
from tribunal.core.stats import percentiles
from tribunal.core.topics import create_topics
from tribunal.schemas.codec import encode, key
from tribunal.schemas.messages import Item

__all__ = ["bench_ingest", "bench_pipeline"]


def _env(settings: Settings, workers: list[str], instance: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUNAL_")}
    env.update(
        settings_env(settings),
        TRIBUNAL_AGGREGATOR__WORKERS=orjson.dumps(workers).decode(),
        TRIBUNAL_RUNTIME__INSTANCE_ID=instance,
        TRIBUNAL_LOG_LEVEL="warning",
        TRIBUNAL_LOG_FORMAT="json",
    )
    return env


async def _start_tiers(settings: Settings, workers: list[str]) -> list[asyncio.subprocess.Process]:
    commands: list[tuple[str, ...]] = [("worker", "--name", w, "--classifier", f"hash:{w}") for w in workers]
    commands += [("aggregator",), ("judge", "--classifier", "hash:judge")]
    return [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tribunal.cli", *args, env=_env(settings, workers, f"bench-{n}")
        )
        for n, args in enumerate(commands)
    ]


async def _stop(processes: list[asyncio.subprocess.Process]) -> None:
    for process in processes:
        if process.returncode is None:
            process.terminate()
    await asyncio.gather(*(p.wait() for p in processes))


class LabelWatcher:
    """Follows the labels topic from its end; records when each item id's label became visible."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.seen: Counter[str] = Counter()
        self.visible_at: dict[str, float] = {}
        self._consumer = kafka.consumer(settings.kafka, settings.runtime, group_id=None, auto_offset_reset="latest")
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.subscribe([self._settings.topics.labels_topic])
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=10_000)
            now = time.time()
            for records in batch.values():
                for record in records:
                    item_id = record.key.decode() if record.key else ""
                    self.seen[item_id] += 1
                    self.visible_at.setdefault(item_id, now)
            if batch:
                self._arrived.set()

    async def wait_for(self, ids: set[str], timeout_s: float) -> None:
        """Return once every id has a label, or after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not ids.issubset(self.visible_at) and time.monotonic() < deadline:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=1.0)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


async def _produce(settings: Settings, items: list[Item], rate: float | None) -> dict[str, float]:
    """Publish items (at `rate` per second if given); return each id's produce time."""
    producer = kafka.idempotent_producer(settings.kafka)
    await producer.start()
    produced: dict[str, float] = {}
    try:
        started = time.perf_counter()
        for n, item in enumerate(items):
            if rate:
                delay = started + n / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            produced[item.id] = time.time()
            await producer.send(settings.topics.items_topic, encode(item), key=key(item.id))
        await producer.flush()
    finally:
        await producer.stop()
    return produced


def _items(prefix: str, count: int) -> list[Item]:
    return [
        Item(id=f"{prefix}-{n}", text=f"benchmark message number {n} about a parcel", task="sentiment")
        for n in range(count)
    ]


async def _phase(
    settings: Settings, watcher: LabelWatcher, prefix: str, count: int, rate: float | None
) -> dict[str, Any]:
    items = _items(prefix, count)
    ids = {i.id for i in items}
    started = time.time()
    produced = await _produce(settings, items, rate)
    await watcher.wait_for(ids, timeout_s=max(120.0, count / 200))
    labelled = [i for i in ids if i in watcher.visible_at]
    finished = max((watcher.visible_at[i] for i in labelled), default=time.time())
    latencies = [(watcher.visible_at[i] - produced[i]) * 1000 for i in labelled]
    return {
        "items": count,
        "labelled": len(labelled),
        "throughput_items_per_s": round(len(labelled) / max(finished - started, 1e-9), 1),
        "latency_ms": percentiles(latencies),
    }


async def _broker_baseline(settings: Settings, count: int) -> float:
    """Messages per second for aiokafka to produce `count` item-sized records and consume them back."""
    topic = f"{settings.topics.prefix}baseline"
    baseline = settings.model_copy(update={"topics": settings.topics.model_copy(update={"items": "baseline"})})
    await create_topics(baseline)
    payloads = [encode(item) for item in _items("base", count)]
    started = time.perf_counter()
    producer = kafka.idempotent_producer(settings.kafka)
    await producer.start()
    for n, payload in enumerate(payloads):
        await producer.send(topic, payload, key=str(n).encode())
    await producer.flush()
    await producer.stop()
    consumer = AIOKafkaConsumer(topic, **kafka.connection_options(settings.kafka), auto_offset_reset="earliest")
    await consumer.start()
    received = 0
    while received < count:
        batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
        received += sum(len(records) for records in batch.values())
    await consumer.stop()
    return round(count / (time.perf_counter() - started), 1)


async def bench_pipeline(settings: Settings, count: int, workers: int, rate: float, rate_items: int) -> dict[str, Any]:
    """Run the whole pipeline on instant classifiers and measure it (see the module docstring)."""
    run = f"bench-{uuid.uuid4().hex[:8]}-"
    settings = settings.model_copy(update={"topics": settings.topics.model_copy(update={"prefix": run})})
    names = [f"w{n + 1}" for n in range(workers)]
    await create_topics(settings)
    watcher = LabelWatcher(settings)
    await watcher.start()
    processes = await _start_tiers(settings, names)
    try:
        warmup = await _phase(settings, watcher, "warmup", 200, None)  # groups joined, code paths warm
        saturated = await _phase(settings, watcher, "load", count, None)
        paced = await _phase(settings, watcher, "paced", rate_items, rate) if rate_items else None
    finally:
        await _stop(processes)
        await watcher.stop()
    baseline = await _broker_baseline(settings, count)
    ids = {f"load-{n}" for n in range(count)}
    return {
        **saturated,
        "duplicates": sum(1 for i in ids if watcher.seen[i] > 1),
        "missing": sum(1 for i in ids if watcher.seen[i] == 0),
        "workers": workers,
        "broker_baseline_msgs_per_s": baseline,
        "paced": {**paced, "rate_items_per_s": rate} if paced else None,
        "warmup_labelled": warmup["labelled"],
        "cores": os.cpu_count(),
    }


async def bench_ingest(settings: Settings, count: int, directory: Path) -> dict[str, Any]:
    """Publish `count` short JSONL items through `tribunal ingest`'s code path; items/s."""
    from tribunal.producers.ingest import ingest

    run = f"bench-ingest-{uuid.uuid4().hex[:8]}-"
    settings = settings.model_copy(update={"topics": settings.topics.model_copy(update={"prefix": run})})
    await create_topics(settings)
    path = directory / "items.jsonl"
    with path.open("wb") as out:
        for n in range(count):
            out.write(orjson.dumps({"id": f"i{n}", "text": f"short message number {n}", "label": "positive"}) + b"\n")
    report = await ingest(settings, str(path))
    return {
        "items": count,
        "published": report.published,
        "rejected": len(report.rejected),
        "seconds": round(report.seconds, 3),
        "items_per_s": round(report.published / report.seconds, 1),
    }
