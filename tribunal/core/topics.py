"""Topic administration: every topic a pipeline needs, created idempotently.

items, votes and verdicts MUST have the same partition count (all keyed by item id): the
aggregator joins them partition by partition, and so is its decided-id log.

Every topic gets `max.message.bytes` = the producers' `max_request_size` for
`settings.max_record_bytes`, so any record a tier may write is accepted, and nothing much
larger reaches a tier. Existing topics are left alone; a lower limit on one is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from tribunal.core import kafka
from tribunal.core.errors import ConfigError
from tribunal.core.kafka import admin_client
from tribunal.core.settings import Settings

__all__ = [
    "TopicSpec",
    "create_topics",
    "delete_topics",
    "describe_partition_counts",
    "list_topics",
    "message_limits",
    "partitions_of",
    "read_to_end",
    "topic_specs",
]

# Compacted topics (reliability counts) keep only the latest value per key and drop tombstones quickly.
COMPACTED = {
    "cleanup.policy": "compact",
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": "60000",
}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def decided_log_config(window_s: float) -> dict[str, str]:
    """The aggregator's decided-id log keeps at least `window_s` of history: a segment is deleted
    once its newest record is older than that, and segments roll often so little more is kept."""
    window_ms = int(window_s * 1000)
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(window_ms + 60_000),
        "segment.ms": str(max(60_000, window_ms // 4)),
    }


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic of the pipeline that `settings` describe, DLQs included."""
    t = settings.topics
    limit = {"max.message.bytes": str(kafka.max_request_size(settings.max_record_bytes))}
    specs = [
        TopicSpec(t.items_topic, t.partitions, limit),
        TopicSpec(t.votes_topic, t.partitions, limit),
        TopicSpec(t.verdicts_topic, t.partitions, limit),
        TopicSpec(t.state_topic, t.partitions, decided_log_config(settings.aggregator.window_s) | limit),
        TopicSpec(t.judge_topic, t.judge_partitions, limit),
        TopicSpec(t.labels_topic, t.labels_partitions, limit),
        TopicSpec(t.audits_topic, t.labels_partitions, limit),
        TopicSpec(t.reliability_topic, t.judge_partitions, COMPACTED | limit),
        TopicSpec(t.evidence_topic, t.judge_partitions, COMPACTED | limit),
        # One partition: every aggregator reads every task's rule, in the order it was published.
        TopicSpec(t.rules_topic, 1, COMPACTED | limit),
    ]
    # The user's own topics: a source's dead letters, and each sink's topic if it is missing
    # (the source topics themselves are the user's, never created here).
    specs += [TopicSpec(sink.topic, t.partitions, limit) for sink in settings.sink]
    inputs = (t.items_topic, t.votes_topic, t.judge_topic, t.verdicts_topic, *(s.topic for s in settings.source))
    return specs + [TopicSpec(t.dlq(name), 1, limit) for name in inputs]


async def create_topics(settings: Settings) -> list[str]:
    """Create the missing topics; return the names created (existing ones are left alone)."""
    admin = admin_client(settings.kafka)
    await kafka.start(admin, settings.kafka)
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in topic_specs(settings) if s.name not in existing]
        if wanted:
            new = [
                NewTopic(s.name, s.partitions, settings.topics.replication_factor, topic_configs=s.config)
                for s in wanted
            ]
            # Another process may create them between our list and create: same outcome.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
        return [s.name for s in wanted]
    finally:
        await admin.close()


async def delete_topics(settings: Sequence[Settings], extra: Sequence[str] = ()) -> list[str]:
    """Delete the topics of each of `settings` (and the `extra` names) that exist; return them.
    For benches and demos on a user's broker: a run's own topics must not pile up there. Only
    names under the run's prefix go: a sink topic or a source's DLQ named in the user's
    configuration, outside the prefix, is the user's and is left alone."""
    admin = admin_client(settings[0].kafka)
    await kafka.start(admin, settings[0].kafka)
    try:
        existing = set(await admin.list_topics())
        names = [spec.name for s in settings for spec in topic_specs(s) if spec.name.startswith(s.topics.prefix)]
        names += list(extra)
        doomed = [name for name in dict.fromkeys(names) if name in existing]
        if doomed:
            await admin.delete_topics(doomed)
        return doomed
    finally:
        await admin.close()


async def list_topics(settings: Settings, everything: bool = False) -> list[dict[str, object]]:
    """The pipeline's topics (name, partitions wanted and found, whether it exists), or with
    `everything` every topic on the cluster that is not internal (name, partitions)."""
    admin = admin_client(settings.kafka)
    await kafka.start(admin, settings.kafka)
    try:
        existing = sorted(t for t in await admin.list_topics() if not t.startswith("__"))
    finally:
        await admin.close()
    if everything:
        counts = await describe_partition_counts(settings, existing) if existing else {}
        return [{"name": name, "partitions": counts.get(name)} for name in existing]
    specs = topic_specs(settings)
    present = [s.name for s in specs if s.name in existing]
    counts = await describe_partition_counts(settings, present) if present else {}
    return [
        {"name": s.name, "exists": s.name in counts, "partitions": counts.get(s.name), "wanted": s.partitions}
        for s in specs
    ]


async def message_limits(settings: Settings, topics: list[str]) -> dict[str, int | None]:
    """Each topic's effective `max.message.bytes` (None where the broker did not say)."""
    admin = admin_client(settings.kafka)
    await kafka.start(admin, settings.kafka)
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in topics]
        responses = await admin.describe_configs(resources)
    finally:
        await admin.close()
    limits: dict[str, int | None] = dict.fromkeys(topics)
    for response in responses:
        for resource in response.resources:  # (error_code, error_message, type, name, configs)
            for entry in resource[4]:
                if entry[0] == "max.message.bytes" and entry[1] is not None:
                    limits[resource[3]] = int(entry[1])
    return limits


async def read_to_end(
    settings: Settings, tps: list[TopicPartition], *, stall_s: float | None = None
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every committed record of `tps` from the beginning up to their end offsets at the start
    (how state is restored from a log or compacted topic before processing resumes); records
    written since are not read. `stall_s`: give up (`TimeoutError`) when one fetch hangs longer."""
    consumer = kafka.consumer(settings.kafka, settings.runtime, group_id=None, record_limit=settings.max_record_bytes)
    await kafka.start(consumer, settings.kafka, wait_s=settings.runtime.broker_wait_s)
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            batch = await asyncio.wait_for(consumer.getmany(*remaining, timeout_ms=200, max_records=10_000), stall_s)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < end[tp]:
                        yield record
            remaining = {tp for tp in remaining if await consumer.position(tp) < end[tp]}
    finally:
        await consumer.stop()


async def partitions_of(settings: Settings, topic: str) -> list[TopicPartition]:
    """The partitions of an existing topic; `ConfigError` saying what to run if it is missing."""
    counts = await describe_partition_counts(settings, [topic])
    if not counts.get(topic):
        raise ConfigError(f"topic {topic!r} does not exist; run `tribunal topics create`")
    return [TopicPartition(topic, p) for p in range(counts[topic])]


async def describe_partition_counts(settings: Settings, topics: list[str]) -> dict[str, int]:
    """Partition count of each topic that exists."""
    admin = admin_client(settings.kafka)
    await kafka.start(admin, settings.kafka)
    try:
        described = await admin.describe_topics(topics)
        return {d["topic"]: len(d["partitions"]) for d in described if not d.get("error_code")}
    finally:
        await admin.close()
