"""`tribunal ingest`: publish items from a JSONL or CSV file (or stdin)."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from tribunal.cli.common import JsonOption, emit, settings_from

__all__ = ["register"]


def ingest(
    ctx: typer.Context,
    path: Annotated[str, typer.Option("--input", "-i", help="Input file: JSONL or CSV, or - for stdin")],
    topic: Annotated[str | None, typer.Option(help="Target topic (default: the items topic)")] = None,
    task: Annotated[str, typer.Option(help="Task of lines that name none")] = "sentiment",
    fmt: Annotated[str | None, typer.Option("--format", help="jsonl or csv (default: by extension)")] = None,
    json_out: JsonOption = False,
) -> None:
    """Publish items from a file; report rejected lines with their numbers and reasons.

    Exit code 0 when every line was published, 4 when some were rejected, 5 when all were."""
    from tribunal.producers.ingest import ingest as run_ingest

    settings = settings_from(ctx)
    report = asyncio.run(run_ingest(settings, path, topic=topic, task=task, fmt=fmt, progress=sys.stderr.isatty()))
    if json_out:
        emit(report.as_dict())
    else:
        typer.echo(f"published {report.published} items in {report.seconds:.2f}s, rejected {len(report.rejected)}")
        for rejected in report.rejected[:50]:
            typer.echo(f"  line {rejected.line}: {rejected.reason}")
    raise typer.Exit(report.exit_code())


def register(app: typer.Typer) -> None:
    app.command()(ingest)
