"""`tribunal bench cascade|pipeline|peers|tiers|replay|ingest|policies|chaos|learn`.

The benches live in `tribunal.bench` (the top-level bench/ folder), developer tooling outside the
runtime: each command imports its bench when it runs, so no other command loads them. These
functions only parse options, build settings once and print.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import orjson
import typer

from tribunal.cli.common import JsonOption, LabelledInputOption, emit, settings_from
from tribunal.cli.demo import (
    DeadlineOption,
    JudgeOption,
    LimitOption,
    QuorumOption,
    RoundsOption,
    TaskOption,
    WorkerOption,
    demo_input,
    settings_and_config,
)
from tribunal.cli.learn import register as register_learn
from tribunal.core.errors import TribunalError
from tribunal.demo.run import DEFAULT_DEADLINE_MS

__all__ = ["register"]


BENCH_FIELDS = (
    "task", "source", "items", "workers", "judge", "accuracy_cascade", "macro_f1_cascade", "accuracy_judge_only",
    "macro_f1_judge_only", "judge_rate", "decided_by", "judge_overrule_rate", "wall_s_cascade", "wall_s_judge_only",
    "compute_s_cascade", "compute_s_judge_only", "speedup", "expected_speedup", "throughput_items_per_s", "latency_ms",
    "audits", "judge_calls", "judge_call_reduction", "judge_calls_over_time", "first_accept", "disagreement_accepted",
    "escalations_by_reason", "policy",
)  # fmt: skip


def bench_cascade(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option("--input", "-i", help="JSONL or CSV, labelled or not [data/demo/TASK.jsonl]", dir_okay=False),
    ] = None,
    task: TaskOption = "intent",
    limit: LimitOption = None,
    worker: WorkerOption = None,
    judge: JudgeOption = None,
    deadline_ms: DeadlineOption = DEFAULT_DEADLINE_MS,
    quorum: QuorumOption = None,
    rounds: RoundsOption = None,
    json_out: JsonOption = False,
) -> None:
    """Cascade vs judge-only on a real broker: accuracy, judge rate, wall times, speedup."""
    from tribunal.demo.run import DemoOptions, run_demo

    settings, config = settings_and_config(ctx)
    report = run_demo(
        settings,
        config,
        DemoOptions(demo_input(data, task), task, limit, worker, judge, deadline_ms, quorum, rounds=rounds),
    )
    summary = {name: report[name] for name in BENCH_FIELDS if name in report}
    summary["per_worker"] = {n: {k: v for k, v in w.items() if k != "spec"} for n, w in report["per_worker"].items()}
    if json_out:
        emit(summary)
        return
    for name, value in summary.items():
        typer.echo(f"{name:>24}: {orjson.dumps(value).decode() if isinstance(value, dict) else value}")


def _print(result: dict[str, object], json_out: bool, width: int = 16) -> None:
    if json_out:
        emit(result)
        return
    for name, value in result.items():
        typer.echo(f"{name:>{width}}: {value}")


def _register_bench(bench_app: typer.Typer) -> None:
    """`bench pipeline`, `bench peers`, `bench tiers`, `bench replay`, `bench ingest`, `bench policies`."""

    @bench_app.command("chaos")
    def chaos(
        ctx: typer.Context,
        items: Annotated[int, typer.Option(help="Good items to label")] = 3_000,
        kills: Annotated[int, typer.Option(help="kill -9s of tiers while items flow (every tier in turn)")] = 5,
        hostile: Annotated[int, typer.Option(help="Hostile records mixed in (every kind in turn)")] = 72,
        rate: Annotated[float, typer.Option(help="Good items per second")] = 100.0,
        broker_restart: Annotated[bool, typer.Option(help="Crash and restart the (own) broker once mid-run")] = True,
        outage_s: Annotated[float, typer.Option(help="Seconds the broker stays down before it restarts")] = 0.0,
        seed: Annotated[int, typer.Option(help="Seed of every random choice")] = 13,
        json_out: JsonOption = False,
    ) -> None:
        """The pipeline on a broker of its own under kills, a broker crash and hostile records."""
        from tribunal.bench.chaos import ChaosPlan, bench_chaos

        plan = ChaosPlan(items=items, kills=kills, hostile=hostile, rate=rate, broker_restart=broker_restart,
                         outage_s=outage_s, seed=seed)  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="tribunal-chaos-") as directory:
            result = asyncio.run(bench_chaos(settings_from(ctx), plan, Path(directory)))
        if json_out:
            emit(result)
            return
        for name, value in result.items():
            typer.echo(f"{name:>24}: {value}")

    @bench_app.command("ingest")
    def ingest_command(
        ctx: typer.Context,
        items: Annotated[int, typer.Option(help="Short items to publish")] = 200_000,
        json_out: JsonOption = False,
    ) -> None:
        """Throughput of `tribunal ingest` (parse, validate, publish) into the broker."""
        from tribunal.bench.pipeline import bench_ingest

        with tempfile.TemporaryDirectory() as directory:
            result = asyncio.run(bench_ingest(settings_from(ctx), items, Path(directory)))
        if json_out:
            emit(result)
        else:
            typer.echo(f"published {result['published']} items in {result['seconds']}s: {result['items_per_s']}/s")

    @bench_app.command("pipeline")
    def pipeline(
        ctx: typer.Context,
        items: Annotated[int, typer.Option(help="Items in the saturation phase")] = 20_000,
        workers: Annotated[int, typer.Option(help="Worker processes (instant classifiers)")] = 3,
        rate: Annotated[
            list[float] | None, typer.Option(help="Items/s of a fixed-rate latency phase; repeatable [1000, 2000]")
        ] = None,
        rate_items: Annotated[int, typer.Option(help="Items of each fixed-rate phase (0 skips them)")] = 5_000,
        source: Annotated[
            str | None,
            typer.Option(
                help="Also run items in through a source of this format (json, avro) and out through its sink"
            ),
        ] = None,
        json_out: JsonOption = False,
    ) -> None:
        """End-to-end throughput and latency of all tiers, beside the raw broker round trip; with
        --source, beside the same pipeline fed by a source topic and drained by a sink."""
        from tribunal.bench.pipeline import bench_pipeline

        if source not in (None, "json", "avro"):
            raise typer.BadParameter("--source is json or avro")
        rates = rate or [1_000.0, 2_000.0]
        result = asyncio.run(bench_pipeline(settings_from(ctx), items, workers, rates, rate_items, source))
        _print(result, json_out, 28)

    @bench_app.command("peers")
    def peers(
        ctx: typer.Context,
        items: Annotated[int, typer.Option(help="Items in each saturation phase")] = 20_000,
        rate: Annotated[
            list[float] | None, typer.Option(help="Items/s of a fixed-rate latency phase; repeatable [1000, 2000]")
        ] = None,
        rate_items: Annotated[int, typer.Option(help="Items of each fixed-rate phase (0 skips them)")] = 5_000,
        rounds: Annotated[int, typer.Option(min=1, help="Rounds of Tribunal then Quix, alternated")] = 2,
        commit_interval: Annotated[
            float, typer.Option(min=0.001, help="Quix apps' exactly-once commit interval, seconds")
        ] = 0.1,
        peer_python: Annotated[
            Path | None, typer.Option(help="Python of the peer's venv (`make bench-peers`) [.venv-peers/bin/python]")
        ] = None,
        json_out: JsonOption = False,
    ) -> None:
        """Tribunal beside a Quix Streams peer of the same topology, alternated on one broker."""
        from tribunal.bench.peers.run import DEFAULT_PEER_PYTHON, PeerOptions, bench_peers
        from tribunal.bench.peers.run import table as peers_table

        peer_python = peer_python or DEFAULT_PEER_PYTHON
        options = PeerOptions(items=items, rates=tuple(rate or [1_000.0, 2_000.0]), rate_items=rate_items,
                              rounds=rounds, peer_python=peer_python, commit_interval_s=commit_interval)  # fmt: skip
        try:
            result = asyncio.run(bench_peers(settings_from(ctx), options))
        except TribunalError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        if json_out:
            emit(result)
            return
        meta = {k: v for k, v in result.items() if k != "runs"}
        typer.echo(", ".join(f"{k}={v}" for k, v in meta.items()))
        typer.echo(peers_table(result["runs"]))

    @bench_app.command("tiers")
    def tiers(
        ctx: typer.Context,
        items: Annotated[int, typer.Option(help="Items preloaded as the backlog")] = 30_000,
        json_out: JsonOption = False,
    ) -> None:
        """Each tier's CPU per item over a backlog, one tier process at a time."""
        from tribunal.bench.tiers import bench_tiers

        _print(asyncio.run(bench_tiers(settings_from(ctx), items)), json_out)

    @bench_app.command("replay")
    def replay(
        ctx: typer.Context,
        items: Annotated[int, typer.Option(help="Recorded items to replay")] = 1_000_000,
        json_out: JsonOption = False,
    ) -> None:
        """Items/s and peak RSS of `tribunal replay votes` over a recorded pipeline of N items."""
        from tribunal.bench.replay import bench_replay

        _print(asyncio.run(bench_replay(settings_from(ctx), items)), json_out)

    @bench_app.command("policies")
    def policies(
        ctx: typer.Context,
        task: Annotated[str, typer.Option("--task", "-t", help="Task name from the tasks file")],
        data: LabelledInputOption,
        limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="First N items only")] = None,
        stride: Annotated[int, typer.Option("--stride", min=1, help="Every K-th row (spread-out sample)")] = 1,
        batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Items per classify() call")] = 32,
        png: Annotated[Path | None, typer.Option("--png", help="Write the accuracy/judge-rate plot here")] = None,
        cache: Annotated[Path | None, typer.Option("--cache", help="Recording file: reused if present")] = None,
        json_out: JsonOption = False,
        orders: Annotated[int, typer.Option("--orders", min=0, help="Target policy: K shuffled stream orders")] = 10,
        targets: Annotated[
            list[float] | None, typer.Option("--target", help="max_disagreement to bench (repeat) [0.02 0.05 0.1]")
        ] = None,
        warm_share: Annotated[
            float, typer.Option("--warm-share", min=0.0, max=0.9, help="Warm start from this share of each order")
        ] = 0.0,
        warm_cache: Annotated[
            Path | None, typer.Option("--warm", help="Warm start from this recording file (other data)")
        ] = None,
    ) -> None:
        """Judge rate, accuracy, macro-F1 and estimated speedup of each policy on recorded votes;
        the target policy prequentially over K stream orders, cold and warm start."""
        from tribunal.bench.policies import bench_policies, latencies, plot, table
        from tribunal.bench.target import DEFAULT_TARGETS, bench_config, bench_target, summary_table
        from tribunal.offline.recording import load_or_record, load_recording

        settings = settings_from(ctx)
        try:
            recording = load_or_record(settings.tasks(), task, data, (limit, stride), batch_size, cache)
            warm = load_recording(warm_cache) if warm_cache is not None else None
        except TribunalError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        scores = bench_policies(recording)
        config = bench_config(settings)
        chosen = tuple(targets or DEFAULT_TARGETS)
        summaries = bench_target(recording, config, chosen, orders, warm_share, warm) if orders else []
        title = f"{task} on {data.parent.name}/{data.name} ({len(recording.items)} items)"
        if png is not None:
            plot(scores, title, png)
        meta = {"task": task, "data": str(data), "items": len(recording.items), **latencies(recording)}
        specs = settings_from(ctx).tasks().get(task)
        workers = dict(zip(recording.workers, specs.workers, strict=False))
        meta |= {"workers": workers, "judge": specs.judge}
        meta |= {"machine": f"{platform.machine()} {os.cpu_count()} cores, Python {sys.version.split()[0]}"}
        meta |= {"target_settings": settings.aggregator.target.model_dump()}
        if json_out:
            emit({**meta, "policies": [s.as_dict() for s in scores], "target": [t.as_dict() for t in summaries]})
            return
        typer.echo(f"{title}; " + ", ".join(f"{k}={v:.3f}" for k, v in latencies(recording).items()))
        typer.echo("workers: " + ", ".join(f"{w}={s}" for w, s in workers.items()) + f"; judge={specs.judge}")
        typer.echo(table(scores))
        if summaries:
            typer.echo(f"\ntarget policy, {orders} shuffled orders, every item counted (warm-up included):")
            typer.echo(summary_table(summaries))


def register(app: typer.Typer) -> None:
    """The `bench` group and its commands."""
    bench_app = typer.Typer(help="Benchmarks that print measured figures.", no_args_is_help=True)
    bench_app.command("cascade")(bench_cascade)
    _register_bench(bench_app)
    register_learn(bench_app)
    app.add_typer(bench_app, name="bench")
