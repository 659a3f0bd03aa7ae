"""The local broker the project assembles itself: up, status, reuse, down."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tribunal.core.broker import LocalBroker
from tribunal.core.settings import BrokerSettings

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_up_status_down_leaves_nothing_running(tmp_path: Path) -> None:
    """`kafka up` starts a reachable broker, a second `up` reuses it, `down` kills it by PID."""
    port, controller = _free_port(), _free_port()
    env = dict(os.environ, TRIBUNAL_HOME=str(tmp_path), TRIBUNAL_BROKER__PORT=str(port),
               TRIBUNAL_BROKER__CONTROLLER_PORT=str(controller))  # fmt: skip
    # Reuse the session's jars instead of resolving them again with Maven.
    libs = REPO / ".tribunal" / "kafka" / f"libs-{BrokerSettings().version}"
    if libs.exists():
        (tmp_path / "kafka").mkdir()
        (tmp_path / "kafka" / libs.name).symlink_to(libs)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tribunal.cli", "kafka", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, check=False)

    up = cli("up")
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == f"127.0.0.1:{port}"
    broker = LocalBroker(tmp_path, BrokerSettings(port=port, controller_port=controller))
    pid = broker.pid()
    assert pid is not None and broker.reachable()

    again = cli("up")
    assert again.returncode == 0 and broker.pid() == pid, "a second up must reuse the running broker"
    status = cli("status")
    assert status.returncode == 0 and status.stdout.strip() == f"127.0.0.1:{port}"

    down = cli("down")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not broker.reachable()
    assert broker.pid() is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert cli("status").returncode == 1
