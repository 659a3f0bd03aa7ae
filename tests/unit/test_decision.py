"""Decision policies: branch tables per quorum shape, then hypothesis properties."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tribunal.consumers.decision import (
    Accept,
    Ballot,
    Criterion1,
    Criterion2,
    Decision,
    Escalate,
    Policy,
    Wait,
    WeightedVote,
    build_policy,
    plurality,
)
from tribunal.consumers.reliability import Reliability
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


def decide(policy: Policy, pattern: str, elapsed: float = BEFORE) -> Decision:
    ballots, workers = cast(pattern)
    return policy.decide(ballots, workers, elapsed)


def kind(decision: Decision) -> object:
    """A decision without its confidence, for comparing outcomes."""
    return ("accept", decision.label) if isinstance(decision, Accept) else decision


# quorum, pattern, elapsed, expected outcome (Accept carries the label only).
C1_TABLE = [
    # 2-of-3
    (2, "AA.", BEFORE, ("accept", "A")),
    (2, "A.A", BEFORE, ("accept", "A")),
    (2, "AAB", BEFORE, ("accept", "A")),
    (2, "BAA", BEFORE, ("accept", "A")),
    (2, "AAA", BEFORE, ("accept", "A")),
    (2, "AA-", BEFORE, ("accept", "A")),
    (2, "AA.", AFTER, ("accept", "A")),
    (2, "...", BEFORE, Wait()),
    (2, "...", AFTER, LATE),
    (2, "A..", BEFORE, Wait()),
    (2, "A..", AFTER, LATE),
    (2, "AB.", BEFORE, Wait()),
    (2, "AB.", AFTER, LATE),
    (2, "A-.", BEFORE, Wait()),
    (2, "-..", BEFORE, Wait()),
    (2, "ABC", BEFORE, DIS),
    (2, "ABC", AFTER, DIS),
    (2, "AB-", BEFORE, DIS),
    (2, "A--", BEFORE, DIS),
    (2, "--.", BEFORE, DIS),
    (2, "---", BEFORE, DIS),
    # 3-of-3
    (3, "AAA", BEFORE, ("accept", "A")),
    (3, "AA.", BEFORE, Wait()),
    (3, "AA.", AFTER, LATE),
    (3, "A..", BEFORE, Wait()),
    (3, "AAB", BEFORE, DIS),
    (3, "AA-", BEFORE, DIS),
    (3, "AB.", BEFORE, DIS),
    # 1-of-1
    (1, "A", BEFORE, ("accept", "A")),
    (1, "A", AFTER, ("accept", "A")),
    (1, "-", BEFORE, DIS),
    (1, ".", BEFORE, Wait()),
    (1, ".", AFTER, LATE),
    # 2-of-2
    (2, "AA", BEFORE, ("accept", "A")),
    (2, "AB", BEFORE, DIS),
    (2, "A-", BEFORE, DIS),
    (2, "A.", BEFORE, Wait()),
    (2, "A.", AFTER, LATE),
    # 3-of-5
    (3, "AAA..", BEFORE, ("accept", "A")),
    (3, "AAABB", BEFORE, ("accept", "A")),
    (3, "BBAAA", BEFORE, ("accept", "A")),
    (3, "AAB..", BEFORE, Wait()),
    (3, "AABB.", BEFORE, Wait()),
    (3, "AABB.", AFTER, LATE),
    (3, "ABC..", BEFORE, Wait()),
    (3, "ABCD.", BEFORE, DIS),
    (3, "AB--.", BEFORE, DIS),
    (3, "AABB-", BEFORE, DIS),
    (3, "AABBC", BEFORE, DIS),
    (3, "-----", BEFORE, DIS),
    # 2-of-5: two labels can both reach the quorum; equal confidence -> first by name.
    (2, "BBAA.", BEFORE, ("accept", "A")),
    (2, "BBAAA", BEFORE, ("accept", "A")),
    (2, "BBBAA", BEFORE, ("accept", "B")),
]


@pytest.mark.parametrize(("quorum", "pattern", "elapsed", "expected"), C1_TABLE)
def test_criterion1_table(quorum: int, pattern: str, elapsed: float, expected: object) -> None:
    """Criterion 1 accepts on quorum, escalates when impossible or late, else waits."""
    policy = Criterion1(quorum=quorum, deadline_ms=DEADLINE)
    assert kind(decide(policy, pattern, elapsed)) == expected


@pytest.mark.parametrize("elapsed", [DEADLINE, DEADLINE + 0.001, 1e12])
def test_deadline_is_inclusive(elapsed: float) -> None:
    """At or after exactly deadline_ms an undecided item escalates with DEADLINE."""
    assert decide(Criterion1(deadline_ms=DEADLINE), "A..", elapsed) == LATE


def test_wait_just_before_deadline() -> None:
    """Just before the deadline an undecided item still waits."""
    assert decide(Criterion1(deadline_ms=DEADLINE), "A..", DEADLINE - 1e-6) == Wait()


def test_accept_confidence_is_mean_of_agreeing_ballots() -> None:
    """Accept's confidence is the mean confidence of every ballot for the accepted label."""
    ballots = [Ballot("a", "X", 0.6), Ballot("b", "X", 0.8), Ballot("c", "Y", 0.99)]
    decision = Criterion1().decide(ballots, ["a", "b", "c"], 0.0)
    assert isinstance(decision, Accept)
    assert decision.label == "X"
    assert decision.confidence == pytest.approx(0.7)


