"""`tribunal calibrate`: fit the target policy's rule from a judged history, write and/or publish it.

The fitting lives in `tribunal.offline.calibrate`; this module parses options, builds settings once
and prints.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import orjson
import typer

from tribunal.cli.common import JsonOption, LabelledInputOption, emit, settings_from
from tribunal.consumers.tables.rules import calibration_document, publish_rule
from tribunal.core.errors import TribunalError
from tribunal.offline.calibrate import calibrate_recording, summary

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add `calibrate` to the main app."""

    @app.command("calibrate")
    def calibrate(
        ctx: typer.Context,
        task: Annotated[str, typer.Option("--task", "-t", help="Task name from the tasks file")],
        data: LabelledInputOption,
        cache: Annotated[Path | None, typer.Option("--cache", help="Recording file: reused if present")] = None,
        limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="First N items only")] = None,
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the rule (JSON) here")] = None,
        publish: Annotated[bool, typer.Option("--publish", help="Send it to the rules topic")] = False,
        note: Annotated[str, typer.Option("--note", help="Provenance note (data source, licence)")] = "",
        json_out: JsonOption = False,
    ) -> None:
        """Fit and certify the target policy's rule on a judged history; write and/or publish it."""
        settings = settings_from(ctx)
        try:
            warm = calibrate_recording(settings, task, data, cache, limit, note)
            rule = warm.rule
            if out is not None:
                document = calibration_document(warm, settings.aggregator.target.window)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(orjson.dumps(document, option=orjson.OPT_SORT_KEYS) + b"\n")
            if publish:
                rule = asyncio.run(publish_rule(settings, warm))
        except TribunalError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        result = summary(rule)
        if json_out:
            emit(result)
            return
        cert = rule.certificate
        where = "no cut-off certified: every item will go to the judge" if rule.cutoff is None else (
            f"cut-off {rule.cutoff:.4f}: accepts {cert.get('accept_share', 0):.1%} of the calibration items, "
            f"{int(cert.get('k', 0))} of {int(cert.get('n', 0))} changed by the judge"
        )  # fmt: skip
        typer.echo(f"{task}: rule v{rule.version}, {where}; audit rate {rule.audit_rate:.3f}")
        if out is not None:
            typer.echo(f"written to {out}")
        if publish:
            typer.echo(f"published to {settings.topics.rules_topic} as version {rule.version}")
