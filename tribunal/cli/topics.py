"""`tribunal topics create|list`: topic administration."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from tribunal.cli.common import JsonOption, emit, settings_from
from tribunal.core.topics import create_topics, list_topics, message_limits, topic_specs

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
    # Existing topics are left alone: say which ones would refuse records the tiers may write.
    wanted = {s.name: int(s.config["max.message.bytes"]) for s in topic_specs(settings) if s.name not in created}
    limits = asyncio.run(message_limits(settings, sorted(wanted))) if wanted else {}
    for name, limit in sorted(limits.items()):
        if limit is not None and limit < wanted[name]:
            typer.echo(f"warning: {name} accepts records up to {limit} bytes; tiers may write {wanted[name]}: "
                       "raise its max.message.bytes", err=True)  # fmt: skip


@topics_app.command("list")
def topics_list(
    ctx: typer.Context,
    everything: Annotated[
        bool, typer.Option("--all", help="Every topic on the cluster, not only the pipeline's")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """The pipeline's topics (with the configured prefix): partitions, and whether each exists."""
    rows = asyncio.run(list_topics(settings_from(ctx), everything))
    if json_out:
        emit({"topics": rows})
        return
    for row in rows:
        if everything:
            typer.echo(f"{row['name']}  partitions={row['partitions']}")
        else:
            state = f"partitions={row['partitions']}" if row["exists"] else "missing (tribunal topics create)"
            typer.echo(f"{row['name']}  {state}")


def register(app: typer.Typer) -> None:
    app.add_typer(topics_app, name="topics")
