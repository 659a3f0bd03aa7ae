"""Helpers for the tests of sources and sinks: a user's topic written the way another system
writes it (random keys, a partitioner that is not murmur2, headers), and the sink read back."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.kit import TierMain, read_topic
from tests.integration.pipeline_kit import WORKERS, aggregator_main, judge_main, worker_main
from tribunal.consumers import intake, sink
from tribunal.core.settings import Settings

SCRIPT_FIELDS = tuple(f"script.{name}" for name in (*WORKERS, "judge"))

# (w1, w2, w3, judge) answers and the label each pattern ends with (sentiment3, criterion1).
ANSWERS: list[tuple[tuple[str, str, str, str], str]] = [
    (("positive", "positive", "positive", "negative"), "positive"),
    (("negative", "negative", "positive", "positive"), "negative"),
    (("positive", "negative", "neutral", "neutral"), "neutral"),
]

Foreign = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]  # key, value, headers


async def create_source(settings: Settings, topic: str, partitions: int = 3) -> None:
    """The user's topic, which Tribunal never creates (it allows values up to 4 MB)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        config = {"max.message.bytes": str(4 * 1024 * 1024)}
        await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=config)])
    finally:
        await admin.close()


async def produce_foreign(settings: Settings, topic: str, records: Sequence[Foreign], seed: int = 7) -> None:
    """Write `records` as another system would: each to a random partition, whatever its key."""
    chooser = random.Random(seed)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_idempotence=True,
        max_request_size=8 * 1024 * 1024,
        partitioner=lambda key, all_partitions, available: chooser.choice(all_partitions),
        linger_ms=5,
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key, headers=headers) for key, value, headers in records]
        for future in futures:
            await future
    finally:
        await producer.stop()


def pipeline(settings: Settings, *, sources: Sequence[str] = (), sinks: Sequence[str] = ()) -> list[TierMain]:
    """Workers, aggregator and judge scripted by the kept fields `script.w1` ... `script.judge`,
    plus the named intakes and sinks, as tasks."""
    mains: list[TierMain] = [worker_main(settings, w, f"scripted:script.{w}") for w in WORKERS]
    mains += [aggregator_main(settings), judge_main(settings, "scripted:script.judge")]
    mains += [_intake(settings, name) for name in sources]
    mains += [_sink(settings, name) for name in sinks]
    return mains


def _intake(settings: Settings, name: str) -> TierMain:
    return lambda stop: intake.serve_intake(settings, name, stop=stop)


def _sink(settings: Settings, name: str) -> TierMain:
    return lambda stop: sink.serve_sink(settings, name, stop=stop)


async def read_sink(settings: Settings, topic: str, count: int, timeout_s: float = 180.0) -> list[Any]:
    """The sink topic's records once `count` are in (raw aiokafka records)."""
    return await read_topic(settings, topic, until=lambda rs: len(rs) >= count, timeout_s=timeout_s)


def json_ticket(n: int) -> tuple[dict[str, Any], str]:
    """A ticket of another system's JSON shape, scripting the workers, and its expected label."""
    answers, label = ANSWERS[n % len(ANSWERS)]
    ticket = {
        "ticket": {"ref": f"T-{n:06d}", "subject": f"subject {n}", "body": f"body of ticket {n}"},
        "priority": n % 4,
        "script": dict(zip((*WORKERS, "judge"), answers, strict=True)),
    }
    return ticket, label


def value(obj: Any) -> bytes:
    return orjson.dumps(obj)
