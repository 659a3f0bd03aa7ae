"""The `tribunal` command: one entry point, one subcommand per job.

Settings are built once here (env `TRIBUNAL_*` > `--config FILE` > defaults) and passed down.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from tribunal.errors import FatalError, TribunalError
from tribunal.settings import Settings, load_settings

app = typer.Typer(help="Speculative classification on Kafka streams.", no_args_is_help=True, add_completion=False)
kafka_app = typer.Typer(help="The local single-node Kafka broker (assembled from Maven Central).", no_args_is_help=True)
topics_app = typer.Typer(help="Topic administration.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print measured figures.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")
app.add_typer(bench_app, name="bench")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file", exists=True, dir_okay=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text")]


def settings_from(ctx: typer.Context, **overrides: Any) -> Settings:
    """The settings of this invocation; `overrides` hold explicit command-line values."""
    config: Path | None = ctx.obj.get("config") if isinstance(ctx.obj, dict) else None
    try:
        return load_settings(config, **_given(overrides))
    except ValueError as exc:
        raise typer.BadParameter(f"invalid settings: {exc}") from None


def _given(options: dict[str, Any]) -> dict[str, Any]:
    """The options actually given: None (an omitted flag) never overrides env or file values."""
    given = {}
    for name, value in options.items():
        if isinstance(value, dict):
            value = _given(value)
        if value is not None and value != {}:
            given[name] = value
    return given


def emit(data: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


@app.callback()
def main_options(ctx: typer.Context, config: ConfigOption = None) -> None:
    ctx.obj = {"config": config}


# --- broker ----------------------------------------------------------------------------------
def _broker(ctx: typer.Context) -> Any:
    from tribunal.broker import LocalBroker

    settings = settings_from(ctx)
    return LocalBroker(settings.home, settings.broker)


@kafka_app.command("fetch")
def kafka_fetch(ctx: typer.Context) -> None:
    """Download the broker jars with Maven (cached)."""
    typer.echo(f"kafka jars in {_broker(ctx).fetch()}")


@kafka_app.command("up")
def kafka_up(ctx: typer.Context) -> None:
    """Start the local broker, or reuse the running one; print its bootstrap address."""
    typer.echo(_broker(ctx).up())


@kafka_app.command("down")
def kafka_down(ctx: typer.Context) -> None:
    """Stop the local broker by its PID."""
    typer.echo("stopped" if _broker(ctx).down() else "no broker was running")


@kafka_app.command("status")
def kafka_status(ctx: typer.Context) -> None:
    """Print the bootstrap address if the local broker runs and answers; exit 1 otherwise."""
    broker = _broker(ctx)
    if broker.pid() is not None and broker.reachable():
        typer.echo(broker.bootstrap)
        return
    typer.echo("down", err=True)
    raise typer.Exit(1)


# --- topics ----------------------------------------------------------------------------------
@topics_app.command("create")
def topics_create(
    ctx: typer.Context,
    partitions: Annotated[int | None, typer.Option(help="Partitions of items, votes and state")] = None,
) -> None:
    """Create every topic of the pipeline (idempotent)."""
    from tribunal.topics import create_topics

    settings = settings_from(ctx, topics={"partitions": partitions} if partitions else None)
    created = asyncio.run(create_topics(settings))
    typer.echo(f"created {len(created)} topics: {', '.join(created) or '(all existed)'}")


# --- producers -------------------------------------------------------------------------------
@app.command()
def ingest(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="JSONL or CSV file, or - for stdin")],
    topic: Annotated[str | None, typer.Option(help="Target topic (default: the items topic)")] = None,
    task: Annotated[str, typer.Option(help="Task of lines that name none")] = "sentiment",
    fmt: Annotated[str | None, typer.Option("--format", help="jsonl or csv (default: by extension)")] = None,
    json_out: JsonOption = False,
) -> None:
    """Publish items from a file; report rejected lines with their numbers and reasons."""
    from producers.ingest import ingest as run_ingest

    settings = settings_from(ctx)
    report = asyncio.run(run_ingest(settings, path, topic=topic, task=task, fmt=fmt, progress=sys.stderr.isatty()))
    if json_out:
        emit(report.as_dict())
        return
    typer.echo(f"published {report.published} items in {report.seconds:.2f}s, rejected {len(report.rejected)}")
    for rejected in report.rejected[:50]:
        typer.echo(f"  line {rejected.line}: {rejected.reason}")


# --- tiers -----------------------------------------------------------------------------------
@app.command()
def worker(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="Worker name: one consumer group per name")] = None,
    classifier: Annotated[str | None, typer.Option(help="Classifier spec, e.g. vader or tfidf:PATH")] = None,
) -> None:
    """Run a worker: read items, publish one vote per item."""
    from consumers import worker as tier

    settings = settings_from(ctx, worker={"name": name, "classifier": classifier})
    _run_tier(tier.run(settings))


@app.command()
def aggregator(ctx: typer.Context) -> None:
    """Run the aggregator: join votes per item, accept agreed labels, escalate the rest."""
    from consumers import aggregator as tier

    _run_tier(tier.run(settings_from(ctx)))


@app.command()
def judge(
    ctx: typer.Context,
    classifier: Annotated[str | None, typer.Option(help="Classifier spec of the judge model")] = None,
) -> None:
    """Run the judge: settle escalated items with the expensive model."""
    from consumers import judge as tier

    _run_tier(tier.run(settings_from(ctx, judge={"classifier": classifier})))


@app.command("run")
def run_pipeline(ctx: typer.Context) -> None:
    """Start every tier of the configuration as separate processes under one supervisor."""
    from tribunal.supervisor import supervise

    settings = settings_from(ctx)
    config = ctx.obj.get("config") if isinstance(ctx.obj, dict) else None
    raise typer.Exit(asyncio.run(supervise(settings, config)))


def _run_tier(coroutine: Any) -> None:
    try:
        asyncio.run(coroutine)
    except FatalError as exc:
        typer.echo(f"fatal: {exc}", err=True)
        raise typer.Exit(2) from None


def _register_commands() -> None:
    """Commands that live beside the code they drive (models, benchmarks, demo)."""
    from consumers.commands import register as register_model_commands
    from producers.replay import register as register_replay
    from tribunal.bench import register as register_bench
    from tribunal.demo import register as register_demo
    from tribunal.policy_bench import register as register_policy_bench

    register_model_commands(app)
    register_bench(bench_app)
    register_policy_bench(bench_app)
    register_replay(app)
    register_demo(app, bench_app)


_register_commands()


def main() -> None:
    try:
        app()
    except TribunalError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
