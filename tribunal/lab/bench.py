"""`tribunal bench pipeline|ingest`: measured figures, printed, never asserted.

`pipeline` runs every tier as its own OS process with instant classifiers against a real broker,
publishes items and follows `labels` with a read_committed consumer. It reports end-to-end
throughput, latency from item produce to label commit (p50/p95/p99, at saturation and at fixed
rates), who decided (the judge-decided share, and the share escalated for a missing vote,
reason `deadline`), exactly-once accounting (labelled, duplicates, missing), each tier's CPU
time per item over the saturation phase (from /proc, Linux), the broker records written per
item, and beside it the raw broker round trip (aiokafka produce + consume of the same number of
messages) in the same run, with the broker-bound ratio: records per item x items/s / broker
msgs/s (1.0 would mean the pipeline moves records as fast as the bare broker round trip).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from tribunal.core import kafka
from tribunal.core.settings import Settings, settings_env
from tribunal.core.stats import percentiles
from tribunal.core.topics import create_topics, delete_topics, topic_specs
from tribunal.schemas.codec import encode, key
from tribunal.schemas.messages import Item

__all__ = ["bench_ingest", "bench_pipeline"]


def _env(settings: Settings, workers: list[str], instance: str, metrics_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUNAL_")}
    env.update(
        settings_env(settings),
        TRIBUNAL_AGGREGATOR__WORKERS=orjson.dumps(workers).decode(),
        TRIBUNAL_RUNTIME__INSTANCE_ID=instance,
        TRIBUNAL_LOG_LEVEL="warning",
        TRIBUNAL_LOG_FORMAT="json",
        TRIBUNAL_METRICS_PORT=str(metrics_port),
    )
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Tier:
    """One tier process of the bench, with its /metrics port."""

    def __init__(self, process: asyncio.subprocess.Process, metrics_port: int) -> None:
        self.process = process
        self.metrics_port = metrics_port

    async def counters(self) -> dict[str, float]:
        """`tribunal_*` counter-like samples (name{labels} -> value); empty if unreachable."""
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                text = (await client.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        except httpx.HTTPError:
            return {}
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.startswith("tribunal_") and not sample.name.endswith(("_bucket", "_created")):
                    labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                    samples[f"{sample.name}{{{labels}}}"] = sample.value
        return samples


async def _start_tiers(settings: Settings, workers: list[str]) -> dict[str, Tier]:
    """Tier name (worker names, `aggregator`, `judge`) -> its process."""
    commands: dict[str, tuple[str, ...]] = {w: ("worker", "--name", w, "--classifier", f"hash:{w}") for w in workers}
    commands |= {"aggregator": ("aggregator",), "judge": ("judge", "--classifier", "hash:judge")}
    tiers = {}
    for n, (tier, args) in enumerate(commands.items()):
        port = _free_port()
        env = _env(settings, workers, f"bench-{n}", port)
        tiers[tier] = Tier(
            await asyncio.create_subprocess_exec(sys.executable, "-m", "tribunal.cli", *args, env=env), port
        )
    return tiers


def _delta(after: dict[str, float], before: dict[str, float], prefix: str) -> dict[str, float]:
    return {k[len(prefix) :]: after[k] - before.get(k, 0.0) for k in after if k.startswith(prefix)}


def _mean_ms(after: dict[str, float], before: dict[str, float], stage: str) -> float:
    total = sum(_delta(after, before, f"tribunal_stage_seconds_sum{{stage={stage},").values())
    count = sum(_delta(after, before, f"tribunal_stage_seconds_count{{stage={stage},").values())
    return round(total * 1000 / count, 2) if count else 0.0


def _batching(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per tier: transactions and records per batch over the phase; the aggregator's ended waits."""
    report: dict[str, Any] = {}
    for tier, samples in after.items():
        batches = sum(_delta(samples, before[tier], "tribunal_batch_records_count").values())
        records = sum(_delta(samples, before[tier], "tribunal_batch_records_sum").values())
        report[tier] = {
            "batches": int(batches),
            "records_per_batch": round(records / batches, 1) if batches else 0.0,
            "commit_ms_per_transaction": _mean_ms(samples, before[tier], "commit"),
            "process_ms_per_iteration": _mean_ms(samples, before[tier], "process"),
        }
    waits = _delta(after.get("aggregator", {}), before.get("aggregator", {}), "tribunal_vote_waits_over_total")
    report["aggregator_waits_over"] = {k.strip("{}").removeprefix("cause="): int(v) for k, v in waits.items() if v}
    return report


async def _stop(processes: Sequence[asyncio.subprocess.Process]) -> None:
    for process in processes:
        if process.returncode is None:
            process.terminate()
    await asyncio.gather(*(p.wait() for p in processes))


