"""With no broker at the configured address, every command fails the same way: one line on
stderr, exit code 3, no traceback, nothing left unclosed. Real processes, a port nothing listens on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tribunal.core.errors import ExitCode

REPO = Path(__file__).resolve().parents[2]


def _dead_address() -> str:
    """An address on which nothing listens: a port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUNAL_")}
    env.update(
        TRIBUNAL_KAFKA__BOOTSTRAP_SERVERS=_dead_address(),
        TRIBUNAL_HOME=str(tmp_path / "home"),
        TRIBUNAL_LOG_FORMAT="json",
    )
    if args[0] in ("worker", "aggregator", "judge"):
        env["TRIBUNAL_RUNTIME__BROKER_WAIT_S"] = "0"  # tiers wait for a broker by default
    return subprocess.run(
        [sys.executable, "-m", "tribunal.cli", *args], capture_output=True, text=True, env=env, cwd=REPO,
        timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ("topics", "create"),
        ("ingest", "--input", "ITEMS"),
        ("worker", "--name", "w1", "--classifier", "hash"),
        ("aggregator",),
        ("judge", "--classifier", "hash"),
    ],
    ids=lambda a: a[0],
)
def test_unreachable_broker_is_one_line_and_exit_code_3(args: tuple[str, ...], tmp_path: Path) -> None:
    """Each command that needs Kafka says it could not reach it, in one line, and exits 3."""
    items = tmp_path / "items.jsonl"
    items.write_text('{"id": "a", "text": "t"}\n')
    result = _run(*(str(items) if a == "ITEMS" else a for a in args), tmp_path=tmp_path)
    assert result.returncode == ExitCode.BROKER_UNAVAILABLE, result.stderr
    assert "Traceback" not in result.stderr and "Unclosed" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "no Kafka broker answered at 127.0.0.1:" in lines[0]


# A command standing in for a bench or demo: it blocks, and its clean-up must run on SIGTERM.
_BLOCKING_COMMAND = """
import time
import tribunal.cli as cli

def app() -> None:
    try:
        print("ready", flush=True)
        time.sleep(60)
    finally:
        print("cleaned up", flush=True)

cli.app = app
cli.main()
"""


def test_sigterm_runs_a_commands_clean_up() -> None:
    """SIGTERM to `tribunal` acts as Ctrl-C: the command's `finally` runs (a bench stops the broker
    and tiers it started) rather than the process vanishing and leaving them behind."""
    process = subprocess.Popen([sys.executable, "-c", _BLOCKING_COMMAND], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    process.terminate()
    out, _ = process.communicate(timeout=30)
    assert out == "cleaned up\n"
