"""Online worker reliability: a Dawid-Skene-style confusion matrix per worker, learned from
judge verdicts and audits, and the naive-Bayes posterior over labels it implies.

Model. For worker `w`, true label `t` and voted label `v`,
`theta[w][t][v] = (n[w][t][v] + prior[t][v]) / (sum_v' n[w][t][v'] + prior_strength)`:
observed counts plus a Dirichlet prior whose rows each sum to `prior_strength`. The prior puts
`prior_accuracy * prior_strength` on the diagonal and spreads the rest evenly over the other
`K - 1` labels, so an unseen worker is `prior_accuracy` accurate (default 0.8, the paper's
worker-judge agreement) and `prior_strength` (default 10) judged items per true label are
needed before a worker's own record weighs as much as the prior.

The class prior is Dirichlet(1) over the true labels seen so far. Judge verdicts arrive mostly
for escalated (hard) items, so both the class prior and the confusion counts are biased
towards the items workers disagree on; feed audit verdicts too for a fairer estimate.

Labels outside the task's label set carry no evidence: such ballots are ignored like
abstentions and such true labels skip the update. State is O(workers x labels^2) integers.
Everything iterates labels in sorted order and sums with `math.fsum`, so results never depend
on dict or ballot order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # decision.py imports this module; the import is for annotations only.
    from tribunal.consumers.policy.ballots import Ballot

__all__ = ["FORMAT", "Reliability"]

# Version of the `to_dict` layout, stored with it so a changelog written by an older layout fails
# loudly instead of being misread.
FORMAT = 1

Counts = dict[str, dict[str, dict[str, int]]]


class Reliability:
    """Per-worker confusion estimates over a fixed label set; mutable, updated online."""

    def __init__(
        self,
        labels: Iterable[str],
        *,
        prior_accuracy: float = 0.8,
        prior_strength: float = 10.0,
    ) -> None:
        self.labels: tuple[str, ...] = tuple(sorted(set(labels)))
        if not self.labels:
            raise ValueError("a Reliability needs at least one label")
        if not 0.0 < prior_accuracy < 1.0:
            raise ValueError(f"prior_accuracy must be in (0, 1), got {prior_accuracy!r}")
        if not prior_strength > 0.0:
            raise ValueError(f"prior_strength must be > 0, got {prior_strength!r}")
        self.prior_accuracy = prior_accuracy
        self.prior_strength = prior_strength
        self._label_set = frozenset(self.labels)
        self._counts: Counts = {}
        self._class_counts: dict[str, int] = {}

    # ---- learning -----------------------------------------------------------------------------

    def update(self, ballots: Iterable[Ballot], true_label: str) -> bool:
        """Record one item's ballots against its true label (a judge verdict or an audit).

        Abstentions and ballots outside the label set are skipped. Returns False, changing
        nothing, when `true_label` is outside the label set.
        """
        if true_label not in self._label_set:
            return False
        self._class_counts[true_label] = self._class_counts.get(true_label, 0) + 1
        for ballot in ballots:
            if ballot.label in self._label_set:
                row = self._counts.setdefault(ballot.worker, {}).setdefault(true_label, {})
                row[ballot.label] = row.get(ballot.label, 0) + 1
        return True

    def reset_to_sum(self, parts: Iterable[Reliability]) -> None:
        """Replace this estimate's counts with the sum of `parts`' counts (same label set).

        Counts are additive, so judges can each keep the counts of their own partitions and
        every aggregator sums them; policies holding this object see the new estimate at once.
        """
        self._counts = {}
        self._class_counts = {}
        for part in parts:
            for label, n in part._class_counts.items():
                if label in self._label_set:
                    self._class_counts[label] = self._class_counts.get(label, 0) + n
            for worker, rows in part._counts.items():
                for true_label, row in rows.items():
                    if true_label not in self._label_set:
                        continue
                    mine = self._counts.setdefault(worker, {}).setdefault(true_label, {})
                    for voted, n in row.items():
                        if voted in self._label_set:
                            mine[voted] = mine.get(voted, 0) + n

    @property
    def observations(self) -> int:
        """Judged items recorded so far."""
        return sum(self._class_counts.values())

    # ---- estimates ----------------------------------------------------------------------------

    @property
    def workers(self) -> tuple[str, ...]:
        """Workers with at least one recorded ballot, sorted."""
        return tuple(sorted(self._counts))

    def likelihood(self, worker: str, true_label: str, voted: str) -> float:
        """Estimated P(worker votes `voted` | the true label is `true_label`); always > 0."""
        row = self._counts.get(worker, {}).get(true_label, {})
        if len(self.labels) == 1:
            pseudo = self.prior_strength
        elif voted == true_label:
            pseudo = self.prior_accuracy * self.prior_strength
        else:
            pseudo = (1.0 - self.prior_accuracy) * self.prior_strength / (len(self.labels) - 1)
        return (row.get(voted, 0) + pseudo) / (sum(row.values()) + self.prior_strength)

    def class_prior(self, label: str) -> float:
        """Estimated P(true label = `label`): Dirichlet(1) smoothed verdict frequencies."""
        total = sum(self._class_counts.values()) + len(self.labels)
        return (self._class_counts.get(label, 0) + 1) / total

    def accuracy(self, worker: str) -> float:
        """Estimated P(worker's vote is right) on a judged item; `prior_accuracy` if unseen."""
        return math.fsum(self.class_prior(t) * self.likelihood(worker, t, t) for t in self.labels)

    def posterior(self, ballots: Iterable[Ballot], *, use_class_prior: bool = False) -> dict[str, float]:
        """P(true label | ballots) for every label, naive Bayes over independent workers.

        The class prior is uniform unless `use_class_prior` (see the module docstring for why
        the learned one is biased). Abstentions and out-of-set labels carry no evidence.
        """
        scores = self._log_scores(ballots, use_class_prior)
        norm = _logsumexp(scores.values())
        return {label: math.exp(score - norm) for label, score in scores.items()}

    def posterior_bound(
        self,
        ballots: Iterable[Ballot],
        pending: Iterable[str],
        label: str,
        *,
        use_class_prior: bool = False,
    ) -> float:
        """An upper bound on `posterior(...)[label]` after any ballots of `pending` workers.

        For each rival label `r`, each pending worker can shift the log-odds of `label` over
        `r` by at most `max_v log(theta[w][label][v] / theta[w][r][v])`, which is >= 0 since
        both rows sum to 1 (so abstaining is never better). Maximising per rival separately
        relaxes the problem, hence a bound; it equals the posterior when nobody is pending.
        """
        scores = self._log_scores(ballots, use_class_prior)
        waiting = sorted(set(pending))
        rivals = [r for r in self.labels if r != label]
        shifts = [math.fsum(self._best_shift(w, label, r) for w in waiting) for r in rivals]
        gaps = [scores[r] - scores[label] - s for r, s in zip(rivals, shifts, strict=True)]
        return math.exp(-_logsumexp([0.0, *gaps]))

    def _best_shift(self, worker: str, label: str, rival: str) -> float:
        return max(
            math.log(self.likelihood(worker, label, v)) - math.log(self.likelihood(worker, rival, v))
            for v in self.labels
        )

    def _log_scores(self, ballots: Iterable[Ballot], use_class_prior: bool) -> dict[str, float]:
        evidence = sorted((b.worker, b.label) for b in ballots if b.label is not None and b.label in self._label_set)
        scores: dict[str, float] = {}
        for t in self.labels:
            prior = math.log(self.class_prior(t)) if use_class_prior else 0.0
            terms = [math.log(self.likelihood(w, t, v)) for w, v in evidence]
            scores[t] = math.fsum([prior, *terms])
        return scores

    # ---- persistence --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot (str keys, int counts, sorted) that `from_dict` restores."""
        return {
            "format": FORMAT,
            "labels": list(self.labels),
            "prior_accuracy": self.prior_accuracy,
            "prior_strength": self.prior_strength,
            "class_counts": dict(sorted(self._class_counts.items())),
            "counts": {
                w: {t: dict(sorted(row.items())) for t, row in sorted(rows.items())}
                for w, rows in sorted(self._counts.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, labels: Iterable[str] | None = None) -> Reliability:
        """Restore a `to_dict` snapshot; ValueError if it is malformed.

        `labels`, if given, replaces the stored label set (the task's labels changed): counts
        involving labels no longer in the set are dropped, new labels start from the prior.
        """
        if data.get("format") != FORMAT:
            raise ValueError(f"unsupported reliability format {data.get('format')!r}")
        try:
            stored = data["labels"]
            if not isinstance(stored, list) or not all(isinstance(x, str) for x in stored):
                raise TypeError(f"expected a list of labels, got {stored!r}")
            out = cls(
                stored if labels is None else labels,
                prior_accuracy=_number(data["prior_accuracy"]),
                prior_strength=_number(data["prior_strength"]),
            )
            out._class_counts = _filter_counts(data["class_counts"], out._label_set)
            for worker, rows in _mapping(data["counts"]).items():
                for true_label, row in _mapping(rows).items():
                    kept = _filter_counts(row, out._label_set)
                    if true_label in out._label_set and kept:
                        out._counts.setdefault(worker, {})[true_label] = kept
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed reliability snapshot: {exc!r}") from exc
        return out


# The helpers below raise TypeError for a wrong shape; `from_dict` reports it as ValueError.
def _number(raw: object) -> float:
    if not isinstance(raw, int | float) or isinstance(raw, bool):
        raise TypeError(f"expected a number, got {raw!r}")
    return float(raw)


def _mapping(raw: object) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping) or not all(isinstance(key, str) for key in raw):
        raise TypeError(f"expected an object with string keys, got {raw!r}")
    return raw


def _filter_counts(raw: object, keep: frozenset[str]) -> dict[str, int]:
    """Non-negative int counts of the labels in `keep`; ValueError on anything else."""
    out: dict[str, int] = {}
    for key, value in _mapping(raw).items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"count of {key!r} must be a non-negative int, got {value!r}")
        if key in keep and value:
            out[key] = value
    return out


def _logsumexp(values: Iterable[float]) -> float:
    items: Sequence[float] = sorted(values)
    top = items[-1]
    if math.isinf(top):
        return top
    return top + math.log(math.fsum(math.exp(v - top) for v in items))
