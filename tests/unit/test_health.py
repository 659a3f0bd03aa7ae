"""Liveness and readiness as the runtime loop reports them, and the HTTP endpoint probes read."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tribunal.core.health import Health, HealthServer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_not_live_before_the_loop_ran(clock: Clock) -> None:
    """A process whose loop never iterated is neither live nor ready."""
    health = Health(stale_after_s=30, clock=clock)
    assert not health.live() and not health.ready()


def test_live_while_the_loop_beats_then_stale(clock: Clock) -> None:
    """Live within `stale_after_s` of the last iteration; a stalled loop stops being live."""
    health = Health(stale_after_s=30, clock=clock)
    health.beat()
    clock.now += 30
    assert health.live()
    clock.now += 0.1
    assert not health.live()


@pytest.mark.parametrize(
    ("events", "ready"),
    [
        ([], False),  # not joined yet
        (["assigned"], True),  # joined, state restored
        (["assigned", "revoking"], False),  # a rebalance is in progress
        (["assigned", "revoking", "assigned"], True),  # and completed
        (["assigned", "stop"], False),  # shutting down
    ],
)
def test_ready_after_assignment_and_restore(clock: Clock, events: list[str], ready: bool) -> None:
    """Ready once partitions are assigned and restored, not during a rebalance or after stop."""
    health = Health(stale_after_s=30, clock=clock)
    health.beat()
    for event in events:
        if event == "assigned":
            health.assigned(2)
        elif event == "revoking":
            health.revoking()
        else:
            health.stop()
    assert health.ready() is ready


def test_a_standby_with_no_partition_is_ready(clock: Clock) -> None:
    """A replica beyond the partition count got an empty assignment: it is a ready standby."""
    health = Health(stale_after_s=30, clock=clock)
    health.assigned(0)
    assert health.ready() and health.report()["partitions"] == 0


def test_a_long_restore_counts_as_progress(clock: Clock) -> None:
    """Completing an assignment (after restoring state) refreshes liveness."""
    health = Health(stale_after_s=30, clock=clock)
    health.beat()
    clock.now += 29
    health.assigned(1)
    clock.now += 29
    assert health.live()


def test_http_endpoint_answers_probes(clock: Clock) -> None:
    """/livez and /readyz answer 200 or 503 with a JSON report; other paths 404."""
    health = Health(stale_after_s=30, clock=clock)
    server = HealthServer(health, port=0, host="127.0.0.1")
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert httpx.get(f"{base}/livez").status_code == 503
        health.beat()
        live = httpx.get(f"{base}/livez")
        assert live.status_code == 200 and orjson.loads(live.content)["live"] is True
        assert httpx.get(f"{base}/readyz").status_code == 503
        health.assigned(3)
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 200 and orjson.loads(ready.content)["partitions"] == 3
        assert httpx.get(f"{base}/metrics").status_code == 404
    finally:
        server.close()
