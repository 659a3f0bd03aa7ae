"""The `tribunal` command: one entry point, one module per command group (the faust pattern).

`common` holds the shared options and settings loading; each module below defines its commands
and a `register(app)`; this umbrella imports them. Nothing imports this module back.
"""

from __future__ import annotations

import sys

import typer

from tribunal.cli import broker, ingest, lab, models, replay, tiers, topics
from tribunal.cli.common import ConfigOption
from tribunal.core.errors import TribunalError
from tribunal.core.logs import get_logger, is_configured

__all__ = ["app", "main"]

app = typer.Typer(help="Speculative classification on Kafka streams.", no_args_is_help=True, add_completion=False)


@app.callback()
def main_options(ctx: typer.Context, config: ConfigOption = None) -> None:
    ctx.obj = {"config": config}


for module in (broker, topics, ingest, tiers, models, replay, lab):
    module.register(app)


def main() -> None:
    try:
        app()
    except TribunalError as exc:
        if is_configured():  # a tier: its last log line says what to fix, as JSON in JSON mode
            get_logger("tribunal.cli").error("fatal_error", error=str(exc), error_type=type(exc).__name__)
        else:
            typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
