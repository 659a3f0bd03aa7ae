"""Worker tier: one consumer group per worker name reads `items`, classifies each batch in one
model call and publishes, per partition of the batch, one `VoteBatch` to `votes`: its votes as
compact rows and the worker's position on that items partition (`next_offset`).

Every worker name sees every item (its own group); processes sharing a name share the work.
A partition's votes go to the votes partition with the same number, which keeps `items` and
`votes` co-partitioned for the aggregator whatever partitioner the item's producer used. The
position travels after the votes it covers, in the same transaction, so the aggregator can tell
a slow worker (its position is behind the item) from one that passed the item without a vote
(`consumers.aggregator.stragglers`); an idle worker sends an empty batch per owned partition every
`worker.progress_interval_ms` so that it is not taken for a dead one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from aiokafka import TopicPartition
from pydantic import BaseModel

from tribunal.consumers.classifiers import Classifier, build_classifier
from tribunal.consumers.classifiers.base import Prediction
from tribunal.consumers.classifiers.resilience import ResilientClassifier
from tribunal.core.batches import Output
from tribunal.core.errors import ServerUnavailableError
from tribunal.core.logs import configure_logging, get_logger
from tribunal.core.process import tune_gc
from tribunal.core.records import Record, dead_letter_of
from tribunal.core.runtime import Processor, serve
from tribunal.core.settings import Settings
from tribunal.schemas.messages import SCHEMA_VERSION, Item, VoteRow
from tribunal.schemas.tasks import TaskRegistry

__all__ = ["WorkerProcessor", "group_id", "run", "serve_worker"]

log = get_logger("tribunal.worker")

# Rows per VoteBatch record: at the largest row the contracts allow (~1.5 KB) one record stays
# well under Kafka's 1 MiB default, and a batch of short rows still fits in a few records.
ROWS_PER_RECORD = 400


def group_id(settings: Settings) -> str:
    return settings.topics.worker_group(settings.worker.name)


class WorkerProcessor(Processor):
    tier = "worker"

    def __init__(self, settings: Settings, classifier: Classifier, tasks: TaskRegistry) -> None:
        self._settings = settings
        self._name = settings.worker.name
        self._key = self._name.encode()
        self._classifier = classifier
        self._resilient = ResilientClassifier(
            classifier,
            tasks,
            retries=settings.runtime.retries,
            backoff_s=settings.runtime.retry_backoff_ms / 1000.0,
        )
        self._interval_s = settings.worker.progress_interval_ms / 1000.0
        self._positions: dict[int, int] = {}  # owned items partition -> next offset reported
        self._reported: dict[int, float] = {}  # owned items partition -> when last reported
        self._model = classifier.model_id  # of the latest batch: a learned head's version moves on

    def input_models(self) -> Mapping[str, type[BaseModel]]:
        return {self._settings.topics.items_topic: Item}

    def owns_dead_letters(self, topic: str) -> bool:
        """The aggregator dead-letters bad items; a worker skips them (one letter per record)."""
        return False

    async def process(self, records: Sequence[Record[Any]], now: float) -> list[Output]:
        items: list[Item] = [r.value for r in records]
        try:
            predictions = await self._resilient.classify(items)
        except ServerUnavailableError as exc:
            # A vote is cheap to miss: abstain and let the aggregator's quorum or deadline decide,
            # rather than stall every item behind a model server that is down. Not `failed`: the
            # items are fine, so nothing is dead-lettered.
            log.warning("worker_abstained_batch", worker=self._name, items=len(items), error=str(exc))
            predictions = [Prediction(None, 0.0, reason=f"model server unavailable: {exc}"[:1000]) for _ in items]
        # A learned head swaps versions only between batches, so one batch's votes share a model
        # (e.g. `tfidf:learned/T@v3`), which the VoteBatch records for all of them.
        self._model = next((p.model for p in predictions if p.model), None) or self._classifier.model_id
        dlq = self._settings.topics.dlq(self._settings.topics.items_topic)
        rows: dict[int, list[tuple[int, VoteRow]]] = {}
        outputs: list[Output] = []
        for record, prediction in zip(records, predictions, strict=True):
            rows.setdefault(record.partition, []).append((record.offset, _row(record.value, prediction)))
            if prediction.failed:
                # Poison to this model: the abstain vote lets the aggregator decide without
                # waiting; the dead letter lets an operator see what the model could not take.
                reason = f"worker {self._name} ({self._classifier.model_id}): {prediction.reason}"
                limit = self._settings.max_message_bytes
                outputs.append(dead_letter_of(record, dlq, self.tier, "model_poison", reason, max_message_bytes=limit))
        for partition, votes in rows.items():
            outputs += self._batches(partition, votes, now)
        return outputs

    def _batches(self, partition: int, votes: list[tuple[int, VoteRow]], now: float) -> list[Output]:
        """One record per ROWS_PER_RECORD votes (fewer if that would pass `max_message_bytes`);
        each record's position is the offset of the next record's first item, so no record
        claims items whose votes come after it."""
        outputs = []
        for start in range(0, len(votes), ROWS_PER_RECORD):
            chunk = votes[start : start + ROWS_PER_RECORD]
            following = votes[start + ROWS_PER_RECORD] if start + ROWS_PER_RECORD < len(votes) else None
            outputs += self._sized(partition, chunk, following[0] if following else chunk[-1][0] + 1, now)
        self._positions[partition] = max(self._positions.get(partition, 0), votes[-1][0] + 1)
        return outputs

    def _sized(self, partition: int, chunk: list[tuple[int, VoteRow]], position: int, now: float) -> list[Output]:
        """`chunk` as one record, or halves of it while one record would exceed the size every
        reader admits (rows are bounded, so a single row always fits)."""
        out = self._batch(partition, [row for _, row in chunk], max(position, 0), now)
        value = out.value or b""
        if len(chunk) == 1 or len(value) + len(self._key) <= self._settings.max_message_bytes:
            return [out]
        half = len(chunk) // 2
        return self._sized(partition, chunk[:half], chunk[half][0], now) + self._sized(
            partition, chunk[half:], position, now
        )

    def _batch(self, partition: int, rows: list[VoteRow], position: int, now: float) -> Output:
        """A VoteBatch, encoded straight from rows (no model per vote: the hot path)."""
        self._reported[partition] = now
        value = orjson.dumps(
            {
                "schema_version": SCHEMA_VERSION,
                "worker": self._name,
                "model": self._model[:256],
                "next_offset": position,
                "votes": rows,
                "voted_at": now,
            }
        )
        return Output(self._settings.topics.votes_topic, value, self._key, partition)

    async def tick(self, now: float) -> list[Output]:
        """Heartbeats: an empty batch for every owned partition not reported on for a while."""
        return [
            self._batch(partition, [], position, now)
            for partition, position in self._positions.items()
            if now - self._reported.get(partition, float("-inf")) >= self._interval_s
        ]

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._positions.setdefault(tp.partition, 0)  # 0 claims nothing until a batch says more

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:  # the new owner reports from now on; a stale report would mask its death
            self._positions.pop(tp.partition, None)
            self._reported.pop(tp.partition, None)

    async def close(self) -> None:
        await self._classifier.close()


def _row(item: Item, prediction: Prediction) -> VoteRow:
    """The vote as the contract bounds it (a row that does not validate would lose its batch)."""
    reason = prediction.reason[:1_000] if prediction.reason else prediction.reason
    return (item.id, item.task, prediction.label, prediction.confidence, max(0.0, prediction.latency_ms), reason)


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run one worker process until SIGINT/SIGTERM (or `stop`): the `tribunal worker` entry."""
    configure_logging(settings.log_format, settings.log_level, tier=f"worker:{settings.worker.name}")
    tune_gc()
    tasks = settings.tasks()
    await serve_worker(settings, build_classifier(settings.worker.classifier, tasks), stop=stop)


async def serve_worker(settings: Settings, classifier: Classifier, *, stop: asyncio.Event | None = None) -> None:
    """Run a worker with `classifier` inside the caller's own asyncio program.

    Nothing global is touched: logging stays as the host configured it, and with `stop` given no
    signal handler is installed; the worker commits its batch in flight and returns once `stop`
    is set. The classifier is closed on return.
    """
    tasks = settings.tasks()
    processor = WorkerProcessor(settings, classifier, tasks)
    await serve(
        settings,
        processor,
        group_id=group_id(settings),
        decode_context=settings.decode_context(tasks),
        stop=stop,
    )
