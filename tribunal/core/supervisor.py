"""`tribunal run`: every tier of a configuration as separate OS processes under one supervisor.

For development and the demo; in production each tier runs alone (`tribunal worker|aggregator|
judge`) under the platform's own supervisor. A child that dies is restarted after a backoff,
with the same instance id, so its transactional producer fences its predecessor. SIGINT/SIGTERM
stop every child gracefully (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from tribunal.core.logs import configure_logging, get_logger
from tribunal.core.settings import Settings

__all__ = ["ChildSpec", "child_specs", "supervise"]

log = get_logger("tribunal.supervisor")
GRACE_S = 15.0


@dataclass(frozen=True)
class ChildSpec:
    """One process to keep running: its command-line arguments and instance id."""

    label: str
    args: tuple[str, ...]
    instance_id: str


def child_specs(settings: Settings) -> list[ChildSpec]:
    pipeline = settings.pipeline
    children = [
        ChildSpec(
            f"worker:{w.name}#{n}",
            ("worker", "--name", w.name, "--classifier", w.classifier),
            f"{w.name}-{n}",
        )
        for w in pipeline.workers
        for n in range(w.replicas)
    ]
    children += [ChildSpec(f"aggregator#{n}", ("aggregator",), f"aggregator-{n}") for n in range(pipeline.aggregators)]
    children += [ChildSpec(f"judge#{n}", ("judge",), f"judge-{n}") for n in range(pipeline.judges)]
    return children


async def supervise(settings: Settings, config: Path | None, stop: asyncio.Event | None = None) -> int:
    """Run every child until SIGINT/SIGTERM or `stop`; return 0 after a clean shutdown."""
    configure_logging(settings.log_format, settings.log_level, tier="supervisor")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    keepers = [asyncio.create_task(_keep_running(child, settings, config, stop)) for child in child_specs(settings)]
    await asyncio.gather(*keepers)
    return 0


def _child_env(child: ChildSpec, config: Path | None) -> dict[str, str]:
    env = dict(os.environ, TRIBUNAL_RUNTIME__INSTANCE_ID=child.instance_id)
    if config is not None:
        env["TRIBUNAL_CONFIG"] = str(config.resolve())
    return env


async def _keep_running(child: ChildSpec, settings: Settings, config: Path | None, stop: asyncio.Event) -> None:
    env = _child_env(child, config)
    while not stop.is_set():
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "tribunal.cli", *child.args, env=env)
        log.info("child_started", child=child.label, pid=process.pid)
        waiter = asyncio.create_task(process.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if stop.is_set():
            await _terminate(process, waiter)
            return
        log.warning("child_exited", child=child.label, code=process.returncode)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.pipeline.restart_backoff_s)


async def _terminate(process: asyncio.subprocess.Process, waiter: asyncio.Task[int]) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), GRACE_S)
        except TimeoutError:
            process.kill()
            await waiter
