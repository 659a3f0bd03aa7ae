"""`tribunal bench pipeline|ingest`: measured figures, printed, never asserted.

`pipeline` runs every tier as its own OS process with instant classifiers against a real broker,
publishes items and follows `labels` with a read_committed consumer. It reports end-to-end
throughput, latency from item produce to label commit (p50/p95/p99, at saturation and at fixed
rates), who decided (the judge-decided share, and the share escalated for a missing vote,
reason `deadline`), exactly-once accounting (labelled, duplicates, missing), each tier's CPU
time per item over the saturation phase (from /proc, Linux), the broker records written per
item, and beside it the raw broker round trip (aiokafka produce + consume of the same number of
messages) in the same run, with the broker-bound ratio: records per item x items/s / broker
msgs/s (1.0 would mean the pipeline moves records as fast as the bare broker round trip), and
the fixed cost of one tier transaction (one record, offsets committed in it): transactions per
second one producer reaches, and the client's and the local broker's CPU per transaction. That
cost, paid per batch whatever it carries, is what moderate load spends its CPU on.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from tribunal.bench.probes import (
    LabelWatcher,
    bench_items,
    cpu_seconds,
    exactly_once,
    local_broker_pid,
    phase,
    produce,
    stop_processes,
)
from tribunal.bench.sources import SourceFeed, create_source_topic, registry_for_bench, source_settings
from tribunal.core import kafka
from tribunal.core.settings import Settings, settings_env
from tribunal.core.topics import create_topics, delete_topics, topic_specs
from tribunal.schemas.codec import encode

__all__ = ["Tier", "bench_ingest", "bench_pipeline", "start_tiers"]

TRANSACTIONS = 300  # of the transaction baseline: seconds on a small machine


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


async def start_tiers(
    settings: Settings, workers: list[str], extra: Mapping[str, tuple[str, ...]] | None = None
) -> dict[str, Tier]:
    """Tier name (worker names, `aggregator`, `judge`, and `extra`'s) -> its process."""
    commands: dict[str, tuple[str, ...]] = {w: ("worker", "--name", w, "--classifier", f"hash:{w}") for w in workers}
    commands |= {"aggregator": ("aggregator",), "judge": ("judge", "--classifier", "hash:judge")}
    commands |= dict(extra or {})
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
    payloads = [encode(item) for item in bench_items("base", count)]
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


async def _transaction_baseline(settings: Settings, count: int) -> dict[str, float | None]:
    """One transactional producer alone, `count` transactions as a tier makes them (a record,
    then the consumed offsets): per second, and CPU ms per transaction of client and broker."""
    topic = f"{settings.topics.prefix}baseline"
    group = f"{settings.topics.prefix}txn"
    producer = kafka.transactional_producer(settings.kafka, settings.runtime, group, 1 << 20)
    await producer.start()
    broker = local_broker_pid(settings)
    try:
        broker_before = cpu_seconds(broker) if broker else None
        client_before, started = time.process_time(), time.perf_counter()
        for n in range(count):
            async with producer.transaction():
                await producer.send(topic, b"x" * 100, partition=0)
                await producer.send_offsets_to_transaction(
                    {TopicPartition(topic, 0): n + 1}, f"{settings.topics.prefix}txn"
                )
        wall, client = time.perf_counter() - started, time.process_time() - client_before
        broker_after = cpu_seconds(broker) if broker else None
    finally:
        await producer.stop()
    spent = None if broker_before is None or broker_after is None else broker_after - broker_before
    return {
        "per_s": round(count / wall, 1),
        "client_cpu_ms": round(client * 1000 / count, 2),
        "broker_cpu_ms": None if spent is None else round(spent * 1000 / count, 2),
    }


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
    settings: Settings,
    names: list[str],
    count: int,
    rates: Sequence[float],
    rate_items: int,
    feed: SourceFeed | None = None,
) -> _Phases:
    """The tiers' phases: warm-up, saturation (records, CPU and batching measured), paced. With
    a `feed`, items enter as a source's records and are followed on its sink."""
    watcher = LabelWatcher(settings) if feed is None else LabelWatcher(settings, feed.sink_topic, feed.outcome)
    publish = produce if feed is None else feed.publish
    await watcher.start()
    tiers = await start_tiers(settings, names, None if feed is None else feed.tiers)
    paced: list[dict[str, Any]] = []
    try:
        warmup = await phase(settings, watcher, "warmup", 200, None, publish=publish)  # groups joined, code warm
        metrics_before = {tier: await t.counters() for tier, t in tiers.items()}
        pids = {tier: t.process.pid for tier, t in tiers.items()}
        records_before = await _end_offsets(settings)
        saturated = await phase(settings, watcher, "load", count, None, pids, publish)
        records = await _end_offsets(settings) - records_before
        batching = _batching(metrics_before, {tier: await t.counters() for tier, t in tiers.items()})
        for n, rate in enumerate(r for r in rates if rate_items):
            figures = await phase(settings, watcher, f"paced{n}", rate_items, rate, pids, publish)
            paced.append({**figures, "rate_items_per_s": rate})
    finally:
        await stop_processes([t.process for t in tiers.values()])
        await watcher.stop()
    return _Phases(watcher, warmup, saturated, records, saturated["cpu_us_per_item"], batching, paced)


