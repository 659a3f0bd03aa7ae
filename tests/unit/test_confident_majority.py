"""The confident majority (the paper's Criterion 2): branch tables, then hypothesis properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.voting_kit import (
    AFTER,
    BEFORE,
    DEADLINE,
    DIS,
    LATE,
    LOW,
    Scenario,
    c1,
    decide_at,
    kind,
    scenarios,
)
from tribunal.consumers.policy.ballots import Accept, Ballot, Wait
from tribunal.consumers.policy.voting import ConfidentMajority, build_policy


def cast2(pattern: str) -> tuple[list[Ballot], list[str]]:
    """Like `cast`, but an upper-case letter is confident (0.9) and lower-case is not (0.3)."""
    workers = [f"w{i}" for i in range(len(pattern))]
    ballots = [
        Ballot(w, None if c == "-" else c.upper(), 0.9 if c.isupper() else 0.3)
        for w, c in zip(workers, pattern, strict=True)
        if c != "."
    ]
    return ballots, workers


C2_TABLE = [
    # 2-of-3
    (2, "AA.", BEFORE, ("accept", "A")),
    (2, "AaA", BEFORE, ("accept", "A")),
    (2, "aBB", BEFORE, ("accept", "B")),
    (2, "Aa.", BEFORE, Wait()),
    (2, "Aa.", AFTER, LATE),
    (2, "aB.", BEFORE, Wait()),
    (2, "a..", BEFORE, Wait()),
    (2, "Aaa", BEFORE, LOW),
    (2, "aa.", BEFORE, LOW),
    (2, "ab.", BEFORE, LOW),
    (2, "aa.", AFTER, LOW),
    (2, "ABC", BEFORE, DIS),
    (2, "AB-", BEFORE, DIS),
    (2, "Ab-", BEFORE, DIS),
    (2, "---", BEFORE, DIS),
    # 3-of-3
    (3, "AAA", BEFORE, ("accept", "A")),
    (3, "AAa", BEFORE, LOW),
    (3, "AAb", BEFORE, DIS),
    (3, "AA.", BEFORE, Wait()),
    # 1-of-1
    (1, "A", BEFORE, ("accept", "A")),
    (1, "a", BEFORE, LOW),
    (1, "-", BEFORE, DIS),
    (1, ".", AFTER, LATE),
    # 2-of-2
    (2, "Aa", BEFORE, LOW),
    (2, "AB", BEFORE, DIS),
    (2, "A.", BEFORE, Wait()),
    # 3-of-5
    (3, "AAA..", BEFORE, ("accept", "A")),
    (3, "AAa..", BEFORE, Wait()),
    (3, "AAa..", AFTER, LATE),
    (3, "aaa..", BEFORE, LOW),
    (3, "abc..", BEFORE, LOW),
    (3, "AAaBB", BEFORE, LOW),
    (3, "abcd.", BEFORE, DIS),
]


@pytest.mark.parametrize(("quorum", "pattern", "elapsed", "expected"), C2_TABLE)
def test_criterion2_table(quorum: int, pattern: str, elapsed: float, expected: object) -> None:
    """Criterion 2 counts confident votes; LOW_CONFIDENCE when only confidence blocks."""
    ballots, workers = cast2(pattern)
    policy = ConfidentMajority(quorum=quorum)
    assert kind(decide_at(policy, ballots, workers, elapsed)) == expected


def test_criterion2_per_worker_threshold() -> None:
    """A worker's own threshold overrides the default."""
    ballots = [Ballot("a", "A", 0.9), Ballot("b", "A", 0.9)]
    strict = ConfidentMajority(quorum=2, thresholds={"a": 0.95}, default_threshold=0.5)
    assert strict.decide(ballots, ["a", "b"]) == LOW
    assert kind(ConfidentMajority(quorum=2).decide(ballots, ["a", "b"])) == ("accept", "A")


