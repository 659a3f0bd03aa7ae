"""`tribunal replay items|votes`: replay history into a namespaced run (live topics are only read)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from tribunal.cli.common import JsonOption, emit, settings_from
from tribunal.core.errors import ConfigError
from tribunal.core.settings import Settings
from tribunal.producers.replay import Window, parse_time, replay_items, replay_votes

__all__ = ["register"]

RunOption = Annotated[str, typer.Option("--run", help="Run name: writes only topics prefixed RUN-")]
SourceOption = Annotated[
    str | None, typer.Option("--source-prefix", help="Topic prefix of the source pipeline [settings]")
]


def _source(ctx: typer.Context, prefix: str | None) -> Settings:
    return settings_from(ctx, topics={"prefix": prefix} if prefix is not None else None)


def _window(start: str | None, end: str | None, from_offset: int | None, to_offset: int | None) -> Window:
    try:
        times = {"from_ms": parse_time(start) if start else None, "to_ms": parse_time(end) if end else None}
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO 8601 time: {exc}") from None
    return {**times, "from_offset": from_offset, "to_offset": to_offset}


def _print_votes(report: dict[str, Any]) -> None:
    typer.echo(
        f"{report['policy']}: {report['items']} items, {report['changed']} changed, {report['escalated']} escalated "
        f"({report['judge_reused']} judge labels reused, {report['judge_requests']} sent to {report['judge_topic']})"
    )
    typer.echo(f"judge rate: source {report['source_judge_rate']:.3f} -> new {report['new_judge_rate']:.3f}")
    for label, row in report["by_class"].items():
        typer.echo(f"  {label:>24}: {row['items']:>7} items, {row['changed']:>6} changed")
    if "gold_accuracy" in report:
        acc = report["gold_accuracy"]
        typer.echo(f"accuracy vs gold on {acc['items']} items: {acc['original']:.3f} -> {acc['new']:.3f}")


def register(app: typer.Typer) -> None:
    """Add the `replay` group (`items`, `votes`) to the main app."""
    replay_app = typer.Typer(help="Replay history into a namespaced run (live topics are only read).")
    app.add_typer(replay_app, name="replay", no_args_is_help=True)

    @replay_app.command("items")
    def items(
        ctx: typer.Context,
        run: RunOption,
        start: Annotated[str | None, typer.Option("--from", help="ISO time: first item produced at/after")] = None,
        end: Annotated[str | None, typer.Option("--to", help="ISO time: items produced before it")] = None,
        from_offset: Annotated[
            int | None, typer.Option("--from-offset", min=0, help="First offset, per partition")
        ] = None,
        to_offset: Annotated[int | None, typer.Option("--to-offset", min=0, help="Stop before this offset")] = None,
        source_prefix: SourceOption = None,
        json_out: JsonOption = False,
    ) -> None:
        """Copy a time or offset range of the source items topic into RUN-items (same keys and ids)."""
        source = _source(ctx, source_prefix)
        window = _window(start, end, from_offset, to_offset)
        try:
            report = asyncio.run(replay_items(source, run, window))
        except ConfigError as exc:
            raise typer.BadParameter(str(exc)) from None
        if json_out:
            emit(report)
            return
        typer.echo(f"replayed {report['published']} items from {report['source_topic']} to {report['target_topic']}")

    @replay_app.command("votes")
    def votes(
        ctx: typer.Context,
        run: RunOption,
        policy: Annotated[
            str,
            typer.Option("--policy", help="majority, confident_majority or weighted"),
        ],
        threshold: Annotated[
            list[str] | None, typer.Option("--threshold", help="X (every worker) or WORKER=X; repeatable")
        ] = None,
        source_prefix: SourceOption = None,
        json_out: JsonOption = False,
    ) -> None:
        """Re-decide recorded items from the vote log under POLICY, without running any worker."""
        source = _source(ctx, source_prefix)
        try:
            report = asyncio.run(replay_votes(source, run, policy, threshold or []))
        except (ConfigError, ValueError) as exc:
            raise typer.BadParameter(str(exc)) from None
        if json_out:
            emit(report)
            return
        _print_votes(report)
