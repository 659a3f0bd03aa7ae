"""`tribunal fit`: a labelled history in, a ready deployment folder out.

The work lives in `tribunal.offline` (history: read, check, split; fit: workers, judge, rule;
fit_output: the folder); this module parses options, builds settings once and prints.
"""

from __future__ import annotations

import datetime
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from tribunal.cli.common import JsonOption, emit, fail, settings_from
from tribunal.consumers.tables.rules import target_config
from tribunal.core.errors import ConfigError, TribunalError
from tribunal.schemas.tasks import resolve_spec_path

__all__ = ["register"]

# A task name is a Kafka record field and a TOML table name: keep it plain.
_TASK_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PROMPT_KINDS = ("llamacpp", "openai", "vllm")


def _task_name(given: str | None, data: Path) -> str:
    name = given or re.sub(r"[^A-Za-z0-9_-]+", "-", data.stem).strip("-")[:64] or "task"
    if not _TASK_NAME.fullmatch(name):
        raise ConfigError(f"task name {name!r}: use 1-64 letters, digits, '-' or '_'")
    return name


def fit(
    ctx: typer.Context,
    data: Annotated[
        Path, typer.Option("--input", "-i", help="Labelled history: JSONL or CSV", dir_okay=False, exists=True)
    ],
    task: Annotated[str | None, typer.Option("--task", "-t", help="Task name [the file's name]")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder [fitted/TASK]")] = None,
    judge: Annotated[
        str | None,
        typer.Option(
            "--judge", help="Your judge's classifier spec (vllm, openai, llamacpp) [fit one here: MiniLM head]"
        ),
    ] = None,
    text_field: Annotated[str, typer.Option("--text-field", help="Field (column) holding the text")] = "text",
    label_field: Annotated[str, typer.Option("--label-field", help="Field (column) holding the label")] = "label",
    id_field: Annotated[str, typer.Option("--id-field", help="Field (column) holding the id [line number]")] = "id",
    labels: Annotated[
        str | None, typer.Option("--labels", help="The label set, comma-separated: other labels are an error")
    ] = None,
    min_per_label: Annotated[int, typer.Option("--min-per-label", min=1, help="Rows each label needs")] = 20,
    calibration_share: Annotated[
        float, typer.Option("--calibration-share", min=0.05, max=0.9, help="Share of rows that certify the rule")
    ] = 0.3,
    max_disagreement: Annotated[
        float | None,
        typer.Option("--max-disagreement", min=0.001, max=0.5, help="Quality bar [aggregator.target's, 0.05]"),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the train/calibration split")] = 0,
    skip_unlabelled: Annotated[
        bool, typer.Option("--skip-unlabelled", help="Leave out rows without a label or text instead of failing")
    ] = False,
    description: Annotated[str, typer.Option("--description", help="One line on what the task is")] = "",
    note: Annotated[str, typer.Option("--note", help="Provenance note (data source, licence)")] = "",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output folder")] = False,
    json_out: JsonOption = False,
) -> None:
    """Fit a cascade on a labelled history: diverse workers, a judge, a certified rule; write one folder
    that `tribunal --config OUT/pipeline.toml run` takes as it is."""
    from tribunal.consumers.classifiers.heads import file_sha256
    from tribunal.offline.calibrate import package_version
    from tribunal.offline.fit import fit_cascade
    from tribunal.offline.fit_output import write_fit
    from tribunal.offline.history import Fields, check_history, read_history, split_history

    started = time.perf_counter()

    def say(message: str) -> None:
        typer.echo(f"[{time.perf_counter() - started:5.0f} s] {message}", err=True)

    overrides = {"aggregator": {"target": {"max_disagreement": max_disagreement}}}
    try:
        settings = settings_from(ctx, **overrides)
        name = _task_name(task, data)
        target = out or Path("fitted") / name
        if target.exists() and not force:
            raise ConfigError(f"{target} exists; pass --force to replace it, or choose another --out")
        history = read_history(data, Fields(text_field, label_field, id_field), max_text_chars=settings.max_text_chars)
        declared = [x.strip() for x in labels.split(",") if x.strip()] if labels else None
        # A head file in the user's judge spec is where fit ran, not inside the folder it writes.
        judge = resolve_spec_path(judge, Path.cwd()) if judge is not None else None
        prompt_judge = judge is not None and judge.split(":", 1)[0].split("?", 1)[0] in PROMPT_KINDS
        warnings = check_history(history, min_per_label=min_per_label, labels=declared,
                                 skip_unlabelled=skip_unlabelled, prompt_judge=prompt_judge)  # fmt: skip
        for warning in warnings:
            say(f"warning: {warning}")
        train, calibration = split_history(history.rows, calibration_share, seed)
        say(f"{len(history.rows)} rows, {len(history.labels)} labels: {len(train)} to train, "
            f"{len(calibration)} to calibrate")  # fmt: skip
        config = target_config(settings.aggregator.target)
        provenance = {
            "data": str(data), "data_sha256": file_sha256(data), "rows": str(len(history.rows)),
            "split": f"seed {seed}, calibration share {calibration_share}, by text",
            "fitted": datetime.date.today().isoformat(), "tribunal": package_version(),
            "command": shlex.join(["tribunal", *sys.argv[1:]]),
        }  # fmt: skip
        if note:
            provenance["note"] = note
        result = fit_cascade(name, train, calibration, config, description=description, judge_spec=judge,
                             source={"data": str(data), "data_sha256": provenance["data_sha256"]},
                             provenance=provenance, progress=say)  # fmt: skip
        result.warnings.extend(warnings)
        window = settings.aggregator.target.window
        report = write_fit(result, target, provenance, window=window, max_disagreement=config.max_disagreement,
                           confidence=config.confidence, replace=force)  # fmt: skip
    except (TribunalError, ValueError) as exc:
        raise fail(exc) from None
    report["seconds"]["total"] = round(time.perf_counter() - started, 1)
    if json_out:
        emit({"out": str(target), **report})
        return
    est = report["estimate"]
    chosen = ", ".join(f"w{n}={w.name}" for n, w in enumerate(result.workers, 1))
    typer.echo(f"fitted {name} in {report['seconds']['total']:.0f} s -> {target}/ (report.md says what and why)")
    typer.echo(f"  workers {chosen}; judge {judge or result.judge.name}")
    typer.echo(f"  on {len(calibration)} calibration rows: workers decide {est['accepted_share']:.1%}, "
               f"{est['fewer_judge_calls']:.1f}x fewer judge calls with audits; accuracy vs gold "
               f"cascade {est['cascade_accuracy']:.3f}, judge alone {est['judge_accuracy']:.3f}")  # fmt: skip
    for warning in result.warnings:
        typer.echo(f"  warning: {warning}")
    typer.echo(f"  run it: tribunal --config {target}/pipeline.toml run")


def register(app: typer.Typer) -> None:
    """Add `fit` to the main app."""
    app.command("fit")(fit)
