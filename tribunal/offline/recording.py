"""Record what a task's default workers and judge say about a labelled file, once, and cache it.

`record` runs each classifier alone and batched over the data (`evaluate.evaluate`), keeping
every worker's vote with its confidence and per-item latency and the judge's label for every
item; `save_recording`/`load_recording` keep that as one JSON file, so `tribunal calibrate` and
the policy benches re-use it for free (`load_or_record`). No Kafka.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tribunal.consumers.policy.ballots import Ballot
from tribunal.core.errors import ConfigError
from tribunal.offline.evaluate import Report, Run, evaluate, load_items
from tribunal.offline.policy_sim import RecordedItem, Recording
from tribunal.schemas.tasks import TaskRegistry

__all__ = ["load_or_record", "load_recording", "record", "save_recording"]

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
            RecordedItem(
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
            RecordedItem(
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


def load_or_record(tasks: TaskRegistry, task: str, data: Path, sample: tuple[int | None, int], batch: int,
                    cache: Path | None) -> Recording:  # fmt: skip
    """The recording in `cache` if there is one, else a new one (saved to `cache` if given)."""
    if cache is not None and cache.exists():
        return load_recording(cache)
    recording = asyncio.run(record(task, data, tasks, sample[0], batch, sample[1]))
    if cache is not None:
        save_recording(recording, cache)
    return recording