def test_two_quorum_labels_tie_broken_by_total_confidence() -> None:
    """When two labels reach the quorum with equal counts, the more confident one wins."""
    ballots = [Ballot("a", "A", 0.5), Ballot("b", "A", 0.5)]
    ballots += [Ballot("c", "B", 0.6), Ballot("d", "B", 0.6)]
    decision = Criterion1(quorum=2).decide(ballots, ["a", "b", "c", "d"], 0.0)
    assert kind(decision) == ("accept", "B")


def test_quorum_above_expected_in_decide_escalates() -> None:
    """Without `workers`, a quorum the expected workers cannot reach escalates at once."""
    assert decide(Criterion1(quorum=3), "..") == DIS


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quorum": 4, "workers": ["a", "b", "c"]}, "exceeds"),
        ({"quorum": 0}, "at least 1"),
        ({"deadline_ms": -1.0}, "deadline_ms"),
        ({"deadline_ms": math.nan}, "deadline_ms"),
    ],
)
def test_criterion1_rejects_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    """Impossible quorums and negative or NaN deadlines are rejected at construction."""
    with pytest.raises(ValueError, match=message):
        Criterion1(**kwargs)  # type: ignore[arg-type]


def test_quorum_equal_to_workers_is_allowed() -> None:
    """A quorum equal to the number of workers (unanimity) is valid."""
    assert Criterion1(quorum=3, workers=["a", "b", "c"]).quorum == 3


@pytest.mark.parametrize("confidence", [-0.1, 1.1, math.nan])
def test_ballot_rejects_confidence_outside_unit_interval(confidence: float) -> None:
    """A ballot's confidence must lie in [0, 1]."""
    with pytest.raises(ValueError, match="confidence"):
        Ballot("a", "A", confidence)


PLURALITY_TABLE = [
    ([], None),
    ([("a", None, 0.9), ("b", None, 0.2)], None),
    ([("a", "A", 0.4), ("b", "A", 0.6), ("c", "B", 1.0)], ("A", 0.5)),
    ([("a", "A", 0.4), ("b", "B", 0.6)], ("B", 0.6)),
    ([("a", "B", 0.5), ("b", "A", 0.5)], ("A", 0.5)),
    ([("a", None, 1.0), ("b", "C", 0.3)], ("C", 0.3)),
]


