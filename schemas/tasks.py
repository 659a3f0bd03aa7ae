"""Task definitions as data: label set, prompt template and few-shot examples per task.

Loaded from a TOML file (the bundled `schemas/tasks.toml` unless settings point elsewhere). A
label outside its task's label set is a validation error everywhere it is checked.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "BUNDLED_TASKS_FILE",
    "FILE_KINDS",
    "POLICY_ALIASES",
    "Example",
    "PolicyName",
    "Task",
    "TaskError",
    "TaskRegistry",
    "canonical_policy",
    "load_tasks",
    "resolve_spec_path",
]

# The paper's names for the two voting policies, still accepted wherever a user types a policy
# name (settings, env, tasks files); everything past the settings sees the descriptive name.
POLICY_ALIASES = {"criterion1": "majority", "criterion2": "confident_majority"}


def canonical_policy(name: str) -> str:
    """The policy's own name for `name` (an alias resolved; any other name unchanged)."""
    return POLICY_ALIASES.get(name, name)


def _canonical(value: object) -> object:
    return canonical_policy(value) if isinstance(value, str) else value


PolicyName = Annotated[Literal["target", "majority", "confident_majority", "weighted"], BeforeValidator(_canonical)]

BUNDLED_TASKS_FILE = Path(__file__).with_name("tasks.toml")


class TaskError(ValueError):
    """An unknown task, a label outside a task's label set, or an invalid tasks file."""


class Example(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(min_length=1)
    label: str


class Task(BaseModel):
    """One classification task. `workers`/`judge` are default classifier specs for `--defaults`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    labels: Annotated[tuple[str, ...], Field(min_length=2)]
    prompt: str = "{examples}Text: {text}\nLabel:"
    example_format: str = "Text: {text}\nLabel: {label}\n\n"
    examples: tuple[Example, ...] = ()
    workers: tuple[str, ...] = ()
    judge: str | None = None
    # Decision policy for this task's items, overriding the aggregator's default (`target`),
    # and its threshold: the confident majority's per-vote confidence, or the weighted vote's posterior.
    policy: PolicyName | None = None
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    # The confident majority's, per worker name: confidence scales differ per model (docs/policies.md).
    thresholds: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=dict)
    # The target policy's warm start: a rule fitted by `tribunal calibrate` (JSON), used until
    # the rules topic has one. A relative path is relative to the tasks file.
    calibration: Path | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Task:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"task {self.name!r} lists a label twice")
        for example in self.examples:
            if example.label not in self.labels:
                raise ValueError(f"task {self.name!r}: example label {example.label!r} is not in its label set")
        if "{text}" not in self.prompt:
            raise ValueError(f"task {self.name!r}: prompt must contain {{text}}")
        return self

    def render_prompt(self, text: str) -> str:
        """The few-shot prompt for one text; the model's continuation is the label."""
        shots = "".join(self.example_format.format(text=e.text, label=e.label) for e in self.examples)
        return self.prompt.replace("{examples}", shots).replace("{text}", text)


class TaskRegistry:
    """The tasks a deployment knows, by name."""

    def __init__(self, tasks: dict[str, Task]) -> None:
        self._tasks = dict(tasks)
        self._label_sets = {name: frozenset(task.labels) for name, task in tasks.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._tasks.values())

    @property
    def names(self) -> list[str]:
        return sorted(self._tasks)

    def get(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(self.names)}") from None

    def check_label(self, task: str, label: str) -> None:
        labels = self._label_sets.get(task)
        if labels is None:
            raise TaskError(f"unknown task {task!r}; known tasks: {', '.join(self.names)}")
        if label not in labels:
            raise TaskError(f"label {label!r} is not in the label set of task {task!r}")


# Classifier kinds whose spec argument is a file path (`tfidf:heads/w1.npz`); `bundled:NAME`
# names a head inside the package and is left alone.
FILE_KINDS = ("tfidf", "embedding")


def resolve_spec_path(spec: str, base: Path) -> str:
    """`spec` with a relative head-file path made relative to `base` (the folder of the file that
    wrote it); any other spec unchanged."""
    head, mark, query = spec.strip().partition("?")
    kind, colon, arg = head.partition(":")
    if kind not in FILE_KINDS or not arg or arg.startswith("bundled:") or Path(arg).is_absolute():
        return spec
    return f"{kind}{colon}{base / arg}{mark}{query}"


def _resolved(table: dict[str, object], base: Path) -> dict[str, object]:
    """The table with relative paths (`calibration`, head files in `workers`/`judge` specs) made
    relative to the tasks file."""
    table = dict(table)
    calibration = table.get("calibration")
    if isinstance(calibration, str) and not Path(calibration).is_absolute():
        table["calibration"] = base / calibration
    workers = table.get("workers")
    if isinstance(workers, list):
        table["workers"] = [resolve_spec_path(w, base) if isinstance(w, str) else w for w in workers]
    judge = table.get("judge")
    if isinstance(judge, str):
        table["judge"] = resolve_spec_path(judge, base)
    return table


# How many tasks files one may include through others: more is a mistake, not a design.
MAX_INCLUDE_DEPTH = 8


def load_tasks(path: Path | None = None) -> TaskRegistry:
    """Read a tasks TOML file (`[tasks.NAME]` tables); raise `TaskError` saying what is wrong.

    A file may start with `include = ["bundled", "other.toml"]`: the tasks of those files first
    ("bundled" is the file that ships with Tribunal; a relative path is relative to the including
    file), then its own, which add tasks or replace a task of the same name whole. So a user's
    file adds tasks to the bundled ones without copying them. A relative path inside any file
    (a task's `calibration`) is relative to the file that wrote it, wherever it is included from.
    """
    return TaskRegistry(_load(path or BUNDLED_TASKS_FILE, ()))


def _load(source: Path, including: tuple[Path, ...]) -> dict[str, Task]:
    resolved = source.resolve()
    if resolved in including:
        chain = " -> ".join(str(p) for p in (*including, resolved))
        raise TaskError(f"tasks files include each other in a circle: {chain}")
    if len(including) >= MAX_INCLUDE_DEPTH:
        raise TaskError(f"{source}: tasks files nested more than {MAX_INCLUDE_DEPTH} includes deep")
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TaskError(f"cannot read tasks file {source}: {exc}") from None
    includes = data.get("include", [])
    if not isinstance(includes, list) or not all(isinstance(name, str) and name for name in includes):
        raise TaskError(f'{source}: `include` must be a list of tasks files (or "bundled"), got {includes!r}')
    tasks: dict[str, Task] = {}
    for name in includes:
        target = BUNDLED_TASKS_FILE if name == "bundled" else source.parent / name
        tasks.update(_load(target, (*including, resolved)))
    unknown = sorted(set(data) - {"include", "tasks"})
    stray = f"; unknown top-level keys {unknown} (a tasks file holds `include` and [tasks.NAME])" if unknown else ""
    tables = data.get("tasks", {})
    if not isinstance(tables, dict) or not (tables or tasks):
        raise TaskError(f"{source} has no [tasks.NAME] tables (and includes none){stray}")
    if stray:
        raise TaskError(f"{source}{stray}")
    try:
        own = {name: Task(name=name, **_resolved(table, source.parent)) for name, table in tables.items()}
    except (ValidationError, TypeError) as exc:
        raise TaskError(f"invalid task definition in {source}: {exc}") from None
    return {**tasks, **own}
