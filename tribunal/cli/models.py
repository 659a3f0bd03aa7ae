"""`tribunal train` and `tribunal eval`: the model commands, registered on the main app.

Both build settings once through `tribunal.cli.common`, read tasks from `settings.tasks()`, and
exit with status 2 and a one-line message on a Tribunal error (bad spec, missing data, label set
mismatch).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from tribunal.cli.common import JsonOption, LabelledInputOption, emit, fail, settings_from
from tribunal.core.errors import ConfigError, TribunalError
from tribunal.offline.evaluate import GOLD, Report, Run, evaluate, load_items
from tribunal.schemas.tasks import Task, TaskRegistry

__all__ = ["register"]

TaskOption = Annotated[str, typer.Option("--task", "-t", help="Task name from the tasks file")]


def train(
    ctx: typer.Context,
    task: TaskOption,
    data: Annotated[
        Path | None,
        typer.Option("--input", "-i", help="Labelled JSONL input (id, text, label)", dir_okay=False, exists=True),
    ] = None,
    from_labels: Annotated[
        bool, typer.Option("--from-labels", help="Fit on the judge's labels in the labels/audits topics")
    ] = False,
    store: Annotated[
        Path | None, typer.Option("--store", help="--from-labels: learned-head store [HOME/models/learned]")
    ] = None,
    every: Annotated[int, typer.Option("--every", min=1, help="--from-labels: new labels per version")] = 500,
    first: Annotated[int, typer.Option("--first", min=2, help="--from-labels: labels before version 1")] = 200,
    force: Annotated[bool, typer.Option("--force", help="--from-labels: publish even if not due")] = False,
    kind: Annotated[str, typer.Option("--kind", "-k", help="tfidf or embedding")] = "tfidf",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Head file [HOME/models/TASK-KIND[-HEAD].npz]")
    ] = None,
    max_rows: Annotated[int | None, typer.Option("--max-rows", min=1, help="Train on the first N rows")] = None,
    head: Annotated[str, typer.Option("--head", help="linear; nb or knn (tfidf only)")] = "linear",
    json_out: JsonOption = False,
) -> None:
    """Fit a head on labelled data and save it (one .npz: arrays and header, no pickle) for `KIND:PATH` specs;
    or, with --from-labels, on the judge's labels from the topics, as the next `learned?task=T` version."""
    from tribunal.consumers.classifiers.heads import train_head

    if from_labels == (data is not None):
        raise fail(ConfigError("give exactly one of --input FILE and --from-labels"))
    if from_labels:
        _train_from_labels(ctx, task, store, every, first, force, json_out)
        return
    assert data is not None
    try:
        settings = settings_from(ctx)
        suffix = "" if head == "linear" else f"-{head}"
        target = out or settings.home / "models" / f"{task}-{kind}{suffix}.npz"
        header = train_head(settings.tasks().get(task), kind, data, target, head=head, max_rows=max_rows)
    except (TribunalError, ValueError) as exc:
        raise fail(exc) from None
    if json_out:
        emit({"path": str(target), "header": header})
        return
    typer.echo(
        f"trained {kind} head for {task}: {header['rows']} rows, {len(header['labels'])} labels, "
        f"{header['train_seconds']} s -> {target}  (spec: {kind}:{target}{'?head=' + head if suffix else ''})"
    )


def _train_from_labels(
    ctx: typer.Context, task: str, store: Path | None, every: int, first: int, force: bool, json_out: bool
) -> None:
    from tribunal.consumers.classifiers.learned import LearnedStore
    from tribunal.consumers.label_harvest import harvest, learn_from_labels

    try:
        settings = settings_from(ctx)
        definition = settings.tasks().get(task)
        rows = asyncio.run(harvest(settings, task))
        target = LearnedStore(store or settings.home / "models" / "learned", task)
        report = learn_from_labels(settings, definition, rows, target, every=every, first=first, force=force)
    except (TribunalError, ValueError) as exc:
        raise fail(exc) from None
    if json_out:
        emit(report)
        return
    if report["published"]:
        spec = f"learned?task={task}" if store is None else f"learned:{store}?task={task}"
        typer.echo(
            f"published {report['model']}: {report['judge_labels']} judge labels, {report['train_seconds']} s "
            f"-> {report['path']}  (worker spec: {spec})"
        )
    else:
        why, count = report["why"], report["judge_labels"]
        typer.echo(f"nothing published: {why}; {count} judge labels, skipped {report['skipped']}")


