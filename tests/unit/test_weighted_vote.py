"""The reliability-weighted vote: cold-start tables, building, hypothesis properties."""

from __future__ import annotations

import random
from typing import Any

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
    decide,
    decide_at,
    kind,
    scenarios,
)
from tribunal.consumers.policy.ballots import Accept, Ballot, Wait
from tribunal.consumers.policy.reliability import Reliability
from tribunal.consumers.policy.voting import WeightedVote, build_policy


def weighted(labels: str = "AB", **kwargs: Any) -> WeightedVote:
    return WeightedVote(Reliability(labels), **kwargs)


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
    policy = build_policy("weighted", quorum=3, labels=["A", "B"])
    assert isinstance(policy, WeightedVote)
    assert (policy.min_votes, policy.reliability.labels) == (3, ("A", "B"))


def test_build_policy_weighted_shares_given_reliability() -> None:
    """build_policy('weighted', reliability=r) uses r itself, so the caller's updates apply."""
    reliability = Reliability(["A", "B"])
    policy = build_policy("weighted", quorum=2, reliability=reliability)
    assert isinstance(policy, WeightedVote)
    assert policy.reliability is reliability


@pytest.mark.parametrize("options", [{}, {"labels": ["A"], "reliability": Reliability(["A"])}])
def test_build_policy_weighted_needs_one_source(options: dict[str, object]) -> None:
    """The weighted policy needs exactly one of `labels` or `reliability`."""
    with pytest.raises(ValueError, match="exactly one"):
        build_policy("weighted", quorum=2, **options)


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
    one = kind(decide_at(c1(s), s.ballots, s.workers, s.elapsed))
    two = kind(decide_at(weighted(labels), s.ballots, s.workers, s.elapsed))
    assert two == (LOW if one == DIS else one)


@given(scenarios())
def test_weighted_never_waits_when_all_voted_or_late(s: Scenario) -> None:
    """The weighted vote never waits once everyone voted or the deadline passed."""
    policy = weighted("ABC")
    assert decide_at(policy, s.arrivals, s.workers, s.elapsed) != Wait()
    assert decide_at(policy, s.ballots, s.workers, DEADLINE + s.elapsed) != Wait()


@given(scenarios(), st.randoms(use_true_random=False))
def test_weighted_ignores_ballot_and_worker_order(s: Scenario, rnd: random.Random) -> None:
    """Shuffling ballots and expected workers never changes the weighted decision."""
    policy = weighted("ABC")
    ballots, workers = list(s.ballots), list(s.workers)
    rnd.shuffle(ballots)
    rnd.shuffle(workers)
    assert decide_at(policy, ballots, workers, s.elapsed) == decide_at(policy, s.ballots, s.workers, s.elapsed)
