"""`tribunal kafka fetch|up|down|status`: the local single-node broker (Maven Central jars)."""

from __future__ import annotations

import typer

from tribunal.cli.common import settings_from
from tribunal.core.broker import LocalBroker

__all__ = ["register"]

kafka_app = typer.Typer(help="The local single-node Kafka broker (assembled from Maven Central).", no_args_is_help=True)


def _broker(ctx: typer.Context) -> LocalBroker:
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


def register(app: typer.Typer) -> None:
    app.add_typer(kafka_app, name="kafka")
