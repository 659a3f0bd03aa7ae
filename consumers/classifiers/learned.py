"""Learned heads: TF-IDF heads fitted on the judge's own labels, versioned, hot-swapped by workers.

`tribunal train --from-labels` (consumers/label_harvest.py) fits a head on the judge verdicts the
pipeline has paid for and publishes it to a `LearnedStore`: one directory per task holding
`v000001.npz`, `v000002.npz`, ... in the ordinary head format (headfile.py), each written
atomically (a temp file renamed), so a reader sees a whole file or none. Heads are files, not
records: a TF-IDF head is 0.5-3.4 MB, over a topic's `max_record_bytes`; workers on several
machines share the directory (a ReadWriteMany volume, an NFS or object-store mount, or a sync).

The worker side is the `learned` classifier kind:

    learned?task=sentiment                 the store under .tribunal/models/learned
    learned:DIR?task=intent&poll_s=5       another store; look for a new version every 5 s

At the start of every `classify` call, that is at a batch boundary, it looks (at most every
`poll_s` seconds) for a newer version and swaps it in; a whole batch is labelled by one version
(unless the resilience layer splits a failed batch and a swap falls between its halves), and every
prediction names it (`Prediction.model`, e.g. `tfidf:learned/sentiment@v3`), which the
worker writes on the vote. Before the first version exists it abstains. A version that cannot
be loaded is logged and skipped; the head in use stays.

How the target policy treats a swap: the learned worker is an *extra* worker (its own name in
`aggregator.workers`), and a rule pins model lineages, not versions: `@vN` is dropped when a
rule compares its models with the votes' (`consumers.policy.target.lineage`). So a newer head does not
send every item to the judge until the next re-fit; its votes enter the same features, the
score is re-fitted on the evidence as it arrives, and the anytime drift test on accepted audits
falls back to judge-only at once if a swap made the accepted labels worse than the target.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tribunal.consumers.classifiers.base import Classifier, Prediction
from tribunal.consumers.classifiers.headfile import save_head
from tribunal.consumers.classifiers.heads import Head, load_head
from tribunal.consumers.classifiers.registry import ClassifierSpec
from tribunal.consumers.classifiers.trained import DEFAULT_MODELS_DIR, HeadClassifier
from tribunal.core.errors import ConfigError
from tribunal.core.logs import get_logger
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import Task, TaskRegistry

__all__ = ["DEFAULT_STORE", "LearnedClassifier", "LearnedStore", "learned", "model_id"]

log = get_logger("tribunal.learned")

DEFAULT_STORE = DEFAULT_MODELS_DIR / "learned"
_VERSION_FILE = re.compile(r"^v(\d{6,})\.npz$")


def model_id(task: str, version: int) -> str:
    """The model a vote names: `tfidf:learned/TASK@vN` (lineage `tfidf:learned/TASK`)."""
    return f"tfidf:learned/{task}@v{version}"


class LearnedStore:
    """The versions of one task's learned head, as files `ROOT/TASK/vNNNNNN.npz`. One writer
    (the `train --from-labels` job) per task; any number of readers."""

    def __init__(self, root: Path, task: str) -> None:
        if not task or "/" in task or task.startswith("."):
            raise ConfigError(f"a task name cannot name a directory: {task!r}")
        self.root = root
        self.task = task
        self.directory = root / task

    def path(self, version: int) -> Path:
        return self.directory / f"v{version:06d}.npz"

    def versions(self) -> list[int]:
        """Published versions, ascending (temp files and strangers ignored)."""
        if not self.directory.is_dir():
            return []
        found = (_VERSION_FILE.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m is not None)

    def latest(self) -> int | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def publish(self, header: dict[str, Any], arrays: dict[str, Any]) -> int:
        """Write the next version atomically; return its number (1 for the first)."""
        version = (self.latest() or 0) + 1
        save_head(self.path(version), {**header, "learned_version": version}, arrays)
        return version

    def load(self, version: int, task: Task) -> Head:
        return load_head(self.path(version), task, "tfidf")


class LearnedClassifier:
    """A worker model that follows a `LearnedStore` (module docstring)."""

    def __init__(
        self, store: LearnedStore, task: Task, poll_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._task = task
        self._poll_s = poll_s
        self._clock = clock
        self._checked_at: float | None = None
        self._skipped: set[int] = set()
        self._current: HeadClassifier | None = None
        self.version: int | None = None
        self.model_id = f"tfidf:learned/{task.name}@none"

    def maybe_swap(self) -> bool:
        """Swap in the newest loadable version if one is due; True if the head changed."""
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self._poll_s:
            return False
        self._checked_at = now
        latest = self._store.latest()
        if latest is None or latest == self.version or latest in self._skipped:
            return False
        try:
            head = self._store.load(latest, self._task)
        except ConfigError as exc:
            self._skipped.add(latest)
            log.warning("learned_head_skipped", task=self._task.name, version=latest, error=str(exc))
            return False
        self.version, self.model_id = latest, model_id(self._task.name, latest)
        self._current = HeadClassifier(self.model_id, head, lambda texts: texts)
        log.info("learned_head_swapped", task=self._task.name, version=latest, rows=head.header.get("rows"))
        return True

    async def classify(self, items: Sequence[Item]) -> list[Prediction]:
        self.maybe_swap()  # a batch boundary: the whole batch is labelled by one version
        current = self._current
        if current is None:
            why = f"no learned head for task {self._task.name!r} in {self._store.directory} yet"
            return [Prediction(None, 0.0, reason=why, model=self.model_id) for _ in items]
        predictions = await asyncio.to_thread(current.classify_sync, items)
        return [replace(p, model=current.model_id) for p in predictions]

    async def close(self) -> None:
        return None


def learned(spec: ClassifierSpec, tasks: TaskRegistry) -> Classifier:
    """The `learned` kind: `learned[:DIR]?task=T[&poll_s=S]`."""
    task = spec.options.get("task")
    if not task:
        raise ConfigError(f"{spec}: name the task, e.g. learned?task=sentiment")
    poll_s = spec.float_option("poll_s", 5.0)
    if poll_s < 0:
        raise ConfigError(f"{spec}: poll_s must be >= 0")
    store = LearnedStore(Path(spec.arg) if spec.arg else DEFAULT_STORE, task)
    return LearnedClassifier(store, tasks.get(task), poll_s)
