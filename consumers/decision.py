"""Pure vote-counting policies: given one item's ballots, decide to wait, accept or escalate.

No Kafka, no asyncio, no clock: the caller passes `elapsed_ms` (time since the item was first
seen) and calls `Policy.decide` again after every new ballot and on deadline ticks. The first
non-`Wait` decision is final for the item; later calls are allowed and never raise.

Caller contract for `decide(ballots, expected, elapsed_ms)`:
- at most one ballot per worker, and only from workers named in `expected`;
- `expected` names the workers that should vote (order does not matter);
- the result depends only on the arguments (and, for `WeightedVote`, on the current state of
  its `Reliability`): never on ballot order, dict order or randomness.

Order of checks shared by every policy: accept if the evidence already suffices (even after the
deadline: the votes are in, so use them); else escalate as soon as acceptance has become
impossible whatever the missing workers say; else escalate with `DEADLINE` once
`elapsed_ms >= deadline_ms`; else wait.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from tribunal.consumers.reliability import Reliability
from tribunal.schemas.messages import EscalationReason, Vote

if TYPE_CHECKING:
    from tribunal.core.settings import AggregatorSettings
    from tribunal.schemas.tasks import Task

__all__ = [
    "POLICIES",
    "Accept",
    "Ballot",
    "Criterion1",
    "Criterion2",
    "Decision",
    "Escalate",
    "Policy",
    "PolicyChoice",
    "Wait",
    "WeightedVote",
    "audited",
    "ballots",
    "build_policy",
    "choose_policy",
    "make_policy",
    "plurality",
]


@dataclass(frozen=True, slots=True)
class Ballot:
    """One worker's vote on one item; `label=None` means the worker abstained."""

    worker: str
    label: str | None
    confidence: float

    def __post_init__(self) -> None:
        # `not (0 <= x <= 1)` also rejects NaN, which would poison every comparison downstream.
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence!r}")


@dataclass(frozen=True, slots=True)
class Wait:
    """Not decided yet: call `decide` again on the next ballot or deadline tick."""


@dataclass(frozen=True, slots=True)
class Accept:
    """The workers' label is final. `confidence` is policy-specific (see each policy)."""

    label: str
    confidence: float


@dataclass(frozen=True, slots=True)
class Escalate:
    """Send the item to the judge, for `reason`."""

    reason: EscalationReason


Decision = Wait | Accept | Escalate


class Policy(Protocol):
    """A named, versioned decision rule; `name` and `version` go into every verdict."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int: ...

    def decide(self, ballots: Sequence[Ballot], expected: Sequence[str], elapsed_ms: float) -> Decision: ...


class _Tally(NamedTuple):
    label: str
    votes: int
    total_confidence: float

    @property
    def mean_confidence(self) -> float:
        return self.total_confidence / self.votes


def _tally(ballots: Iterable[Ballot]) -> list[_Tally]:
    """Non-abstaining ballots grouped by label, best first: count, total confidence, name."""
    groups: dict[str, list[float]] = {}
    for ballot in ballots:
        if ballot.label is not None:
            groups.setdefault(ballot.label, []).append(ballot.confidence)
    # fsum is exactly rounded, so totals (and tie-breaks) do not depend on ballot order.
    tallies = [_Tally(label, len(c), math.fsum(c)) for label, c in groups.items()]
    return sorted(tallies, key=lambda t: (-t.votes, -t.total_confidence, t.label))


def audited(item_id: str, rate: float) -> bool:
    """Whether a worker-decided item is also sent to the judge (the audit draw): deterministic by
    id, so a replay, a simulation and every aggregator instance audit the same items."""
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(item_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


def ballots(votes: Iterable[Vote]) -> list[Ballot]:
    """The decision core's view of recorded votes: the one place a `Vote` becomes a `Ballot`."""
    return [Ballot(v.worker, v.label, v.confidence) for v in votes]


def plurality(ballots: Sequence[Ballot]) -> tuple[str, float] | None:
    """The most-voted label and the mean confidence of its ballots; None if all abstained.

    Ties on count go to the higher total confidence, then to the alphabetically first label,
    so the answer never depends on ballot order.
    """
    tallies = _tally(ballots)
    if not tallies:
        return None
    return tallies[0].label, tallies[0].mean_confidence


def _top_count(ballots: Iterable[Ballot]) -> int:
    tallies = _tally(ballots)
    return tallies[0].votes if tallies else 0


