"""The `tribunal` command: one entry point, one module per command group (the faust pattern).

`common` holds the shared options and settings loading; each module below defines its commands
and a `register(app)`; this umbrella imports them. Nothing imports this module back.
"""

from __future__ import annotations

import signal
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer
from aiokafka.errors import KafkaConnectionError
from typer.core import TyperGroup

from tribunal.cli import (
    bench,
    broker,
    calibrate,
    demo,
    dlq,
    fit,
    ingest,
    models,
    registry,
    replay,
    source,
    tiers,
    topics,
)
from tribunal.cli.common import BootstrapOption, ConfigOption, hoist_global_options
from tribunal.core.errors import BrokerUnavailableError, ExitCode, TribunalError
from tribunal.core.logs import get_logger, is_configured

__all__ = ["app", "main"]


class _GlobalOptionsGroup(TyperGroup):
    """The root group: `--config` and `-b` are parsed here wherever they were written."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's vendored click.Context
        parsed: list[str] = super().parse_args(ctx, hoist_global_options(list(args)))
        return parsed


app = typer.Typer(
    cls=_GlobalOptionsGroup,
    help="Speculative classification on Kafka streams.",
    no_args_is_help=True,
    add_completion=False,
)


def _installed_version() -> str:
    try:
        return version("tribunal")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tribunal {_installed_version()}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config: ConfigOption = None,
    bootstrap: BootstrapOption = None,
    _version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit"),
    ] = False,
) -> None:
    ctx.obj = {"config": config, "bootstrap": bootstrap}


for module in (broker, registry, topics, ingest, source, tiers, models, fit, calibrate, replay, dlq, demo, bench):
    module.register(app)


def main() -> None:
    """Every failure ends in one line (a log line for a tier) and an `ExitCode`, never a traceback."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app()
    except (BrokerUnavailableError, KafkaConnectionError) as exc:
        _say(exc)
        sys.exit(ExitCode.BROKER_UNAVAILABLE)
    except TribunalError as exc:
        _say(exc)
        sys.exit(ExitCode.FATAL)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C: a command's clean-up runs (a bench or demo stops the broker and tier
    processes it started) instead of the process vanishing and leaving them behind. Tiers and the
    supervisor install their own handlers while they run (a graceful stop)."""
    raise KeyboardInterrupt


def _say(exc: Exception) -> None:
    if is_configured():  # a tier: its last log line says what to fix, as JSON in JSON mode
        get_logger("tribunal.cli").error("fatal_error", error=str(exc), error_type=type(exc).__name__)
    else:
        typer.echo(f"error: {exc}", err=True)