@pytest.mark.parametrize(("raw", "expected"), PLURALITY_TABLE)
def test_plurality_table(raw: list[tuple[str, str | None, float]], expected: tuple[str, float] | None) -> None:
    """Plurality: most votes, then total confidence, then label name; None if all abstain."""
    result = plurality([Ballot(*b) for b in raw])
    if expected is None:
        assert result is None
    else:
        assert result is not None
        assert result[0] == expected[0]
        assert result[1] == pytest.approx(expected[1])


def test_build_policy_criterion1() -> None:
    """build_policy('criterion1') passes quorum and deadline through."""
    policy = build_policy("criterion1", quorum=3, deadline_ms=500)
    assert policy == Criterion1(quorum=3, deadline_ms=500)
    assert (policy.name, policy.version) == ("criterion1", 1)


def test_build_policy_unknown_name_lists_known() -> None:
    """An unknown policy name is a ValueError naming the known policies."""
    with pytest.raises(ValueError, match=r"unknown policy 'nope'.*criterion1.*criterion2.*weighted"):
        build_policy("nope", quorum=2, deadline_ms=2000)


def test_build_policy_unknown_option_is_type_error() -> None:
    """An option the policy does not take is a TypeError, not silently ignored."""
    with pytest.raises(TypeError):
        build_policy("criterion1", quorum=2, deadline_ms=2000, thresholds={})


# ---- hypothesis properties -------------------------------------------------------------------


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


def c1(s: Scenario) -> Criterion1:
    return Criterion1(quorum=s.quorum, deadline_ms=DEADLINE, workers=s.workers)


@given(scenarios())
def test_accept_label_has_quorum(s: Scenario) -> None:
    """(a) Criterion 1 only accepts a label with at least `quorum` ballots."""
    decision = c1(s).decide(s.ballots, s.workers, s.elapsed)
    if isinstance(decision, Accept):
        assert counts(s.ballots)[decision.label] >= s.quorum


@given(scenarios())
def test_quorum_reached_means_accept_of_a_top_label(s: Scenario) -> None:
    """(b) If some label reached the quorum, Criterion 1 accepts a label with the top count."""
    tally = counts(s.ballots)
    decision = c1(s).decide(s.ballots, s.workers, s.elapsed)
    if tally and max(tally.values()) >= s.quorum:
        assert isinstance(decision, Accept)
        assert tally[decision.label] == max(tally.values())


@given(scenarios())
def test_never_wait_once_everyone_voted(s: Scenario) -> None:
    """(c) Once every expected worker has voted, the decision is never Wait."""
    assert c1(s).decide(s.arrivals, s.workers, s.elapsed) != Wait()


@given(scenarios(), st.integers(1, 6))
def test_accept_and_disagreement_are_stable_under_more_ballots(s: Scenario, extra: int) -> None:
    """(d) Accept stays Accept and DISAGREEMENT stays DISAGREEMENT as more ballots arrive."""
    policy = c1(s)
    now = policy.decide(s.ballots, s.workers, s.elapsed)
    later = policy.decide(s.later(extra), s.workers, s.elapsed)
    if isinstance(now, Accept):
        assert isinstance(later, Accept)
        if 2 * s.quorum > len(s.workers):  # a strict majority cannot change hands
            assert later.label == now.label
    if now == DIS:
        assert later == DIS


@given(scenarios())
def test_never_wait_after_deadline(s: Scenario) -> None:
    """(e) At or after the deadline the decision is never Wait."""
    assert c1(s).decide(s.ballots, s.workers, DEADLINE + s.elapsed) != Wait()


@given(scenarios(), st.randoms(use_true_random=False))
def test_decision_ignores_ballot_and_worker_order(s: Scenario, rnd: random.Random) -> None:
    """Shuffling ballots and expected workers never changes the decision."""
    ballots, workers = list(s.ballots), list(s.workers)
    rnd.shuffle(ballots)
    rnd.shuffle(workers)
    assert c1(s).decide(ballots, workers, s.elapsed) == c1(s).decide(s.ballots, s.workers, s.elapsed)