def _pending(ballots: Sequence[Ballot], expected: Sequence[str]) -> list[str]:
    """Expected workers without a ballot yet, sorted (an abstention counts as cast)."""
    voted = {ballot.worker for ballot in ballots}
    return sorted(set(expected) - voted)


def _deadline_or_wait(elapsed_ms: float, deadline_ms: float) -> Decision:
    if elapsed_ms >= deadline_ms:
        return Escalate(EscalationReason.DEADLINE)
    return Wait()


def _check_common(quorum: int, deadline_ms: float, workers: Sequence[str] | None, what: str = "quorum") -> None:
    if quorum < 1:
        raise ValueError(f"{what} must be at least 1, got {quorum}")
    if not deadline_ms >= 0:
        raise ValueError(f"deadline_ms must be >= 0, got {deadline_ms!r}")
    if workers is not None and quorum > len(set(workers)):
        raise ValueError(f"{what} {quorum} exceeds the {len(set(workers))} expected workers")


@dataclass(frozen=True, slots=True)
class Criterion1:
    """Majority vote (the paper's Criterion 1), decided as early as the outcome is certain.

    - Accept when some label has >= `quorum` ballots. If several do (possible only when
      quorum <= n/2), the `plurality` winner is taken. Confidence = mean confidence of all
      ballots for that label.
    - Escalate(DISAGREEMENT) once `top_count + pending < quorum`: no label can reach the
      quorum whatever the missing workers say (3 labels from 3 workers, 1-1 plus an abstain,
      all abstained). Abstentions count as cast but never agree.
    - Else Escalate(DEADLINE) once `elapsed_ms >= deadline_ms`, else Wait.

    `workers`, if given, is the configured worker set: a quorum above its size is a
    `ValueError`. Without it, a `decide` whose `expected` is smaller than the quorum escalates
    with DISAGREEMENT at once (agreement is impossible).
    """

    quorum: int = 2
    deadline_ms: float = 2000.0
    workers: Sequence[str] | None = None
    name: str = field(default="criterion1", init=False)
    version: int = field(default=1, init=False)

    def __post_init__(self) -> None:
        _check_common(self.quorum, self.deadline_ms, self.workers)

    def decide(self, ballots: Sequence[Ballot], expected: Sequence[str], elapsed_ms: float) -> Decision:
        """Accept, escalate or wait for these ballots, as described on the class."""
        tallies = _tally(ballots)
        if tallies and tallies[0].votes >= self.quorum:
            return Accept(tallies[0].label, tallies[0].mean_confidence)
        top = tallies[0].votes if tallies else 0
        if top + len(_pending(ballots, expected)) < self.quorum:
            return Escalate(EscalationReason.DISAGREEMENT)
        return _deadline_or_wait(elapsed_ms, self.deadline_ms)


@dataclass(frozen=True, slots=True)
class Criterion2:
    """Majority among confident votes (the paper's Criterion 2).

    A ballot is *confident* when `confidence >= thresholds.get(worker, default_threshold)`;
    only confident ballots count toward the quorum.

    - Accept when some label has >= `quorum` confident ballots (several: the `plurality` of the
      confident ballots). Confidence = mean confidence of that label's confident ballots.
    - Escalate as soon as a confident quorum is impossible: `top_confident + pending < quorum`.
      The reason is LOW_CONFIDENCE when plain label agreement (Criterion 1's test) has been
      reached or is still reachable (`top_count + pending >= quorum`), i.e. it is confidence
      that rules acceptance out; otherwise DISAGREEMENT. We do not wait for the remaining
      workers just to name the reason: the escalation itself is already certain. Hence
      DISAGREEMENT here exactly when Criterion 1 would escalate with DISAGREEMENT.
    - Else Escalate(DEADLINE) once `elapsed_ms >= deadline_ms`, else Wait.

    With every threshold at 0 this is exactly `Criterion1`.
    """

    quorum: int = 2
    deadline_ms: float = 2000.0
    thresholds: Mapping[str, float] = field(default_factory=dict)
    default_threshold: float = 0.5
    workers: Sequence[str] | None = None
    name: str = field(default="criterion2", init=False)
    version: int = field(default=1, init=False)

    def __post_init__(self) -> None:
        _check_common(self.quorum, self.deadline_ms, self.workers)
        for worker, value in [*self.thresholds.items(), ("<default>", self.default_threshold)]:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"threshold of {worker} must be in [0, 1], got {value!r}")
        unknown = sorted(set(self.thresholds) - set(self.workers or self.thresholds))
        if unknown:
            # A name that matches no worker would silently leave that worker on the default.
            raise ValueError(f"thresholds name {unknown}, which are not among the workers {sorted(self.workers or [])}")

    def threshold(self, worker: str) -> float:
        """The confidence a ballot of `worker` needs to count toward the quorum."""
        return self.thresholds.get(worker, self.default_threshold)

    def decide(self, ballots: Sequence[Ballot], expected: Sequence[str], elapsed_ms: float) -> Decision:
        """Accept, escalate or wait for these ballots, as described on the class."""
        confident = [b for b in ballots if b.confidence >= self.threshold(b.worker)]
        tallies = _tally(confident)
        if tallies and tallies[0].votes >= self.quorum:
            return Accept(tallies[0].label, tallies[0].mean_confidence)
        pending = len(_pending(ballots, expected))
        top_confident = tallies[0].votes if tallies else 0
        if top_confident + pending < self.quorum:
            if _top_count(ballots) + pending >= self.quorum:
                return Escalate(EscalationReason.LOW_CONFIDENCE)
            return Escalate(EscalationReason.DISAGREEMENT)
        return _deadline_or_wait(elapsed_ms, self.deadline_ms)


