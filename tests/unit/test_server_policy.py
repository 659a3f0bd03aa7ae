"""How the judge's client treats a model server: Retry-After, jittered backoff, the circuit
breaker and the adaptive in-flight limit (pure rules, no server)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tribunal.consumers.classifiers.server_policy import (
    AdaptiveLimit,
    AdaptiveLimiter,
    CircuitBreaker,
    parse_retry_after,
    retry_delay,
)

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 0.5 ", 0.5),
        ("Mon, 30 Nov 2026 12:00:10 GMT", 10.0),
        ("Mon, 30 Nov 2026 11:59:00 GMT", 0.0),  # a date in the past: no wait
        ("-4", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("inf", None),
    ],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    """Delta-seconds or an HTTP date; anything unreadable is ignored."""
    assert parse_retry_after(header, NOW) == seconds


def test_retry_after_is_respected_with_a_little_jitter() -> None:
    """A server's Retry-After is waited out in full, plus at most one base delay of jitter."""
    assert retry_delay(0, 4.0, 0.5, 10.0, lambda: 0.0) == 4.0
    assert retry_delay(5, 4.0, 0.5, 10.0, lambda: 0.999) == pytest.approx(4.4995)


@given(attempt=st.integers(0, 30), draw=st.floats(0.0, 0.999999))
def test_backoff_is_full_jitter_under_the_capped_exponential(attempt: int, draw: float) -> None:
    """Without Retry-After: uniform in [0, min(cap, base * 2**attempt))."""
    delay = retry_delay(attempt, None, 0.5, 10.0, lambda: draw)
    assert 0.0 <= delay < min(10.0, 0.5 * 2**attempt) + 1e-9


def test_breaker_opens_after_consecutive_failures_and_fails_fast() -> None:
    """Closed until `threshold` failures in a row; open refuses calls until the cooldown ends."""
    breaker = CircuitBreaker(threshold=3, cooldown_s=10)
    for _ in range(2):
        breaker.failure(0.0)
    assert breaker.allow(0.0)
    breaker.failure(1.0)
    assert breaker.state(1.0) == "open" and not breaker.allow(5.0)
    assert breaker.retry_in(5.0) == pytest.approx(6.0)


def test_a_success_resets_the_count() -> None:
    """Failures must be consecutive: one success in between closes the count."""
    breaker = CircuitBreaker(threshold=2, cooldown_s=10)
    breaker.failure(0.0)
    breaker.success()
    breaker.failure(0.0)
    assert breaker.state(0.0) == "closed"


def test_half_open_lets_one_trial_through() -> None:
    """After the cooldown exactly one call may try; its failure re-opens, its success closes."""
    breaker = CircuitBreaker(threshold=1, cooldown_s=10)
    breaker.failure(0.0)
    assert breaker.allow(10.0) and not breaker.allow(10.0)
    breaker.failure(10.5)
    assert breaker.state(11.0) == "open"
    assert breaker.allow(20.5)
    breaker.success()
    assert breaker.state(20.5) == "closed" and breaker.allow(20.5) and breaker.allow(20.5)


def test_adaptive_limit_grows_additively_and_halves_on_overload() -> None:
    """AIMD: one more slot per window of successes; half on overload; always within bounds."""
    limit = AdaptiveLimit(maximum=16)
    assert limit.current == 4
    for _ in range(4):  # 1/limit per success: about one slot per window of `limit` successes
        limit.succeeded()
    assert limit.current == 4
    limit.succeeded()
    assert limit.current == 5
    limit.overloaded()
    assert limit.current == 2
    for _ in range(10):
        limit.overloaded()
    assert limit.current == 1
    for _ in range(2000):
        limit.succeeded()
    assert limit.current == 16


async def test_limiter_never_exceeds_the_current_limit() -> None:
    """Concurrent requests beyond the limit wait for a free slot."""
    limiter = AdaptiveLimiter(AdaptiveLimit(maximum=8, limit=2.0))
    peak = 0

    async def request() -> None:
        nonlocal peak
        async with limiter:
            peak = max(peak, limiter.in_flight)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(request() for _ in range(10)))
    assert peak == 2 and limiter.in_flight == 0
