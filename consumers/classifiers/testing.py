"""Deterministic classifiers for tests and benchmarks, never for real labelling.

- `scripted:KEY` answers `item.metadata[KEY]`: tests script each worker's label per item.
  The value `"!fail"` makes the whole batch raise (a poison item the worker must isolate);
  `"!abstain"` makes it abstain. Options: `delay_ms` (per batch), `confidence` (default 0.9).
- `constant:LABEL` always answers LABEL.
- `hash[:SEED]` answers a label chosen by hashing the text with SEED: instant and stable.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence

from tribunal.consumers.classifiers.base import Classifier, Prediction
from tribunal.consumers.classifiers.registry import ClassifierSpec
from tribunal.core.errors import ClassifierError, ConfigError
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import TaskRegistry

__all__ = ["ScriptedClassifier", "constant", "hashed", "scripted"]

FAIL = "!fail"
ABSTAIN = "!abstain"


class ScriptedClassifier:
    """Answers from the item itself, via a rule chosen by the spec."""

    def __init__(
        self,
        model_id: str,
        rule: str,
        arg: str,
        tasks: TaskRegistry,
        delay_ms: float,
        confidence: float,
    ) -> None:
        self.model_id = model_id
        self._rule = rule
        self._arg = arg
        self._tasks = tasks
        self._delay_s = delay_ms / 1000.0
        self._confidence = confidence
        self.calls = 0

    async def classify(self, items: Sequence[Item]) -> list[Prediction]:
        self.calls += 1
        if self._delay_s:
            await asyncio.sleep(self._delay_s)
        return [self._one(item) for item in items]

    async def close(self) -> None:
        return None

    def _one(self, item: Item) -> Prediction:
        if self._rule == "constant":
            return Prediction(self._arg, self._confidence)
        if self._rule == "hash":
            labels = self._tasks.get(item.task).labels
            digest = hashlib.blake2b(f"{self._arg}:{item.text}".encode(), digest_size=4).digest()
            return Prediction(labels[int.from_bytes(digest, "big") % len(labels)], self._confidence)
        answer = item.metadata.get(self._arg)
        if answer == FAIL:
            raise ClassifierError(f"{self.model_id}: scripted failure on item {item.id!r}")
        if answer == ABSTAIN or answer is None:
            return Prediction(None, 0.0, reason=f"no scripted answer under {self._arg!r}")
        return Prediction(str(answer), self._confidence)


def _build(spec: ClassifierSpec, rule: str, tasks: TaskRegistry) -> Classifier:
    return ScriptedClassifier(
        model_id=str(spec),
        rule=rule,
        arg=spec.arg,
        tasks=tasks,
        delay_ms=spec.float_option("delay_ms", 0.0),
        confidence=spec.float_option("confidence", 0.9),
    )


def scripted(spec: ClassifierSpec, tasks: TaskRegistry) -> Classifier:
    if not spec.arg:
        raise ConfigError("scripted classifier needs a metadata key: scripted:KEY")
    return _build(spec, "scripted", tasks)


def constant(spec: ClassifierSpec, tasks: TaskRegistry) -> Classifier:
    if not spec.arg:
        raise ConfigError("constant classifier needs a label: constant:LABEL")
    return _build(spec, "constant", tasks)


def hashed(spec: ClassifierSpec, tasks: TaskRegistry) -> Classifier:
    return _build(spec, "hash", tasks)