class LabelWatcher:
    """Follows the labels topic from its end; records when each item id's label became visible,
    and who decided it (`decided_by`, `reason`: two fields read, no full decode)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.seen: Counter[str] = Counter()
        self.visible_at: dict[str, float] = {}
        self.outcome: dict[str, tuple[str, str | None]] = {}
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
                    verdict = orjson.loads(record.value or b"{}")
                    self.outcome.setdefault(item_id, (verdict.get("decided_by", ""), verdict.get("reason")))
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
    outcomes = [watcher.outcome[i] for i in labelled if i in watcher.outcome]
    return {
        "items": count,
        "labelled": len(labelled),
        "seconds": round(finished - started, 3),
        "throughput_items_per_s": round(len(labelled) / max(finished - started, 1e-9), 1),
        "latency_ms": percentiles(latencies),
        "judge_share": _share(outcomes, lambda o: o[0] == "judge"),
        "deadline_share": _share(outcomes, lambda o: o[1] == "deadline"),
    }


def _share(outcomes: Sequence[tuple[str, str | None]], test: Callable[[tuple[str, str | None]], bool]) -> float:
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


async def _end_offsets(settings: Settings) -> int:
    """Sum of the end offsets of every topic of the run (records and transaction markers)."""
    consumer = AIOKafkaConsumer(**kafka.connection_options(settings.kafka))
    await consumer.start()
    try:
        tps = [TopicPartition(spec.name, p) for spec in topic_specs(settings) for p in range(spec.partitions)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


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


@dataclass(frozen=True, slots=True)
class _Phases:
    watcher: LabelWatcher  # every label seen, for duplicates and missing ones
    warmup: dict[str, Any]
    saturated: dict[str, Any]
    records: int  # broker records written during saturation, all topics
    cpu: dict[str, float]  # µs per item, per tier
    batching: dict[str, Any]
    paced: list[dict[str, Any]]


async def _measure(
    settings: Settings, names: list[str], count: int, rates: Sequence[float], rate_items: int
) -> _Phases:
    """The tiers' phases: warm-up, saturation (records, CPU and batching measured), paced."""
    watcher = LabelWatcher(settings)
    await watcher.start()
    tiers = await _start_tiers(settings, names)
    paced: list[dict[str, Any]] = []
    try:
        warmup = await _phase(settings, watcher, "warmup", 200, None)  # groups joined, code paths warm
        metrics_before = {tier: await t.counters() for tier, t in tiers.items()}
        cpu_before = {tier: cpu_seconds(t.process.pid) for tier, t in tiers.items()}
        records_before = await _end_offsets(settings)
        saturated = await _phase(settings, watcher, "load", count, None)
        records = await _end_offsets(settings) - records_before
        cpu_after = {tier: cpu_seconds(t.process.pid) for tier, t in tiers.items()}
        batching = _batching(metrics_before, {tier: await t.counters() for tier, t in tiers.items()})
        for n, rate in enumerate(r for r in rates if rate_items):
            paced.append({**await _phase(settings, watcher, f"paced{n}", rate_items, rate), "rate_items_per_s": rate})
    finally:
        await _stop([t.process for t in tiers.values()])
        await watcher.stop()
    cpu = cpu_per_item_us(cpu_before, cpu_after, count)
    return _Phases(watcher, warmup, saturated, records, cpu, batching, paced)


async def bench_pipeline(
    settings: Settings, count: int, workers: int, rates: Sequence[float], rate_items: int
) -> dict[str, Any]:
    """Run the whole pipeline on instant classifiers and measure it (see the module docstring)."""
    run = f"bench-{uuid.uuid4().hex[:8]}-"
    settings = settings.model_copy(update={"topics": settings.topics.model_copy(update={"prefix": run})})
    names = [f"w{n + 1}" for n in range(workers)]
    await create_topics(settings)
    baseline_topic = f"{settings.topics.prefix}baseline"
    try:
        phases = await _measure(settings, names, count, rates, rate_items)
        # With the tiers stopped: the broker alone, in the same run.
        baseline = await _broker_baseline(settings, count)
    finally:
        # A user's broker keeps nothing of a bench run.
        await delete_topics([settings], extra=[baseline_topic, settings.topics.dlq(baseline_topic)])
    ids = {f"load-{n}" for n in range(count)}
    per_item = round(phases.records / count, 2)
    cpu, saturated, seen = phases.cpu, phases.saturated, phases.watcher.seen
    return {
        **saturated,
        "duplicates": sum(1 for i in ids if seen[i] > 1),
        "missing": sum(1 for i in ids if seen[i] == 0),
        "workers": workers,
        "cpu_us_per_item": cpu,
        "worker_cpu_us_per_vote": round(sum(cpu.get(w, 0.0) for w in names) / max(len(names), 1), 1),
        "broker_records_per_item": per_item,
        "broker_baseline_msgs_per_s": baseline,
        "broker_bound_ratio": round(per_item * saturated["throughput_items_per_s"] / baseline, 3) if baseline else None,
        "batching": phases.batching,
        "paced": phases.paced,
        "warmup_labelled": phases.warmup["labelled"],
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
    try:
        report = await ingest(settings, str(path))
    finally:
        await delete_topics([settings])
    return {
        "items": count,
        "published": report.published,
        "rejected": len(report.rejected),
        "seconds": round(report.seconds, 3),
        "items_per_s": round(report.published / report.seconds, 1),
    }
