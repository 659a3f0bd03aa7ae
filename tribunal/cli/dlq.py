"""`tribunal dlq show|replay`: read dead letters back, and re-publish them exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from tribunal.cli.common import JsonOption, emit, fail, settings_from
from tribunal.core.errors import TribunalError
from tribunal.producers.dlq import dlq_topics, parse_fixes, read_letters, replay_letters

__all__ = ["register"]

dlq_app = typer.Typer(help="Dead letters: show why records failed, re-publish them when fixed.", no_args_is_help=True)
TopicOption = Annotated[
    str | None, typer.Option("--topic", "-t", help="A DLQ topic [every DLQ of the pipeline / the items DLQ]")
]


def _print_letter(letter: dict[str, Any]) -> None:
    if "unreadable" in letter:
        typer.echo(f"{letter['id']}  UNREADABLE: {letter['unreadable']}")
        return
    typer.echo(
        f"{letter['id']}  from {letter['source_topic']}[{letter['source_partition']}]@{letter['source_offset']}"
        f"  tier={letter['tier']}  {letter['error_kind']}: {letter['error_message']}"
    )
    typer.echo(f"    {letter['value_encoding']}: {letter['value'][:500]}")


@dlq_app.command("show")
def show(
    ctx: typer.Context,
    topic: TopicOption = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="At most N letters per topic")] = None,
    json_out: JsonOption = False,
) -> None:
    """Decode dead letters: id, source topic/partition/offset, tier, reason and the original record."""
    settings = settings_from(ctx)
    topics = [topic] if topic else dlq_topics(settings)

    async def read_all() -> dict[str, list[dict[str, Any]]]:
        return {t: [letter.as_dict() for letter in await read_letters(settings, t, limit)] for t in topics}

    try:
        found = asyncio.run(read_all())
    except TribunalError as exc:
        raise fail(exc) from None
    if json_out:
        letters = [letter for per_topic in found.values() for letter in per_topic]
        emit({"topics": {t: len(per_topic) for t, per_topic in found.items()}, "letters": letters})
        return
    for name, letters in found.items():
        typer.echo(f"{name}: {len(letters)} dead letters")
        for letter in letters:
            _print_letter(letter)


@dlq_app.command("replay")
def replay(
    ctx: typer.Context,
    topic: TopicOption = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Re-publish every dead letter with its original bytes")
    ] = False,
    fixed: Annotated[
        Path | None,
        typer.Option(
            "--fixed",
            help="Re-publish only the letters in FILE (edited `dlq show --json`) with their new value",
            dir_okay=False,
            exists=True,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be re-published; publish nothing")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Re-publish dead letters to their source topic and partition, each exactly once.

    A rerun skips what an earlier replay published."""
    if everything == (fixed is not None):
        raise typer.BadParameter("give exactly one of --all and --fixed FILE")
    settings = settings_from(ctx)
    name = topic or settings.topics.dlq(settings.topics.items_topic)
    try:
        fixes = parse_fixes(fixed.read_text(encoding="utf-8")) if fixed is not None else None
        report = asyncio.run(replay_letters(settings, name, fixes, dry_run=dry_run)).as_dict()
    except TribunalError as exc:
        raise fail(exc) from None
    if json_out:
        emit(report)
        return
    verb = "would re-publish" if dry_run else "re-published"
    typer.echo(
        f"{name}: {verb} {report['replayed']} ({report['fixed']} fixed), "
        f"{report['already_replayed']} replayed before, {report['unreadable']} unreadable"
    )
    if report["not_found"]:
        typer.echo(f"fixes naming no letter of {name}: {', '.join(report['not_found'][:20])}")


def register(app: typer.Typer) -> None:
    app.add_typer(dlq_app, name="dlq")
