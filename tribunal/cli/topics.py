"""`tribunal topics create`: topic administration."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from tribunal.cli.common import settings_from
from tribunal.core.topics import create_topics

__all__ = ["register"]

topics_app = typer.Typer(help="Topic administration.", no_args_is_help=True)


@topics_app.command("create")
def topics_create(
    ctx: typer.Context,
    partitions: Annotated[int | None, typer.Option(help="Partitions of items, votes and state")] = None,
) -> None:
    """Create every topic of the pipeline (idempotent)."""
    settings = settings_from(ctx, topics={"partitions": partitions} if partitions else None)
    created = asyncio.run(create_topics(settings))
    typer.echo(f"created {len(created)} topics: {', '.join(created) or '(all existed)'}")


def register(app: typer.Typer) -> None:
    app.add_typer(topics_app, name="topics")
