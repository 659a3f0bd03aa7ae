"""A worker never dies on a bad item: retries, then isolation, then an abstention."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tribunal.consumers.classifiers.base import Prediction
from tribunal.consumers.classifiers.resilience import ResilientClassifier
from tribunal.core.errors import (
    BrokerUnavailableError,
    ClassifierError,
    ConfigError,
    FatalError,
    InvalidOutputError,
    PoisonError,
    RetryableError,
    ServerUnavailableError,
    disposition,
)
from tribunal.schemas import Item, load_tasks
from tribunal.schemas.codec import DecodeError

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


async def test_poison_is_not_retried_with_backoff() -> None:
    """An answer outside the label set is poison: one call, no backoff, a failed abstention."""
    flaky = Flaky(label="meh")
    resilient = ResilientClassifier(flaky, TASKS, retries=5, backoff_s=3600)  # a backoff would hang the test
    predictions = await resilient.classify(_items("a"))
    assert flaky.calls == 1
    assert predictions[0].label is None and predictions[0].failed


async def test_failures_mark_only_the_isolated_items_failed() -> None:
    predictions = await ResilientClassifier(Flaky(), TASKS, retries=0, backoff_s=0).classify(_items("a", "poison"))
    assert [p.failed for p in predictions] == [False, True]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (InvalidOutputError("label 'meh' outside the set"), "poison"),
        (PoisonError("bad input"), "poison"),
        (DecodeError("Item", "not JSON"), "poison"),
        (ClassifierError("HTTP 503"), "retry"),
        (RetryableError("timeout"), "retry"),
        (RuntimeError("engine hiccup"), "retry"),
        (ConfigError("model file missing"), "fatal"),
        (BrokerUnavailableError("no broker"), "fatal"),
        (FatalError("fenced"), "fatal"),
        (ServerUnavailableError("circuit open"), "outage"),
    ],
)
def test_errors_steer_by_their_flags(error: Exception, expected: str) -> None:
    assert disposition(error) == expected


async def test_an_unavailable_server_is_neither_retried_nor_split() -> None:
    """ServerUnavailableError (the client already retried, or its breaker is open) propagates
    after one call: no second retry layer, no 2n sub-batches against a server that is down."""

    class Down(Flaky):
        async def classify(self, items: Sequence[Item]) -> list[Prediction]:
            self.calls += 1
            raise ServerUnavailableError("circuit open")

    down = Down()
    with pytest.raises(ServerUnavailableError):
        await ResilientClassifier(down, TASKS, retries=3, backoff_s=0).classify(_items(*"abcdefgh"))
    assert down.calls == 1