async def bench_pipeline(
    settings: Settings, count: int, workers: int, rates: Sequence[float], rate_items: int, source: str | None = None
) -> dict[str, Any]:
    """Run the whole pipeline on instant classifiers and measure it (see the module docstring);
    with `source` (json, avro), then again with items entering through a source and leaving
    through its sink, in the same run, side by side."""
    run = f"bench-{uuid.uuid4().hex[:8]}-"
    settings = settings.model_copy(update={"topics": settings.topics.model_copy(update={"prefix": run})})
    names = [f"w{n + 1}" for n in range(workers)]
    await create_topics(settings)
    baseline_topic = f"{settings.topics.prefix}baseline"
    try:
        phases = await _measure(settings, names, count, rates, rate_items)
        # With the tiers stopped: the broker alone, in the same run.
        baseline = await _broker_baseline(settings, count)
        transaction = await _transaction_baseline(settings, TRANSACTIONS)
    finally:
        # A user's broker keeps nothing of a bench run.
        await delete_topics([settings], extra=[baseline_topic, settings.topics.dlq(baseline_topic)])
    report = _report(phases, count, names, baseline)
    report |= {"transaction_baseline": transaction, "cores": os.cpu_count()}
    if source is None:
        return report
    sourced = await _bench_source(settings, source, count, names, rates, rate_items)
    plain_rate = report["throughput_items_per_s"]
    return {
        "plain": report,
        f"source_{source}": sourced,
        "source_vs_plain_throughput": round(sourced["throughput_items_per_s"] / plain_rate, 3) if plain_rate else None,
        "intake_cpu_us_per_record": sourced["cpu_us_per_item"].get("intake"),
        "sink_cpu_us_per_record": sourced["cpu_us_per_item"].get("sink"),
    }


async def _bench_source(
    settings: Settings, fmt: str, count: int, names: list[str], rates: Sequence[float], rate_items: int
) -> dict[str, Any]:
    run = f"bench-{uuid.uuid4().hex[:8]}-"
    plain = settings.model_copy(update={"topics": settings.topics.model_copy(update={"prefix": run})})
    async with registry_for_bench(plain, fmt) as url:
        sourced = source_settings(plain, fmt, url)
        await create_topics(sourced)
        await create_source_topic(sourced)
        feed = SourceFeed(sourced)
        try:
            phases = await _measure(sourced, names, count, rates, rate_items, feed)
        finally:
            await feed.close()
            await delete_topics([sourced], extra=[sourced.source[0].topic])
    return _report(phases, count, names, None)


def _report(phases: _Phases, count: int, names: list[str], baseline: float | None) -> dict[str, Any]:
    ids = {f"load-{n}" for n in range(count)}
    per_item = round(phases.records / count, 2)
    cpu, saturated, seen = phases.cpu, phases.saturated, phases.watcher.seen
    return {
        **saturated,
        **exactly_once(seen, ids),
        "workers": len(names),
        "cpu_us_per_item": cpu,
        "worker_cpu_us_per_vote": round(sum(cpu.get(w, 0.0) for w in names) / max(len(names), 1), 1),
        "broker_records_per_item": per_item,
        "broker_baseline_msgs_per_s": baseline,
        "broker_bound_ratio": round(per_item * saturated["throughput_items_per_s"] / baseline, 3) if baseline else None,
        "batching": phases.batching,
        "paced": phases.paced,
        "warmup_labelled": phases.warmup["labelled"],
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
