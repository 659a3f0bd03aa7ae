"""Classify a batch without ever dying on a bad item.

The whole batch is tried with retries and exponential backoff, which rides out transient
failures. If it still fails, something in it is poison: the batch is split in halves, one try
each, recursively, until the failing items stand alone; such an item gets an abstention
(`label=None` and the reason) instead of a label, so nothing downstream waits for it forever.
Isolation costs about 2*log2(batch) extra calls per poison item, never a backoff per item.
Outputs outside the task's label set count as failures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from consumers.classifiers.base import Classifier, Prediction, check_predictions
from schemas.messages import Item
from schemas.tasks import TaskRegistry
from tribunal.errors import FatalError
from tribunal.logs import get_logger

__all__ = ["ResilientClassifier"]

log = get_logger("tribunal.resilience")


@dataclass
class ResilientClassifier:
    classifier: Classifier
    tasks: TaskRegistry
    retries: int = 3
    backoff_s: float = 0.2

    async def classify(self, items: Sequence[Item]) -> list[Prediction]:
        """One prediction per item, in order; failed items abstain. Raises only `FatalError`."""
        if not items:
            return []
        error = await self._attempt(items, attempts=self.retries + 1)
        if isinstance(error, list):
            return error
        return await self._isolate(items, error)

    async def _isolate(self, items: Sequence[Item], error: str) -> list[Prediction]:
        """Split a failed batch until the failing items stand alone; they abstain."""
        if len(items) == 1:
            log.warning("item_abstained", item_id=items[0].id, model=self.classifier.model_id, error=error)
            return [Prediction(None, 0.0, reason=f"classifier failed: {error}"[:1000])]
        predictions: list[Prediction] = []
        middle = len(items) // 2
        for half in (items[:middle], items[middle:]):
            result = await self._attempt(half, attempts=1)
            predictions += result if isinstance(result, list) else await self._isolate(half, result)
        return predictions

    async def _attempt(self, items: Sequence[Item], attempts: int) -> list[Prediction] | str:
        """Predictions, or the last error's description once `attempts` are spent."""
        last_error = ""
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                predictions = await self.classifier.classify(items)
                check_predictions(items, predictions, self.tasks, self.classifier.model_id)
            except FatalError:
                raise
            # Backends wrap third-party engines that may raise anything on a strange input;
            # isolating the item that triggers it is this module's whole contract.
            except Exception as exc:  # noqa: BLE001
                last_error = f"{type(exc).__name__}: {exc}"
                continue
            return predictions
        return last_error
