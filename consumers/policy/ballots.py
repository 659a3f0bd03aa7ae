"""What a policy reads and what it answers: ballots in, a decision out, and the deadline rule.

A `Ballot` is one worker's vote as a policy sees it; a `HeldVote` is a vote as the aggregator
holds it until the item is decided (all a verdict needs). A `Policy` answers `Wait`, `Accept` or
`Escalate` for one item's ballots; time is not its business. The aggregator's straggler rule
decides when the wait is over, and then `final` applies the one deadline rule everybody shares:
a policy still waiting at that point escalates with DEADLINE. Replays and simulations call `final`
too, so a re-decision never differs from the live one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from tribunal.schemas.messages import EscalationReason, Vote, VoteRow

__all__ = [
    "Accept",
    "Ballot",
    "Decision",
    "Escalate",
    "HeldVote",
    "Policy",
    "Tally",
    "Wait",
    "audited",
    "ballots",
    "check_quorum",
    "final",
    "pending_workers",
    "plurality",
    "tally",
    "top_count",
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


class HeldVote(NamedTuple):
    """One worker's vote as the aggregator holds it until its item is decided: the model and
    send time of its `VoteBatch`, the row itself, and the offset of the votes record it came in
    (which tells a re-read record, so it gets no second dead letter)."""

    model: str
    voted_at: float
    row: VoteRow
    offset: int

    @property
    def task(self) -> str:
        return self.row[1]

    @property
    def label(self) -> str | None:
        return self.row[2]

    @property
    def confidence(self) -> float:
        return self.row[3]


@dataclass(frozen=True, slots=True)
class Wait:
    """Not decided yet: ask again on the next ballot, or call `final` when the wait is over."""


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
    """A named, versioned decision rule; `name` and `version` go into every verdict.

    Caller contract for `decide(ballots, expected)`: at most one ballot per worker, only from
    workers named in `expected` (the workers that should vote, in any order). The result depends
    only on the arguments (and, for a learning policy, on what it has learned): never on ballot
    order, dict order or randomness. `decide` may be called again after every new ballot; the
    first non-`Wait` answer is final for the item, later calls are allowed and never raise.
    """

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int: ...

    def decide(self, ballots: Sequence[Ballot], expected: Sequence[str]) -> Decision: ...


def final(policy: Policy, ballots: Sequence[Ballot], expected: Sequence[str]) -> Accept | Escalate:
    """The decision once no more votes will come (the wait is over): the policy's own, or
    Escalate(DEADLINE) where it would still wait. The one place the deadline rule is written."""
    decision = policy.decide(ballots, expected)
    if isinstance(decision, Wait):
        return Escalate(EscalationReason.DEADLINE)
    return decision


class Tally(NamedTuple):
    """The non-abstaining ballots of one label."""

    label: str
    votes: int
    total_confidence: float

    @property
    def mean_confidence(self) -> float:
        return self.total_confidence / self.votes


def tally(ballots: Iterable[Ballot]) -> list[Tally]:
    """Non-abstaining ballots grouped by label, best first: count, total confidence, name."""
    groups: dict[str, list[float]] = {}
    for ballot in ballots:
        if ballot.label is not None:
            groups.setdefault(ballot.label, []).append(ballot.confidence)
    # fsum is exactly rounded, so totals (and tie-breaks) do not depend on ballot order.
    tallies = [Tally(label, len(c), math.fsum(c)) for label, c in groups.items()]
    return sorted(tallies, key=lambda t: (-t.votes, -t.total_confidence, t.label))


def top_count(ballots: Iterable[Ballot]) -> int:
    """How many ballots the most-voted label has (0 if all abstained)."""
    tallies = tally(ballots)
    return tallies[0].votes if tallies else 0


def pending_workers(ballots: Sequence[Ballot], expected: Sequence[str]) -> list[str]:
    """Expected workers without a ballot yet, sorted (an abstention counts as cast)."""
    voted = {ballot.worker for ballot in ballots}
    return sorted(set(expected) - voted)


def check_quorum(quorum: int, workers: Sequence[str] | None, what: str = "quorum") -> None:
    """ValueError unless `quorum` is at least 1 and at most the size of the worker set (if given)."""
    if quorum < 1:
        raise ValueError(f"{what} must be at least 1, got {quorum}")
    if workers is not None and quorum > len(set(workers)):
        raise ValueError(f"{what} {quorum} exceeds the {len(set(workers))} expected workers")


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
    tallies = tally(ballots)
    if not tallies:
        return None
    return tallies[0].label, tallies[0].mean_confidence
