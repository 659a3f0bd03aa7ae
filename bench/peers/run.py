"""`tribunal bench peers`: Tribunal's pipeline beside a Quix Streams peer of the same topology.

Both systems run in one command on one broker, alternating (Tribunal, Quix, Tribunal, Quix for
two rounds), each on fresh topics of its own that are deleted afterwards, and both are measured
by the same code (`tribunal.bench.probes`): saturation throughput, label latency at saturation
and at fixed rates, CPU per item of each process, and every item's label count.

The peer (bench/peers/quix/) runs in its own virtual environment (`make bench-peers`): Tribunal
never imports quixstreams; this module only starts that environment's Python on the peer's apps.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic

from tribunal.bench.pipeline import start_tiers
from tribunal.bench.probes import (
    LabelWatcher,
    exactly_once,
    phase,
    stop_processes,
)
from tribunal.core import kafka
from tribunal.core.errors import ConfigError
from tribunal.core.settings import Settings
from tribunal.core.topics import create_topics, delete_topics, describe_partition_counts, list_topics

__all__ = ["DEFAULT_PEER_PYTHON", "PEER_APP", "PeerOptions", "bench_peers", "run_system", "run_topics", "table"]

REPO = Path(__file__).resolve().parents[2]
PEER_APP = REPO / "bench" / "peers" / "quix" / "pipeline.py"
DEFAULT_PEER_PYTHON = REPO / ".venv-peers" / "bin" / "python"
WARMUP_ITEMS = 200  # groups joined and code paths warm before anything is measured
GRACE_S = 2.0  # after the last phase: a late second label of an item would show up here
SYSTEMS = ("tribunal", "quix")

Processes = dict[str, asyncio.subprocess.Process]
Starter = Callable[[Settings, list[str]], Awaitable[Processes]]


@dataclass(frozen=True, slots=True)
class PeerOptions:
    items: int = 20_000
    rates: tuple[float, ...] = (1_000.0, 2_000.0)
    rate_items: int = 5_000
    rounds: int = 2
    workers: int = 3
    quorum: int = 2  # the peer's; Tribunal's aggregator decides by its configured policy
    task: str = "sentiment"
    labels: tuple[str, ...] = ()  # the peer's label set; empty: the task's (tests pass more labels)
    peer_python: Path = DEFAULT_PEER_PYTHON
    # Quix commits (and so makes labels visible under exactly-once) every this many seconds.
    commit_interval_s: float = 0.1


def run_topics(existing: Sequence[str], prefix: str) -> list[str]:
    """The topics of one run: its own and those Quix derived from its group names (changelogs,
    repartitions), which all carry the run's unique prefix."""
    return sorted(name for name in existing if prefix in name)


def _with_prefix(settings: Settings, prefix: str) -> Settings:
    return settings.model_copy(update={"topics": settings.topics.model_copy(update={"prefix": prefix})})


async def _tribunal(settings: Settings, names: list[str]) -> Processes:
    return {tier: t.process for tier, t in (await start_tiers(settings, names)).items()}


def _quix_starter(options: PeerOptions, labels: Sequence[str], state_dir: Path) -> Starter:
    async def start(settings: Settings, names: list[str]) -> Processes:
        common = (
            f"--broker={settings.kafka.bootstrap_servers}",
            f"--prefix={settings.topics.prefix}",
            f"--labels={','.join(labels)}",
            f"--workers={len(names)}",
            f"--quorum={options.quorum}",
            f"--commit-interval={options.commit_interval_s}",
            f"--state-dir={state_dir}",
        )
        roles: dict[str, tuple[str, ...]] = {name: ("worker", f"--name={name}") for name in names}
        roles |= {"aggregator": ("aggregator",), "judge": ("judge",)}
        processes = {}
        for tier, args in roles.items():
            processes[tier] = await asyncio.create_subprocess_exec(
                str(options.peer_python), str(PEER_APP), *args, *common, env=_peer_env()
            )
        return processes

    return start


def _peer_env() -> dict[str, str]:
    # The peer reads no TRIBUNAL_ setting; its own venv, not ours, must resolve its imports.
    return {k: v for k, v in os.environ.items() if not k.startswith(("TRIBUNAL_", "PYTHON", "VIRTUAL_ENV"))}


