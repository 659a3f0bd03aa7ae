"""Worker tier: one consumer group per worker name reads `items`, classifies each batch in one
model call and publishes one `Vote` per item to `votes`, keyed by item id.

Every worker name sees every item (its own group); processes sharing a name share the work.
Votes go to the same partition number as their item, which keeps `items` and `votes`
co-partitioned for the aggregator whatever partitioner the item's producer used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from tribunal.consumers.classifiers import Classifier, build_classifier
from tribunal.consumers.classifiers.base import Prediction
from tribunal.consumers.resilience import ResilientClassifier
from tribunal.core.errors import ServerUnavailableError
from tribunal.core.logs import configure_logging, get_logger
from tribunal.core.runtime import Output, Processor, Record, dead_letter_of, serve
from tribunal.core.settings import Settings
from tribunal.schemas.codec import encode, key
from tribunal.schemas.messages import Item, Vote
from tribunal.schemas.tasks import TaskRegistry

__all__ = ["WorkerProcessor", "group_id", "run", "serve_worker"]

log = get_logger("tribunal.worker")


def group_id(settings: Settings) -> str:
    return settings.topics.worker_group(settings.worker.name)


class WorkerProcessor(Processor):
    tier = "worker"

    def __init__(self, settings: Settings, classifier: Classifier, tasks: TaskRegistry) -> None:
        self._settings = settings
        self._name = settings.worker.name
        self._classifier = classifier
        self._resilient = ResilientClassifier(
            classifier,
            tasks,
            retries=settings.runtime.retries,
            backoff_s=settings.runtime.retry_backoff_ms / 1000.0,
        )

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
        topics = self._settings.topics
        outputs = []
        for record, prediction in zip(records, predictions, strict=True):
            vote = encode(self._vote(record.value, prediction))
            outputs.append(Output(topics.votes_topic, vote, key(record.value.id), record.partition))
            if prediction.failed:
                # Poison to this model: the abstain vote lets the aggregator decide without
                # waiting; the dead letter lets an operator see what the model could not take.
                reason = f"worker {self._name} ({self._classifier.model_id}): {prediction.reason}"
                limit = self._settings.max_message_bytes
                letter = dead_letter_of(record, topics.dlq(record.topic), self.tier, "model_poison", reason,
                                        max_message_bytes=limit)  # fmt: skip
                outputs.append(letter)
        return outputs

    def _vote(self, item: Item, prediction: Prediction) -> Vote:
        return Vote(
            item_id=item.id,
            worker=self._name,
            model=(prediction.model or self._classifier.model_id)[:256],
            task=item.task,
            label=prediction.label,
            confidence=prediction.confidence,
            latency_ms=prediction.latency_ms,
            reason=prediction.reason,
        )

    async def close(self) -> None:
        await self._classifier.close()


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run one worker process until SIGINT/SIGTERM (or `stop`): the `tribunal worker` entry."""
    configure_logging(settings.log_format, settings.log_level, tier=f"worker:{settings.worker.name}")
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
