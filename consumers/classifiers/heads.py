"""Trained linear heads: fit, save and load the models behind the `tfidf` and `embedding` kinds.

A head file is a joblib pickle `FILE` plus a JSON header `FILE.json` written next to it. The
header names the task, the label set (in the task's order), the kind, the sha256 of the
training data and the library versions. `load_head` reads and checks the header BEFORE it
unpickles anything, so a file for another label set is refused without running its pickle.

    tfidf      word 1-2-grams + char_wb 2-5-grams (TF-IDF, sublinear tf) -> LogisticRegression
    tfidf/nb   (head="nb") word 1-2-grams (TF-IDF) -> Complement Naive Bayes: a different model
               family on different features, so its errors correlate less with the others'
    tfidf/knn  (head="knn") char_wb 3-5-gram TF-IDF -> 10 nearest training rows by cosine,
               distance-weighted votes: instance-based, no decision boundary to share errors
    embedding  all-MiniLM-L6-v2 sentence vectors (numpy, see minilm.py) -> LogisticRegression
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tribunal.core.errors import ConfigError
from tribunal.schemas.tasks import Task

__all__ = ["FORMAT", "HEADS", "KINDS", "Head", "file_sha256", "load_head", "read_labelled", "train_head"]

FORMAT = 1
KINDS = ("tfidf", "embedding")
HEADS = ("linear", "nb", "knn")
# Inverse regularisation strength: a fixed, untuned choice (weak regularisation suits these
# sizes: 2k-60k rows); not tuned on any test split.
_C = {"tfidf": 10.0, "embedding": 10.0}


@dataclass(frozen=True, slots=True)
class Head:
    """A loaded head: `predict_proba(texts)` gives one row per text over `classes`."""

    header: dict[str, Any]
    model: Any  # sklearn Pipeline / LogisticRegression; untyped library

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.header["labels"]]


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_labelled(path: Path, limit: int | None = None) -> tuple[list[str], list[str]]:
    """Texts and labels of a JSONL file with `text` and `label` fields; `ConfigError` if unreadable."""
    texts: list[str] = []
    labels: list[str] = []
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if limit is not None and len(texts) >= limit:
                    break
                if line.strip():
                    row = json.loads(line)
                    texts.append(str(row["text"]))
                    labels.append(str(row["label"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read labelled data {path} (line {len(texts) + 1}): {exc!r}") from None
    return texts, labels


def _check_labels(task: Task, labels: Sequence[str], path: Path) -> None:
    unknown = sorted(set(labels) - set(task.labels))
    if unknown:
        raise ConfigError(f"{path} has labels outside task {task.name!r}: {unknown[:5]}")
    missing = sorted(set(task.labels) - set(labels))
    if missing:
        raise ConfigError(f"{path} has no rows for labels {missing[:5]} of task {task.name!r}; a head needs them all")


def _tfidf_pipeline() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    features = FeatureUnion(
        [
            ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
            # Char n-grams survive typos and morphology ("refund"/"refunded"); min_df trims noise.
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)),
        ]
    )
    return make_pipeline(features, LogisticRegression(C=_C["tfidf"], max_iter=2000))


def _nb_pipeline() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.naive_bayes import ComplementNB
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), ComplementNB(alpha=0.3))


def _knn_pipeline() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2)
    return make_pipeline(vectorizer, KNeighborsClassifier(n_neighbors=10, metric="cosine", weights="distance"))


_PIPELINES = {"linear": _tfidf_pipeline, "nb": _nb_pipeline, "knn": _knn_pipeline}


def _fit(
    kind: str, head: str, texts: list[str], labels: list[str], model_dir: Path | None
) -> tuple[Any, dict[str, Any]]:
    if kind == "tfidf":
        return _PIPELINES[head]().fit(texts, labels), {}
    from sklearn.linear_model import LogisticRegression

    from tribunal.consumers.classifiers.minilm import load_encoder

    enc = load_encoder(model_dir)
    model = LogisticRegression(C=_C["embedding"], max_iter=3000).fit(enc.encode(texts), labels)
    return model, {"encoder": "all-MiniLM-L6-v2", "encoder_dim": enc.dim}


def train_head(
    task: Task,
    kind: str,
    data: Path,
    out: Path,
    *,
    head: str = "linear",
    max_rows: int | None = None,
    model_dir: Path | None = None,
) -> dict[str, Any]:
    """Fit a head of `kind` for `task` on the JSONL `data`, save it atomically to `out` (+ .json).

    Rows with labels outside the task, or a task label with no rows, are a `ConfigError`.
    `max_rows` keeps the first N rows (the embedding head costs ~10 ms a row to encode).
    Returns the header written."""
    import sklearn

    if kind not in KINDS:
        raise ConfigError(f"unknown head kind {kind!r}; known: {', '.join(KINDS)}")
    if head not in HEADS or (head != "linear" and kind != "tfidf"):
        raise ConfigError(f"head {head!r} is not available for kind {kind!r} (nb and knn need tfidf features)")
    texts, labels = read_labelled(data, max_rows)
    _check_labels(task, labels, data)
    started = time.perf_counter()
    model, extra = _fit(kind, head, texts, labels, model_dir)
    header: dict[str, Any] = {
        "format": FORMAT,
        "task": task.name,
        "kind": kind,
        "head": head,
        "labels": [str(c) for c in model.classes_],
        "data": str(data),
        "data_sha256": file_sha256(data),
        "rows": len(texts),
        "train_seconds": round(time.perf_counter() - started, 1),
        "sklearn": sklearn.__version__,
        **extra,
    }
    _save(out, header, model)
    return header


def _save(out: Path, header: dict[str, Any], model: Any) -> None:
    import joblib

    out.parent.mkdir(parents=True, exist_ok=True)
    # Write to temp names then rename, so a concurrent reader never sees half a file.
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    joblib.dump({"header": header, "model": model}, tmp, compress=3)
    tmp_json = tmp.with_suffix(".json")
    tmp_json.write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    os.replace(tmp_json, header_path(out))


def header_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def read_header(path: Path) -> dict[str, Any]:
    """The JSON header of a head file; `ConfigError` if it is missing or unreadable."""
    try:
        header: dict[str, Any] = json.loads(header_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"head {path} has no readable header {header_path(path)}: {exc}") from None
    return header


def load_head(path: Path, task: Task, kind: str) -> Head:
    """Load a head for `task`; refuse (ConfigError) another kind, format or label set."""
    import joblib

    header = read_header(path)
    if header.get("format") != FORMAT or header.get("kind") != kind:
        raise ConfigError(f"{path} is a {header.get('kind')!r} head (format {header.get('format')}), not {kind!r}")
    if set(header.get("labels", ())) != set(task.labels):
        raise ConfigError(f"{path} was trained for labels {header.get('labels')}, not task {task.name!r}'s label set")
    payload = joblib.load(path)
    if payload["header"] != header:
        raise ConfigError(f"{path} does not match its header {header_path(path)}; retrain it")
    return Head(header=header, model=payload["model"])
