"""Offline evaluation of classifiers on a labelled JSONL file: the numbers behind the defaults.

Pure metrics (no I/O): `accuracy`, `macro_f1`, `agreement`, `agreement_matrix`, `percentile`,
`majority_stats`. `evaluate` runs classifiers over items batch by batch and returns a `Report`
whose `as_json()` is the one object `tribunal eval --json` prints.

Abstentions (label None) count as wrong answers and never agree with anything, so a model
cannot look better by abstaining.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from consumers.classifiers.base import Classifier, Prediction, check_predictions
from schemas.messages import Item
from schemas.tasks import TaskRegistry
from tribunal.errors import ConfigError

__all__ = [
    "GOLD",
    "Report",
    "Run",
    "accuracy",
    "agreement",
    "agreement_matrix",
    "evaluate",
    "load_items",
    "macro_f1",
    "majority_stats",
    "percentile",
]

Role = Literal["worker", "judge"]
Labels = Sequence[str | None]
GOLD = "gold"


def accuracy(gold: Sequence[str], predicted: Labels) -> float:
    """Share of items whose prediction equals gold; 0.0 for no items."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    return sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold) if gold else 0.0


def macro_f1(gold: Sequence[str], predicted: Labels) -> float:
    """Unweighted mean of per-label F1 over the labels seen in gold or predictions (as
    scikit-learn's `f1_score(average="macro")`); a label never predicted correctly scores 0."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    labels = set(gold) | {p for p in predicted if p is not None}
    if not labels:
        return 0.0
    hits = Counter(g for g, p in zip(gold, predicted, strict=True) if g == p)
    gold_count = Counter(gold)
    predicted_count = Counter(p for p in predicted if p is not None)
    scores = [2 * hits[x] / (gold_count[x] + predicted_count[x]) for x in labels]
    return sum(scores) / len(scores)


def agreement(a: Labels, b: Labels) -> float:
    """Share of items on which both answered the same label (an abstention agrees with nothing)."""
    if len(a) != len(b):
        raise ValueError(f"cannot compare {len(a)} labels with {len(b)}")
    return sum(x is not None and x == y for x, y in zip(a, b, strict=True)) / len(a) if a else 0.0


def agreement_matrix(answers: Mapping[str, Labels]) -> dict[str, dict[str, float]]:
    """Pairwise `agreement` between every two named answer lists (symmetric; the diagonal is
    each list's share of non-abstentions)."""
    return {a: {b: agreement(answers[a], answers[b]) for b in answers} for a in answers}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation, like numpy's default; 0.0 if empty."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside [0, 100]")
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def majority_stats(workers: Sequence[Labels], gold: Sequence[str], quorum: int = 2) -> dict[str, float]:
    """Criterion 1 offline: `rate` = share of items where some label has >= quorum worker votes,
    `accuracy` = how often that label is gold on those items (0.0 if none)."""
    decided = correct = 0
    for index, truth in enumerate(gold):
        votes = Counter(w[index] for w in workers if w[index] is not None)
        top = votes.most_common(1)
        if top and top[0][1] >= quorum:
            decided += 1
            correct += top[0][0] == truth
    n = len(gold)
    return {"rate": decided / n if n else 0.0, "accuracy": correct / decided if decided else 0.0}


def load_items(path: Path, task: str, tasks: TaskRegistry, limit: int | None = None, stride: int = 1) -> list[Item]:
    """Items of `task` from a JSONL file of {id, text, label}; gold goes to metadata["label"].

    `stride` keeps every stride-th row (a spread-out sample of files sorted by label, such as
    banking77's test split), then `limit` caps the count.

    `ConfigError` for an unreadable file or a gold label outside the task's label set."""
    labels = set(tasks.get(task).labels)
    items: list[Item] = []
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle):
                if limit is not None and len(items) >= limit:
                    break
                if number % stride or not line.strip():
                    continue
                row = json.loads(line)
                if row["label"] not in labels:
                    raise ConfigError(f"{path}: label {row['label']!r} is not in task {task!r}'s label set")
                items.append(Item(id=str(row["id"]), text=row["text"], task=task, metadata={"label": row["label"]}))
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot read labelled items from {path}: {exc}") from None
    return items


@dataclass(slots=True)
class Run:
    """One classifier under evaluation and what it answered."""

    name: str
    spec: str
    role: Role
    classifier: Classifier
    predictions: list[Prediction] = field(default_factory=list)

    @property
    def labels(self) -> list[str | None]:
        return [p.label for p in self.predictions]


@dataclass(slots=True)
class Report:
    """The result of `evaluate`; `as_json()` is the `tribunal eval --json` object."""

    task: str
    data: str
    gold: list[str]
    runs: list[Run]

    def row(self, run: Run) -> dict[str, Any]:
        latencies = [p.latency_ms for p in run.predictions]
        return {
            "name": run.name,
            "spec": run.spec,
            "role": run.role,
            "accuracy": accuracy(self.gold, run.labels),
            "macro_f1": macro_f1(self.gold, run.labels),
            "abstained": sum(p.label is None for p in run.predictions),
            "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)},
        }

    def as_json(self) -> dict[str, Any]:
        answers: dict[str, Labels] = {run.name: run.labels for run in self.runs}
        answers[GOLD] = self.gold
        workers = [run.labels for run in self.runs if run.role == "worker"]
        result: dict[str, Any] = {
            "task": self.task,
            "data": self.data,
            "items": len(self.gold),
            "classifiers": [self.row(run) for run in self.runs],
            "agreement": agreement_matrix(answers),
        }
        if len(workers) >= 2:
            result["worker_majority"] = majority_stats(workers, self.gold)
        return result


async def evaluate(
    task: str, data: str, items: Sequence[Item], runs: list[Run], tasks: TaskRegistry, batch_size: int = 32
) -> Report:
    """Run every classifier over `items` in batches of `batch_size`, one classifier at a time (so
    their latencies do not interfere), checking every batch with `check_predictions`.

    Each classifier first labels the first item once, unscored, so lazy model loading is not
    counted as per-item latency."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    for run in runs:
        run.predictions = []
        if items:
            await run.classifier.classify(items[:1])
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            predictions = await run.classifier.classify(batch)
            check_predictions(batch, predictions, tasks, run.classifier.model_id)
            run.predictions.extend(predictions)
    gold = [item.gold or "" for item in items]
    return Report(task=task, data=data, gold=gold, runs=runs)
