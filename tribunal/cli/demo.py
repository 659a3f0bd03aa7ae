"""`tribunal demo`: the main job on a sample, cascade beside judge-only, and its report.

The running and measuring live in `tribunal.demo`; this module parses options, builds settings
once and prints. The option types here are shared with `tribunal bench cascade`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console

from tribunal.cli.common import JsonOption, config_path, emit, settings_from
from tribunal.core.settings import Settings
from tribunal.demo.report_view import print_report, render_html
from tribunal.demo.run import DEFAULT_DATA_DIR, DEFAULT_DEADLINE_MS, DemoOptions, run_demo

__all__ = [
    "DeadlineOption",
    "JudgeOption",
    "LimitOption",
    "QuorumOption",
    "RoundsOption",
    "TaskOption",
    "WorkerOption",
    "demo_input",
    "register",
    "settings_and_config",
]

QuorumOption = Annotated[
    int | None,
    typer.Option(
        "--quorum",
        min=1,
        help="Agreeing votes that decide [default: the configured quorum, or all workers where that one is "
        "always reached, e.g. 2 of 3 on a binary task]",
    ),
]
RoundsOption = Annotated[
    int | None,
    typer.Option(
        "--rounds", min=1, help="Alternate cascade and judge-only passes in N rounds [default: 3, or 1 under 90 items]"
    ),
]
TaskOption = Annotated[str, typer.Option("--task", "-t", help="Task name from the tasks file")]
LimitOption = Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Use the first N items")]
WorkerOption = Annotated[
    list[str] | None, typer.Option("--worker", "-w", help="Worker classifier spec (repeat; default: the task's)")
]
JudgeOption = Annotated[str | None, typer.Option("--judge", help="Judge classifier spec (default: the task's)")]
DeadlineOption = Annotated[int, typer.Option("--deadline-ms", min=1, help="Aggregator straggler deadline for this run")]


def demo_input(data: Path | None, task: str) -> Path:
    """The file a demo or `bench cascade` streams: the one given, else the task's demo sample."""
    source = data or DEFAULT_DATA_DIR / f"{task}.jsonl"
    if not source.is_file():
        raise typer.BadParameter(f"no input file {source}; pass --input FILE")
    return source


def settings_and_config(ctx: typer.Context) -> tuple[Settings, Path | None]:
    return settings_from(ctx), config_path(ctx)


def demo(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option("--input", "-i", help="Input file: JSONL or CSV, labelled or not [data/demo/TASK.jsonl]"),
    ] = None,
    # Support-ticket triage, where in-domain workers make the cascade pay; `--task sentiment` is
    # the sentiment demo (out-of-domain workers: it measures honestly that they save little).
    task: TaskOption = "intent",
    limit: LimitOption = None,
    report_path: Annotated[Path | None, typer.Option("--report", help="Write the report as JSON here")] = None,
    html_path: Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML report here")] = None,
    worker: WorkerOption = None,
    judge: JudgeOption = None,
    deadline_ms: DeadlineOption = DEFAULT_DEADLINE_MS,
    quorum: QuorumOption = None,
    rounds: RoundsOption = None,
    keep_topics: Annotated[bool, typer.Option("--keep-topics", help="Keep the run's topics for inspection")] = False,
    keep_broker: Annotated[
        bool, typer.Option("--keep-broker", help="Leave running a local broker this demo had to start")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Run every tier as its own process on a sample, then the judge alone on the same items; report both.

    A local broker the demo had to start is stopped at the end (--keep-broker keeps it); one that
    was already running, or any other cluster, is left as it was."""
    settings, config = settings_and_config(ctx)
    options = DemoOptions(
        demo_input(data, task), task, limit, worker, judge, deadline_ms, quorum, keep_topics, rounds, keep_broker
    )
    report = run_demo(settings, config, options)
    if report_path is not None:
        report_path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    if html_path is not None:
        html_path.write_text(render_html(report), encoding="utf-8")
    if json_out:
        emit(report)
    else:
        print_report(report, Console())


def register(app: typer.Typer) -> None:
    """`demo` on the main app."""
    app.command("demo")(demo)
