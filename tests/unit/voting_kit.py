"""Shared helpers of the voting policy tests: ballot patterns, the deadline, hypothesis scenarios."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from tribunal.consumers.policy.ballots import Accept, Ballot, Decision, Escalate, Policy, final
from tribunal.consumers.policy.voting import Majority
from tribunal.schemas.messages import EscalationReason

DEADLINE = 2000.0
BEFORE = DEADLINE - 1.0
AFTER = DEADLINE + 1.0
DIS = Escalate(EscalationReason.DISAGREEMENT)
LOW = Escalate(EscalationReason.LOW_CONFIDENCE)
LATE = Escalate(EscalationReason.DEADLINE)


def cast(pattern: str, confidence: float = 0.9) -> tuple[list[Ballot], list[str]]:
    """Ballots and expected workers from a pattern: a letter votes, '-' abstains, '.' pending."""
    workers = [f"w{i}" for i in range(len(pattern))]
    ballots = [
        Ballot(w, None if c == "-" else c, confidence) for w, c in zip(workers, pattern, strict=True) if c != "."
    ]
    return ballots, workers


def decide_at(policy: Policy, ballots: list[Ballot], workers: list[str], elapsed: float) -> Decision:
    """What the aggregator does at `elapsed` ms: ask the policy, or once the wait is over (the
    straggler rule's deadline, DEADLINE here) take `final`, which turns a Wait into DEADLINE."""
    return final(policy, ballots, workers) if elapsed >= DEADLINE else policy.decide(ballots, workers)


def decide(policy: Policy, pattern: str, elapsed: float = BEFORE) -> Decision:
    ballots, workers = cast(pattern)
    return decide_at(policy, ballots, workers, elapsed)


def kind(decision: Decision) -> object:
    """A decision without its confidence, for comparing outcomes."""
    return ("accept", decision.label) if isinstance(decision, Accept) else decision


@dataclass(frozen=True)
class Scenario:
    """A worker set, every worker's eventual ballot in arrival order, and how many have arrived."""

    quorum: int
    workers: list[str]
    arrivals: list[Ballot]
    arrived: int
    elapsed: float

    @property
    def ballots(self) -> list[Ballot]:
        return self.arrivals[: self.arrived]

    def later(self, extra: int) -> list[Ballot]:
        return self.arrivals[: min(len(self.arrivals), self.arrived + extra)]


@st.composite
def scenarios(draw: st.DrawFn, max_workers: int = 6) -> Scenario:
    n = draw(st.integers(1, max_workers))
    workers = [f"w{i}" for i in range(n)]
    labels = st.sampled_from([None, "A", "B", "C"])
    confidences = st.floats(0.0, 1.0)
    eventual = [Ballot(w, draw(labels), draw(confidences)) for w in workers]
    return Scenario(
        quorum=draw(st.integers(1, n)),
        workers=workers,
        arrivals=draw(st.permutations(eventual)),
        arrived=draw(st.integers(0, n)),
        elapsed=draw(st.floats(0.0, 2 * DEADLINE)),
    )


def counts(ballots: list[Ballot]) -> dict[str, int]:
    out: dict[str, int] = {}
    for b in ballots:
        if b.label is not None:
            out[b.label] = out.get(b.label, 0) + 1
    return out


def c1(s: Scenario) -> Majority:
    return Majority(quorum=s.quorum, workers=s.workers)