@given(scenarios(), st.floats(0.0, 4 * DEADLINE))
def test_only_wait_and_deadline_depend_on_time(s: Scenario, other: float) -> None:
    """Accept and DISAGREEMENT do not depend on elapsed time; only Wait turns into DEADLINE."""
    a = c1(s).decide(s.ballots, s.workers, s.elapsed)
    b = c1(s).decide(s.ballots, s.workers, other)
    if a not in (Wait(), LATE):
        assert a == b


@given(scenarios())
def test_wait_means_quorum_still_reachable(s: Scenario) -> None:
    """Criterion 1 waits only before the deadline while some label can still reach the quorum."""
    if c1(s).decide(s.ballots, s.workers, s.elapsed) == Wait():
        pending = len(s.workers) - len(s.ballots)
        assert s.elapsed < DEADLINE
        assert max(counts(s.ballots).values(), default=0) + pending >= s.quorum


# ---- Criterion 2 ------------------------------------------------------------------------------


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
    policy = Criterion2(quorum=quorum, deadline_ms=DEADLINE)
    assert kind(policy.decide(ballots, workers, elapsed)) == expected


def test_criterion2_per_worker_threshold() -> None:
    """A worker's own threshold overrides the default."""
    ballots = [Ballot("a", "A", 0.9), Ballot("b", "A", 0.9)]
    strict = Criterion2(quorum=2, thresholds={"a": 0.95}, default_threshold=0.5)
    assert strict.decide(ballots, ["a", "b"], 0.0) == LOW
    assert kind(Criterion2(quorum=2).decide(ballots, ["a", "b"], 0.0)) == ("accept", "A")


def test_criterion2_threshold_is_inclusive() -> None:
    """A confidence exactly equal to the threshold counts as confident."""
    ballots = [Ballot("a", "A", 0.5), Ballot("b", "A", 0.5)]
    assert kind(Criterion2(quorum=2).decide(ballots, ["a", "b"], 0.0)) == ("accept", "A")


def test_criterion2_confidence_is_mean_of_confident_ballots() -> None:
    """Criterion 2's Accept confidence averages only the confident agreeing ballots."""
    ballots, workers = cast2("AAa")
    decision = Criterion2(quorum=2).decide(ballots, workers, 0.0)
    assert isinstance(decision, Accept)
    assert decision.confidence == pytest.approx(0.9)


@pytest.mark.parametrize("kwargs", [{"thresholds": {"a": 1.5}}, {"default_threshold": -0.1}])
def test_criterion2_rejects_bad_thresholds(kwargs: dict[str, object]) -> None:
    """Thresholds outside [0, 1] are rejected at construction."""
    with pytest.raises(ValueError, match="threshold"):
        Criterion2(**kwargs)  # type: ignore[arg-type]


def test_build_policy_criterion2_passes_thresholds() -> None:
    """build_policy('criterion2') forwards thresholds and the default threshold."""
    policy = build_policy("criterion2", quorum=2, deadline_ms=100, thresholds={"a": 0.7})
    assert policy == Criterion2(2, 100, thresholds={"a": 0.7})


@st.composite
def thresholds_for(draw: st.DrawFn, s: Scenario) -> dict[str, float]:
    return {w: draw(st.floats(0.0, 1.0)) for w in s.workers}


def c2(s: Scenario, thresholds: dict[str, float]) -> Criterion2:
    return Criterion2(s.quorum, DEADLINE, thresholds=thresholds, workers=s.workers)


@given(scenarios())
def test_criterion2_with_zero_thresholds_is_criterion1(s: Scenario) -> None:
    """With every threshold at 0, Criterion 2 decides exactly like Criterion 1."""
    zero = Criterion2(s.quorum, DEADLINE, default_threshold=0.0)
    assert zero.decide(s.ballots, s.workers, s.elapsed) == c1(s).decide(s.ballots, s.workers, s.elapsed)