@dataclass(frozen=True, slots=True)
class WeightedVote:
    """Reliability-weighted vote: a learned generalisation of Criterion 2.

    The posterior over labels comes from `reliability` (naive Bayes, abstentions and labels
    outside its label set ignored, uniform class prior unless `use_class_prior`). With
    `top` the most probable label (ties: first by name) and `votes` the ballots that carry
    evidence:

    - Accept(top, confidence=posterior of top) when `posterior >= threshold` and
      `votes >= min_votes`.
    - Escalate(LOW_CONFIDENCE) when every expected worker has voted, or acceptance is provably
      out of reach: `votes + pending < min_votes`, or for every label the upper bound of
      `Reliability.posterior_bound` over the pending workers' possible ballots is below
      `threshold`. The bound is conservative, so an item may wait although acceptance is
      already impossible, but never escalates early when it was still possible.
    - Else Escalate(DEADLINE) once `elapsed_ms >= deadline_ms`, else Wait.

    Defaults match Criterion 1 (2 of 3) at cold start: with prior accuracy 0.8 a 2-1 split of
    3 workers has posterior exactly 0.8 for 2 labels (more for more labels), 2-0 has 0.94 and
    1-1 has 0.5, so any threshold in (0.5, 0.8) agrees; 0.75 leaves room for rounding. Unlike
    Criterion 1, an Accept may not survive later dissenting ballots (the caller acts on the
    first non-Wait decision), and decisions change as `reliability` learns.
    """

    reliability: Reliability
    deadline_ms: float = 2000.0
    threshold: float = 0.75
    min_votes: int = 2
    use_class_prior: bool = False
    workers: Sequence[str] | None = None
    name: str = field(default="weighted", init=False)
    version: int = field(default=1, init=False)

    def __post_init__(self) -> None:
        _check_common(self.min_votes, self.deadline_ms, self.workers, "min_votes")
        # Above 0.5 at most one label can pass, so Accept never depends on a tie-break.
        if not 0.5 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0.5, 1], got {self.threshold!r}")

    def decide(self, ballots: Sequence[Ballot], expected: Sequence[str], elapsed_ms: float) -> Decision:
        """Accept, escalate or wait for these ballots, as described on the class."""
        posterior = self.reliability.posterior(ballots, use_class_prior=self.use_class_prior)
        top, probability = max(sorted(posterior.items()), key=lambda item: item[1])
        votes = sum(1 for b in ballots if b.label in posterior)
        if votes >= self.min_votes and probability >= self.threshold:
            return Accept(top, probability)
        pending = _pending(ballots, expected)
        if not pending or not self._reachable(ballots, pending, votes):
            return Escalate(EscalationReason.LOW_CONFIDENCE)
        return _deadline_or_wait(elapsed_ms, self.deadline_ms)

    def _reachable(self, ballots: Sequence[Ballot], pending: list[str], votes: int) -> bool:
        """Whether some completion of the pending ballots could still pass both tests."""
        if votes + len(pending) < self.min_votes:
            return False
        return any(
            self.reliability.posterior_bound(ballots, pending, label, use_class_prior=self.use_class_prior)
            >= self.threshold
            for label in self.reliability.labels
        )


