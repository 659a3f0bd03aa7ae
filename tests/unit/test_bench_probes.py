"""The bench's CPU accounting beside the tiers: the machine's busy share between two /proc/stat
readings, and which broker's CPU a bench may read (only the local one it talks to)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tribunal.bench import probes
from tribunal.bench.probes import local_broker_pid, machine_busy_share
from tribunal.core.settings import load_settings


@pytest.mark.parametrize(
    ("before", "after", "share"),
    [
        ((100, 1000), (600, 2000), 0.5),  # 500 of 1000 ticks busy
        ((0, 0), (2000, 2000), 1.0),
        ((50, 100), (50, 300), 0.0),
        ((50, 100), (60, 100), None),  # no time passed: no share
        (None, (1, 2), None),  # /proc/stat unreadable
    ],
)
def test_machine_busy_share_is_busy_ticks_over_all_ticks(
    before: tuple[int, int] | None, after: tuple[int, int] | None, share: float | None
) -> None:
    assert machine_busy_share(before, after) == share


def test_machine_jiffies_count_steal_and_irq_as_busy_and_iowait_as_idle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stat = tmp_path / "stat"
    #                 user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  10 1 5 100 7 2 3 4 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    real_path = Path
    monkeypatch.setattr(probes, "Path", lambda p: stat if p == "/proc/stat" else real_path(p))
    assert probes._machine_jiffies() == (25, 132)


def test_only_the_local_brokers_cpu_is_read(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "kafka").mkdir(parents=True)
    (home / "kafka" / "broker.pid").write_text("1")  # PID 1 is alive in any Linux process namespace
    local = load_settings(home=str(home), broker={"port": 19092}, kafka={"bootstrap_servers": "127.0.0.1:19092"})
    other = load_settings(home=str(home), broker={"port": 19092}, kafka={"bootstrap_servers": "kafka.example:9093"})
    assert local_broker_pid(local) == 1
    assert local_broker_pid(other) is None
