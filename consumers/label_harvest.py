"""`tribunal train --from-labels`: fit a worker head on the judge labels the pipeline paid for.

Where the rows come from (all from topics the pipeline already writes):

- labels: every `Verdict` on `labels` decided by the judge (`decided_by=judge`: escalated items),
  and every verdict on `audits` (the judge's label of an accepted item in the audit sample).
  Worker-accepted labels and fallbacks are never used: a head trained on the workers' own
  labels would learn their mistakes, and a fallback is not the judge's answer.
- texts: a `Verdict` holds the item id and label but no text; every item the judge labelled
  reached it as a `JudgeRequest` on `judge`, which carries the whole `Item`. So texts come from
  `judge`, the topic that holds exactly the judged items (`items` holds every item, ten times as
  many, and nothing says which were judged). A label whose request is no longer retained on
  `judge` is skipped and counted (`no_text`).

The label of an item is the last judge verdict read for it. The head (`heads.fit_head`, the
`tribunal train` code, padded to the task's labels) is published as the next version of the
task's `LearnedStore`, which workers running `learned?task=T` swap in at a batch boundary.

Schedule: run it periodically (cron, a Kubernetes CronJob); it publishes only when `every` new
judge labels arrived since the latest version was fitted (`due`), the first once `first` exist.
Each run reads the three topics from their beginnings (no consumer group, nothing committed), so
what a head learns from is bounded by the topics' retention, and every version is fitted on every
judge label still retained.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tribunal.consumers.classifiers.heads import fit_head, read_header
from tribunal.consumers.classifiers.learned import LearnedStore, model_id
from tribunal.core.errors import ConfigError
from tribunal.core.settings import Settings
from tribunal.core.topics import partitions_of, read_to_end
from tribunal.schemas.codec import DecodeError, decode
from tribunal.schemas.messages import DecidedBy, JudgeRequest, Verdict
from tribunal.schemas.tasks import Task

__all__ = ["Harvest", "due", "harvest", "join", "learn_from_labels"]


@dataclass(slots=True)
class Harvest:
    """The rows to fit on (text, judge label) and what was left out, by reason."""

    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n


def due(labels: int, fitted_on: int | None, every: int, first: int) -> bool:
    """Whether a new version is due: the first once `first` labels exist, then one every
    `every` new labels (`fitted_on`: the rows the latest version was fitted on)."""
    if fitted_on is None:
        return labels >= first
    return labels - fitted_on >= every


def join(requests: Iterable[JudgeRequest], verdicts: Iterable[Verdict], task: str) -> Harvest:
    """Judge labels of `task` joined with their texts (module docstring), in verdict order."""
    texts = {r.item.id: r.item.text for r in requests if r.item.task == task}
    labels: dict[str, str] = {}
    out = Harvest()
    for verdict in verdicts:
        if verdict.task != task:
            continue
        if verdict.decided_by != DecidedBy.JUDGE:
            out.skip(f"decided_by_{verdict.decided_by.value}")
            continue
        labels.pop(verdict.item_id, None)  # the last verdict wins, and keeps its place
        labels[verdict.item_id] = verdict.label
    for item_id, label in labels.items():
        text = texts.get(item_id)
        if text is None:
            out.skip("no_text")
            continue
        out.texts.append(text)
        out.labels.append(label)
    return out


async def _decoded(settings: Settings, topic: str, model: type[Any], task_names: Any) -> list[Any]:
    context = settings.decode_context(task_names)
    rows: list[Any] = []
    async for record in read_to_end(settings, await partitions_of(settings, topic)):
        try:
            rows.append(decode(record.value, model, context))
        except DecodeError:
            continue  # a record the tiers would dead-letter is no training row either
    return rows


async def harvest(settings: Settings, task: str) -> Harvest:
    """Read `judge`, `labels` and `audits` to their ends and join them for `task`."""
    tasks = settings.tasks()
    t = settings.topics
    requests = await _decoded(settings, t.judge_topic, JudgeRequest, tasks)
    verdicts = await _decoded(settings, t.labels_topic, Verdict, tasks)
    verdicts += await _decoded(settings, t.audits_topic, Verdict, tasks)
    return join(requests, verdicts, task)


def _fitted_on(store: LearnedStore) -> int | None:
    latest = store.latest()
    if latest is None:
        return None
    return int(read_header(store.path(latest)).get("rows", 0))


def learn_from_labels(
    settings: Settings, task: Task, rows: Harvest, store: LearnedStore, *, every: int, first: int, force: bool = False
) -> dict[str, Any]:
    """Fit and publish the next version if due (or `force`); a JSON-able report either way."""
    fitted_on = _fitted_on(store)
    report: dict[str, Any] = {
        "task": task.name,
        "judge_labels": len(rows.labels),
        "skipped": dict(rows.skipped),
        "store": str(store.directory),
        "previous_version": store.latest(),
        "previous_rows": fitted_on,
    }
    if not force and not due(len(rows.labels), fitted_on, every, first):
        return report | {"published": False, "why": f"not due (first at {first} labels, then every {every})"}
    if len(set(rows.labels)) < 2:
        raise ConfigError(f"{len(rows.labels)} judge labels of task {task.name!r} name fewer than two labels")
    source = {"data": f"topics {settings.topics.labels_topic} + {settings.topics.audits_topic} (judge labels)"}
    header, arrays = fit_head(task, "tfidf", rows.texts, rows.labels, pad=True, source=source)
    version = store.publish(header, arrays)
    return report | {
        "published": True,
        "version": version,
        "model": model_id(task.name, version),
        "path": str(store.path(version)),
        "train_seconds": header["train_seconds"],
        "labels_seen": sorted(set(rows.labels)),
    }
