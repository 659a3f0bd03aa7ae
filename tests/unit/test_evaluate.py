"""Metrics and the evaluation runner of tribunal.offline.evaluate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from tribunal.consumers.classifiers.base import Prediction
from tribunal.consumers.classifiers.registry import build_classifier
from tribunal.core.errors import ConfigError, InvalidOutputError
from tribunal.offline.evaluate import (
    Run,
    accuracy,
    agreement,
    agreement_matrix,
    evaluate,
    load_items,
    macro_f1,
    majority_stats,
    percentile,
)
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import load_tasks

TASKS = load_tasks()


@pytest.mark.parametrize(
    ("gold", "predicted", "expected"),
    [
        (["a", "b", "a"], ["a", "b", "a"], 1.0),
        (["a", "b", "a", "b"], ["a", "a", "a", "a"], 0.5),
        (["a", "b"], [None, "b"], 0.5),
        ([], [], 0.0),
    ],
)
def test_accuracy_table(gold: list[str], predicted: list[str | None], expected: float) -> None:
    """Accuracy is the share of exact matches; an abstention is wrong."""
    assert accuracy(gold, predicted) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("gold", "predicted", "expected"),
    [
        (["a", "b"], ["a", "b"], 1.0),
        # a: P=1/2 R=1 F=2/3; b: P=0 R=0 F=0 -> macro 1/3
        (["a", "b"], ["a", "a"], 1 / 3),
        # c only predicted: counts as a label with F=0, like scikit-learn
        (["a", "a"], ["a", "c"], (2 / 3 + 0.0) / 2),
        (["a", "b", "b"], [None, "b", "b"], (0.0 + 1.0) / 2),
        ([], [], 0.0),
    ],
)
def test_macro_f1_table(gold: list[str], predicted: list[str | None], expected: float) -> None:
    """Macro-F1 averages per-label F1 over labels seen in gold or predictions."""
    assert macro_f1(gold, predicted) == pytest.approx(expected)


def test_macro_f1_matches_sklearn() -> None:
    """Macro-F1 agrees with scikit-learn on a mixed example."""
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    gold = ["x", "y", "z", "x", "y", "z", "x"]
    predicted = ["x", "z", "z", "y", "y", "x", "x"]
    assert macro_f1(gold, predicted) == pytest.approx(sklearn_metrics.f1_score(gold, predicted, average="macro"))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (["x", "y"], ["x", "y"], 1.0),
        (["x", "y"], ["x", "x"], 0.5),
        ([None, "y"], [None, "y"], 0.5),
        ([], [], 0.0),
    ],
)
def test_agreement_table(a: list[str | None], b: list[str | None], expected: float) -> None:
    """Agreement counts equal non-abstaining answers only."""
    assert agreement(a, b) == pytest.approx(expected)


def test_length_mismatch_is_an_error() -> None:
    """Lists of different lengths are a caller bug, not a zero score."""
    with pytest.raises(ValueError, match="predictions"):
        accuracy(["a"], [])
    with pytest.raises(ValueError, match="compare"):
        agreement(["a"], ["a", "b"])


def test_agreement_matrix_is_symmetric() -> None:
    """The matrix is symmetric and its diagonal is each list's answered share."""
    matrix = agreement_matrix({"p": ["a", "b", None], "q": ["a", "a", "b"], "gold": ["a", "b", "b"]})
    assert matrix["p"]["q"] == matrix["q"]["p"] == pytest.approx(1 / 3)
    assert matrix["p"]["p"] == pytest.approx(2 / 3)
    assert matrix["q"]["gold"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([5.0], 95, 5.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 0, 1.0),
        ([3.0, 1.0, 2.0], 100, 3.0),
        (list(map(float, range(1, 101))), 95, 95.05),
        ([], 50, 0.0),
    ],
)
def test_percentile_table(values: list[float], q: float, expected: float) -> None:
    """Percentiles interpolate linearly between order statistics, like numpy."""
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_rejects_out_of_range() -> None:
    """A percentile outside [0, 100] is refused."""
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


@pytest.mark.parametrize(
    ("workers", "gold", "rate", "acc"),
    [
        ([["a", "a"], ["a", "b"], ["b", "c"]], ["a", "b"], 0.5, 1.0),
        ([["a"], ["b"], ["c"]], ["a"], 0.0, 0.0),
        ([["a"], ["a"], [None]], ["b"], 1.0, 0.0),
    ],
)
def test_majority_stats_table(workers: list[list[str | None]], gold: list[str], rate: float, acc: float) -> None:
    """Criterion 1 offline: decided share and its accuracy."""
    assert majority_stats(workers, gold) == pytest.approx({"rate": rate, "accuracy": acc})


def _write(path: Path, rows: Sequence[str]) -> Path:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_load_items_puts_gold_in_metadata(tmp_path: Path) -> None:
    """Loaded items carry the task and their gold label; --limit stops early."""
    data = _write(
        tmp_path / "d.jsonl",
        ['{"id": "1", "text": "good", "label": "positive"}', '{"id": "2", "text": "bad", "label": "negative"}'],
    )
    items = load_items(data, "sentiment", TASKS, limit=1)
    assert [(i.id, i.task, i.gold) for i in items] == [("1", "sentiment", "positive")]


def test_load_items_refuses_foreign_labels(tmp_path: Path) -> None:
    """A gold label outside the task's label set is a ConfigError."""
    data = _write(tmp_path / "d.jsonl", ['{"id": "1", "text": "meh", "label": "neutral"}'])
    with pytest.raises(ConfigError, match="neutral"):
        load_items(data, "sentiment", TASKS)


def _items(n: int) -> list[Item]:
    labels = ["negative", "positive"]
    return [Item(id=str(i), text=f"t{i}", task="sentiment", metadata={"label": labels[i % 2]}) for i in range(n)]


async def test_evaluate_reports_every_classifier() -> None:
    """A constant worker scores half on alternating gold; the report has the documented keys."""
    runs = [
        Run("pos", "constant:positive", "worker", build_classifier("constant:positive", TASKS)),
        Run("neg", "constant:negative", "judge", build_classifier("constant:negative", TASKS)),
    ]
    report = (await evaluate("sentiment", "mem", _items(5), runs, TASKS, batch_size=2)).as_json()
    assert report["items"] == 5
    rows = {row["name"]: row for row in report["classifiers"]}
    assert rows["pos"]["accuracy"] == pytest.approx(2 / 5)
    assert rows["neg"]["role"] == "judge"
    assert set(rows["pos"]["latency_ms"]) == {"p50", "p95"}
    assert report["agreement"]["pos"]["neg"] == 0.0


class _Rogue:
    model_id = "rogue"

    async def classify(self, items: Sequence[Item]) -> list[Prediction]:
        return [Prediction("maybe", 0.5) for _ in items]

    async def close(self) -> None:
        return None


async def test_evaluate_rejects_labels_outside_the_set() -> None:
    """A classifier answering outside the label set fails the evaluation loudly."""
    with pytest.raises(InvalidOutputError):
        await evaluate("sentiment", "mem", _items(2), [Run("r", "rogue", "worker", _Rogue())], TASKS)


def test_load_items_stride_spreads_the_sample(tmp_path: Path) -> None:
    """stride=K keeps rows 0, K, 2K... before the limit applies."""
    rows = [f'{{"id": "{i}", "text": "t", "label": "positive"}}' for i in range(7)]
    items = load_items(_write(tmp_path / "d.jsonl", rows), "sentiment", TASKS, limit=2, stride=3)
    assert [i.id for i in items] == ["0", "3"]
