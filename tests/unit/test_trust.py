"""The trust score: vote states, features, the logistic fit and the model's persistence."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tribunal.consumers.policy.ballots import Ballot
from tribunal.consumers.policy.trust import (
    AGAINST,
    FOR,
    NONE,
    TrustModel,
    feature_names,
    features,
    fit_logistic,
    vote_states,
)

WORKERS = ("w1", "w2", "w3")


@pytest.mark.parametrize(
    ("ballots", "expected"),
    [
        ([Ballot("w1", "a", 0.9), Ballot("w2", "a", 0.8), Ballot("w3", "a", 0.7)], ("a", (FOR, FOR, FOR))),
        ([Ballot("w1", "a", 0.9), Ballot("w2", "b", 0.8), Ballot("w3", "a", 0.7)], ("a", (FOR, AGAINST, FOR))),
        ([Ballot("w1", "a", 0.9), Ballot("w3", None, 0.0)], ("a", (FOR, NONE, NONE))),
        ([Ballot("w2", "b", 0.6), Ballot("w3", "a", 0.9)], ("a", (NONE, AGAINST, FOR))),  # tie: higher confidence
        ([Ballot("w1", None, 0.0)], None),
        ([], None),
    ],
)
def test_vote_states_table(ballots: list[Ballot], expected: tuple[str, tuple[int, ...]] | None) -> None:
    """Each worker is for or against the plurality, or silent; no vote at all means no label."""
    voted = vote_states(ballots, WORKERS)
    if expected is None:
        assert voted is None
    else:
        assert voted is not None
        assert (voted[0], tuple(s for s, _ in voted[1])) == expected


def test_features_follow_the_named_layout() -> None:
    """bias, unanimous, then for/for_conf/against/against_conf per worker in sorted order."""
    names = feature_names(["w2", "w1"])
    assert names[:4] == ("bias", "unanimous", "for:w1", "for_conf:w1")
    row = features(((FOR, 0.5), (AGAINST, 0.5)))
    assert len(row) == len(names)
    assert row[:4] == [1.0, 0.0, 1.0, 0.0]  # logit(0.5) = 0
    assert row[6:10] == [0.0, 0.0, 1.0, 0.0]
    assert features(((FOR, 1.0), (FOR, 0.0)))[3] == pytest.approx(math.log(999))  # clipped logit


def test_unfitted_model_scores_zero_and_round_trips() -> None:
    """No weights: score 0 (never accepts). Weights survive as_dict/from_weights by name."""
    model = TrustModel(WORKERS)
    assert not model.fitted
    assert model.score([Ballot("w1", "a", 1.0)]) == ("a", 0.0)
    weights = {name: 0.1 * n for n, name in enumerate(feature_names(WORKERS))}
    again = TrustModel.from_weights(WORKERS, weights)
    assert again.as_dict() == weights
    with pytest.raises(ValueError, match="expected the features"):
        TrustModel.from_weights(("w1", "w9", "w3"), weights)


def test_fit_logistic_recovers_a_known_model() -> None:
    """On 4,000 draws from a logistic model the fit is close to the true coefficients."""
    rng = random.Random(3)
    true = (0.5, 2.0, -1.0)
    rows, targets = [], []
    for _ in range(4000):
        x = [1.0, rng.gauss(0, 1), rng.gauss(3, 2)]
        p = 1 / (1 + math.exp(-sum(b * v for b, v in zip(true, x, strict=True))))
        rows.append(x)
        targets.append(int(rng.random() < p))
    fitted = fit_logistic(rows, targets, l2=0.01)
    assert fitted == pytest.approx(true, abs=0.2)


def test_fit_logistic_weights_act_like_repeated_rows() -> None:
    """A row of weight 2 counts like that row twice (inverse-propensity weights rely on it)."""
    rows = [[1.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    targets = [0, 1, 0, 1, 1]
    doubled = fit_logistic([*rows, rows[1]], [*targets, targets[1]], l2=0.5)
    # Weights are rescaled to mean 1 (here by 1 / 1.2), so the same penalty is 0.5 / 1.2.
    weighted = fit_logistic(rows, targets, [1, 2, 1, 1, 1], l2=0.5 / 1.2)
    assert weighted == pytest.approx(doubled, abs=0.05)


@settings(deadline=None)  # no timing in tests: a busy machine is not a failure
@given(st.lists(st.tuples(st.floats(-3, 3), st.booleans()), min_size=5, max_size=40))
def test_fit_logistic_is_finite_on_any_data(data: list[tuple[float, bool]]) -> None:
    """Separable, constant or tiny data never produce NaN or infinite weights (the L2 penalty)."""
    fitted = fit_logistic([[1.0, x, 7.0] for x, _ in data], [int(y) for _, y in data])
    assert all(math.isfinite(w) for w in fitted)


def test_score_rises_with_agreement_under_a_sensible_model() -> None:
    """With positive for-weights, unanimous confident ballots outscore a split."""
    weights = dict.fromkeys(feature_names(WORKERS), 0.0)
    weights |= {"for:w1": 1.0, "for:w2": 1.0, "for:w3": 1.0, "against_conf:w2": -0.5}
    model = TrustModel.from_weights(WORKERS, weights)
    unanimous = model.score([Ballot(w, "a", 0.9) for w in WORKERS])
    split = model.score([Ballot("w1", "a", 0.9), Ballot("w2", "b", 0.9), Ballot("w3", "a", 0.9)])
    assert unanimous is not None and split is not None
    assert unanimous[1] > split[1]