def _runs(specs: list[str], judges: list[str], task: Task, defaults: bool, tasks: TaskRegistry) -> list[Run]:
    """The classifiers to evaluate: explicit workers and judges, then (with --defaults) the task's."""
    from tribunal.consumers.classifiers.registry import build_classifier

    chosen: list[tuple[str, Any]] = [(spec, "worker") for spec in specs] + [(spec, "judge") for spec in judges]
    if defaults:
        chosen += [(spec, "worker") for spec in task.workers]
        chosen += [(task.judge, "judge")] if task.judge else []
    if not chosen:
        raise typer.BadParameter("give at least one --classifier/--judge SPEC, or --defaults")
    runs: list[Run] = []
    for spec, role in chosen:
        name = _unique(_short_name(spec), {run.name for run in runs})
        runs.append(Run(name=name, spec=spec, role=role, classifier=build_classifier(spec, tasks)))
    return runs


def _short_name(spec: str) -> str:
    """The kind, plus the head for trained heads (`tfidf-nb`): a table column, not an identity."""
    from tribunal.consumers.classifiers.registry import parse_spec

    parsed = parse_spec(spec)
    head = parsed.options.get("head")
    return f"{parsed.kind}-{head}" if head else parsed.kind


def _unique(name: str, taken: set[str]) -> str:
    """`name`, or `name#2`, `name#3`... when two classifiers share a kind."""
    n = 1
    candidate = name
    while candidate in taken:
        n += 1
        candidate = f"{name}#{n}"
    return candidate


async def _evaluate(
    task: str, data: Path, items: list[Any], runs: list[Run], tasks: TaskRegistry, batch: int
) -> Report:
    try:
        return await evaluate(task, str(data), items, runs, tasks, batch_size=batch)
    finally:
        for run in runs:
            await run.classifier.close()


def eval_command(
    ctx: typer.Context,
    task: TaskOption,
    data: LabelledInputOption,
    classifier: Annotated[
        list[str] | None, typer.Option("--classifier", "-C", help="Classifier spec (repeatable)")
    ] = None,
    judge: Annotated[list[str] | None, typer.Option("--judge", "-J", help="Judge spec (repeatable)")] = None,
    defaults: Annotated[bool, typer.Option("--defaults", help="Add the task's default workers and judge")] = False,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="First N items only")] = None,
    stride: Annotated[int, typer.Option("--stride", min=1, help="Every K-th row (spread-out sample)")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Items per classify() call")] = 32,
    as_json: JsonOption = False,
) -> None:
    """Run classifiers over labelled data: accuracy, macro-F1, latency p50/p95, agreement."""
    try:
        tasks = settings_from(ctx).tasks()
        items = load_items(data, task, tasks, limit, stride)
        runs = _runs(list(classifier or []), list(judge or []), tasks.get(task), defaults, tasks)
        report = asyncio.run(_evaluate(task, data, items, runs, tasks, batch_size))
    except (TribunalError, ValueError) as exc:
        raise fail(exc) from None
    result = report.as_json()
    if as_json:
        emit(result)
    else:
        _print_tables(result)


def _print_tables(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    scores = Table(title=f"{result['task']} on {result['data']} ({result['items']} items)")
    for column in ("classifier", "role", "accuracy", "macro-F1", "p50 ms", "p95 ms", "spec"):
        scores.add_column(column, justify="left" if column in {"classifier", "role", "spec"} else "right")
    for row in result["classifiers"]:
        lat = row["latency_ms"]
        scores.add_row(
            row["name"],
            row["role"],
            f"{row['accuracy']:.3f}",
            f"{row['macro_f1']:.3f}",
            f"{lat['p50']:.3f}",
            f"{lat['p95']:.3f}",
            row["spec"],
        )
    console.print(scores)
    matrix = result["agreement"]
    agree = Table(title="pairwise agreement (share of items with the same label)")
    agree.add_column("")
    for name in matrix:
        agree.add_column(name, justify="right")
    for name, row in matrix.items():
        agree.add_row(name, *(f"{row[other]:.3f}" if name != other or name != GOLD else "" for other in matrix))
    console.print(agree)
    if "worker_majority" in result:
        majority = result["worker_majority"]
        console.print(
            f"workers' majority (>= 2 agree): {majority['rate']:.3f} of items, "
            f"accuracy {majority['accuracy']:.3f} there"
        )


def register(app: typer.Typer) -> None:
    """Add `train` and `eval` to the main app."""
    app.command("train")(train)
    app.command("eval")(eval_command)
