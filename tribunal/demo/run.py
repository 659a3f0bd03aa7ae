"""`tribunal demo` and `tribunal bench cascade`: the pipeline on a sample, measured against the
judge alone, in one command.

Both commands share `run_demo`: resolve the plan (the task's default workers and judge, or the
ones given), make sure a broker answers (the local one is started or reused when the settings
point at it), run `tribunal.demo.measure.measure` and turn its observations into the report of
`tribunal.demo.report`. `demo` shows it on the terminal and optionally writes `--report` (JSON) and
`--html`; `bench cascade` prints one JSON object. `tribunal.cli` calls `register(app, bench_app)`.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from tribunal.consumers.aggregator.policies import choose_policy
from tribunal.consumers.classifiers.registry import check_spec
from tribunal.consumers.tables.rules import load_calibration
from tribunal.core.settings import Settings
from tribunal.demo.measure import WARMUP_PREFIX, Plan, measure
from tribunal.demo.report import build_report
from tribunal.producers.ingest import Rejected, parse_lines
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import Task

__all__ = [
    "DEFAULT_DATA_DIR",
    "DemoOptions",
    "choose_quorum",
    "choose_tiers",
    "load_input",
    "make_plan",
    "run_demo",
]

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "demo"
# Below this, splitting the passes into rounds costs more (batch start-up) than it evens out.
MIN_ITEMS_FOR_ROUNDS = 90
# Long enough that a burst queued behind the workers never escalates for lateness (see measure.py).
DEFAULT_DEADLINE_MS = 120_000


def choose_tiers(
    task: Task, settings: Settings, workers: list[str] | None, judge: str | None
) -> tuple[dict[str, str], str]:
    """(worker name -> spec, judge spec): the given specs, else the task's defaults, else the
    settings' pipeline. Names are `w<n>`, the names the aggregator's settings, a task's
    thresholds and a calibrated rule use by default (reports show each worker's spec beside it)."""
    specs = workers or list(task.workers) or [w.classifier for w in settings.pipeline.workers]
    names = {f"w{n}": spec for n, spec in enumerate(specs, start=1)}
    return names, judge or task.judge or settings.judge.classifier


def load_input(path: Path, task: str, settings: Settings, limit: int | None) -> tuple[list[Item], list[Rejected]]:
    """Items from a JSONL or CSV file (by extension), labelled or not, at most `limit`; lines that
    are invalid or repeat an earlier id are rejected with their line number."""
    context = settings.decode_context(settings.tasks())
    fmt = "csv" if path.suffix.lower() == ".csv" else "jsonl"
    items: list[Item] = []
    rejected: list[Rejected] = []
    seen: set[str] = set()
    with path.open("rb") as stream:
        for number, result in parse_lines(stream, fmt, task, context):
            if limit is not None and len(items) >= limit:
                break
            if isinstance(result, Rejected):
                rejected.append(result)
            elif result.id in seen or result.id.startswith(WARMUP_PREFIX):
                rejected.append(Rejected(number, f"id {result.id!r} repeats an earlier id or is reserved"))
            else:
                seen.add(result.id)
                items.append(result)
    return items, rejected


def choose_rounds(items: int) -> int:
    """Alternating rounds per pass: 3 once there are enough items that a round is more than a
    couple of model batches (so per-round start-up costs stay small), else 1."""
    return 3 if items >= MIN_ITEMS_FOR_ROUNDS else 1


def choose_quorum(workers: int, labels: int, configured: int, given: int | None) -> int:
    """`given`, else the configured quorum, except when that quorum is always reached: with
    `workers` full ballots over `labels` labels some label has >= ceil(workers/labels) votes
    (2 of 3 on a binary task), so the judge would never be asked and the demo would show
    nothing. Then unanimity, which escalates exactly the items the workers disagree on."""
    if given is not None:
        return given
    return workers if workers and math.ceil(workers / labels) >= configured else configured


class _DemoBroker:
    """The broker of a demo run: the local one started (and later stopped) or reused when the
    settings point at it; any other cluster is used as it is. One line on stderr says which."""

    def __init__(self, settings: Settings, keep: bool, err: Console) -> None:
        from tribunal.localkafka import LocalBroker

        self._broker = LocalBroker(settings.home, settings.broker)
        self._local = settings.kafka.bootstrap_servers == self._broker.bootstrap
        self._keep = keep
        self._err = err
        self._started = False

    def __enter__(self) -> _DemoBroker:
        from tribunal.localkafka import Outcome

        if not self._local:
            return self
        address, outcome = self._broker.ensure()
        self._started = outcome is Outcome.STARTED
        if outcome is Outcome.REUSED:
            self._err.print(f"using the local broker already running on {address}; it stays up (`tribunal kafka down`)")
        elif outcome is Outcome.FOREIGN:
            self._err.print(f"using the Kafka broker that already answers on {address} (not started by this checkout)")
        return self

    def __exit__(self, *_: object) -> None:
        if not self._started:
            return
        if self._keep:
            self._err.print(f"the broker this demo started stays up on {self._broker.bootstrap}: `tribunal kafka down`")
        else:
            self._broker.down()
            self._err.print("stopped the broker this demo started (--keep-broker keeps it up)")


class _Bars:
    """A rich progress bar per phase on stderr; silent when stderr is not a terminal."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description:<11}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, disable=not console.is_terminal, transient=False,
        )  # fmt: skip
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _Bars:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase not in self._tasks:
            self._tasks[phase] = self._progress.add_task(phase, total=total)
        self._progress.update(self._tasks[phase], completed=done, total=total)


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What the user asked for; None means "the task's default" (or the settings')."""

    data: Path
    task: str = "intent"
    limit: int | None = None
    workers: list[str] | None = None
    judge: str | None = None
    deadline_ms: int = DEFAULT_DEADLINE_MS
    quorum: int | None = None
    keep_topics: bool = False
    rounds: int | None = None
    keep_broker: bool = False


def make_plan(settings: Settings, options: DemoOptions) -> tuple[Plan, int]:
    """The plan of a run and the number of rejected input lines."""
    task = settings.tasks().get(options.task)
    items, rejected = load_input(options.data, options.task, settings, options.limit)
    if not items:
        raise typer.BadParameter(f"{options.data} has no usable items ({len(rejected)} lines rejected)")
    names, judge = choose_tiers(task, settings, options.workers, options.judge)
    # Every tier loads its model in a child process; a missing package or model file is said
    # here, in one sentence, instead of as a tier's dying log.
    for spec in (*names.values(), judge):
        check_spec(spec, settings.tasks())
    if task.calibration is not None:  # the task this run uses; any other task's is not its concern
        try:
            load_calibration(task.calibration, settings.aggregator.target.window)
        except ValueError as exc:
            raise typer.BadParameter(f"task {task.name!r}: {exc}") from None
    policy = choose_policy(settings.aggregator, task).name
    quorum = settings.aggregator.quorum
    if policy != "target":  # the quorum means nothing to the target policy
        quorum = choose_quorum(len(names), len(task.labels), quorum, options.quorum)
    plan = Plan(
        task=options.task,
        source=str(options.data),
        items=items,
        workers=names,
        judge=judge,
        deadline_ms=options.deadline_ms,
        quorum=quorum,
        warmup_texts=[e.text for e in task.examples],
        keep_topics=options.keep_topics,
        rounds=options.rounds or choose_rounds(len(items)),
        policy=policy,
    )
    return plan, len(rejected)


def run_demo(settings: Settings, config: Path | None, options: DemoOptions) -> dict[str, Any]:
    """Measure the cascade and the judge alone on `options.data`; return the report dict."""
    err = Console(stderr=True)
    plan, rejected = make_plan(settings, options)
    tiers = ", ".join(f"{name}={spec}" for name, spec in plan.workers.items())
    err.print(f"[bold]{len(plan.items)}[/] items from {plan.source} ({rejected} lines rejected)")
    decides = f"quorum {plan.quorum} of {len(plan.workers)}" if plan.policy != "target" else "target policy"
    err.print(f"workers {tiers}; judge {plan.judge}; {decides}", highlight=False)
    try:
        with _DemoBroker(settings, options.keep_broker, err), _Bars(err) as bars:
            measurement = asyncio.run(measure(settings, plan, config, bars))
    except (KeyboardInterrupt, asyncio.CancelledError):
        # measure() stops its tiers and deletes its topics on the way out; say so, no traceback.
        err.print("interrupted: tiers stopped, demo topics deleted")
        raise typer.Exit(130) from None
    report = build_report(measurement)
    report["rejected_lines"] = rejected
    if plan.policy != "target":
        report["quorum"] = plan.quorum
    report["warm_up"] = "excluded: timing starts once every tier has loaded its model and answered a warm-up item"
    return report
