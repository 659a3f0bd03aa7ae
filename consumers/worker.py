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

from consumers.classifiers import Classifier, build_classifier
from consumers.classifiers.base import Prediction
from consumers.resilience import ResilientClassifier
from schemas.codec import encode, key
from schemas.messages import Item, Vote
from schemas.tasks import TaskRegistry
from tribunal.logs import configure_logging
from tribunal.runtime import Output, Processor, Record, serve
from tribunal.settings import Settings

__all__ = ["WorkerProcessor", "group_id", "run"]


def group_id(settings: Settings) -> str:
    return f"{settings.topics.prefix}tribunal-worker-{settings.worker.name}"


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

    async def process(self, records: Sequence[Record[Any]], now: float) -> list[Output]:
        items: list[Item] = [r.value for r in records]
        predictions = await self._resilient.classify(items)
        votes_topic = self._settings.topics.votes_topic
        return [
            Output(
                votes_topic,
                encode(self._vote(record.value, prediction)),
                key(record.value.id),
                record.partition,
            )
            for record, prediction in zip(records, predictions, strict=True)
        ]

    def _vote(self, item: Item, prediction: Prediction) -> Vote:
        return Vote(
            item_id=item.id,
            worker=self._name,
            model=self._classifier.model_id[:256],
            task=item.task,
            label=prediction.label,
            confidence=prediction.confidence,
            latency_ms=prediction.latency_ms,
            reason=prediction.reason,
        )

    async def close(self) -> None:
        await self._classifier.close()


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run one worker process until SIGINT/SIGTERM (or `stop`)."""
    configure_logging(settings.log_format, settings.log_level, tier=f"worker:{settings.worker.name}")
    tasks = settings.tasks()
    processor = WorkerProcessor(settings, build_classifier(settings.worker.classifier, tasks), tasks)
    await serve(
        settings,
        processor,
        group_id=group_id(settings),
        decode_context=settings.decode_context(tasks),
        stop=stop,
    )
