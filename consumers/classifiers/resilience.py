"""Classify a batch without ever dying on a bad item.

Errors steer by `disposition` (tribunal.core.errors): a retryable failure (timeouts, 5xx, an
engine's own exception) is retried with exponential backoff, which rides out transient trouble;
a poison one (an answer outside the task's label set) is not retried at all; a fatal one
propagates. If the batch still fails, something in it is poison: the batch is split in halves,
one try each, recursively, until the failing items stand alone; such an item gets a failed
abstention (`label=None`, `failed=True` and the reason), which the worker both votes (so nothing
downstream waits for it) and dead-letters. Isolation costs about 2*log2(batch) extra calls per
poison item, never a backoff per item.

An outage (`ServerUnavailableError`: a client backend such as openai_http raises it after its own
retries, or at once while its circuit breaker is open) is neither retried here, which would stack
a second retry layer on the client's, nor split, which would send ~2n sub-batches per failed
batch of n to a server that is down: it propagates, and the tier decides (workers abstain, the
judge exits without committing).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass

from tribunal.consumers.classifiers.base import Classifier, Prediction, check_predictions
from tribunal.consumers.classifiers.server_policy import retry_delay
from tribunal.core.errors import disposition
from tribunal.core.logs import get_logger
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import TaskRegistry

__all__ = ["ResilientClassifier"]

log = get_logger("tribunal.resilience")
BACKOFF_CAP_S = 5.0


@dataclass
class ResilientClassifier:
    classifier: Classifier
    tasks: TaskRegistry
    retries: int = 3
    backoff_s: float = 0.2

    async def classify(self, items: Sequence[Item]) -> list[Prediction]:
        """One prediction per item, in order; failed items abstain. Raises only fatal errors and
        outages (`ServerUnavailableError`)."""
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
            return [Prediction(None, 0.0, reason=f"classifier failed: {error}"[:1000], failed=True)]
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
                # Full jitter: replicas that failed together do not retry together.
                await asyncio.sleep(retry_delay(attempt - 1, None, self.backoff_s, BACKOFF_CAP_S, random.random))
            try:
                predictions = await self.classifier.classify(items)
                check_predictions(items, predictions, self.tasks, self.classifier.model_id)
            # Backends wrap third-party engines that may raise anything on a strange input;
            # isolating the item that triggers it is this module's whole contract.
            except Exception as exc:
                kind = disposition(exc)
                if kind in ("fatal", "outage"):
                    raise
                last_error = f"{type(exc).__name__}: {exc}"
                if kind == "poison":
                    break  # the same input fails the same way: no backoff, isolate it now
                continue
            return predictions
        return last_error