async def _create_peer_topics(settings: Settings) -> None:
    """The peer's four topics with Tribunal's partition counts (items and votes equal: the
    aggregator joins them per partition), so neither system gets more parallelism."""
    t = settings.topics
    sizes = {t.items_topic: t.partitions, t.votes_topic: t.partitions}
    sizes |= {t.judge_topic: t.judge_partitions, t.labels_topic: t.labels_partitions}
    admin = kafka.admin_client(settings.kafka)
    await kafka.start(admin, settings.kafka)
    try:
        await admin.create_topics([NewTopic(n, p, t.replication_factor) for n, p in sizes.items()])
    finally:
        await admin.close()


async def _await_leaders(settings: Settings, timeout_s: float = 15.0) -> None:
    """Until every partition of the run's main topics has a leader: a fresh topic's first
    produce and fetch otherwise retry with a warning per partition, noise in the output."""
    t = settings.topics
    names = [t.items_topic, t.votes_topic, t.judge_topic, t.labels_topic]
    admin = kafka.admin_client(settings.kafka)
    await kafka.start(admin, settings.kafka)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            described = await admin.describe_topics(names)
            partitions = [p for d in described for p in d.get("partitions", [])]
            if len(described) == len(names) and partitions and all(p.get("leader", -1) >= 0 for p in partitions):
                return
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def _records_written(settings: Settings) -> int:
    """Sum of the end offsets of every topic of the run, Quix's changelogs included: the records
    (and transaction markers) it has written so far, counted the same way for both systems."""
    listed = await list_topics(settings, everything=True)
    mine = run_topics([str(topic["name"]) for topic in listed], settings.topics.prefix)
    counts = await describe_partition_counts(settings, mine) if mine else {}
    consumer = AIOKafkaConsumer(**kafka.connection_options(settings.kafka))
    await consumer.start()
    try:
        tps = [TopicPartition(name, p) for name, count in counts.items() for p in range(count)]
        return sum((await consumer.end_offsets(tps)).values()) if tps else 0
    finally:
        await consumer.stop()


async def _delete_run(settings: Settings) -> list[str]:
    listed = await list_topics(settings, everything=True)
    names = [str(topic["name"]) for topic in listed]
    return await delete_topics([settings], extra=run_topics(names, settings.topics.prefix))


async def _measure_system(settings: Settings, start: Starter, options: PeerOptions) -> dict[str, Any]:
    """One system's run: warm-up, saturation (CPU measured), paced phases; the same for both."""
    names = [f"w{n + 1}" for n in range(options.workers)]
    watcher = LabelWatcher(settings)
    await watcher.start()
    processes = await start(settings, names)
    paced: list[dict[str, Any]] = []
    ids = [f"warmup-{n}" for n in range(WARMUP_ITEMS)] + [f"load-{n}" for n in range(options.items)]
    try:
        warmup = await phase(settings, watcher, "warmup", WARMUP_ITEMS, None)
        if warmup["labelled"] < WARMUP_ITEMS:
            dead = {tier: p.returncode for tier, p in processes.items() if p.returncode is not None}
            raise RuntimeError(f"warm-up labelled {warmup['labelled']} of {WARMUP_ITEMS}; exited: {dead}")
        pids = {tier: p.pid for tier, p in processes.items()}
        records_before = await _records_written(settings)
        saturated = await phase(settings, watcher, "load", options.items, None, pids)
        records = await _records_written(settings) - records_before
        for n, rate in enumerate(options.rates if options.rate_items else ()):
            figures = await phase(settings, watcher, f"paced{n}", options.rate_items, rate, pids)
            paced.append({**figures, "rate": rate})
            ids += [f"paced{n}-{i}" for i in range(options.rate_items)]
        await asyncio.sleep(GRACE_S)
    finally:
        await stop_processes(list(processes.values()))
        await watcher.stop()
    cpu: dict[str, float] = saturated["cpu_us_per_item"]
    return {
        "saturated": saturated,
        "paced": paced,
        "cpu_us_per_item": cpu | {"total": round(sum(cpu.values()), 1)},
        "broker_records_per_item": round(records / max(options.items, 1), 2),
        "produced": len(ids),
        **exactly_once(watcher.seen, ids),
    }


