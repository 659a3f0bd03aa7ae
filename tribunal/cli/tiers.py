"""`tribunal worker|aggregator|judge|run`: the tiers, one process each or under one supervisor."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Annotated, Any

import typer

from tribunal.cli.common import config_path, settings_from
from tribunal.core.errors import BrokerUnavailableError, ExitCode, FatalError

__all__ = ["register"]


def worker(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="Worker name: one consumer group per name")] = None,
    classifier: Annotated[str | None, typer.Option(help="Classifier spec, e.g. vader or tfidf:PATH")] = None,
) -> None:
    """Run a worker: read items, publish one vote per item."""
    from tribunal.consumers import worker as tier

    settings = settings_from(ctx, worker={"name": name, "classifier": classifier})
    _run_tier(tier.run(settings))


def aggregator(ctx: typer.Context) -> None:
    """Run the aggregator: join votes per item, accept agreed labels, escalate the rest."""
    from tribunal.consumers.aggregator import processor as tier

    _run_tier(tier.run(settings_from(ctx)))


def judge(
    ctx: typer.Context,
    classifier: Annotated[str | None, typer.Option(help="Classifier spec of the judge model")] = None,
) -> None:
    """Run the judge: settle escalated items with the expensive model."""
    from tribunal.consumers import judge as tier

    _run_tier(tier.run(settings_from(ctx, judge={"classifier": classifier})))


def intake(
    ctx: typer.Context,
    source: Annotated[str, typer.Option(help="Name of the [[source]] to read")],
) -> None:
    """Run an intake: read a source topic of your own, publish its records as items."""
    from tribunal.consumers import intake as tier

    _run_tier(tier.run(settings_from(ctx), source))


def sink(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--sink", help="Name of the [[sink]] to write")],
) -> None:
    """Run a sink: write each decided source record, enriched with its label, to the sink topic."""
    from tribunal.consumers import sink as tier

    _run_tier(tier.run(settings_from(ctx), name))


def run_pipeline(ctx: typer.Context) -> None:
    """Start every tier of the configuration as separate processes under one supervisor."""
    from tribunal.core.supervisor import supervise

    settings = settings_from(ctx)
    raise typer.Exit(asyncio.run(supervise(settings, config_path(ctx))))


def _run_tier(coroutine: Coroutine[Any, Any, None]) -> None:
    try:
        asyncio.run(coroutine)
    except BrokerUnavailableError as exc:
        typer.echo(f"fatal: {exc}", err=True)
        raise typer.Exit(ExitCode.BROKER_UNAVAILABLE) from None
    except FatalError as exc:
        typer.echo(f"fatal: {exc}", err=True)
        raise typer.Exit(ExitCode.FATAL) from None


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(aggregator)
    app.command()(judge)
    app.command()(intake)
    app.command()(sink)
    app.command("run")(run_pipeline)