POLICIES = ("criterion1", "criterion2", "weighted")


@dataclass(frozen=True, slots=True)
class PolicyChoice:
    """What picks and parameterises one task's policy: the one description the aggregator,
    `tribunal replay votes` and the policy simulation build from (`make_policy`).

    `thresholds` are Criterion 2's per-worker confidence thresholds; `threshold` is Criterion 2's
    default threshold or the weighted vote's posterior threshold; None keeps the policy's own
    default. `workers`, if given, is the configured worker set; `deadline_ms` None keeps the
    policy's default deadline.
    """

    name: str
    quorum: int
    deadline_ms: int | None = None
    workers: tuple[str, ...] | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    threshold: float | None = None


def choose_policy(config: AggregatorSettings, definition: Task | None) -> PolicyChoice:
    """The configured policy for a task's items: `aggregator.policy` if set explicitly (env, file
    or flag), else the task's own from tasks.toml, else the default; the task's thresholds
    override the configured ones."""
    explicit = "policy" in config.model_fields_set
    name = config.policy if explicit or not definition or not definition.policy else definition.policy
    task_threshold = definition.threshold if definition else None
    thresholds: dict[str, float] = {}
    threshold: float | None = None
    if name == "criterion2":
        thresholds = {**config.thresholds, **(definition.thresholds if definition else {})}
        threshold = task_threshold if task_threshold is not None else config.default_threshold
    elif name == "weighted":
        threshold = task_threshold if task_threshold is not None else config.accept_threshold
    return PolicyChoice(name, config.quorum, config.deadline_ms, thresholds=thresholds, threshold=threshold)


def make_policy(choice: PolicyChoice, labels: Sequence[str], reliability: Reliability | None = None) -> Policy:
    """The policy `choice` describes. A weighted vote learns into `reliability` when given (the
    shared, updated counts), else into a fresh one over `labels`. ValueError for thresholds the
    policy does not take."""
    if choice.thresholds and choice.name != "criterion2":
        raise ValueError(f"policy {choice.name!r} takes no per-worker thresholds: {dict(choice.thresholds)}")
    if choice.threshold is not None and choice.name == "criterion1":
        raise ValueError("policy 'criterion1' takes no threshold")
    options: dict[str, Any] = {} if choice.workers is None else {"workers": choice.workers}
    if choice.name == "criterion2":
        options["thresholds"] = dict(choice.thresholds)
        options |= {} if choice.threshold is None else {"default_threshold": choice.threshold}
    elif choice.name == "weighted":
        options |= {} if choice.threshold is None else {"threshold": choice.threshold}
        options |= {"labels": labels} if reliability is None else {"reliability": reliability}
    deadline = {} if choice.deadline_ms is None else {"deadline_ms": choice.deadline_ms}
    return build_policy(choice.name, quorum=choice.quorum, **deadline, **options)


def build_policy(name: str, *, quorum: int, deadline_ms: int = 2_000, **options: Any) -> Policy:
    """Build the policy called `name`; `options` go to its constructor (e.g. `thresholds`).

    For "weighted", `quorum` is `min_votes`, and exactly one of `reliability` (a shared,
    updated `Reliability`) or `labels` (the task's label set: a fresh one) must be given.

    Raises ValueError for an unknown name (listing the known ones) or invalid parameters, and
    TypeError for an option the policy does not take.
    """
    if name == "criterion1":
        return Criterion1(quorum, deadline_ms, **options)
    if name == "criterion2":
        return Criterion2(quorum, deadline_ms, **options)
    if name == "weighted":
        return _build_weighted(quorum, deadline_ms, options)
    raise ValueError(f"unknown policy {name!r}; known policies: {', '.join(POLICIES)}")


def _build_weighted(quorum: int, deadline_ms: int, options: dict[str, Any]) -> WeightedVote:
    labels = options.pop("labels", None)
    if (labels is None) == ("reliability" not in options):
        raise ValueError("the weighted policy needs exactly one of `reliability` or `labels`")
    if labels is not None:
        options["reliability"] = Reliability(labels)
    return WeightedVote(deadline_ms=deadline_ms, min_votes=quorum, **options)
