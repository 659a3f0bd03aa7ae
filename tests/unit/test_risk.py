"""Exact binomial bounds, Learn-then-Test's fixed-sequence scan, δ spending and the drift test."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tribunal.consumers.policy.risk import (
    DriftTest,
    binom_cdf,
    clopper_pearson_upper,
    fixed_sequence,
    min_certifiable_n,
    refit_delta,
)


def _cdf_by_definition(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize(
    ("k", "n", "p", "expected"),
    [
        (0, 10, 0.5, 1 / 1024),
        (10, 10, 0.3, 1.0),
        (-1, 5, 0.5, 0.0),
        (3, 10, 0.0, 1.0),
        (3, 10, 1.0, 0.0),
        (0, 0, 0.5, 1.0),
        (0, 300, 0.01, 0.99**300),
        (2, 5, 0.5, 0.5),
    ],
)
def test_binom_cdf_table(k: int, n: int, p: float, expected: float) -> None:
    """P(Bin(n, p) <= k) at hand-checked points, edges included."""
    assert binom_cdf(k, n, p) == pytest.approx(expected, rel=1e-12, abs=1e-300)


@settings(deadline=None)  # no timing in tests: a busy machine is not a failure
@given(st.integers(0, 60), st.integers(0, 60), st.floats(0.001, 0.999))
def test_binom_cdf_matches_the_definition(k: int, n: int, p: float) -> None:
    """The log-space sum equals the textbook sum of binomial probabilities."""
    assert binom_cdf(k, n, p) == pytest.approx(_cdf_by_definition(min(k, n), n, p), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(
    ("k", "n", "delta", "expected"),
    [
        (0, 0, 0.05, 1.0),  # no audits: nothing is known
        (5, 5, 0.05, 1.0),
        (0, 10, 0.05, 1 - 0.05 ** (1 / 10)),  # (1 - p)^n = delta
        (0, 300, 0.05, 1 - 0.05 ** (1 / 300)),
        # scipy.stats.beta.ppf(0.95, 3, 98): the Clopper-Pearson bound for 2 of 100
        (2, 100, 0.05, 0.0616192004),
    ],
)
def test_clopper_pearson_table(k: int, n: int, delta: float, expected: float) -> None:
    """The exact upper bound, including zero audits (bound 1) and zero events (closed form)."""
    assert clopper_pearson_upper(k, n, delta) == pytest.approx(expected, rel=1e-6)


@settings(deadline=None)  # no timing in tests: a busy machine is not a failure
@given(st.integers(1, 200), st.data(), st.floats(0.01, 0.5))
def test_clopper_pearson_is_the_largest_p_the_test_keeps(n: int, data: st.DataObject, delta: float) -> None:
    """At the bound the binomial tail equals delta; just above it, the test rejects."""
    k = data.draw(st.integers(0, n - 1))
    bound = clopper_pearson_upper(k, n, delta)
    assert k / n <= bound < 1.0
    assert binom_cdf(k, n, bound) == pytest.approx(delta, rel=1e-6)
    assert binom_cdf(k, n, min(1.0, bound + 1e-6)) < delta


def test_min_certifiable_n_is_the_zero_event_threshold() -> None:
    """Certifying 1% at δ = 0.05 needs about 300 clean audits (0.99^n <= 0.05), as the notes say."""
    n = min_certifiable_n(0.01, 0.05)
    assert n == 299
    assert binom_cdf(0, n, 0.01) <= 0.05 < binom_cdf(0, n - 1, 0.01)


@pytest.mark.parametrize(
    ("tests", "expected"),
    [
        ([], None),
        ([(0, 0), (1000, 0)], None),  # no trials at the strictest: nothing certified, stop there
        ([(400, 0), (600, 1), (900, 3)], 2),
        ([(400, 0), (600, 30), (900, 3)], 0),  # stops at the first failure, never skips ahead
        ([(100, 0), (400, 0)], None),  # 0.99^100 = 0.37 > 0.05
    ],
)
def test_fixed_sequence_table(tests: list[tuple[int, int]], expected: int | None) -> None:
    """The scan certifies strict to loose and stops at the first candidate that fails."""
    assert fixed_sequence(tests, 0.01, 0.05) == expected


@settings(deadline=None)  # no timing in tests: a busy machine is not a failure
@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 50)), max_size=12), st.floats(0.005, 0.2))
def test_fixed_sequence_certifies_a_prefix_of_passing_tests(raw: list[tuple[int, int]], alpha: float) -> None:
    """Every certified candidate passes its own test, and the next one (if any) fails."""
    tests = [(n, min(k, n)) for n, k in raw]
    last = fixed_sequence(tests, alpha, 0.05)
    passes = [n > 0 and binom_cdf(k, n, alpha) <= 0.05 for n, k in tests]
    count = 0 if last is None else last + 1
    assert all(passes[:count])
    if count < len(tests):
        assert not passes[count]


def test_refit_delta_spends_at_most_delta() -> None:
    """δ_j = δ / (j (j + 1)) sums to δ over all re-fits."""
    assert refit_delta(0.05, 1) == pytest.approx(0.025)
    assert math.fsum(refit_delta(0.05, j) for j in range(1, 100_000)) < 0.05
    with pytest.raises(ValueError, match="numbered from 1"):
        refit_delta(0.05, 0)


@settings(deadline=None, max_examples=5)
@given(st.integers(0, 10_000))
def test_fixed_sequence_controls_the_risk_on_simulated_scores(seed: int) -> None:
    """On a stream whose disagreement rises with looseness, the certified candidate's true risk is
    at most alpha in (far) more than 1 - δ of 200 repetitions."""
    rng = random.Random(seed)
    true_risk = [0.0, 0.004, 0.008, 0.012, 0.02, 0.05]  # per candidate, cumulative accepted sets
    shares = [0.2, 0.35, 0.5, 0.65, 0.8, 1.0]
    violations = 0
    for _ in range(200):
        n_cal = 1500
        tests = []
        for share, risk in zip(shares, true_risk, strict=True):
            n = int(share * n_cal)
            tests.append((n, sum(rng.random() < risk for _ in range(n))))
        last = fixed_sequence(tests, 0.01, 0.05)
        violations += last is not None and true_risk[last] > 0.01
    assert violations <= 20  # 5% of 200 is 10; slack for the test's own randomness


def test_drift_test_stays_quiet_under_the_null_and_alarms_on_drift() -> None:
    """At the target rate the wealth rarely reaches 1/δ; at 5x the target it soon does."""
    rng = random.Random(7)
    false_alarms = 0
    for _ in range(200):
        test = DriftTest.start(0.02)
        for _ in range(500):
            test = test.observe(rng.random() < 0.02)
            if test.alarm(0.05):
                false_alarms += 1
                break
    assert false_alarms <= 20
    test = DriftTest.start(0.02)
    while test.observed < 2000 and not test.alarm(0.05):
        test = test.observe(rng.random() < 0.10)
    assert test.alarm(0.05)
    assert test.observed < 500


def test_drift_test_counts_and_starts_at_one() -> None:
    """A fresh test has wealth 1; observing updates its counts."""
    test = DriftTest.start(0.01)
    assert test.value == pytest.approx(1.0)
    test = test.observe(True).observe(False)
    assert (test.observed, test.events) == (2, 1)
    with pytest.raises(ValueError, match="alpha"):
        DriftTest.start(0.0)
