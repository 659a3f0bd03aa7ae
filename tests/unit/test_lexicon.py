"""Sentiment lexicon workers: calibrated probabilities, neutral band, label-set safety."""

from __future__ import annotations

import math

import pytest

from tribunal.consumers.classifiers.base import check_predictions
from tribunal.consumers.classifiers.lexicon import (
    BINARY,
    CALIBRATION,
    SCORERS,
    LexiconClassifier,
    fit_calibration,
    probabilities,
)
from tribunal.consumers.classifiers.registry import build_classifier
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import load_tasks

TASKS = load_tasks()
NASTY_TEXTS = [
    "x",
    "!!!!!!!!",
    "😡😡😡 🎉",
    "NOT BAD AT ALL, not good either",
    "great " * 500,
    "terrible horrible awful " * 300,
    "\u202e\u0000 weird control chars",
    "Das ist wirklich nicht gut.",
]


def _const_table(kind: str, labels: frozenset[str]) -> dict[str, tuple[float, float, float]]:
    return dict(CALIBRATION[(kind, labels)])


@pytest.mark.parametrize("key", list(CALIBRATION))
@pytest.mark.parametrize("score", [-1e9, -30.0, -1.0, -0.05, 0.0, 0.05, 1.0, 30.0, 1e9])
def test_probabilities_are_a_distribution(key: tuple[str, frozenset[str]], score: float) -> None:
    """Every calibrated table gives finite probabilities in [0, 1] summing to 1, even for huge scores."""
    probs = probabilities(score, CALIBRATION[key])
    assert set(probs) == set(key[1])
    assert all(0.0 <= p <= 1.0 and math.isfinite(p) for p in probs.values())
    assert sum(probs.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("kind", sorted(SCORERS))
def test_every_lexicon_is_calibrated_for_both_label_sets(kind: str) -> None:
    """Each lexicon has a binary and a ternary calibration table."""
    assert {labels for name, labels in CALIBRATION if name == kind} == {
        BINARY,
        frozenset(TASKS.get("sentiment3").labels),
    }


@pytest.mark.parametrize(("kind", "top"), [("vader", 0.9), ("textblob", 0.9), ("afinn", 8.0)])
def test_ternary_has_a_neutral_band(kind: str, top: float) -> None:
    """3-class: a zero score is neutral, strong scores are negative/positive."""
    table = CALIBRATION[(kind, frozenset(TASKS.get("sentiment3").labels))]

    def label(score: float) -> str:
        probs = probabilities(score, table)
        return max(probs, key=lambda name: probs[name])

    assert (label(-top), label(0.0), label(top)) == ("negative", "neutral", "positive")


@pytest.mark.parametrize("kind", sorted(SCORERS))
def test_binary_is_monotone_in_the_score(kind: str) -> None:
    """2-class: p(positive) grows with the score across the lexicon's range."""
    table = CALIBRATION[(kind, BINARY)]
    span = 10.0 if kind == "afinn" else 1.0
    grid = [span * (i / 10.0) for i in range(-10, 11)]
    p_positive = [probabilities(s, table)["positive"] for s in grid]
    assert p_positive == sorted(p_positive)
    assert p_positive[0] < 0.5 < p_positive[-1]


def test_fit_calibration_learns_a_separable_rule() -> None:
    """Fitting on scores that separate the classes gives a table that reproduces them."""
    pytest.importorskip("sklearn")
    scores = [-0.8, -0.6, -0.5, -0.05, 0.0, 0.04, 0.5, 0.7, 0.9] * 5
    labels = ["negative"] * 3 + ["neutral"] * 3 + ["positive"] * 3
    table = fit_calibration(scores, labels * 5)
    predicted = []
    for s in scores[:9]:
        probs = probabilities(s, table)
        predicted.append(max(probs, key=lambda name: probs[name]))
    assert predicted == labels


@pytest.mark.parametrize("kind", sorted(SCORERS))
@pytest.mark.parametrize("task", ["sentiment", "sentiment3", "intent"])
async def test_lexicon_never_leaves_the_label_set(kind: str, task: str) -> None:
    """Whatever the text, a lexicon answers inside the task's labels (or abstains on non-sentiment tasks)."""
    pytest.importorskip({"vader": "vaderSentiment", "textblob": "textblob", "afinn": "afinn"}[kind])
    classifier = build_classifier(kind, TASKS)
    items = [Item(id=str(i), text=text, task=task) for i, text in enumerate(NASTY_TEXTS)]
    predictions = await classifier.classify(items)
    check_predictions(items, predictions, TASKS, classifier.model_id)
    if task == "intent":
        assert all(p.label is None and p.reason for p in predictions)
    else:
        assert all(p.label in TASKS.get(task).labels for p in predictions)
        assert all(0.0 <= p.confidence <= 1.0 and p.latency_ms >= 0.0 for p in predictions)
        assert all(p.probabilities and p.confidence == max(p.probabilities.values()) for p in predictions)


async def test_scorer_drives_the_label() -> None:
    """A stub scorer shows the mapping end to end: strongly negative text -> negative."""
    classifier = LexiconClassifier(
        "stub", lambda text: -1.0 if "bad" in text else 1.0, {BINARY: _const_table("vader", BINARY)}, TASKS
    )
    items = [Item(id="1", text="bad", task="sentiment"), Item(id="2", text="fine", task="sentiment")]
    assert [p.label for p in await classifier.classify(items)] == ["negative", "positive"]
