"""What every command shares: the global options, `--input`/`--json`, settings loading and output.

Settings are built once per invocation here (command-line values > `TRIBUNAL_*` env > the
`--config` TOML file > defaults) and passed down; no command module loads them its own way.

One grammar, as the kafka-* tools and kcat taught users:
- `--config/-c FILE` and `-b/--bootstrap-server HOST:PORT` are global: accepted before the
  command or anywhere after it (`tribunal topics list -b host:9092`), see `hoist_global_options`;
- `--input/-i FILE` names the file a command reads (ingest, demo, eval, train, bench);
- `--json` always means: print exactly one JSON object on stdout instead of text;
- `--version` prints the installed version.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from tribunal.core.errors import TribunalError
from tribunal.core.settings import Settings, load_settings

__all__ = [
    "BootstrapOption",
    "ConfigOption",
    "InputOption",
    "JsonOption",
    "LabelledInputOption",
    "config_path",
    "emit",
    "fail",
    "hoist_global_options",
    "settings_from",
]

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file", exists=True, dir_okay=False),
]
BootstrapOption = Annotated[
    str | None,
    typer.Option("--bootstrap-server", "-b", help="Kafka bootstrap servers, host:port[,host:port] [settings]"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of text")]
InputOption = Annotated[
    Path, typer.Option("--input", "-i", help="Input file: JSONL or CSV, labelled or not", dir_okay=False, exists=True)
]
LabelledInputOption = Annotated[
    Path, typer.Option("--input", "-i", help="Labelled JSONL input (id, text, label)", dir_okay=False, exists=True)
]
# Global options (each takes a value); they may follow the command (see below).
_GLOBAL = frozenset({"--config", "-c", "--bootstrap-server", "-b"})


def hoist_global_options(args: list[str]) -> list[str]:
    """Pure: the global options (`--config FILE`, `-b HOST:PORT`, also as `--opt=V` or `-bV`)
    moved to the front, wherever they were given, so the root command parses them; the rest
    keeps its order. Nothing after `--` is touched. No command defines `-c` or `-b` itself."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg.startswith("--"):
            name, inline = arg.partition("=")[0], "=" in arg
        else:
            name, inline = arg[:2], len(arg) > 2
        if name in _GLOBAL:
            taken = 1 if inline else 2
            front += args[i : i + taken]
            i += taken
            continue
        rest.append(arg)
        i += 1
    return front + rest


def config_path(ctx: typer.Context) -> Path | None:
    """The `--config` file given to the root command, if any."""
    root = ctx.find_root()
    return root.obj.get("config") if isinstance(root.obj, dict) else None


def _bootstrap(ctx: typer.Context) -> str | None:
    root = ctx.find_root()
    return root.obj.get("bootstrap") if isinstance(root.obj, dict) else None


def settings_from(ctx: typer.Context, **overrides: Any) -> Settings:
    """The settings of this invocation; `overrides` hold explicit command-line values, and
    `-b/--bootstrap-server` wins over every other source of `kafka.bootstrap_servers`."""
    bootstrap = _bootstrap(ctx)
    if bootstrap:
        overrides["kafka"] = {**(overrides.get("kafka") or {}), "bootstrap_servers": bootstrap}
    # Invalid settings raise ConfigError naming each bad setting (never its value): `main`
    # prints that one line and exits 2.
    return load_settings(config_path(ctx), **_given(overrides))


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
