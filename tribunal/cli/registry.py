"""`tribunal registry fetch|up|status|down`: the local Schema Registry (Apicurio, from Maven Central)."""

from __future__ import annotations

import typer

from tribunal.cli.common import settings_from
from tribunal.localregistry import LocalRegistry

__all__ = ["register"]

registry_app = typer.Typer(
    help="The local Schema Registry (Apicurio Registry built from Maven Central; Confluent-compatible API).",
    no_args_is_help=True,
)


def _registry(ctx: typer.Context) -> LocalRegistry:
    settings = settings_from(ctx)
    return LocalRegistry(settings.home, settings.registry)


def _announce(message: str) -> None:
    typer.echo(message, err=True)


@registry_app.command("fetch")
def registry_fetch(ctx: typer.Context) -> None:
    """Build the registry app with Maven, once (artifacts cached in ~/.m2)."""
    typer.echo(f"registry app: {_registry(ctx).fetch(_announce)}")


@registry_app.command("up")
def registry_up(ctx: typer.Context) -> None:
    """Start the local registry, or keep the running one; print the setting that points Tribunal at it."""
    typer.echo(f"TRIBUNAL_REGISTRY__URL={_registry(ctx).start(_announce)}")


@registry_app.command("status")
def registry_status(ctx: typer.Context) -> None:
    """Say whether this checkout's registry runs (PID, URL); exit 1 if it does not."""
    status = _registry(ctx).status()
    if status.pid is None:
        typer.echo("stopped")
        raise typer.Exit(1)
    state = "running" if status.ready else "running, not ready yet"
    typer.echo(f"{state} (pid {status.pid}) at {status.url}")


@registry_app.command("down")
def registry_down(ctx: typer.Context) -> None:
    """Stop this checkout's registry by its PID (never a registry this checkout did not start)."""
    typer.echo("stopped" if _registry(ctx).stop() else "no registry of this checkout was running")


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
