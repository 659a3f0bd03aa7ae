"""`tribunal run`: every tier of a configuration as separate OS processes under one supervisor.

For development and the demo; in production each tier runs alone (`tribunal worker|aggregator|
judge`) under the platform's own supervisor. A child that dies is restarted with the same
instance id, so its transactional producer fences its predecessor, after an exponential backoff
(`pipeline.restart_backoff_s`, doubling per consecutive failure, capped at
`pipeline.restart_backoff_max_s`; a child that stayed up that long counts as healthy again).
SIGINT/SIGTERM stop every child gracefully (SIGTERM, then SIGKILL after a grace period).

Ports: with `metrics_port` set, child i serves `/metrics` on `metrics_port + i` (the order of
`child_specs`), or on a free port each when `metrics_port` is 0; `health_port` likewise for
`/livez` and `/readyz`. Every child's URLs are logged at start. Separate ports, not one shared
registry, because each child is its own process with its own counters and health, as it is in
production (and one port shared by all would bind once and crash-loop the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from tribunal.core.logs import configure_logging, get_logger
from tribunal.core.settings import Settings, settings_env

__all__ = ["ChildSpec", "assign_ports", "child_specs", "restart_delay", "supervise"]

log = get_logger("tribunal.supervisor")
GRACE_S = 15.0


@dataclass(frozen=True)
class ChildSpec:
    """One process to keep running: its command-line arguments, instance id and HTTP ports."""

    label: str
    args: tuple[str, ...]
    instance_id: str
    metrics_port: int | None = None
    health_port: int | None = None


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
    # One intake per source and one sink per sink: each is one consumer group, so more replicas
    # of either only share its partitions (run them by hand, `tribunal intake|sink`, to scale).
    children += [
        ChildSpec(f"intake:{s.name}", ("intake", "--source", s.name), f"intake-{s.name}") for s in settings.source
    ]
    children += [ChildSpec(f"sink:{s.name}", ("sink", "--sink", s.name), f"sink-{s.name}") for s in settings.sink]
    return children


def assign_ports(children: list[ChildSpec], metrics_base: int | None, health_base: int | None) -> list[ChildSpec]:
    """Each child its own metrics and health port: none when a base is None, `base + index`
    otherwise, a free port each when a base is 0. A port beyond 65535 is a `ValueError`."""
    metrics = _ports("metrics_port", metrics_base, len(children))
    health = _ports("health_port", health_base, len(children))
    return [replace(c, metrics_port=m, health_port=h) for c, m, h in zip(children, metrics, health, strict=True)]


def _ports(name: str, base: int | None, count: int) -> list[int | None]:
    if base is None:
        return [None] * count
    if base + count - 1 > 65535:
        raise ValueError(f"{name} {base} + {count} children runs past port 65535")
    return [_free_port() if base == 0 else base + i for i in range(count)]


def restart_delay(failures: int, initial_s: float, max_s: float) -> float:
    """Seconds to wait before restart number `failures` (1, 2, ...): initial_s * 2^(failures-1),
    capped at max_s, so a crash-looping child costs little while a one-off crash recovers fast."""
    if failures <= 0 or initial_s <= 0:
        return 0.0
    return float(min(max_s, initial_s * 2.0 ** min(failures - 1, 62)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def supervise(settings: Settings, config: Path | None, stop: asyncio.Event | None = None) -> int:
    """Run every child until SIGINT/SIGTERM or `stop`; return 0 after a clean shutdown."""
    configure_logging(settings.log_format, settings.log_level, tier="supervisor")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    children = assign_ports(child_specs(settings), settings.metrics_port, settings.health_port)
    for child in children:
        if child.metrics_port is not None:
            log.info("child_metrics", child=child.label, url=f"http://127.0.0.1:{child.metrics_port}/metrics")
        if child.health_port is not None:
            log.info("child_health", child=child.label, url=f"http://127.0.0.1:{child.health_port}/readyz")
    keepers = [asyncio.create_task(_keep_running(child, settings, config, stop)) for child in children]
    await asyncio.gather(*keepers)
    return 0


def _child_env(child: ChildSpec, settings: Settings, config: Path | None) -> dict[str, str]:
    """The parent's environment, every setting given explicitly to the supervisor (command-line
    options included, which a child would not otherwise see), and the child's own identity."""
    env = {**os.environ, **settings_env(settings), "TRIBUNAL_RUNTIME__INSTANCE_ID": child.instance_id}
    for name, port in (("TRIBUNAL_METRICS_PORT", child.metrics_port), ("TRIBUNAL_HEALTH_PORT", child.health_port)):
        env.pop(name, None)  # a base port belongs to no child
        if port is not None:
            env[name] = str(port)
    if config is not None:
        env["TRIBUNAL_CONFIG"] = str(config.resolve())
    return env


async def _keep_running(child: ChildSpec, settings: Settings, config: Path | None, stop: asyncio.Event) -> None:
    env = _child_env(child, settings, config)
    pipeline = settings.pipeline
    failures = 0
    while not stop.is_set():
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "tribunal.cli", *child.args, env=env)
        log.info(
            "child_started",
            child=child.label,
            pid=process.pid,
            metrics_port=child.metrics_port,
            health_port=child.health_port,
        )
        waiter = asyncio.create_task(process.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if stop.is_set():
            await _terminate(process, waiter)
            return
        # A child that stayed up as long as the longest backoff was healthy: start counting afresh.
        failures = 1 if time.monotonic() - started >= pipeline.restart_backoff_max_s else failures + 1
        delay = restart_delay(failures, pipeline.restart_backoff_s, pipeline.restart_backoff_max_s)
        log.warning("child_exited", child=child.label, code=process.returncode, failures=failures, restart_in_s=delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


async def _terminate(process: asyncio.subprocess.Process, waiter: asyncio.Task[int]) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), GRACE_S)
        except TimeoutError:
            process.kill()
            await waiter