@given(st.data())
def test_criterion2_relates_to_criterion1(data: st.DataObject) -> None:
    """C2 accepts only if C1 does, escalates DISAGREEMENT iff C1 does, never waits if C1 decides."""
    s = data.draw(scenarios())
    policy = c2(s, data.draw(thresholds_for(s)))
    two = policy.decide(s.ballots, s.workers, s.elapsed)
    one = c1(s).decide(s.ballots, s.workers, s.elapsed)
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
    assert policy.decide(s.arrivals, s.workers, s.elapsed) != Wait()
    assert policy.decide(s.ballots, s.workers, DEADLINE + s.elapsed) != Wait()


@given(st.data())
def test_criterion2_decisions_survive_more_ballots(data: st.DataObject) -> None:
    """Under Criterion 2, Accept stays Accept and an early escalation stays an escalation."""
    s = data.draw(scenarios())
    policy = c2(s, data.draw(thresholds_for(s)))
    now = policy.decide(s.ballots, s.workers, s.elapsed)
    later = policy.decide(s.later(data.draw(st.integers(1, 6))), s.workers, s.elapsed)
    if isinstance(now, Accept):
        assert isinstance(later, Accept)
    if now in (LOW, DIS):
        assert later in (LOW, DIS)


# ---- weighted vote ----------------------------------------------------------------------------


def weighted(labels: str = "AB", **kwargs: Any) -> WeightedVote:
    return WeightedVote(Reliability(labels), deadline_ms=DEADLINE, **kwargs)


# labels, pattern, elapsed, expected outcome; cold start (every worker ~0.8 accurate).
WEIGHTED_TABLE = [
    ("AB", "AA.", BEFORE, ("accept", "A")),
    ("AB", "AAA", BEFORE, ("accept", "A")),
    ("AB", "AAB", BEFORE, ("accept", "A")),
    ("AB", "A-A", BEFORE, ("accept", "A")),
    ("AB", "AB.", BEFORE, Wait()),
    ("AB", "AB.", AFTER, LATE),
    ("AB", "A..", BEFORE, Wait()),
    ("AB", "A..", AFTER, LATE),
    ("AB", "AB-", BEFORE, LOW),
    ("AB", "A--", BEFORE, LOW),
    ("AB", "--.", BEFORE, LOW),
    ("AB", "---", BEFORE, LOW),
    ("ABC", "ABC", BEFORE, LOW),
    ("ABC", "AAC", BEFORE, ("accept", "A")),
    # Z is outside the label set: ignored like an abstention.
    ("AB", "AZ.", BEFORE, Wait()),
    ("AB", "AZA", BEFORE, ("accept", "A")),
    ("AB", "AZB", BEFORE, LOW),
    # 5 workers, 2 votes needed: a net lead of 2 suffices, 1-1 with 3 pending waits.
    ("AB", "AA...", BEFORE, ("accept", "A")),
    ("AB", "AB...", BEFORE, Wait()),
    ("AB", "ABAB-", BEFORE, LOW),
]


@pytest.mark.parametrize(("labels", "pattern", "elapsed", "expected"), WEIGHTED_TABLE)
def test_weighted_cold_start_table(labels: str, pattern: str, elapsed: float, expected: object) -> None:
    """At cold start the weighted vote accepts a net lead of votes and escalates otherwise."""
    assert kind(decide(weighted(labels), pattern, elapsed)) == expected


def test_weighted_accept_confidence_is_posterior() -> None:
    """Weighted Accept's confidence is the posterior: 0.8 for a 2-1 split of 2 labels."""
    decision = decide(weighted(), "AAB")
    assert isinstance(decision, Accept)
    assert decision.confidence == pytest.approx(0.8)


def test_weighted_escalates_early_when_threshold_out_of_reach() -> None:
    """With one worker pending, a 2-2 tie cannot reach a 0.99 posterior: escalate now."""
    assert decide(weighted(threshold=0.99), "ABAB.") == LOW


