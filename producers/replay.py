"""`tribunal replay items|votes`: re-run history into a namespaced run, never into live topics.

A run `RUN` writes only topics prefixed `RUN-` (created with the source's items/votes partition
count, so partition p of the run holds what partition p of the source held). The source
topics (prefix `--source-prefix`, default the settings' prefix) are only read, read_committed,
up to their end offsets at the start of the command (so a live pipeline never makes it chase).

- `items`: copy an offset range and/or a time range (`offsets_for_times`) of the source items
  topic, record for record (same bytes, same key, same partition), with an idempotent producer.
- `votes`: re-decide every recorded item from the vote log under another policy without running
  a worker (`producers.redecide`), streamed in bounded memory (`producers.replay_votes`): new
  verdicts go to `RUN-labels`, items that need a judge and have no recorded judge label go to
  `RUN-judge` (a judge run on the run writes its verdicts to `RUN-verdicts`: they name no
  escalation of an aggregator, so none publishes them as labels). Prints the diff report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from tribunal.consumers.policy.ballots import Policy
from tribunal.consumers.policy.voting import PolicyChoice, make_policy
from tribunal.core import kafka
from tribunal.core.errors import ConfigError
from tribunal.core.settings import Settings
from tribunal.core.topics import create_topics, describe_partition_counts
from tribunal.producers.redecide import Redecider
from tribunal.producers.replay_votes import Publisher, index_verdicts, stream_redecide
from tribunal.schemas.tasks import canonical_policy

__all__ = ["Bounds", "Window", "parse_thresholds", "parse_time", "replay_items", "replay_votes", "run_settings"]

Bounds = dict[int, tuple[int, int]]  # partition -> [start, stop) offsets
# from_offset / to_offset (offsets, per partition) and from_ms / to_ms (record timestamps), all optional.
Window = dict[str, int | None]
# Give up when a partition makes no progress for this long (a broker gone, not a slow read).
STALL_S = 30.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def run_settings(source: Settings, run: str, partitions: int) -> Settings:
    """Settings of the run `run`: topics prefixed `RUN-`; ConfigError if that is the source's prefix."""
    prefix = f"{run}-"
    if not run or prefix == source.topics.prefix:
        raise ConfigError(f"run {run!r} would write the source topics (prefix {source.topics.prefix!r})")
    topics = source.topics.model_copy(update={"prefix": prefix, "partitions": partitions})
    return source.model_copy(update={"topics": topics})


