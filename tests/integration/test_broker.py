"""The local broker the project assembles itself: up, status, reuse, down."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tribunal.core.settings import BrokerSettings
from tribunal.localkafka import LocalBroker

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


def _cli_env(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUNAL_")}
    return env | {"TRIBUNAL_HOME": str(home), "TRIBUNAL_BROKER__PORT": str(port),
                  "TRIBUNAL_BROKER__CONTROLLER_PORT": str(_free_port())}  # fmt: skip


def _kafka(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tribunal.cli", "kafka", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.broker
def test_a_kafka_this_checkout_did_not_start_is_used_and_never_stopped(kafka_bootstrap: str, tmp_path: Path) -> None:
    """`kafka up` on a port where some other Kafka answers (the session's broker, started
    elsewhere) uses it with a line saying so; `down` leaves it running; `status` reports it."""
    host, _, port = kafka_bootstrap.partition(",")[0].rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        pytest.skip(f"the session's broker {kafka_bootstrap} is not on this machine's loopback")
    env = _cli_env(tmp_path, int(port))
    up = _kafka(env, "up")
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == f"127.0.0.1:{port}" and "did not start" in up.stderr
    down = _kafka(env, "down")
    assert down.returncode == 0 and "no broker of this checkout was running" in down.stdout
    assert LocalBroker(tmp_path, BrokerSettings(port=int(port))).reachable(), "a foreign broker is never stopped"
    status = _kafka(env, "status")
    assert status.returncode == 0 and status.stdout.strip() == f"127.0.0.1:{port}"
    assert not (tmp_path / "kafka" / "broker.pid").exists()


def test_a_port_held_by_something_else_is_one_clear_error(tmp_path: Path) -> None:
    """Not Kafka on the port: exit 2 and one sentence saying what to do, no JVM started."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = int(holder.getsockname()[1])
        up = _kafka(_cli_env(tmp_path, port), "up")
    assert up.returncode == 2
    assert "is taken by a process that is not a Kafka broker" in up.stderr and "TRIBUNAL_BROKER__PORT" in up.stderr
    assert len(up.stderr.strip().splitlines()) == 1
