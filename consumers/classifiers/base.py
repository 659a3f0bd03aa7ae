"""The one protocol every model backend implements, and the prediction it returns."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from tribunal.core.errors import InvalidOutputError
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import TaskRegistry

__all__ = ["Classifier", "Prediction", "Stopwatch", "check_predictions"]


@dataclass(frozen=True, slots=True)
class Prediction:
    """One model's answer for one item. `label=None` means the model abstained (`reason` says why);
    `failed` marks an abstention because the item is poison to this model (see resilience.py).
    `model` names the model version that made it when a classifier swaps models between batches
    (learned.py); None: the classifier's `model_id`."""

    label: str | None
    confidence: float
    probabilities: Mapping[str, float] | None = None
    latency_ms: float = 0.0
    reason: str | None = None
    failed: bool = False
    model: str | None = None


@runtime_checkable
class Classifier(Protocol):
    """A model backend. `classify` labels a whole batch at once, one prediction per item, in order.

    It raises `tribunal.core.errors.ClassifierError` (retryable) when the batch failed as a whole.
    `model_id` names the model in votes and reports.
    """

    model_id: str

    async def classify(self, items: Sequence[Item]) -> list[Prediction]: ...

    async def close(self) -> None: ...


def check_predictions(
    items: Sequence[Item], predictions: Sequence[Prediction], tasks: TaskRegistry, model_id: str
) -> None:
    """Raise `InvalidOutputError` unless there is one prediction per item, each inside its task's
    label set and with a confidence in [0, 1]."""
    if len(predictions) != len(items):
        raise InvalidOutputError(f"{model_id} returned {len(predictions)} predictions for {len(items)} items")
    for item, prediction in zip(items, predictions, strict=True):
        if prediction.label is not None and prediction.label not in tasks.get(item.task).labels:
            raise InvalidOutputError(
                f"{model_id} answered {prediction.label!r} for item {item.id!r}, "
                f"outside the label set of task {item.task!r}"
            )
        if not 0.0 <= prediction.confidence <= 1.0:
            raise InvalidOutputError(f"{model_id} gave confidence {prediction.confidence} for {item.id!r}")


@dataclass(slots=True)
class Stopwatch:
    """Measures a batch; `per_item_ms(n)` spreads the batch's time over its items."""

    started: float = field(default_factory=time.perf_counter)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def per_item_ms(self, n: int) -> float:
        return self.elapsed_ms() / max(n, 1)
