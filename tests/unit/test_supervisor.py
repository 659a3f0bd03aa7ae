"""`tribunal run`'s supervisor, pure parts: restart backoff and per-child metrics and health ports."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tribunal.core.settings import load_settings
from tribunal.core.supervisor import _child_env, assign_ports, child_specs, restart_delay


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (50, 60.0), (10_000, 60.0)],
)
def test_backoff_doubles_per_failure_up_to_the_cap(failures: int, expected: float) -> None:
    """1 s, 2 s, 4 s ... never more than the cap, even after very many failures."""
    assert restart_delay(failures, 1.0, 60.0) == expected


@given(
    st.integers(min_value=1, max_value=10_000),
    st.floats(min_value=0.001, max_value=100),
    st.floats(min_value=0.001, max_value=1000),
)
def test_backoff_is_monotone_and_bounded(failures: int, initial: float, cap: float) -> None:
    """One more failure never shortens the wait, and no wait exceeds the cap."""
    now, later = restart_delay(failures, initial, cap), restart_delay(failures + 1, initial, cap)
    assert 0 < now <= later <= cap


def test_no_initial_backoff_restarts_at_once() -> None:
    assert restart_delay(5, 0.0, 60.0) == 0.0


def test_every_child_gets_its_own_metrics_and_health_port() -> None:
    """base + index, in child order: 3 workers (one with 2 replicas), aggregator, judge."""
    settings = load_settings(
        pipeline={"workers": [{"name": "w1", "classifier": "hash:1", "replicas": 2}, {"name": "w2", "classifier": "x"}]}
    )
    children = assign_ports(child_specs(settings), 9400, 8080)
    assert [(c.label, c.metrics_port, c.health_port) for c in children] == [
        ("worker:w1#0", 9400, 8080),
        ("worker:w1#1", 9401, 8081),
        ("worker:w2#0", 9402, 8082),
        ("aggregator#0", 9403, 8083),
        ("judge#0", 9404, 8084),
    ]


def test_metrics_port_zero_picks_distinct_free_ports_and_none_disables() -> None:
    children = child_specs(load_settings())
    free = [c.metrics_port for c in assign_ports(children, 0, None)]
    assert all(p is not None and p > 0 for p in free) and len(set(free)) == len(free)
    unset = assign_ports(children, None, None)
    assert [(c.metrics_port, c.health_port) for c in unset] == [(None, None)] * len(children)


def test_ports_past_65535_are_refused() -> None:
    with pytest.raises(ValueError, match="65535"):
        assign_ports(child_specs(load_settings()), None, 65533)


def test_child_env_carries_explicit_settings_and_the_childs_own_port(tmp_path: Path) -> None:
    """A command-line value (here the bootstrap) reaches the child; the base ports do not."""
    settings = load_settings(
        kafka={"bootstrap_servers": "10.0.0.1:9092"},
        metrics_port=9400,
        health_port=8080,
        runtime={"instance_id": "the-supervisor"},
    )
    child = assign_ports(child_specs(settings), 9400, 8080)[2]
    env = _child_env(child, settings, tmp_path / "c.toml")
    assert env["TRIBUNAL_KAFKA__BOOTSTRAP_SERVERS"] == "10.0.0.1:9092"
    assert env["TRIBUNAL_METRICS_PORT"] == "9402" and env["TRIBUNAL_HEALTH_PORT"] == "8082"
    assert env["TRIBUNAL_RUNTIME__INSTANCE_ID"] == child.instance_id, "the child's own id wins over the parent's"
    assert env["TRIBUNAL_CONFIG"] == str((tmp_path / "c.toml").resolve())
