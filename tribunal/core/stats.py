"""Statistics, in one place: classification scores, percentiles, interval estimates.

Pure functions over plain sequences (no I/O, no numpy), used by the tiers (the judge's audit
precision interval), the lab (evaluation, reports, benchmarks) and the policies.

Abstentions (label None) count as wrong answers and never agree with anything, so a model
cannot look better by abstaining.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

__all__ = [
    "accuracy",
    "agreement",
    "agreement_matrix",
    "macro_f1",
    "percentile",
    "percentiles",
    "wilson_interval",
]

Labels = Sequence[str | None]


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


def percentiles(values: Sequence[float], points: Sequence[int] = (50, 95, 99)) -> dict[str, float]:
    """`percentile` at each point, rounded to 0.1, keyed `p50`, `p95`...; zeros for no values."""
    return {f"p{p}": round(percentile(values, p), 1) for p in points}


def wilson_interval(agreed: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion; (0, 1) with no observations."""
    if total == 0:
        return 0.0, 1.0
    p = agreed / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    margin = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - margin), min(1.0, centre + margin)
