"""Offline evaluation of classifiers on a labelled JSONL file: the numbers behind the defaults.

Metrics come from `tribunal.core.stats` (re-exported here); `majority_stats` is this module's.
`evaluate` runs classifiers over items batch by batch and returns a `Report` whose `as_json()`
is the one object `tribunal eval --json` prints.

Abstentions (label None) count as wrong answers and never agree with anything, so a model
cannot look better by abstaining.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tribunal.consumers.classifiers.base import Classifier, Prediction, check_predictions
from tribunal.core.errors import ConfigError
from tribunal.core.stats import accuracy, agreement, agreement_matrix, macro_f1, percentile
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import TaskRegistry

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
