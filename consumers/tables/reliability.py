"""Learned worker reliability, fed from judge verdicts and audits, shared through Kafka.

Each judge instance counts, per task and per `judge` partition it owns, how every worker's
vote compared with the judge's label (`Reliability.update`). It writes the counts of the
partitions it touched to the compacted `reliability` topic (key `task|partition`) in the same
transaction as its verdicts, and restores them on assignment, so the counts are exactly-once
and survive restarts and rebalances. Counts are additive: every aggregator follows the topic
and sums all keys per task (`ReliabilityTotals`), which is what the weighted policy reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from tribunal.consumers.policy.ballots import ballots
from tribunal.consumers.policy.reliability import Reliability
from tribunal.consumers.tables.base import PartitionTable, parse_table_key, skip_row
from tribunal.core import kafka, metrics
from tribunal.core.settings import Settings
from tribunal.schemas.codec import DecodeError
from tribunal.schemas.messages import Vote
from tribunal.schemas.tasks import TaskRegistry

__all__ = ["ReliabilityTable", "ReliabilityTotals", "decode_snapshot"]


# (task, judge partition) -> that partition's counts, as `Reliability.to_dict` wrote them.
Snapshots = dict[tuple[str, int], dict[str, object]]


def decode_snapshot(value: bytes) -> dict[str, object]:
    """One `reliability` record's counts as `Reliability.to_dict` wrote them; `DecodeError` for
    anything else (the topic is ours, but a hostile producer must not stop a tier through it)."""
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("reliability snapshot", f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DecodeError("reliability snapshot", f"expected a JSON object, got {type(data).__name__}")
    try:
        Reliability.from_dict(data)
    except ValueError as exc:
        raise DecodeError("reliability snapshot", str(exc)[:500]) from None
    return data


class ReliabilityTable(PartitionTable[Reliability]):
    """A judge's counts for the partitions it owns."""

    name = "reliability"

    def __init__(self, settings: Settings, tasks: TaskRegistry) -> None:
        super().__init__(settings, tasks, settings.topics.reliability_topic)

    def record(self, task: str, partition: int, votes: Sequence[Vote], true_label: str) -> None:
        """Count how each vote compared with the judge's label."""
        if task not in self._tasks:
            return
        counts = self._rows.get((task, partition))
        if counts is None:
            counts = self._rows[(task, partition)] = Reliability(self._tasks.get(task).labels)
        if counts.update(ballots(votes), true_label):
            self.changed((task, partition))

    def encode_row(self, row: Reliability) -> bytes:
        return orjson.dumps(row.to_dict())

    def decode_row(self, task: str, value: bytes) -> Reliability:
        return Reliability.from_dict(decode_snapshot(value), labels=self._tasks.get(task).labels)


def _absorb(snapshots: dict[tuple[str, int], dict[str, object]], batch: dict[TopicPartition, list]) -> None:  # type: ignore[type-arg]
    for records in batch.values():
        for record in records:
            _absorb_record(snapshots, record.key, record.value)


def _absorb_record(
    snapshots: dict[tuple[str, int], dict[str, object]], raw_key: bytes | None, value: bytes | None
) -> None:
    key = parse_table_key(raw_key)
    if key is None:
        return
    if value is None:
        snapshots.pop(key, None)
        return
    try:
        snapshots[key] = decode_snapshot(value)
    except DecodeError as exc:
        skip_row("reliability", "reliability", key, exc)


class ReliabilityTotals:
    """An aggregator's view: the sum of every judge partition's counts, per task, kept current.

    `reliability(task)` returns one object per task that is updated in place, so a policy built
    on it always decides with the latest counts.
    """

    def __init__(self, settings: Settings, tasks: TaskRegistry) -> None:
        self._settings = settings
        self._tasks = tasks
        self._snapshots: dict[tuple[str, int], dict[str, object]] = {}
        self._merged: dict[str, Reliability] = {}
        self._consumer: AIOKafkaConsumer | None = None

    def reliability(self, task: str) -> Reliability:
        if task not in self._merged:
            self._refresh(task)
        return self._merged[task]

    async def start(self) -> None:
        """Start following the counts; once (the aggregator calls this on every assignment, and a
        second consumer would leak the first, open connections and all)."""
        if self._consumer is not None:
            return
        consumer = kafka.consumer(self._settings.kafka, self._settings.runtime, group_id=None)
        await kafka.start(consumer, self._settings.kafka)  # closed again if no broker answers
        consumer.subscribe([self._settings.topics.reliability_topic])
        self._consumer = consumer

    async def poll(self) -> None:
        """Take in whatever counts arrived since the last call, without waiting."""
        if self._consumer is None:
            return
        batch = await self._consumer.getmany(timeout_ms=0)
        if not batch:
            return
        _absorb(self._snapshots, batch)
        for task in {task for task, _ in self._snapshots} | set(self._merged):
            if task in self._tasks:
                self._refresh(task)

    def _refresh(self, task: str) -> None:
        labels = self._tasks.get(task).labels
        parts = [Reliability.from_dict(d, labels=labels) for (t, _), d in sorted(self._snapshots.items()) if t == task]
        merged = self._merged.setdefault(task, Reliability(labels))
        merged.reset_to_sum(parts)
        for worker in merged.workers:
            metrics.WORKER_ACCURACY.labels(task, worker).set(merged.accuracy(worker))

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
