"""`tribunal bench policies`: which decision policy, measured on labelled data, offline.

Runs the task's default workers and judge (`schemas/tasks.toml`) ONCE over the data, each
classifier alone and batched (`consumers.evaluate.evaluate`), recording every worker's vote
with its confidence and per-item latency and the judge's label for every item. Then simulates
each policy on that recording (`tribunal.lab.policy_sim`): no Kafka, figures printed, never
asserted. `--cache FILE` keeps the recording (JSON) so the simulation can be re-run for free.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tribunal.consumers.decision import Ballot
from tribunal.core.errors import ConfigError
from tribunal.lab.evaluate import Report, Run, evaluate, load_items
from tribunal.lab.policy_sim import Recorded, Recording, Score, default_candidates, reference_scores, simulate
from tribunal.schemas.tasks import TaskRegistry

__all__ = [
    "bench_policies",
    "latencies",
    "load_or_record",
    "load_recording",
    "plot",
    "record",
    "save_recording",
    "table",
]

FORMAT = "tribunal-policy-recording/1"


async def record(
    task: str, data: Path, tasks: TaskRegistry, limit: int | None, batch_size: int, stride: int = 1
) -> Recording:
    """Run the task's default workers and judge over `data` (every `stride`-th row, at most `limit`)
    once; raise ConfigError if the task has no default workers and judge."""
    from tribunal.consumers.classifiers import build_classifier

    spec = tasks.get(task)
    if len(spec.workers) < 2 or not spec.judge:
        raise ConfigError(f"task {task!r} needs default workers and a judge in the tasks file")
    items = load_items(data, task, tasks, limit, stride)
    names = [f"w{n + 1}" for n in range(len(spec.workers))]
    runs = [Run(n, s, "worker", build_classifier(s, tasks)) for n, s in zip(names, spec.workers, strict=True)]
    runs.append(Run("judge", spec.judge, "judge", build_classifier(spec.judge, tasks)))
    try:
        report = await evaluate(task, str(data), items, runs, tasks, batch_size=batch_size)
    finally:
        for run in runs:
            await run.classifier.close()
    return _recording(report, [i.id for i in items], tuple(spec.labels), tuple(names))


def _recording(report: Report, ids: list[str], labels: tuple[str, ...], names: tuple[str, ...]) -> Recording:
    workers, judge = report.runs[:-1], report.runs[-1]
    rows = []
    for n, item_id in enumerate(ids):
        ballots = tuple(Ballot(r.name, r.predictions[n].label, r.predictions[n].confidence) for r in workers)
        rows.append(
            Recorded(
                item_id=item_id,
                gold=report.gold[n],
                ballots=ballots,
                worker_latency_ms=tuple(r.predictions[n].latency_ms for r in workers),
                judge_label=judge.predictions[n].label,
                judge_latency_ms=judge.predictions[n].latency_ms,
            )
        )
    return Recording(task=report.task, labels=labels, workers=names, items=tuple(rows))


def save_recording(recording: Recording, path: Path) -> None:
    """Write `recording` as one JSON object that `load_recording` reads back."""
    rows = [
        {
            "id": r.item_id,
            "gold": r.gold,
            "votes": [[b.worker, b.label, b.confidence] for b in r.ballots],
            "worker_ms": list(r.worker_latency_ms),
            "judge": r.judge_label,
            "judge_ms": r.judge_latency_ms,
        }
        for r in recording.items
    ]
    head = {"format": FORMAT, "task": recording.task, "labels": recording.labels, "workers": recording.workers}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**head, "items": rows}))


def load_recording(path: Path) -> Recording:
    """Read a `save_recording` file; ConfigError if it is not one."""
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}")
        items = tuple(
            Recorded(
                item_id=r["id"],
                gold=r["gold"],
                ballots=tuple(Ballot(w, label, conf) for w, label, conf in r["votes"]),
                worker_latency_ms=tuple(r["worker_ms"]),
                judge_label=r["judge"],
                judge_latency_ms=r["judge_ms"],
            )
            for r in data["items"]
        )
        return Recording(data["task"], tuple(data["labels"]), tuple(data["workers"]), items)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read policy recording {path}: {exc}") from None


def bench_policies(recording: Recording) -> list[Score]:
    """The reference rows (judge only, workers only), then every default candidate's score."""
    return reference_scores(recording) + [simulate(recording, c) for c in default_candidates(recording)]


def plot(scores: list[Score], title: str, out: Path) -> None:
    """Accuracy vs judge rate, one marker style per policy family, to a small PNG (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {"reference": "s", "criterion1": "D", "criterion2": "o", "criterion2-quantile": "v"}
    markers |= {"weighted": "^", "weighted-audit": "x"}
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=90)
    for family, marker in markers.items():
        chosen = sorted((s.judge_rate, s.accuracy) for s in scores if s.family == family)
        if chosen:
            style = marker if family == "reference" else f"{marker}-"  # a family's sweep is a curve
            ax.plot(*zip(*chosen, strict=True), style, label=family, alpha=0.8, linewidth=1)
    ax.set_xlabel("judge rate (judge calls per item)")
    ax.set_ylabel("accuracy vs gold")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def table(scores: list[Score]) -> str:
    """A Markdown table of the scores (the format docs/policies.md uses)."""
    lines = [
        "| policy | judge rate | accuracy | macro-F1 | fast-path acc. | speedup |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in scores:
        name = f"{s.name} ({s.detail})" if s.detail else s.name
        lines.append(
            f"| {name} | {s.judge_rate:.3f} | {s.accuracy:.3f} | {s.macro_f1:.3f} "
            f"| {s.fast_path_accuracy:.3f} | {s.speedup:.2f}x |"
        )
    return "\n".join(lines)


def latencies(recording: Recording) -> dict[str, float]:
    n = max(len(recording.items), 1)
    return {
        "judge_ms_per_item": sum(r.judge_latency_ms for r in recording.items) / n,
        "slowest_worker_ms_per_item": sum(max(r.worker_latency_ms, default=0.0) for r in recording.items) / n,
    }


def load_or_record(tasks: TaskRegistry, task: str, data: Path, sample: tuple[int | None, int], batch: int,
                    cache: Path | None) -> Recording:  # fmt: skip
    if cache is not None and cache.exists():
        return load_recording(cache)
    recording = asyncio.run(record(task, data, tasks, sample[0], batch, sample[1]))
    if cache is not None:
        save_recording(recording, cache)
    return recording
