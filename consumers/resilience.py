"""Classify a batch without ever dying on a bad item.

The whole batch is tried with retries and exponential backoff. If it still fails, it is split in
halves, recursively, until the failing items stand alone; an item that fails alone, after its own
retries, gets an abstention (`label=None` and the reason) instead of a label, so nothing
downstream waits for it forever. Outputs outside the task's label set count as failures.
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
        if len(items) == 1:
            log.warning("item_abstained", item_id=items[0].id, model=self.classifier.model_id, error=error)
            return [Prediction(None, 0.0, reason=f"classifier failed: {error}"[:1000])]
        # Halves get one try each: only a lone item earns the full retries again.
        middle = len(items) // 2
        left = await self._split(items[:middle])
        right = await self._split(items[middle:])
        return left + right

    async def _split(self, items: Sequence[Item]) -> list[Prediction]:
        if len(items) == 1:
            return await self.classify(items)
        result = await self._attempt(items, attempts=1)
        if isinstance(result, list):
            return result
        middle = len(items) // 2
        return await self._split(items[:middle]) + await self._split(items[middle:])

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