def parse_time(text: str) -> int:
    """An ISO 8601 time (naive = UTC, `Z` allowed) as epoch milliseconds; ValueError if unreadable."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Integer arithmetic: a float timestamp * 1000 can land one millisecond short.
    return (moment - EPOCH) // timedelta(milliseconds=1)


def parse_thresholds(values: Sequence[str]) -> tuple[float | None, dict[str, float]]:
    """`X` (for every worker) and `WORKER=X` (one worker) -> (default, per-worker); ValueError if bad."""
    default: float | None = None
    per_worker: dict[str, float] = {}
    for value in values:
        worker, sep, number = value.rpartition("=")
        if sep and not worker:
            raise ValueError(f"threshold {value!r}: expected X or WORKER=X")
        if sep:
            per_worker[worker] = float(number)
        else:
            default = float(number)
    return default, per_worker


# --- reading ------------------------------------------------------------------------------------
async def _bounds(consumer: AIOKafkaConsumer, tps: list[TopicPartition], window: Window) -> Bounds:
    """[start, stop) per partition: the topic now, narrowed by offsets and by times (ms)."""
    first = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)
    starts = {tp: max(first[tp], window.get("from_offset") or 0) for tp in tps}
    stops = {tp: min(end[tp], window["to_offset"]) if window.get("to_offset") is not None else end[tp] for tp in tps}
    for name, target in (("from_ms", starts), ("to_ms", stops)):
        moment = window.get(name)
        if moment is not None:
            found = await consumer.offsets_for_times(dict.fromkeys(tps, moment))
            for tp in tps:
                at = found[tp].offset if found[tp] is not None else end[tp]  # none that late: the end
                target[tp] = max(target[tp], at) if name == "from_ms" else min(target[tp], at)
    return {tp.partition: (starts[tp], max(starts[tp], stops[tp])) for tp in tps}


async def read_range(
    settings: Settings, topic: str, window: Window | None = None
) -> tuple[list[ConsumerRecord[bytes, bytes]], Bounds]:
    """Committed records of `topic` inside `window` (keys from_offset, to_offset, from_ms, to_ms;
    all optional), in partition then offset order, and the bounds read. Missing topic: nothing."""
    # Partitions from the admin client: an unsubscribed consumer has no metadata for the topic yet.
    count = (await describe_partition_counts(settings, [topic])).get(topic)
    if not count:
        return [], {}
    tps = [TopicPartition(topic, p) for p in range(count)]
    consumer = kafka.consumer(settings.kafka, settings.runtime, group_id=None)
    await consumer.start()
    try:
        consumer.assign(tps)
        bounds = await _bounds(consumer, tps, window or {})
        for tp in tps:
            consumer.seek(tp, bounds[tp.partition][0])
        return await _drain(consumer, bounds), bounds
    finally:
        await consumer.stop()


async def _drain(consumer: AIOKafkaConsumer, bounds: Bounds) -> list[ConsumerRecord[bytes, bytes]]:
    by_partition: dict[int, list[ConsumerRecord[bytes, bytes]]] = {p: [] for p in bounds}
    open_tps = {tp for tp in consumer.assignment() if bounds[tp.partition][0] < bounds[tp.partition][1]}
    progress = time.monotonic()
    while open_tps:
        batch = await consumer.getmany(*open_tps, timeout_ms=200, max_records=10_000)
        for tp, records in batch.items():
            by_partition[tp.partition] += [r for r in records if r.offset < bounds[tp.partition][1]]
        for tp in list(open_tps):
            # Position, not the last offset seen: transaction markers take offsets too.
            if await consumer.position(tp) >= bounds[tp.partition][1]:
                open_tps.discard(tp)
                consumer.pause(tp)
        if batch:
            progress = time.monotonic()
        elif time.monotonic() - progress > STALL_S:
            raise TimeoutError(f"no progress reading {sorted(str(tp) for tp in open_tps)} for {STALL_S}s")
    return [r for p in sorted(by_partition) for r in by_partition[p]]


# --- writing ------------------------------------------------------------------------------------
async def _publish(settings: Settings, outputs: list[tuple[str, bytes, bytes | None, int | None]]) -> None:
    """Send (topic, value, key, partition) records idempotently and wait until all are acked."""
    producer = kafka.idempotent_producer(settings.kafka, settings.max_record_bytes)
    await producer.start()
    try:
        futures = [await producer.send(t, v, key=k, partition=p) for t, v, k, p in outputs]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _prepare_run(source: Settings, run: str) -> Settings:
    counts = await describe_partition_counts(source, [source.topics.items_topic])
    partitions = counts.get(source.topics.items_topic)
    if partitions is None:
        raise ConfigError(f"source topic {source.topics.items_topic!r} does not exist")
    target = run_settings(source, run, partitions)
    await create_topics(target)
    return target


# --- the two commands ---------------------------------------------------------------------------
async def replay_items(source: Settings, run: str, window: Window) -> dict[str, Any]:
    """Copy the items of `window` from the source items topic into `RUN-items` (module docstring)."""
    target = await _prepare_run(source, run)
    records, bounds = await read_range(source, source.topics.items_topic, window)
    outputs = [(target.topics.items_topic, r.value, r.key, r.partition) for r in records]
    await _publish(target, outputs)
    return {
        "run": run,
        "source_topic": source.topics.items_topic,
        "target_topic": target.topics.items_topic,
        "published": len(outputs),
        "bounds": {str(p): list(b) for p, b in sorted(bounds.items())},
    }


def policy_factory(source: Settings, name: str, thresholds: Sequence[str]) -> Callable[[str], Policy]:
    """One policy per task, built on first use (a learning policy keeps its state per task)."""
    default, per_worker = parse_thresholds(thresholds)
    name = canonical_policy(name)
    if (name != "confident_majority" and per_worker) or (name == "majority" and default is not None):
        raise ConfigError(f"policy {name!r} does not take these thresholds: {list(thresholds)}")
    agg = source.aggregator
    choice = PolicyChoice(name, agg.quorum, agg.workers, per_worker, default)
    tasks = source.tasks()
    built: dict[str, Policy] = {}

    def policy_for(task: str) -> Policy:
        if task not in built:
            built[task] = make_policy(choice, tasks.get(task).labels)
        return built[task]

    return policy_for


async def replay_votes(source: Settings, run: str, policy: str, thresholds: Sequence[str]) -> dict[str, Any]:
    """Re-decide the source's recorded items under `policy`; publish into the run; the diff report."""
    policy_for = policy_factory(source, policy, thresholds)
    target = await _prepare_run(source, run)
    started = time.perf_counter()
    index = await index_verdicts(source)
    publisher = Publisher(target)
    await publisher.start()
    redecider = Redecider(policy_for, source.aggregator.workers, time.time(), emit=publisher.emit)
    try:
        skipped = await stream_redecide(source, redecider, index, publisher.flush)
    finally:
        await publisher.stop()
    report = redecider.report()
    report.update(policy=report["policy"] or policy, run=run, undecodable=skipped + index.undecodable)
    report.update(labels_topic=target.topics.labels_topic, judge_topic=target.topics.judge_topic)
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report
