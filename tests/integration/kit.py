"""Helpers for integration tests: isolated settings, topic set-up, reading topics to the end,
and tiers running as asyncio tasks or as real OS processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel

from tribunal.core.settings import Settings, load_settings, settings_env
from tribunal.core.topics import create_topics
from tribunal.schemas.codec import decode
from tribunal.schemas.messages import Vote, VoteBatch

M = TypeVar("M", bound=BaseModel)
# A tier run as a task: `main(stop)` returns once `stop` is set and its last batch committed.
TierMain = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
REPO = Path(__file__).resolve().parents[2]


def isolated_settings(bootstrap: str, **overrides: Any) -> Settings:
    """Settings whose topics and groups no other test shares."""
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    topics = {"prefix": prefix, "partitions": 3, "judge_partitions": 2, "labels_partitions": 2}
    topics.update(overrides.pop("topics", {}))
    runtime = {"batch_wait_ms": 20, "transaction_timeout_ms": 10_000, "instance_id": "test"}
    runtime.update(overrides.pop("runtime", {}))
    return load_settings(
        kafka={"bootstrap_servers": bootstrap}, topics=topics, runtime=runtime, log_format="json", **overrides
    )


async def make_topics(settings: Settings) -> None:
    await create_topics(settings)


async def read_topic(
    settings: Settings,
    topic: str,
    model: type[M] | None = None,
    *,
    until: Callable[[list[Any]], bool] | None = None,
    timeout_s: float = 60.0,
) -> list[Any]:
    """Every committed record of `topic` (decoded with `model` if given, else raw records),
    read until `until(records)` holds, or until the end of the topic if no predicate is given."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        for _ in range(60):  # a topic created a moment ago can take a while to reach the metadata
            if partitions:
                break
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await asyncio.sleep(0.5)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for recs in batch.values():
                records += [decode(r.value, model) if model else r for r in recs]
            if until is not None:
                if until(records):
                    return records
            elif not batch and await _at_end(consumer, tps):
                return records
        if until is not None:
            raise TimeoutError(f"{topic}: condition not met within {timeout_s}s ({len(records)} records read)")
        return records
    finally:
        await consumer.stop()


async def _at_end(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> bool:
    end = await consumer.end_offsets(tps)
    positions = [await consumer.position(tp) for tp in tps]
    return all(position >= end[tp] for position, tp in zip(positions, tps, strict=True))


@contextlib.asynccontextmanager
async def running(*mains: TierMain) -> AsyncIterator[asyncio.Event]:
    """Run tiers as tasks; on exit stop them gracefully and surface any error they raised."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(main(stop)) for main in mains]
    try:
        yield stop
    finally:
        stop.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]


def child_env(settings: Settings, instance: str) -> dict[str, str]:
    """The environment of a child process running with `settings`, under its own instance id."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUNAL_")}
    env.update(settings_env(settings), TRIBUNAL_RUNTIME__INSTANCE_ID=instance, TRIBUNAL_LOG_LEVEL="warning")
    return env


async def start_tier(settings: Settings, *args: str, instance: str) -> asyncio.subprocess.Process:
    """Start `tribunal <args>` as a real OS process."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tribunal.cli", *args, env=child_env(settings, instance), cwd=REPO
    )


async def read_votes(settings: Settings, count: int, timeout_s: float = 60.0) -> list[Vote]:
    """The votes on the votes topic (each worker batch's `VoteBatch` expanded), once `count` are in."""

    def enough(batches: list[VoteBatch]) -> bool:
        return sum(len(batch.votes) for batch in batches) >= count

    batches = await read_topic(settings, settings.topics.votes_topic, VoteBatch, until=enough, timeout_s=timeout_s)
    return [vote for batch in batches for vote in batch.expand()]