def test_criterion2_threshold_is_inclusive() -> None:
    """A confidence exactly equal to the threshold counts as confident."""
    ballots = [Ballot("a", "A", 0.5), Ballot("b", "A", 0.5)]
    assert kind(ConfidentMajority(quorum=2).decide(ballots, ["a", "b"])) == ("accept", "A")


def test_criterion2_confidence_is_mean_of_confident_ballots() -> None:
    """Criterion 2's Accept confidence averages only the confident agreeing ballots."""
    ballots, workers = cast2("AAa")
    decision = ConfidentMajority(quorum=2).decide(ballots, workers)
    assert isinstance(decision, Accept)
    assert decision.confidence == pytest.approx(0.9)


@pytest.mark.parametrize("kwargs", [{"thresholds": {"a": 1.5}}, {"default_threshold": -0.1}])
def test_criterion2_rejects_bad_thresholds(kwargs: dict[str, object]) -> None:
    """Thresholds outside [0, 1] are rejected at construction."""
    with pytest.raises(ValueError, match="threshold"):
        ConfidentMajority(**kwargs)  # type: ignore[arg-type]


def test_build_policy_criterion2_passes_thresholds() -> None:
    """build_policy('criterion2') forwards thresholds and the default threshold."""
    policy = build_policy("criterion2", quorum=2, thresholds={"a": 0.7})
    assert policy == ConfidentMajority(2, thresholds={"a": 0.7})


@st.composite
def thresholds_for(draw: st.DrawFn, s: Scenario) -> dict[str, float]:
    return {w: draw(st.floats(0.0, 1.0)) for w in s.workers}


def c2(s: Scenario, thresholds: dict[str, float]) -> ConfidentMajority:
    return ConfidentMajority(s.quorum, thresholds=thresholds, workers=s.workers)


@given(scenarios())
def test_criterion2_with_zero_thresholds_is_criterion1(s: Scenario) -> None:
    """With every threshold at 0, Criterion 2 decides exactly like Criterion 1."""
    zero = ConfidentMajority(s.quorum, default_threshold=0.0)
    assert decide_at(zero, s.ballots, s.workers, s.elapsed) == decide_at(c1(s), s.ballots, s.workers, s.elapsed)


@given(st.data())
def test_criterion2_relates_to_criterion1(data: st.DataObject) -> None:
    """C2 accepts only if C1 does, escalates DISAGREEMENT iff C1 does, never waits if C1 decides."""
    s = data.draw(scenarios())
    policy = c2(s, data.draw(thresholds_for(s)))
    two = decide_at(policy, s.ballots, s.workers, s.elapsed)
    one = decide_at(c1(s), s.ballots, s.workers, s.elapsed)
    if isinstance(two, Accept):
        assert isinstance(one, Accept)
        assert sum(b.label == two.label and b.confidence >= policy.threshold(b.worker) for b in s.ballots) >= s.quorum
    assert (two == DIS) == (one == DIS)
    if one == Wait():
        assert two in (Wait(), LOW)


@given(st.data())
def test_criterion2_never_waits_when_all_voted_or_late(data: st.DataObject) -> None:
    """Criterion 2 never waits once everyone voted or the deadline passed."""
    s = data.draw(scenarios())
    policy = c2(s, data.draw(thresholds_for(s)))
    assert decide_at(policy, s.arrivals, s.workers, s.elapsed) != Wait()
    assert decide_at(policy, s.ballots, s.workers, DEADLINE + s.elapsed) != Wait()


@given(st.data())
def test_criterion2_decisions_survive_more_ballots(data: st.DataObject) -> None:
    """Under Criterion 2, Accept stays Accept and an early escalation stays an escalation."""
    s = data.draw(scenarios())
    policy = c2(s, data.draw(thresholds_for(s)))
    now = decide_at(policy, s.ballots, s.workers, s.elapsed)
    later = decide_at(policy, s.later(data.draw(st.integers(1, 6))), s.workers, s.elapsed)
    if isinstance(now, Accept):
        assert isinstance(later, Accept)
    if now in (LOW, DIS):
        assert later in (LOW, DIS)