async def run_system(settings: Settings, system: str, options: PeerOptions) -> dict[str, Any]:
    """One system on fresh topics under a unique prefix, deleted afterwards whatever happens."""
    prefix = f"{system[0]}peer-{uuid.uuid4().hex[:8]}-"
    settings = _with_prefix(settings, prefix)
    with tempfile.TemporaryDirectory(prefix="tribunal-quix-state-") as state_dir:
        if system == "tribunal":
            await create_topics(settings)
            start: Starter = _tribunal
        else:
            await _create_peer_topics(settings)
            labels = options.labels or tuple(settings.tasks().get(options.task).labels)
            start = _quix_starter(options, labels, Path(state_dir))
        try:
            await _await_leaders(settings)
            return {"prefix": prefix, **await _measure_system(settings, start, options)}
        finally:
            await _delete_run(settings)


async def bench_peers(settings: Settings, options: PeerOptions) -> dict[str, Any]:
    """Alternate Tribunal and the Quix peer for `options.rounds` rounds; every run's figures."""
    if not options.peer_python.exists():
        raise ConfigError(f"no {options.peer_python}: run `make bench-peers` to install the Quix peer")
    runs = []
    for n in range(options.rounds):
        for system in SYSTEMS:
            runs.append({"system": system, "round": n + 1, **await run_system(settings, system, options)})
    return {
        "items": options.items,
        "rate_items": options.rate_items,
        "rates": list(options.rates),
        "workers": options.workers,
        "tribunal_policy": settings.aggregator.policy,
        "quix_quorum": options.quorum,
        "quix_commit_interval_s": options.commit_interval_s,
        "cores": os.cpu_count(),
        "runs": runs,
    }


def _latency(figures: Mapping[str, Any]) -> str:
    ms = figures["latency_ms"]
    return f"{ms['p50']:g} / {ms['p95']:g} / {ms['p99']:g}"


def _busy(figures: Mapping[str, Any]) -> str:
    busy = figures.get("machine_busy_share")
    return "-" if busy is None else f"{busy:.0%}"


def _rows(run: Mapping[str, Any], tiers: Sequence[str]) -> dict[str, str]:
    saturated = run["saturated"]
    rows = {
        "saturation items/s": f"{saturated['throughput_items_per_s']:g}",
        "saturation p50/p95/p99 ms": _latency(saturated),
    }
    rows["saturation: machine busy share"] = _busy(saturated)
    for paced in run["paced"]:
        rows[f"{paced['rate']:g}/s achieved items/s"] = f"{paced['throughput_items_per_s']:g}"
        rows[f"{paced['rate']:g}/s p50/p95/p99 ms"] = _latency(paced)
        rows[f"{paced['rate']:g}/s machine busy share"] = _busy(paced)
    for tier in tiers:
        rows[f"CPU µs/item {tier}"] = f"{run['cpu_us_per_item'].get(tier, '-')}"
    for name, us in saturated.get("cpu_us_per_item_beside", {}).items():
        rows[f"CPU µs/item {name} (beside)"] = f"{us:g}"
    rows["broker records/item (saturation)"] = f"{run['broker_records_per_item']:g}"
    rows["judge share (saturation)"] = f"{saturated['judge_share']:g}"
    rows["labelled / produced"] = f"{run['produced'] - run['missing']} / {run['produced']}"
    rows["duplicates"] = str(run["duplicates"])
    rows["missing"] = str(run["missing"])
    return rows


def table(runs: Sequence[Mapping[str, Any]]) -> str:
    """The runs side by side, one column per run in the order they ran."""
    tiers = list(dict.fromkeys(tier for run in runs for tier in run["cpu_us_per_item"] if tier != "total"))
    tiers.append("total")
    columns = [_rows(run, tiers) for run in runs]
    names = list(dict.fromkeys(name for column in columns for name in column))
    headers = [f"{run['system']} #{run['round']}" for run in runs]
    widths = [max(len(h), *(len(c.get(n, "-")) for n in names)) for h, c in zip(headers, columns, strict=True)]
    label_width = max(len(n) for n in names)
    lines = [" " * label_width + "  " + "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    for name in names:
        cells = (c.get(name, "-").rjust(w) for c, w in zip(columns, widths, strict=True))
        lines.append(name.ljust(label_width) + "  " + "  ".join(cells))
    return "\n".join(lines)
