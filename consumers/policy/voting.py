"""The voting policies: majority, confident majority and the reliability-weighted vote.

Each is a pure `Policy` (see `ballots`): given one item's ballots and the workers expected, it
accepts as soon as the evidence suffices, escalates as soon as acceptance has become impossible
whatever the missing workers say, and otherwise waits. When the wait is over is not theirs to
decide: the aggregator's straggler rule says, and `ballots.final` turns a wait into DEADLINE.

`PolicyChoice` is the one description of a configured policy that the aggregator, `tribunal
replay votes` and the simulations build from (`make_policy`). The names users type are
`majority`, `confident_majority` and `weighted` (`target` lives in `target`); `criterion1` and
`criterion2`, the paper's labels, are kept as aliases (`schemas.tasks.canonical_policy`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tribunal.consumers.policy.ballots import (
    Accept,
    Ballot,
    Decision,
    Escalate,
    Policy,
    Wait,
    check_quorum,
    pending_workers,
    tally,
    top_count,
)
from tribunal.consumers.policy.reliability import Reliability
from tribunal.schemas.messages import EscalationReason
from tribunal.schemas.tasks import canonical_policy

__all__ = [
    "POLICIES",
    "ConfidentMajority",
    "Majority",
    "PolicyChoice",
    "WeightedVote",
    "build_policy",
    "make_policy",
]


@dataclass(frozen=True, slots=True)
class Majority:
    """Majority vote (the paper's Criterion 1), decided as early as the outcome is certain.

    - Accept when some label has >= `quorum` ballots. If several do (possible only when
      quorum <= n/2), the `plurality` winner is taken. Confidence = mean confidence of all
      ballots for that label.
    - Escalate(DISAGREEMENT) once `top_count + pending < quorum`: no label can reach the
      quorum whatever the missing workers say (3 labels from 3 workers, 1-1 plus an abstain,
      all abstained). Abstentions count as cast but never agree.
    - Else Wait.

    `workers`, if given, is the configured worker set: a quorum above its size is a
    `ValueError`. Without it, a `decide` whose `expected` is smaller than the quorum escalates
    with DISAGREEMENT at once (agreement is impossible).
    """

    quorum: int = 2
    workers: Sequence[str] | None = None
    name: str = field(default="majority", init=False)
    version: int = field(default=1, init=False)

    def __post_init__(self) -> None:
        check_quorum(self.quorum, self.workers)

    def decide(self, ballots: Sequence[Ballot], expected: Sequence[str]) -> Decision:
        """Accept, escalate or wait for these ballots, as described on the class."""
        tallies = tally(ballots)
        if tallies and tallies[0].votes >= self.quorum:
            return Accept(tallies[0].label, tallies[0].mean_confidence)
        top = tallies[0].votes if tallies else 0
        if top + len(pending_workers(ballots, expected)) < self.quorum:
            return Escalate(EscalationReason.DISAGREEMENT)
        return Wait()


@dataclass(frozen=True, slots=True)
class ConfidentMajority:
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
    - Else Wait.

    With every threshold at 0 this is exactly `Majority`.
    """

    quorum: int = 2
    thresholds: Mapping[str, float] = field(default_factory=dict)
    default_threshold: float = 0.5
    workers: Sequence[str] | None = None
    name: str = field(default="confident_majority", init=False)
    version: int = field(default=1, init=False)

    def __post_init__(self) -> None:
        check_quorum(self.quorum, self.workers)
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

    def decide(self, ballots: Sequence[Ballot], expected: Sequence[str]) -> Decision:
        """Accept, escalate or wait for these ballots, as described on the class."""
        confident = [b for b in ballots if b.confidence >= self.threshold(b.worker)]
        tallies = tally(confident)
        if tallies and tallies[0].votes >= self.quorum:
            return Accept(tallies[0].label, tallies[0].mean_confidence)
        pending = len(pending_workers(ballots, expected))
        top_confident = tallies[0].votes if tallies else 0
        if top_confident + pending < self.quorum:
            if top_count(ballots) + pending >= self.quorum:
                return Escalate(EscalationReason.LOW_CONFIDENCE)
            return Escalate(EscalationReason.DISAGREEMENT)
        return Wait()


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
    - Else Wait.

    Defaults match Criterion 1 (2 of 3) at cold start: with prior accuracy 0.8 a 2-1 split of
    3 workers has posterior exactly 0.8 for 2 labels (more for more labels), 2-0 has 0.94 and
    1-1 has 0.5, so any threshold in (0.5, 0.8) agrees; 0.75 leaves room for rounding. Unlike
    Criterion 1, an Accept may not survive later dissenting ballots (the caller acts on the
    first non-Wait decision), and decisions change as `reliability` learns.
    """

    reliability: Reliability
    threshold: float = 0.75
    min_votes: int = 2
    use_class_prior: bool = False
    workers: Sequence[str] | None = None
    name: str = field(default="weighted", init=False)
    version: int = field(default=1, init=False)

    def __post_init__(self) -> None:
        check_quorum(self.min_votes, self.workers, "min_votes")
        # Above 0.5 at most one label can pass, so Accept never depends on a tie-break.
        if not 0.5 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0.5, 1], got {self.threshold!r}")

    def decide(self, ballots: Sequence[Ballot], expected: Sequence[str]) -> Decision:
        """Accept, escalate or wait for these ballots, as described on the class."""
        posterior = self.reliability.posterior(ballots, use_class_prior=self.use_class_prior)
        top, probability = max(sorted(posterior.items()), key=lambda item: item[1])
        votes = sum(1 for b in ballots if b.label in posterior)
        if votes >= self.min_votes and probability >= self.threshold:
            return Accept(top, probability)
        pending = pending_workers(ballots, expected)
        if not pending or not self._reachable(ballots, pending, votes):
            return Escalate(EscalationReason.LOW_CONFIDENCE)
        return Wait()

    def _reachable(self, ballots: Sequence[Ballot], pending: list[str], votes: int) -> bool:
        """Whether some completion of the pending ballots could still pass both tests."""
        if votes + len(pending) < self.min_votes:
            return False
        return any(
            self.reliability.posterior_bound(ballots, pending, label, use_class_prior=self.use_class_prior)
            >= self.threshold
            for label in self.reliability.labels
        )


POLICIES = ("majority", "confident_majority", "weighted")


@dataclass(frozen=True, slots=True)
class PolicyChoice:
    """What picks and parameterises one task's policy: the one description the aggregator,
    `tribunal replay votes` and the policy simulation build from (`make_policy`).

    `thresholds` are the confident majority's per-worker confidence thresholds; `threshold` is its
    default threshold or the weighted vote's posterior threshold; None keeps the policy's own
    default. `workers`, if given, is the configured worker set.
    """

    name: str
    quorum: int
    workers: tuple[str, ...] | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    threshold: float | None = None


def make_policy(choice: PolicyChoice, labels: Sequence[str], reliability: Reliability | None = None) -> Policy:
    """The policy `choice` describes. A weighted vote learns into `reliability` when given (the
    shared, updated counts), else into a fresh one over `labels`. ValueError for thresholds the
    policy does not take."""
    name = canonical_policy(choice.name)
    if choice.thresholds and name != "confident_majority":
        raise ValueError(f"policy {choice.name!r} takes no per-worker thresholds: {dict(choice.thresholds)}")
    if choice.threshold is not None and name == "majority":
        raise ValueError(f"policy {choice.name!r} takes no threshold")
    options: dict[str, Any] = {} if choice.workers is None else {"workers": choice.workers}
    if name == "confident_majority":
        options["thresholds"] = dict(choice.thresholds)
        options |= {} if choice.threshold is None else {"default_threshold": choice.threshold}
    elif name == "weighted":
        options |= {} if choice.threshold is None else {"threshold": choice.threshold}
        options |= {"labels": labels} if reliability is None else {"reliability": reliability}
    return build_policy(name, quorum=choice.quorum, **options)


def build_policy(name: str, *, quorum: int, **options: Any) -> Policy:
    """Build the policy called `name` (or an alias of it); `options` go to its constructor.

    For "weighted", `quorum` is `min_votes`, and exactly one of `reliability` (a shared,
    updated `Reliability`) or `labels` (the task's label set: a fresh one) must be given.

    Raises ValueError for an unknown name (listing the known ones) or invalid parameters, and
    TypeError for an option the policy does not take.
    """
    name = canonical_policy(name)
    if name == "majority":
        return Majority(quorum, **options)
    if name == "confident_majority":
        return ConfidentMajority(quorum, **options)
    if name == "weighted":
        return _build_weighted(quorum, options)
    raise ValueError(f"unknown policy {name!r}; known policies: {', '.join(POLICIES)}")


def _build_weighted(quorum: int, options: dict[str, Any]) -> WeightedVote:
    labels = options.pop("labels", None)
    if (labels is None) == ("reliability" not in options):
        raise ValueError("the weighted policy needs exactly one of `reliability` or `labels`")
    if labels is not None:
        options["reliability"] = Reliability(labels)
    return WeightedVote(min_votes=quorum, **options)
