"""Offline policy simulation on recorded votes: the pure half of `tribunal bench policies`.

A `Recording` holds, per item in stream order, every worker's ballot with its per-item latency,
the judge's label with its latency, and the gold label. `simulate` replays one `Candidate`
policy over it, deciding each item with all of its votes (`policy.ballots.final`),
and scores the result:

- `judge_rate`: judge calls per item (escalations, plus audits for audited candidates);
- `accuracy`, `macro_f1`: of the final labels (accepted label, or the judge's) vs gold;
- `fast_path_accuracy`: accuracy on the items the workers decided;
- `speedup` vs judge-only, with per-item latencies (workers run in parallel, so an item waits
  for its slowest worker; escalated items then wait for the judge):

      speedup = L_J / (W + judge_rate * L_J)

  where L_J = mean judge latency per item and W = mean over items of the max worker latency.
  Latencies are per item as measured in batches (batch time / batch size), so they are
  amortised compute costs, not queueing delays.

A learning candidate (`weighted`) starts from a fresh `Reliability` and learns, in stream order,
from the judge's label of every item it sends to the judge (escalations and audits).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tribunal.consumers.policy.ballots import Accept, Ballot, Policy, audited, final, plurality
from tribunal.consumers.policy.voting import PolicyChoice, WeightedVote, make_policy
from tribunal.offline.evaluate import accuracy, macro_f1, percentile

__all__ = [
    "Candidate",
    "RecordedItem",
    "Recording",
    "Score",
    "audited",
    "default_candidates",
    "reference_scores",
    "simulate",
    "speedup",
]

# Thresholds swept for Criterion 2 (one threshold for every worker) and the weighted vote.
C2_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
C2_QUANTILES = (0.1, 0.25, 0.5)
WEIGHTED_THRESHOLDS = (0.75, 0.9, 0.95, 0.99)
AUDIT_RATE = 0.02


@dataclass(frozen=True, slots=True)
class RecordedItem:
    """One item: its workers' ballots and latencies (same order), the judge's answer, gold."""

    item_id: str
    gold: str
    ballots: tuple[Ballot, ...]
    worker_latency_ms: tuple[float, ...]
    judge_label: str | None
    judge_latency_ms: float


@dataclass(frozen=True, slots=True)
class Recording:
    task: str
    labels: tuple[str, ...]
    workers: tuple[str, ...]
    items: tuple[RecordedItem, ...]

    def confidences(self, worker: str) -> list[float]:
        """Every non-abstaining confidence `worker` gave, for quantile thresholds."""
        return [b.confidence for r in self.items for b in r.ballots if b.worker == worker and b.label is not None]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A named policy to simulate. `make` builds a fresh policy (a weighted one: a fresh
    `Reliability`); `audit_rate` also sends that share of accepted items to the judge."""

    name: str
    family: str
    make: Callable[[], Policy]
    audit_rate: float = 0.0
    detail: str = ""  # e.g. the per-worker thresholds a quantile candidate chose


@dataclass(frozen=True, slots=True)
class Score:
    name: str
    family: str
    judge_rate: float
    accuracy: float
    macro_f1: float
    fast_path_accuracy: float
    speedup: float
    detail: str = ""

    def as_dict(self) -> dict[str, float | str]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def default_candidates(recording: Recording, quorum: int = 2) -> list[Candidate]:
    """The majority; the confident majority at shared thresholds and at per-worker confidence quantiles; the
    weighted vote at several posterior thresholds, without and with a 2% audit sample."""
    workers = recording.workers
    majority = PolicyChoice("majority", quorum, workers=tuple(workers))
    out = [Candidate("majority", "majority", lambda: make_policy(majority, ()))]
    for t in C2_THRESHOLDS:
        out.append(Candidate(f"confident_majority t={t}", "confident_majority", _c2(quorum, workers, {}, t)))
    for q in C2_QUANTILES:
        per_worker = {w: percentile(recording.confidences(w), q * 100) for w in workers}
        detail = " ".join(f"{w}>={t:.3f}" for w, t in per_worker.items())  # display only: ties matter
        make = _c2(quorum, workers, per_worker, 0.0)
        out.append(Candidate(f"confident_majority q={q}", "confident_majority-quantile", make, detail=detail))
    for t in WEIGHTED_THRESHOLDS:
        make = _weighted(quorum, workers, recording.labels, t)
        out.append(Candidate(f"weighted t={t}", "weighted", make))
        out.append(Candidate(f"weighted t={t} +audit", "weighted-audit", make, AUDIT_RATE))
    return out


