"""`tribunal kafka fetch|up|down|status`: the local single-node broker (Maven Central jars)."""

from __future__ import annotations

import typer

from tribunal.cli.common import settings_from
from tribunal.localkafka import LocalBroker, Outcome, speaks_kafka

__all__ = ["register"]

kafka_app = typer.Typer(help="The local single-node Kafka broker (assembled from Maven Central).", no_args_is_help=True)


def _broker(ctx: typer.Context) -> LocalBroker:
    settings = settings_from(ctx)
    return LocalBroker(settings.home, settings.broker)


@kafka_app.command("fetch")
def kafka_fetch(ctx: typer.Context) -> None:
    """Download the broker jars with Maven (cached)."""
    typer.echo(f"kafka jars in {_broker(ctx).fetch()}")


def _foreign_note(address: str) -> str:
    return (
        f"a Kafka broker this checkout did not start already answers on {address}: using it as it is "
        "(`tribunal kafka down` never stops it; for a broker of this checkout's own, set "
        "TRIBUNAL_BROKER__PORT, TRIBUNAL_BROKER__CONTROLLER_PORT and TRIBUNAL_KAFKA__BOOTSTRAP_SERVERS)"
    )


@kafka_app.command("up")
def kafka_up(ctx: typer.Context) -> None:
    """Start the local broker, or reuse the running one (ours or any Kafka on the port); print its address."""
    address, outcome = _broker(ctx).ensure()
    if outcome is Outcome.FOREIGN:
        typer.echo(_foreign_note(address), err=True)
    typer.echo(address)


@kafka_app.command("down")
def kafka_down(ctx: typer.Context) -> None:
    """Stop the local broker by its PID (never a Kafka this checkout did not start)."""
    broker = _broker(ctx)
    if broker.down():
        typer.echo("stopped")
        return
    typer.echo("no broker of this checkout was running")
    if speaks_kafka(broker.settings.port):
        typer.echo(f"{broker.bootstrap} is served by a Kafka this checkout did not start; stop it where it was started")


@kafka_app.command("status")
def kafka_status(ctx: typer.Context) -> None:
    """Print the bootstrap address if a broker answers on the configured port; exit 1 otherwise."""
    broker = _broker(ctx)
    if broker.pid() is not None and broker.reachable():
        typer.echo(broker.bootstrap)
        return
    if speaks_kafka(broker.settings.port):
        typer.echo(_foreign_note(broker.bootstrap), err=True)
        typer.echo(broker.bootstrap)
        return
    typer.echo("down", err=True)
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(kafka_app, name="kafka")
