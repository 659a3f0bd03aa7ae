"""How a client treats a model server under stress: when to retry, when to stop calling, and how
many requests to keep in flight. Pure logic with the clock and the dice passed in, so every
rule is unit-tested without a server.

- `retry_delay`: the server's `Retry-After` when it sent one (plus a little jitter, so that
  clients told the same second do not return in lockstep), else "full jitter" exponential
  backoff: uniform in [0, min(cap, base * 2**attempt)].
- `CircuitBreaker`: after `threshold` consecutive failures the server is presumed down; calls
  fail fast for `cooldown_s`, then one trial call decides (half-open). A down server is probed
  once per cooldown instead of being hammered by every request, retry and batch split.
- `AdaptiveLimit`: additive increase, multiplicative decrease (TCP's AIMD) of the requests in
  flight. A server with continuous batching (vLLM) batches whatever is in flight, so this is
  the batch the client offers it: it grows while answers come back and halves on overload
  (429, 503, timeouts).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = [
    "AdaptiveLimit",
    "AdaptiveLimiter",
    "CircuitBreaker",
    "parse_retry_after",
    "retry_delay",
]


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def retry_delay(
    attempt: int, retry_after: float | None, base_s: float, cap_s: float, random: Callable[[], float]
) -> float:
    """Seconds before retry number `attempt` (0-based). `random()` is uniform in [0, 1)."""
    if retry_after is not None:
        return retry_after + random() * base_s
    return random() * min(cap_s, base_s * 2.0**attempt)


@dataclass
class CircuitBreaker:
    """Closed -> (threshold consecutive failures) -> open -> (cooldown) -> half-open -> one
    trial: success closes, failure re-opens for another cooldown."""

    threshold: int = 5
    cooldown_s: float = 10.0
    failures: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False

    def state(self, now: float) -> str:
        if self.opened_at is None:
            return "closed"
        return "open" if now - self.opened_at < self.cooldown_s else "half_open"

    def allow(self, now: float) -> bool:
        """May a call go to the server now? In half-open, only one trial at a time."""
        state = self.state(now)
        if state == "closed":
            return True
        if state == "half_open" and not self.trial_in_flight:
            self.trial_in_flight = True
            return True
        return False

    def success(self) -> None:
        self.failures, self.opened_at, self.trial_in_flight = 0, None, False

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.trial_in_flight or self.failures >= self.threshold:
            self.opened_at, self.trial_in_flight = now, False

    def retry_in(self, now: float) -> float:
        """Seconds until a call may be tried again (0 when closed)."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown_s - now)


@dataclass
class AdaptiveLimit:
    """The number of requests allowed in flight, between `minimum` and `maximum`."""

    maximum: int
    minimum: int = 1
    limit: float = field(default=0.0)

    def __post_init__(self) -> None:
        # Start at a quarter of the maximum: probe upwards rather than overload a cold server.
        self.limit = self.limit or max(float(self.minimum), self.maximum / 4.0)

    @property
    def current(self) -> int:
        return max(self.minimum, min(self.maximum, math.floor(self.limit)))

    def succeeded(self) -> None:
        """One more request in flight per window of `limit` successes."""
        self.limit = min(float(self.maximum), self.limit + 1.0 / max(self.limit, 1.0))

    def overloaded(self) -> None:
        self.limit = max(float(self.minimum), self.limit / 2.0)


class AdaptiveLimiter:
    """`async with limiter:` holds one of `limit.current` slots; the limit moves with outcomes."""

    def __init__(self, limit: AdaptiveLimit) -> None:
        self.limit = limit
        self.in_flight = 0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit.current)
            self.in_flight += 1

    async def __aexit__(self, *exc: object) -> None:
        async with self._changed:
            self.in_flight -= 1
            self._changed.notify_all()
