"""The demo's tier processes and the reader that watches their output topics.

`Tiers` starts one `tribunal` process per child of a pipeline (`child_env` is its environment) and
stops them gracefully; `Collector` reads the run's topics from their beginning into memory and
waits until a count reaches its goal, failing fast when a tier dies or nothing moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

from tribunal.core import kafka
from tribunal.core.errors import FatalError
from tribunal.core.settings import Settings
from tribunal.core.supervisor import ChildSpec, child_specs
from tribunal.schemas.codec import DecodeError, decode
from tribunal.schemas.messages import VoteBatch

__all__ = ["Collector", "DemoError", "Progress", "Tiers", "child_env"]

GRACE_S = 15.0
# A pass fails when no new record arrives for this long: a stuck tier, not a slow one.
STALL_TIMEOUT_S = 180.0

Progress = Callable[[str, int, int], None]  # (phase, done, total)


class DemoError(FatalError):
    """The demo could not complete: a tier died, or a pass stopped making progress."""


def child_env(settings: Settings, child: ChildSpec, config: Path | None) -> dict[str, str]:
    """The environment of one tier process: the caller's own (credentials, TRIBUNAL_CONFIG) plus
    the settings this run chose, which win."""
    topics, aggregator = settings.topics, settings.aggregator
    env = dict(os.environ)
    env.update(
        TRIBUNAL_KAFKA__BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers,
        TRIBUNAL_TOPICS__PREFIX=topics.prefix,
        TRIBUNAL_AGGREGATOR__WORKERS=json.dumps(list(aggregator.workers)),
        TRIBUNAL_AGGREGATOR__QUORUM=str(aggregator.quorum),
        TRIBUNAL_AGGREGATOR__DEADLINE_MS=str(aggregator.deadline_ms),
        TRIBUNAL_JUDGE__CLASSIFIER=settings.judge.classifier,
        TRIBUNAL_RUNTIME__INSTANCE_ID=f"{topics.prefix}{child.instance_id}",
        TRIBUNAL_HOME=str(settings.home),
        TRIBUNAL_LOG_FORMAT="json",
        TRIBUNAL_LOG_LEVEL="warning",
    )
    if settings.judge.batch_size is not None:
        env["TRIBUNAL_JUDGE__BATCH_SIZE"] = str(settings.judge.batch_size)
    # The caller's metrics or health port would be bound by the first tier and crash the others.
    env.pop("TRIBUNAL_METRICS_PORT", None)
    env.pop("TRIBUNAL_HEALTH_PORT", None)
    if config is not None:
        env["TRIBUNAL_CONFIG"] = str(config.resolve())
    return env


def _args(child: ChildSpec, settings: Settings) -> tuple[str, ...]:
    """The child's command line; a judge is given its classifier explicitly because `tribunal
    judge` without `--classifier` overrides TRIBUNAL_JUDGE__CLASSIFIER with None."""
    return (*child.args, "--classifier", settings.judge.classifier) if child.args == ("judge",) else child.args


class Tiers:
    """The tier processes of a run; each writes its output to its own log file."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._running: list[tuple[ChildSpec, asyncio.subprocess.Process, IO[bytes], Path]] = []

    async def start(self, settings: Settings, config: Path | None) -> None:
        """Start one process per child of `settings`' pipeline."""
        self._log_dir.mkdir(parents=True, exist_ok=True)
        for child in child_specs(settings):
            log_path = self._log_dir / f"{settings.topics.prefix}{child.label.replace(':', '-')}.log"
            log = log_path.open("wb")
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tribunal.cli", *_args(child, settings),
                env=child_env(settings, child, config), stdout=log, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            self._running.append((child, process, log, log_path))

    def check(self) -> None:
        """Raise `DemoError` naming the first tier that exited, with the end of its log."""
        for child, process, _, log_path in self._running:
            if process.returncode is not None:
                tail = log_path.read_text(encoding="utf-8", errors="replace")[-1500:]
                raise DemoError(f"tier {child.label} exited with status {process.returncode}; {log_path}:\n{tail}")

    async def stop(self) -> None:
        """SIGTERM every tier (each finishes its batch and commits), SIGKILL what outlives the grace."""
        for _, process, _, _ in self._running:
            if process.returncode is None:
                process.terminate()
        waits = [asyncio.wait_for(process.wait(), GRACE_S) for _, process, _, _ in self._running]
        for (_, process, log, _), result in zip(
            self._running, await asyncio.gather(*waits, return_exceptions=True), strict=True
        ):
            if isinstance(result, TimeoutError):
                process.kill()
                await process.wait()
            log.close()
        self._running.clear()


def _has_leader(consumer: Any, tp: Any) -> bool:
    leader = consumer._client.cluster.leader_for_partition(tp)
    return leader is not None and leader >= 0


class Collector:
    """Reads topics from their beginning (read_committed, no consumer group) into memory."""

    def __init__(self, settings: Settings, models: dict[str, type[BaseModel]], tiers: Tiers) -> None:
        self.records: dict[str, list[Any]] = {topic: [] for topic in models}
        self._settings = settings
        self._models = models
        self._tiers = tiers
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from aiokafka import TopicPartition

        consumer = kafka.consumer(self._settings.kafka, self._settings.runtime, group_id=None)
        await consumer.start()
        tps: list[TopicPartition] = []
        for _ in range(60):  # topics created a moment ago take a while to appear in metadata
            await consumer._client.force_metadata_update()
            found = {t: consumer.partitions_for_topic(t) for t in self._models}
            tps = [TopicPartition(t, p) for t, parts in found.items() for p in sorted(parts or ())]
            # Reading before every partition has a leader makes aiokafka log errors while it retries.
            if all(found.values()) and all(_has_leader(consumer, tp) for tp in tps):
                break
            await asyncio.sleep(0.5)
        else:
            await consumer.stop()
            raise DemoError(f"topics {sorted(self._models)} did not appear in the broker's metadata")
        consumer.assign(tps)
        for tp in tps:  # fresh topics start at 0; seeking there needs no offset lookup to fail and log
            consumer.seek(tp, 0)
        self._task = asyncio.create_task(self._run(consumer))

    async def _run(self, consumer: Any) -> None:
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=5_000)
                for tp, records in batch.items():
                    for record in records:
                        self.records[tp.topic] += self._decode(record.value, tp.topic)
                if batch:
                    self._changed.set()
        finally:
            await consumer.stop()

    def _decode(self, value: bytes | None, topic: str) -> list[Any]:
        """The record's messages: a VoteBatch as its votes, anything else as itself."""
        try:
            message = decode(value, self._models[topic])
        except DecodeError as exc:
            raise DemoError(f"unreadable record on {topic}: {exc}") from None
        return message.expand() if isinstance(message, VoteBatch) else [message]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_for(self, count: Callable[[], int], goal: int, phase: str, progress: Progress,
                       shown: int | None = None, stall_s: float = STALL_TIMEOUT_S) -> None:  # fmt: skip
        """Return once `count()` reaches `goal`; fail if a tier dies or nothing new arrives for
        `stall_s`. Progress is reported out of `shown` (default `goal`)."""
        total = shown or goal
        last, last_change = -1, time.monotonic()
        while (done := count()) < goal:
            if self._task is not None and self._task.done():
                self._task.result()  # surfaces the reader's error
            self._tiers.check()
            if done != last:
                last, last_change = done, time.monotonic()
                progress(phase, done, total)
            elif time.monotonic() - last_change > stall_s:
                raise DemoError(f"{phase}: no progress for {stall_s:.0f}s at {done}/{total}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.5)
        progress(phase, goal, total)