def _c2(quorum: int, workers: Sequence[str], thresholds: dict[str, float], default: float) -> Callable[[], Policy]:
    choice = PolicyChoice(
        "confident_majority", quorum, workers=tuple(workers), thresholds=thresholds, threshold=default
    )
    return lambda: make_policy(choice, ())


def _weighted(quorum: int, workers: Sequence[str], labels: Sequence[str], threshold: float) -> Callable[[], Policy]:
    choice = PolicyChoice("weighted", quorum, workers=tuple(workers), threshold=threshold)
    return lambda: make_policy(choice, labels)


def simulate(recording: Recording, candidate: Candidate) -> Score:
    """Decide every item in stream order under `candidate` and score it (module docstring)."""
    policy = candidate.make()
    finals: list[str | None] = []
    fast_hits = fast = judge_calls = 0
    for item in recording.items:
        decision = final(policy, item.ballots, recording.workers)
        audit = isinstance(decision, Accept) and audited(item.item_id, candidate.audit_rate)
        if isinstance(decision, Accept):
            finals.append(decision.label)
            fast += 1
            fast_hits += decision.label == item.gold
        else:
            finals.append(item.judge_label if item.judge_label is not None else _plurality(item.ballots))
        if audit or not isinstance(decision, Accept):
            judge_calls += 1
            if isinstance(policy, WeightedVote) and item.judge_label is not None:
                policy.reliability.update(item.ballots, item.judge_label)
    rate = judge_calls / len(recording.items) if recording.items else 0.0
    return _score(recording, candidate, finals, rate, fast_hits / fast if fast else 0.0)


def _plurality(ballots: Sequence[Ballot]) -> str | None:
    """The judge abstained: fall back to the workers' plurality, as the judge tier does."""
    top = plurality(ballots)
    return top[0] if top else None


def _score(recording: Recording, candidate: Candidate, finals: list[str | None], rate: float, fast: float) -> Score:
    gold = [r.gold for r in recording.items]
    return Score(
        name=candidate.name,
        family=candidate.family,
        judge_rate=rate,
        accuracy=accuracy(gold, finals),
        macro_f1=macro_f1(gold, finals),
        fast_path_accuracy=fast,
        speedup=speedup(recording, rate),
        detail=candidate.detail,
    )


def speedup(recording: Recording, judge_rate: float) -> float:
    """L_J / (W + judge_rate * L_J), see the module docstring; 0.0 for an empty recording."""
    n = len(recording.items)
    if not n:
        return 0.0
    judge = sum(r.judge_latency_ms for r in recording.items) / n
    workers = sum(max(r.worker_latency_ms, default=0.0) for r in recording.items) / n
    cost = workers + judge_rate * judge
    return judge / cost if cost > 0 else 0.0


def reference_scores(recording: Recording) -> list[Score]:
    """Two ends of the curve: the judge alone (judge_rate 1, speedup 1), the workers' plurality alone."""
    gold = [r.gold for r in recording.items]
    judge = [r.judge_label for r in recording.items]
    workers = [_plurality(r.ballots) for r in recording.items]
    workers_acc = accuracy(gold, workers)
    return [
        Score("judge only", "reference", 1.0, accuracy(gold, judge), macro_f1(gold, judge), 0.0, 1.0),
        Score(
            "workers only", "reference", 0.0, workers_acc, macro_f1(gold, workers), workers_acc, speedup(recording, 0.0)
        ),
    ]
