"""Finite-sample risk control for the target policy: exact binomial bounds, Learn-then-Test's
fixed-sequence scan, the spending of δ over re-fits, and an anytime-valid drift test.

Everything here is pure arithmetic on counts (stdlib only), so it runs in every tier and is
tested with tables and hypothesis.

- `binom_cdf(k, n, p)` = P(Bin(n, p) <= k), summed exactly in log space.
- `clopper_pearson_upper(k, n, delta)`: the one-sided (1 - delta) upper confidence bound on a
  proportion after k events in n trials: the largest p with P(Bin(n, p) <= k) >= delta
  (1.0 when k = n, in particular with no observations at all).
- `fixed_sequence(tests, alpha, delta)`: Learn then Test (Angelopoulos et al. 2021). `tests` are
  (n, k) per candidate, strictest first; each is certified when its p-value P(Bin(n, alpha) <= k)
  is <= delta; the scan stops at the first failure. Family-wise, P(some certified candidate has
  risk > alpha) <= delta, whatever the number of candidates, because the order is fixed before
  the data are seen.
- `refit_delta(delta, j)` = delta / (j (j + 1)): re-fit j (1-based) spends this much, so all
  re-fits together spend at most delta (sum of 1/(j(j+1)) = 1): re-checking a growing stream is
  then not optional stopping.
- `DriftTest`: a test martingale for H0 "risk <= alpha" (a mixture of likelihood ratios against
  a few alternatives above alpha). Under H0 its value is a non-negative supermartingale, so by
  Ville's inequality it ever reaches 1/delta with probability <= delta, however often it is
  looked at: an alarm means the accepted items disagree with the judge more than the bound
  allowed (drift), and the policy falls back to strict at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DriftTest",
    "binom_cdf",
    "clopper_pearson_upper",
    "fixed_sequence",
    "min_certifiable_n",
    "refit_delta",
]

# Alternatives the drift test bets on, as multiples of alpha: a mixture is a martingale too, so
# betting on several keeps power against mild and gross drift without choosing one in advance.
DRIFT_MULTIPLES = (1.5, 2.0, 4.0, 8.0)


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(Bin(n, p) <= k), exact up to floating point (terms summed in log space)."""
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"need n >= 0 and p in [0, 1], got n={n}, p={p}")
    if k < 0:
        return 0.0
    if k >= n or p == 0.0:
        return 1.0
    if p == 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)
    terms = [base - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


def clopper_pearson_upper(k: int, n: int, delta: float) -> float:
    """The exact one-sided (1 - delta) upper bound on a proportion after `k` events in `n` trials."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if k == n:
        return 1.0
    low, high = k / n, 1.0  # binom_cdf is decreasing in p; the bound lies in [k/n, 1)
    for _ in range(100):
        mid = (low + high) / 2.0
        if binom_cdf(k, n, mid) >= delta:
            low = mid
        else:
            high = mid
        if high - low < 1e-12:
            break
    return low


def min_certifiable_n(alpha: float, delta: float) -> int:
    """The fewest trials that can certify risk <= alpha at level delta: with zero events,
    P(Bin(n, alpha) <= 0) = (1 - alpha)^n <= delta."""
    _check_level(alpha, delta)
    return math.ceil(math.log(delta) / math.log1p(-alpha))


def fixed_sequence(tests: Sequence[tuple[int, int]], alpha: float, delta: float) -> int | None:
    """Index of the last certified candidate of a strict-to-loose scan, or None if the first fails.

    `tests[i]` = (n, k): trials and events (disagreements) of candidate i. A candidate with no
    trials is never certified.
    """
    _check_level(alpha, delta)
    certified: int | None = None
    for index, (n, k) in enumerate(tests):
        if n <= 0 or binom_cdf(k, n, alpha) > delta:
            break
        certified = index
    return certified


def refit_delta(delta: float, refit: int) -> float:
    """The level re-fit number `refit` (1-based) may spend so that all re-fits spend <= delta."""
    if refit < 1:
        raise ValueError(f"re-fits are numbered from 1, got {refit}")
    return delta / (refit * (refit + 1))


def _check_level(alpha: float, delta: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")


@dataclass(frozen=True, slots=True)
class DriftTest:
    """Anytime-valid test of H0 "P(disagree) <= alpha" on a sequence of audited accepted items.

    `log_wealth[i]` is the log of the likelihood ratio of alternative `DRIFT_MULTIPLES[i] * alpha`
    against alpha; the test's value is their mean. Immutable: `observe` returns a new test.
    """

    alpha: float
    log_wealth: tuple[float, ...] = ()
    observed: int = 0
    events: int = 0

    @classmethod
    def start(cls, alpha: float) -> DriftTest:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        return cls(alpha, tuple(0.0 for _ in cls._alternatives(alpha)))

    @staticmethod
    def _alternatives(alpha: float) -> list[float]:
        # Alternatives at or above 1 would make a single agreement zero the wealth forever.
        return [min(m * alpha, (1.0 + alpha) / 2.0) for m in DRIFT_MULTIPLES]

    def observe(self, disagreed: bool) -> DriftTest:
        """The test after one more audited accepted item."""
        steps = [
            math.log(p1 / self.alpha) if disagreed else math.log1p(-p1) - math.log1p(-self.alpha)
            for p1 in self._alternatives(self.alpha)
        ]
        wealth = tuple(w + s for w, s in zip(self.log_wealth, steps, strict=True))
        return DriftTest(self.alpha, wealth, self.observed + 1, self.events + int(disagreed))

    @property
    def value(self) -> float:
        """The mixture's wealth (starts at 1; large values are evidence against H0)."""
        if not self.log_wealth:
            return 1.0
        top = max(self.log_wealth)
        return math.exp(top) * math.fsum(math.exp(w - top) for w in self.log_wealth) / len(self.log_wealth)

    def alarm(self, delta: float) -> bool:
        """Whether H0 is rejected at level `delta` (valid at every time, Ville's inequality)."""
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        return self.value >= 1.0 / delta
