"""Online worker reliability: the prior, learning, the posterior and its bound, persistence."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tribunal.consumers.policy.ballots import Accept, Ballot, Escalate
from tribunal.consumers.policy.reliability import FORMAT, Reliability
from tribunal.consumers.policy.voting import WeightedVote
from tribunal.schemas.messages import EscalationReason

LABELS = ("neg", "neu", "pos")


def trained(history: list[tuple[list[Ballot], str]], labels: tuple[str, ...] = LABELS) -> Reliability:
    reliability = Reliability(labels)
    for ballots, truth in history:
        reliability.update(ballots, truth)
    return reliability


def teach_right_and_wrong(reliability: Reliability, rounds: int = 200) -> None:
    """Worker 'good' always votes the truth, 'bad' always votes the next label round."""
    labels = reliability.labels
    for i in range(rounds):
        truth, wrong = labels[i % len(labels)], labels[(i + 1) % len(labels)]
        reliability.update([Ballot("good", truth, 0.9), Ballot("bad", wrong, 0.9)], truth)


# ---- prior and construction -------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 5])
def test_cold_start_worker_is_prior_accurate(k: int) -> None:
    """An unseen worker is prior_accuracy right, its errors spread evenly over other labels."""
    reliability = Reliability([f"l{i}" for i in range(k)])
    assert reliability.likelihood("new", "l0", "l0") == pytest.approx(0.8)
    assert reliability.likelihood("new", "l0", "l1") == pytest.approx(0.2 / (k - 1))
    assert reliability.accuracy("new") == pytest.approx(0.8)


def test_prior_strength_is_ten_items_per_true_label() -> None:
    """Ten judged items of a worker weigh as much as the prior: 10 wrong halve its accuracy."""
    reliability = Reliability(["a", "b"])
    for _ in range(10):
        reliability.update([Ballot("w", "b", 1.0)], "a")
    assert reliability.likelihood("w", "a", "a") == pytest.approx(0.4)


def test_single_label_posterior_is_certain() -> None:
    """With one label every worker is always right and the posterior is 1."""
    reliability = Reliability(["only"])
    assert reliability.posterior([Ballot("w", "only", 0.5)]) == {"only": 1.0}


@pytest.mark.parametrize(
    ("labels", "kwargs"),
    [
        ([], {}),
        (["a"], {"prior_accuracy": 1.0}),
        (["a"], {"prior_accuracy": 0.0}),
        (["a"], {"prior_strength": 0.0}),
        (["a"], {"prior_strength": math.nan}),
    ],
)
def test_constructor_rejects_bad_parameters(labels: list[str], kwargs: dict[str, Any]) -> None:
    """Empty label sets, accuracies outside (0, 1) and non-positive strengths are rejected."""
    with pytest.raises(ValueError, match=r"label|prior"):
        Reliability(labels, **kwargs)


# ---- learning ---------------------------------------------------------------------------------


def test_reliability_learns_who_is_right() -> None:
    """(g) After many verdicts, the always-right worker is > 0.9 accurate, the always-wrong < 0.3."""
    reliability = Reliability(LABELS)
    teach_right_and_wrong(reliability)
    assert reliability.accuracy("good") > 0.9
    assert reliability.accuracy("bad") < 0.3


def test_learned_disagreement_resolves_to_the_reliable_worker() -> None:
    """(g) A 1-1 split between the reliable and the unreliable worker accepts the reliable label."""
    reliability = Reliability(LABELS)
    teach_right_and_wrong(reliability)
    policy = WeightedVote(reliability, min_votes=2)
    ballots = [Ballot("good", "pos", 0.6), Ballot("bad", "neg", 0.9)]
    decision = policy.decide(ballots, ["good", "bad"])
    assert isinstance(decision, Accept)
    assert decision.label == "pos"


def test_cold_start_same_split_escalates() -> None:
    """Before learning, the same 1-1 split is a coin toss and escalates."""
    policy = WeightedVote(Reliability(LABELS), min_votes=2)
    ballots = [Ballot("good", "pos", 0.6), Ballot("bad", "neg", 0.9)]
    decision = policy.decide(ballots, ["good", "bad"])
    assert decision == Escalate(EscalationReason.LOW_CONFIDENCE)


def test_unknown_true_label_is_ignored() -> None:
    """A verdict outside the label set changes nothing and reports False."""
    reliability = Reliability(LABELS)
    before = reliability.to_dict()
    assert reliability.update([Ballot("w", "pos", 0.9)], "sarcastic") is False
    assert reliability.to_dict() == before


def test_abstentions_and_unknown_votes_are_not_counted() -> None:
    """Abstentions and out-of-set votes add no confusion counts, so memory stays bounded."""
    reliability = Reliability(LABELS)
    assert reliability.update([Ballot("a", None, 0.0), Ballot("b", "weird", 0.9)], "pos")
    assert reliability.to_dict()["counts"] == {}
    assert reliability.workers == ()


def test_class_prior_is_laplace_smoothed_frequency() -> None:
    """The class prior is (verdicts of the label + 1) / (verdicts + labels)."""
    reliability = trained([([], "pos"), ([], "pos"), ([], "neg")])
    assert reliability.class_prior("pos") == pytest.approx(3 / 6)
    assert reliability.class_prior("neu") == pytest.approx(1 / 6)


def test_learned_class_prior_tips_an_even_split() -> None:
    """With use_class_prior, a 1-1 split between equal workers leans to the frequent class."""
    reliability = trained([([], "pos")] * 50)
    ballots = [Ballot("a", "pos", 0.9), Ballot("b", "neg", 0.9)]
    posterior = reliability.posterior(ballots, use_class_prior=True)
    assert posterior["pos"] > posterior["neg"]
    assert reliability.posterior(ballots)["pos"] == pytest.approx(posterior_uniform_pos(ballots))


def posterior_uniform_pos(ballots: list[Ballot]) -> float:
    return Reliability(LABELS).posterior(ballots)["pos"]


# ---- posterior and bound (hypothesis) ---------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[list[Ballot], str]]:
    workers = ["w0", "w1", "w2", "w3"]
    vote = st.sampled_from([None, *LABELS])
    items = draw(st.lists(st.sampled_from(LABELS), max_size=30))
    return [([Ballot(w, draw(vote), 0.5) for w in workers], truth) for truth in items]


@dataclass(frozen=True)
class Split:
    """Ballots already cast and the ballots the pending workers will cast later."""

    cast: list[Ballot]
    later: list[Ballot]


@st.composite
def splits(draw: st.DrawFn) -> Split:
    vote = st.sampled_from([None, "weird", *LABELS])
    ballots = [Ballot(f"w{i}", draw(vote), 0.5) for i in range(draw(st.integers(1, 5)))]
    k = draw(st.integers(0, len(ballots)))
    return Split(ballots[:k], ballots[k:])


@given(histories())
def test_confusion_rows_are_distributions(history: list[tuple[list[Ballot], str]]) -> None:
    """Every worker's confusion row sums to 1 and is strictly positive."""
    reliability = trained(history)
    for worker in ["w0", "unseen"]:
        for truth in LABELS:
            row = [reliability.likelihood(worker, truth, v) for v in LABELS]
            assert min(row) > 0
            assert math.fsum(row) == pytest.approx(1.0)