def test_weighted_min_votes_one_accepts_single_vote() -> None:
    """min_votes=1 lets a single vote pass when its posterior clears the threshold."""
    assert kind(decide(weighted(min_votes=1), "A..")) == ("accept", "A")


@pytest.mark.parametrize("kwargs", [{"threshold": 0.5}, {"threshold": 1.01}, {"min_votes": 0}])
def test_weighted_rejects_bad_parameters(kwargs: dict[str, Any]) -> None:
    """Thresholds outside (0.5, 1] and min_votes below 1 are rejected."""
    with pytest.raises(ValueError, match=r"threshold|min_votes"):
        weighted(**kwargs)


def test_build_policy_weighted_from_labels_maps_quorum_to_min_votes() -> None:
    """build_policy('weighted', labels=...) makes a fresh Reliability; quorum is min_votes."""
    policy = build_policy("weighted", quorum=3, deadline_ms=100, labels=["A", "B"])
    assert isinstance(policy, WeightedVote)
    assert (policy.min_votes, policy.deadline_ms, policy.reliability.labels) == (3, 100, ("A", "B"))


def test_build_policy_weighted_shares_given_reliability() -> None:
    """build_policy('weighted', reliability=r) uses r itself, so the caller's updates apply."""
    reliability = Reliability(["A", "B"])
    policy = build_policy("weighted", quorum=2, deadline_ms=100, reliability=reliability)
    assert isinstance(policy, WeightedVote)
    assert policy.reliability is reliability


@pytest.mark.parametrize("options", [{}, {"labels": ["A"], "reliability": Reliability(["A"])}])
def test_build_policy_weighted_needs_one_source(options: dict[str, object]) -> None:
    """The weighted policy needs exactly one of `labels` or `reliability`."""
    with pytest.raises(ValueError, match="exactly one"):
        build_policy("weighted", quorum=2, deadline_ms=100, **options)


@st.composite
def three_worker_scenarios(draw: st.DrawFn) -> tuple[Scenario, str]:
    labels = "ABCDE"[: draw(st.integers(2, 5))]
    workers = ["w0", "w1", "w2"]
    choice = st.sampled_from([None, *labels])
    eventual = [Ballot(w, draw(choice), draw(st.floats(0.0, 1.0))) for w in workers]
    s = Scenario(
        quorum=2,
        workers=workers,
        arrivals=draw(st.permutations(eventual)),
        arrived=draw(st.integers(0, 3)),
        elapsed=draw(st.floats(0.0, 2 * DEADLINE)),
    )
    return s, labels


@given(three_worker_scenarios())
def test_weighted_cold_start_matches_criterion1_on_three_workers(
    case: tuple[Scenario, str],
) -> None:
    """(f) Cold-start weighted decides like Criterion 1 (2 of 3); its DISAGREEMENT is LOW."""
    s, labels = case
    one = kind(c1(s).decide(s.ballots, s.workers, s.elapsed))
    two = kind(weighted(labels).decide(s.ballots, s.workers, s.elapsed))
    assert two == (LOW if one == DIS else one)


@given(scenarios())
def test_weighted_never_waits_when_all_voted_or_late(s: Scenario) -> None:
    """The weighted vote never waits once everyone voted or the deadline passed."""
    policy = weighted("ABC")
    assert policy.decide(s.arrivals, s.workers, s.elapsed) != Wait()
    assert policy.decide(s.ballots, s.workers, DEADLINE + s.elapsed) != Wait()


@given(scenarios(), st.randoms(use_true_random=False))
def test_weighted_ignores_ballot_and_worker_order(s: Scenario, rnd: random.Random) -> None:
    """Shuffling ballots and expected workers never changes the weighted decision."""
    policy = weighted("ABC")
    ballots, workers = list(s.ballots), list(s.workers)
    rnd.shuffle(ballots)
    rnd.shuffle(workers)
    assert policy.decide(ballots, workers, s.elapsed) == policy.decide(s.ballots, s.workers, s.elapsed)
