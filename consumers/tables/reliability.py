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
from tribunal.core import kafka, metrics
from tribunal.core.batches import Output
from tribunal.core.logs import get_logger
from tribunal.core.settings import Settings
from tribunal.core.topics import partitions_of, read_to_end
from tribunal.schemas.codec import DecodeError
from tribunal.schemas.messages import Vote
from tribunal.schemas.tasks import TaskRegistry

__all__ = ["ReliabilityTable", "ReliabilityTotals", "decode_snapshot"]

log = get_logger("tribunal.reliability")


# (task, judge partition) -> that partition's counts, as `Reliability.to_dict` wrote them.
Snapshots = dict[tuple[str, int], dict[str, object]]


def _key(task: str, partition: int) -> bytes:
    return f"{task}|{partition}".encode()


def _parse_key(raw: bytes | None) -> tuple[str, int] | None:
    if raw is None:
        return None
    task, _, partition = raw.decode("utf-8", errors="replace").rpartition("|")
    # isdigit() alone accepts '²', which int() refuses.
    ok = task and partition.isascii() and partition.isdigit() and len(partition) <= 9
    return (task, int(partition)) if ok else None


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


class ReliabilityTable:
    """A judge's counts for the partitions it owns."""

    def __init__(self, settings: Settings, tasks: TaskRegistry) -> None:
        self._settings = settings
        self._tasks = tasks
        self._counts: dict[tuple[str, int], Reliability] = {}
        self._dirty: set[tuple[str, int]] = set()

    def record(self, task: str, partition: int, votes: Sequence[Vote], true_label: str) -> None:
        """Count how each vote compared with the judge's label."""
        if task not in self._tasks:
            return
        book = self._counts.get((task, partition))
        if book is None:
            book = self._counts[(task, partition)] = Reliability(self._tasks.get(task).labels)
        if book.update(ballots(votes), true_label):
            self._dirty.add((task, partition))

    def outputs(self) -> list[Output]:
        """The touched keys' counts, for the current transaction."""
        topic = self._settings.topics.reliability_topic
        records = [Output(topic, orjson.dumps(self._counts[k].to_dict()), _key(*k)) for k in sorted(self._dirty)]
        self._dirty.clear()
        return records

    def forget(self, partitions: set[int]) -> None:
        for key in [k for k in self._counts if k[1] in partitions]:
            del self._counts[key]
        self._dirty = {k for k in self._dirty if k[1] not in partitions}

    async def restore(self, partitions: set[int]) -> None:
        """Load the committed counts of `partitions` (the topic is small: tasks x partitions)."""
        snapshots = await _read_all(self._settings)
        for (task, partition), data in snapshots.items():
            if partition in partitions and task in self._tasks:
                self._counts[(task, partition)] = Reliability.from_dict(data, labels=self._tasks.get(task).labels)


async def _read_all(settings: Settings) -> dict[tuple[str, int], dict[str, object]]:
    snapshots: dict[tuple[str, int], dict[str, object]] = {}
    tps = await partitions_of(settings, settings.topics.reliability_topic)
    async for record in read_to_end(settings, tps):
        _absorb_record(snapshots, record.key, record.value)
    return snapshots


def _absorb(snapshots: dict[tuple[str, int], dict[str, object]], batch: dict[TopicPartition, list]) -> None:  # type: ignore[type-arg]
    for records in batch.values():
        for record in records:
            _absorb_record(snapshots, record.key, record.value)


def _absorb_record(
    snapshots: dict[tuple[str, int], dict[str, object]], raw_key: bytes | None, value: bytes | None
) -> None:
    key = _parse_key(raw_key)
    if key is None:
        return
    if value is None:
        snapshots.pop(key, None)
        return
    try:
        snapshots[key] = decode_snapshot(value)
    except DecodeError as exc:
        metrics.SKIPPED_RECORDS.labels("reliability", "reliability", exc.kind).inc()
        log.warning("reliability_snapshot_skipped", key=f"{key[0]}|{key[1]}", error=str(exc))


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