@given(histories(), splits(), st.randoms(use_true_random=False))
def test_posterior_is_an_order_free_distribution(
    history: list[tuple[list[Ballot], str]], split: Split, rnd: Any
) -> None:
    """The posterior sums to 1 and is bit-for-bit the same for any ballot order."""
    reliability = trained(history)
    shuffled = list(split.cast)
    rnd.shuffle(shuffled)
    posterior = reliability.posterior(split.cast)
    assert math.fsum(posterior.values()) == pytest.approx(1.0)
    assert reliability.posterior(shuffled) == posterior


@given(histories(), splits())
def test_bound_covers_every_completion(history: list[tuple[list[Ballot], str]], s: Split) -> None:
    """posterior_bound is >= the posterior after the pending workers' ballots, = with none."""
    reliability = trained(history)
    pending = [b.worker for b in s.later]
    final = reliability.posterior(s.cast + s.later)
    for label in LABELS:
        bound = reliability.posterior_bound(s.cast, pending, label)
        assert bound >= final[label] - 1e-12
        exact = reliability.posterior_bound(s.cast + s.later, [], label)
        assert exact == pytest.approx(final[label])


@given(histories(), splits(), st.floats(0.51, 0.999))
def test_early_weighted_escalation_is_never_premature(
    history: list[tuple[list[Ballot], str]], s: Split, threshold: float
) -> None:
    """If the weighted vote escalates before everyone voted, no completion would accept."""
    policy = WeightedVote(trained(history), threshold=threshold)
    expected = [b.worker for b in s.cast + s.later]
    if policy.decide(s.cast, expected) == Escalate(EscalationReason.LOW_CONFIDENCE):
        assert not isinstance(policy.decide(s.cast + s.later, expected), Accept)


# ---- persistence ------------------------------------------------------------------------------


@given(histories(), splits())
def test_json_round_trip_preserves_decisions(history: list[tuple[list[Ballot], str]], s: Split) -> None:
    """to_dict survives JSON and from_dict restores identical estimates."""
    reliability = trained(history)
    restored = Reliability.from_dict(json.loads(json.dumps(reliability.to_dict())))
    assert restored.to_dict() == reliability.to_dict()
    assert restored.posterior(s.cast) == reliability.posterior(s.cast)
    assert restored.accuracy("w0") == reliability.accuracy("w0")


def test_from_dict_with_new_labels_drops_stale_counts() -> None:
    """Restoring under a changed label set keeps known counts and drops removed labels."""
    reliability = trained([([Ballot("w", "neu", 0.9)], "pos"), ([Ballot("w", "pos", 0.9)], "pos")])
    restored = Reliability.from_dict(reliability.to_dict(), labels=["pos", "neg", "mixed"])
    assert restored.labels == ("mixed", "neg", "pos")
    assert restored.to_dict()["counts"] == {"w": {"pos": {"pos": 1}}}
    assert restored.to_dict()["class_counts"] == {"pos": 2}


@pytest.mark.parametrize(
    "patch",
    [
        {"format": 99},
        {"labels": None},
        {"class_counts": {"pos": -1}},
        {"class_counts": {"pos": True}},
        {"counts": {"w": {"pos": {"pos": 1.5}}}},
        {"counts": ["w"]},
        {"counts": {"w": "pos"}},
        {"labels": "pos"},
        {"prior_strength": "strong"},
        {"prior_accuracy": 2.0},
    ],
)
def test_from_dict_rejects_malformed_snapshots(patch: dict[str, Any]) -> None:
    """A corrupt or foreign snapshot is a ValueError, never a silently wrong model."""
    data = {**Reliability(LABELS).to_dict(), **patch}
    with pytest.raises(ValueError, match=r"format|malformed|count|prior"):
        Reliability.from_dict(data)


def test_snapshot_layout() -> None:
    """The snapshot is versioned and sparse: only non-zero counts are stored."""
    reliability = trained([([Ballot("w", "pos", 0.9)], "pos")])
    assert reliability.to_dict() == {
        "format": FORMAT,
        "labels": list(LABELS),
        "prior_accuracy": 0.8,
        "prior_strength": 10.0,
        "class_counts": {"pos": 1},
        "counts": {"w": {"pos": {"pos": 1}}},
    }
