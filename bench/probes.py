"""What every pipeline bench measures, one implementation for all: a follower of the labels
topic that times each label's visibility, the item producer (saturating or paced), a measured
phase (throughput, latency percentiles, who decided, and the CPU it cost: per tier process, the
local broker's, the bench's own, and how busy the whole machine was), exactly-once accounting, and
CPU time per process from /proc. `bench pipeline` and `bench peers` (Tribunal beside a Quix Streams peer) both
use these, so their figures are measured the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from tribunal.core import kafka
from tribunal.core.settings import Settings
from tribunal.core.stats import percentiles
from tribunal.localkafka import LocalBroker
from tribunal.schemas.codec import encode, key
from tribunal.schemas.messages import Item

__all__ = [
    "LabelWatcher",
    "Publish",
    "bench_items",
    "cpu_per_item_us",
    "cpu_seconds",
    "exactly_once",
    "local_broker_pid",
    "machine_busy_share",
    "phase",
    "produce",
    "share",
    "stop_processes",
]


async def stop_processes(processes: Sequence[asyncio.subprocess.Process]) -> None:
    for process in processes:
        if process.returncode is None:
            process.terminate()
    await asyncio.gather(*(p.wait() for p in processes))


class LabelWatcher:
    """Follows the labels topic from its end; records when each item id's label became visible,
    and who decided it (`decided_by`, `reason`: two fields read, no full decode)."""

    def __init__(
        self,
        settings: Settings,
        topic: str | None = None,
        outcome: Callable[[bytes | None], tuple[str, str | None]] | None = None,
    ) -> None:
        """Follows `labels`, or another topic keyed by item id (a sink's) whose records `outcome`
        reads (decided_by, reason) from."""
        self._settings = settings
        self._topic = topic or settings.topics.labels_topic
        self._outcome = outcome or _verdict_outcome
        self.seen: Counter[str] = Counter()
        self.visible_at: dict[str, float] = {}
        self.outcome: dict[str, tuple[str, str | None]] = {}
        self._consumer = kafka.consumer(settings.kafka, settings.runtime, group_id=None, auto_offset_reset="latest")
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.subscribe([self._topic])
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
                    if item_id not in self.outcome:
                        self.outcome[item_id] = self._outcome(record.value)
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


def _verdict_outcome(value: bytes | None) -> tuple[str, str | None]:
    verdict = orjson.loads(value or b"{}")
    return verdict.get("decided_by", ""), verdict.get("reason")


Publish = Callable[[Settings, list[Item], float | None], Awaitable[dict[str, float]]]


async def produce(settings: Settings, items: list[Item], rate: float | None) -> dict[str, float]:
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


def bench_items(prefix: str, count: int) -> list[Item]:
    return [
        Item(id=f"{prefix}-{n}", text=f"benchmark message number {n} about a parcel", task="sentiment")
        for n in range(count)
    ]


async def phase(
    settings: Settings,
    watcher: LabelWatcher,
    prefix: str,
    count: int,
    rate: float | None,
    pids: Mapping[str, int] | None = None,
    publish: Publish = produce,
) -> dict[str, Any]:
    """Produce `count` items (at `rate`, or as fast as possible) and wait for their labels: the
    figures of the phase, with the CPU it cost each process of `pids` (name -> PID) per item, and
    beside them the local broker's, the bench's own and the machine's busy share (on a small box,
    a latency figure means little without knowing whether the CPUs were saturated)."""
    items = bench_items(prefix, count)
    ids = {i.id for i in items}
    around = {"bench": os.getpid()} | ({"broker": pid} if (pid := local_broker_pid(settings)) else {})
    cpu_before = {name: cpu_seconds(pid) for name, pid in {**(pids or {}), **around}.items()}
    machine_before = _machine_jiffies()
    started = time.time()
    produced = await publish(settings, items, rate)
    await watcher.wait_for(ids, timeout_s=max(120.0, count / 200))
    cpu = cpu_per_item_us(
        cpu_before, {name: cpu_seconds(pid) for name, pid in {**(pids or {}), **around}.items()}, count
    )
    busy = machine_busy_share(machine_before, _machine_jiffies())
    labelled = [i for i in ids if i in watcher.visible_at]
    finished = max((watcher.visible_at[i] for i in labelled), default=time.time())
    latencies = [(watcher.visible_at[i] - produced[i]) * 1000 for i in labelled]
    outcomes = [watcher.outcome[i] for i in labelled if i in watcher.outcome]
    return {
        "items": count,
        "labelled": len(labelled),
        "seconds": round(finished - started, 3),
        "throughput_items_per_s": round(len(labelled) / max(finished - started, 1e-9), 1),
        "latency_ms": percentiles(latencies),
        "judge_share": share(outcomes, lambda o: o[0] == "judge"),
        "deadline_share": share(outcomes, lambda o: o[1] == "deadline"),
        "cpu_us_per_item": {name: us for name, us in cpu.items() if name not in around},
        "cpu_us_per_item_beside": {name: us for name, us in cpu.items() if name in around},
        "machine_busy_share": busy,
    }


def share(outcomes: Sequence[tuple[str, str | None]], test: Callable[[tuple[str, str | None]], bool]) -> float:
    return round(sum(1 for o in outcomes if test(o)) / len(outcomes), 4) if outcomes else 0.0


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_item_us(before: dict[str, float | None], after: dict[str, float | None], items: int) -> dict[str, float]:
    """CPU microseconds per item of each tier between two `cpu_seconds` readings."""
    spent: dict[str, float] = {}
    for tier, start in before.items():
        end = after.get(tier)
        if start is not None and end is not None:
            spent[tier] = end - start
    return {tier: round(seconds * 1e6 / max(items, 1), 1) for tier, seconds in spent.items()}


def exactly_once(seen: Counter[str], ids: Collection[str]) -> dict[str, int]:
    """Of `ids`, how many got more than one label (duplicates) and how many none (missing)."""
    return {
        "duplicates": sum(1 for i in ids if seen[i] > 1),
        "missing": sum(1 for i in ids if seen[i] == 0),
    }


def local_broker_pid(settings: Settings) -> int | None:
    """The PID of the local broker (`tribunal kafka up`) when the bench talks to it, else None
    (another Kafka's CPU is not ours to read)."""
    broker = LocalBroker(settings.home, settings.broker)
    return broker.pid() if settings.kafka.bootstrap_servers == broker.bootstrap else None


def _machine_jiffies() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs so far (Linux /proc/stat), None where unavailable."""
    try:
        fields = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, IndexError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def machine_busy_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of all CPUs' time that was busy between two readings (every process counts)."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 3)
