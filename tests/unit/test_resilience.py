"""A worker never dies on a bad item: retries, then isolation, then an abstention."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from consumers.classifiers.base import Prediction
from consumers.resilience import ResilientClassifier
from schemas import Item, load_tasks
from tribunal.errors import ClassifierError, ConfigError

TASKS = load_tasks()


class Flaky:
    """Fails the first `transient` calls, and every call containing an item whose text is 'poison'."""

    model_id = "flaky"

    def __init__(self, transient: int = 0, label: str = "positive") -> None:
        self.transient = transient
        self.label = label
        self.calls = 0

    async def classify(self, items: Sequence[Item]) -> list[Prediction]:
        self.calls += 1
        if self.calls <= self.transient:
            raise ClassifierError("server busy")
        if any(i.text == "poison" for i in items):
            raise ValueError("cannot tokenize")
        return [Prediction(self.label, 0.7) for _ in items]

    async def close(self) -> None:
        return None


def _items(*texts: str) -> list[Item]:
    return [Item(id=f"i{n}", text=t, task="sentiment") for n, t in enumerate(texts)]


async def test_transient_failures_are_retried() -> None:
    """Two transient failures, then success: every item gets its label."""
    flaky = Flaky(transient=2)
    predictions = await ResilientClassifier(flaky, TASKS, retries=3, backoff_s=0).classify(_items("a", "b"))
    assert [p.label for p in predictions] == ["positive", "positive"]
    assert flaky.calls == 3


async def test_poison_item_is_isolated_and_abstains() -> None:
    """Only the poison item abstains (with the error as reason); its batch-mates are labelled."""
    texts = ["a", "b", "poison", "c", "d", "e", "f"]
    predictions = await ResilientClassifier(Flaky(), TASKS, retries=1, backoff_s=0).classify(_items(*texts))
    assert [p.label for p in predictions] == [
        "positive",
        "positive",
        None,
        "positive",
        "positive",
        "positive",
        "positive",
    ]
    assert predictions[2].reason is not None and "cannot tokenize" in predictions[2].reason


async def test_label_outside_the_set_becomes_an_abstention() -> None:
    """A model answering a label outside the task's set never produces that label."""
    predictions = await ResilientClassifier(Flaky(label="meh"), TASKS, retries=1, backoff_s=0).classify(_items("a"))
    assert predictions[0].label is None and "outside the label set" in (predictions[0].reason or "")


async def test_fatal_errors_propagate() -> None:
    """A fatal error (bad configuration) is not swallowed: the process must exit."""

    class Broken(Flaky):
        async def classify(self, items: Sequence[Item]) -> list[Prediction]:
            raise ConfigError("model file missing")

    with pytest.raises(ConfigError):
        await ResilientClassifier(Broken(), TASKS, retries=2, backoff_s=0).classify(_items("a"))
