"""What every command shares: the `--config`/`--json` options, settings loading and output.

Settings are built once per invocation here (command-line values > `TRIBUNAL_*` env > the
`--config` TOML file > defaults) and passed down; no command module loads them its own way.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from tribunal.core.errors import TribunalError
from tribunal.core.settings import Settings, load_settings

__all__ = ["ConfigOption", "JsonOption", "config_path", "emit", "fail", "settings_from"]

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file", exists=True, dir_okay=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text")]


def config_path(ctx: typer.Context) -> Path | None:
    """The `--config` file given to the root command, if any."""
    root = ctx.find_root()
    return root.obj.get("config") if isinstance(root.obj, dict) else None


def settings_from(ctx: typer.Context, **overrides: Any) -> Settings:
    """The settings of this invocation; `overrides` hold explicit command-line values."""
    try:
        return load_settings(config_path(ctx), **_given(overrides))
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
    """Print one JSON object (the meaning of `--json` in every command)."""
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def fail(exc: TribunalError | ValueError) -> typer.Exit:
    """A one-line error on stderr and exit status 2 (bad spec, missing data, label set mismatch)."""
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)
