"""The trust score of one item: how likely the judge is to keep the workers' label, from the ballots.

The workers' label is their plurality (`consumers.policy.voting.plurality`). Each expected worker
either voted it (*for*), voted another label (*against*) or did not vote (abstained or missing).
The features, one set per worker plus two shared ones:

    bias, unanimous                       1; every expected worker voted the plurality label
    for:W, for_conf:W                     W voted it; the logit of W's confidence when it did
    against:W, against_conf:W             W voted another label; the logit of that confidence

so a worker's learned weights are its reliability (how much its agreement, and its confidence,
say about the judge's verdict), the learned part that Dawid-Skene counts give the weighted vote.
The score is a logistic regression on these features, fitted by `fit_logistic` (weighted
maximum likelihood with an L2 penalty, Newton's method) on judge verdicts.

Confidences enter through a clipped logit, so a score is linear in one worker's `*_conf` feature
with everything else fixed: over a worker's unknown confidence it is extreme at the clip ends,
which is what `TrustModel.bounds` needs to decide before every vote is in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tribunal.consumers.policy.ballots import Ballot, plurality

__all__ = ["CONF_CLIP", "TrustModel", "feature_names", "features", "fit_logistic", "score_features", "vote_states"]

# Confidences are clipped to [CONF_CLIP, 1 - CONF_CLIP] before the logit: beyond that a model's
# "certainty" is rounding, and the features stay bounded (|logit| <= 6.9).
CONF_CLIP = 1e-3
FOR, AGAINST, NONE = 1, -1, 0


def feature_names(workers: Sequence[str]) -> tuple[str, ...]:
    """The feature vector's layout for this worker set (sorted names)."""
    names = ["bias", "unanimous"]
    for worker in sorted(workers):
        names += [f"for:{worker}", f"for_conf:{worker}", f"against:{worker}", f"against_conf:{worker}"]
    return tuple(names)


def _logit(confidence: float) -> float:
    c = min(max(confidence, CONF_CLIP), 1.0 - CONF_CLIP)
    return math.log(c / (1.0 - c))


def vote_states(ballots: Sequence[Ballot], workers: Sequence[str]) -> tuple[str, tuple[tuple[int, float], ...]] | None:
    """(plurality label, (state, confidence) per worker in sorted order), or None if nobody voted.

    State is FOR / AGAINST the plurality, or NONE for an abstention, a missing ballot or a
    worker outside `workers`.
    """
    top = plurality(ballots)
    if top is None:
        return None
    label = top[0]
    by_worker = {b.worker: b for b in ballots}
    states: list[tuple[int, float]] = []
    for worker in sorted(workers):
        ballot = by_worker.get(worker)
        if ballot is None or ballot.label is None:
            states.append((NONE, 0.0))
        else:
            states.append((FOR if ballot.label == label else AGAINST, ballot.confidence))
    return label, tuple(states)


def features(states: Sequence[tuple[int, float]]) -> list[float]:
    """The feature vector (layout of `feature_names`) of per-worker (state, confidence)."""
    row = [1.0, 1.0 if states and all(s == FOR for s, _ in states) else 0.0]
    for state, confidence in states:
        conf = _logit(confidence)
        row += [
            1.0 if state == FOR else 0.0,
            conf if state == FOR else 0.0,
            1.0 if state == AGAINST else 0.0,
            conf if state == AGAINST else 0.0,
        ]
    return row


@dataclass(frozen=True, slots=True)
class TrustModel:
    """Weights over `feature_names(workers)`; `weights` empty means "no model yet" (score 0)."""

    workers: tuple[str, ...]
    weights: tuple[float, ...] = ()
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "workers", tuple(sorted(self.workers)))
        object.__setattr__(self, "_names", feature_names(self.workers))
        if self.weights and len(self.weights) != len(self._names):
            raise ValueError(f"{len(self.weights)} weights for {len(self._names)} features")
        if not all(math.isfinite(w) for w in self.weights):
            raise ValueError("weights must be finite")

    @property
    def fitted(self) -> bool:
        return bool(self.weights)

    def score_states(self, states: Sequence[tuple[int, float]]) -> float:
        """P(the judge keeps the plurality label) for these vote states; 0.0 without a model."""
        return score_features(self.weights, features(states)) if self.weights else 0.0

    def score(self, ballots: Sequence[Ballot]) -> tuple[str, float] | None:
        """(plurality label, its trust score), or None when every ballot abstained."""
        voted = vote_states(ballots, self.workers)
        if voted is None:
            return None
        return voted[0], self.score_states(voted[1])

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self._names, self.weights, strict=True))

    @classmethod
    def from_weights(cls, workers: Sequence[str], weights: Mapping[str, Any]) -> TrustModel:
        """From `as_dict`; ValueError unless the names are exactly this worker set's features."""
        names = feature_names(workers)
        if not weights:
            return cls(tuple(workers))
        if set(weights) != set(names):
            raise ValueError(f"weights name {sorted(weights)}, expected the features of workers {sorted(workers)}")
        return cls(tuple(workers), tuple(float(weights[n]) for n in names))


def score_features(weights: Sequence[float], x: Sequence[float]) -> float:
    """The logistic score of features `x` (from `features`) under `weights`; 0.0 without weights.
    The simulations call it on features computed once per recording."""
    if not weights:
        return 0.0
    return _sigmoid(math.fsum(w * v for w, v in zip(weights, x, strict=True)))


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def fit_logistic(
    rows: Sequence[Sequence[float]], targets: Sequence[int], weights: Sequence[float] | None = None, l2: float = 1.0
) -> tuple[float, ...]:
    """Weighted L2-penalised logistic regression by Newton's method; the first column is the bias.

    Columns are standardised (weighted) before fitting, so `l2` means the same for every feature
    whatever its scale, and the bias is not penalised; the returned weights apply to the raw
    columns. Weights are rescaled to mean 1 (an importance weight's scale is not information).
    """
    import numpy as np

    x = np.asarray(rows, dtype=float)
    y = np.asarray(targets, dtype=float)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    if x.ndim != 2 or len(x) != len(y) or len(w) != len(y) or not len(y):
        raise ValueError("need a non-empty matrix with one target and one weight per row")
    w = w / w.mean()
    mean = (w[:, None] * x).sum(axis=0) / w.sum()
    std = np.sqrt((w[:, None] * (x - mean) ** 2).sum(axis=0) / w.sum())
    mean[0], std[0] = 0.0, 1.0
    std[std < 1e-9] = 1.0  # a constant column: its weight is held at 0 by the penalty
    z = (x - mean) / std
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0
    beta = np.zeros(x.shape[1])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -35.0, 35.0)))
        gradient = z.T @ (w * (p - y)) + penalty * beta
        hessian = (z * (w * p * (1.0 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if float(np.max(np.abs(step))) < 1e-8:
            break
    raw = beta / std
    raw[0] = beta[0] - float((beta[1:] * mean[1:] / std[1:]).sum())
    return tuple(float(v) for v in raw)
