"""The majority vote (the paper's Criterion 1), ballots and `final`: branch tables, then hypothesis properties."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.voting_kit import (
    AFTER,
    BEFORE,
    DEADLINE,
    DIS,
    LATE,
    Scenario,
    c1,
    counts,
    decide,
    decide_at,
    kind,
    scenarios,
)
from tribunal.consumers.policy.ballots import Accept, Ballot, Wait, plurality
from tribunal.consumers.policy.voting import Majority, build_policy

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
    policy = Majority(quorum=quorum)
    assert kind(decide(policy, pattern, elapsed)) == expected


@pytest.mark.parametrize("elapsed", [DEADLINE, DEADLINE + 0.001, 1e12])
def test_deadline_is_inclusive(elapsed: float) -> None:
    """At or after exactly deadline_ms an undecided item escalates with DEADLINE."""
    assert decide(Majority(), "A..", elapsed) == LATE


def test_wait_just_before_deadline() -> None:
    """Just before the deadline an undecided item still waits."""
    assert decide(Majority(), "A..", DEADLINE - 1e-6) == Wait()


def test_accept_confidence_is_mean_of_agreeing_ballots() -> None:
    """Accept's confidence is the mean confidence of every ballot for the accepted label."""
    ballots = [Ballot("a", "X", 0.6), Ballot("b", "X", 0.8), Ballot("c", "Y", 0.99)]
    decision = Majority().decide(ballots, ["a", "b", "c"])
    assert isinstance(decision, Accept)
    assert decision.label == "X"
    assert decision.confidence == pytest.approx(0.7)


def test_two_quorum_labels_tie_broken_by_total_confidence() -> None:
    """When two labels reach the quorum with equal counts, the more confident one wins."""
    ballots = [Ballot("a", "A", 0.5), Ballot("b", "A", 0.5)]
    ballots += [Ballot("c", "B", 0.6), Ballot("d", "B", 0.6)]
    decision = Majority(quorum=2).decide(ballots, ["a", "b", "c", "d"])
    assert kind(decision) == ("accept", "B")


def test_quorum_above_expected_in_decide_escalates() -> None:
    """Without `workers`, a quorum the expected workers cannot reach escalates at once."""
    assert decide(Majority(quorum=3), "..") == DIS


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quorum": 4, "workers": ["a", "b", "c"]}, "exceeds"),
        ({"quorum": 0}, "at least 1"),
    ],
)
def test_criterion1_rejects_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    """Impossible quorums are rejected at construction."""
    with pytest.raises(ValueError, match=message):
        Majority(**kwargs)  # type: ignore[arg-type]


def test_quorum_equal_to_workers_is_allowed() -> None:
    """A quorum equal to the number of workers (unanimity) is valid."""
    assert Majority(quorum=3, workers=["a", "b", "c"]).quorum == 3


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
    """build_policy takes the paper's name `criterion1` as an alias of `majority`."""
    policy = build_policy("criterion1", quorum=3)
    assert policy == Majority(quorum=3)
    assert (policy.name, policy.version) == ("majority", 1)


def test_build_policy_unknown_name_lists_known() -> None:
    """An unknown policy name is a ValueError naming the known policies."""
    with pytest.raises(ValueError, match=r"unknown policy 'nope'.*majority.*confident_majority.*weighted"):
        build_policy("nope", quorum=2)


def test_build_policy_unknown_option_is_type_error() -> None:
    """An option the policy does not take is a TypeError, not silently ignored."""
    with pytest.raises(TypeError):
        build_policy("criterion1", quorum=2, thresholds={})


@given(scenarios())
def test_accept_label_has_quorum(s: Scenario) -> None:
    """(a) Criterion 1 only accepts a label with at least `quorum` ballots."""
    decision = decide_at(c1(s), s.ballots, s.workers, s.elapsed)
    if isinstance(decision, Accept):
        assert counts(s.ballots)[decision.label] >= s.quorum


@given(scenarios())
def test_quorum_reached_means_accept_of_a_top_label(s: Scenario) -> None:
    """(b) If some label reached the quorum, Criterion 1 accepts a label with the top count."""
    tally = counts(s.ballots)
    decision = decide_at(c1(s), s.ballots, s.workers, s.elapsed)
    if tally and max(tally.values()) >= s.quorum:
        assert isinstance(decision, Accept)
        assert tally[decision.label] == max(tally.values())


@given(scenarios())
def test_never_wait_once_everyone_voted(s: Scenario) -> None:
    """(c) Once every expected worker has voted, the decision is never Wait."""
    assert decide_at(c1(s), s.arrivals, s.workers, s.elapsed) != Wait()


@given(scenarios(), st.integers(1, 6))
def test_accept_and_disagreement_are_stable_under_more_ballots(s: Scenario, extra: int) -> None:
    """(d) Accept stays Accept and DISAGREEMENT stays DISAGREEMENT as more ballots arrive."""
    policy = c1(s)
    now = decide_at(policy, s.ballots, s.workers, s.elapsed)
    later = decide_at(policy, s.later(extra), s.workers, s.elapsed)
    if isinstance(now, Accept):
        assert isinstance(later, Accept)
        if 2 * s.quorum > len(s.workers):  # a strict majority cannot change hands
            assert later.label == now.label
    if now == DIS:
        assert later == DIS


@given(scenarios())
def test_never_wait_after_deadline(s: Scenario) -> None:
    """(e) At or after the deadline the decision is never Wait."""
    assert decide_at(c1(s), s.ballots, s.workers, DEADLINE + s.elapsed) != Wait()


@given(scenarios(), st.randoms(use_true_random=False))
def test_decision_ignores_ballot_and_worker_order(s: Scenario, rnd: random.Random) -> None:
    """Shuffling ballots and expected workers never changes the decision."""
    ballots, workers = list(s.ballots), list(s.workers)
    rnd.shuffle(ballots)
    rnd.shuffle(workers)
    assert decide_at(c1(s), ballots, workers, s.elapsed) == decide_at(c1(s), s.ballots, s.workers, s.elapsed)


@given(scenarios(), st.floats(0.0, 4 * DEADLINE))
def test_only_wait_and_deadline_depend_on_time(s: Scenario, other: float) -> None:
    """Accept and DISAGREEMENT do not depend on elapsed time; only Wait turns into DEADLINE."""
    a = decide_at(c1(s), s.ballots, s.workers, s.elapsed)
    b = decide_at(c1(s), s.ballots, s.workers, other)
    if a not in (Wait(), LATE):
        assert a == b


@given(scenarios())
def test_wait_means_quorum_still_reachable(s: Scenario) -> None:
    """Criterion 1 waits only before the deadline while some label can still reach the quorum."""
    if decide_at(c1(s), s.ballots, s.workers, s.elapsed) == Wait():
        pending = len(s.workers) - len(s.ballots)
        assert s.elapsed < DEADLINE
        assert max(counts(s.ballots).values(), default=0) + pending >= s.quorum
