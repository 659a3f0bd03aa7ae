"""Trained linear heads: fit, save and load the models behind the `tfidf` and `embedding` kinds.

Training uses scikit-learn; the fitted model is then exported as plain arrays to one `.npz`
head file (headfile.py: no pickle, so loading a head never runs code from it). Its JSON header
names the task, the label set (in the model's order), the kind, the sha256 of the training data
and the library versions; `load_head` checks it before reading any array.

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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tribunal.consumers.classifiers.headfile import (
    FORMAT,
    HeadModel,
    build_model,
    load_model,
    quantize,
    read_header,
    save_head,
    text_array,
)
from tribunal.core.errors import ConfigError
from tribunal.schemas.tasks import Task

__all__ = [
    "FORMAT",
    "HEADS",
    "KINDS",
    "Head",
    "file_sha256",
    "fit_head",
    "head_from",
    "load_head",
    "read_header",
    "read_labelled",
    "train_head",
]

KINDS = ("tfidf", "embedding")
HEADS = ("linear", "nb", "knn")
# Inverse regularisation strength: a fixed, untuned choice (weak regularisation suits these
# sizes: 2k-60k rows); not tuned on any test split.
_C = {"tfidf": 10.0, "embedding": 10.0}
# A padded label's intercept sits this far below the lowest fitted one: exp(-100) is never chosen.
_PAD_MARGIN = 100.0


@dataclass(frozen=True, slots=True)
class Head:
    """A loaded head: `predict_proba(texts)` gives one row per text over `classes`."""

    header: dict[str, Any]
    model: HeadModel

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
    texts, labels = read_labelled(data, max_rows)
    _check_labels(task, labels, data)
    source = {"data": str(data), "data_sha256": file_sha256(data)}
    header, arrays = fit_head(task, kind, texts, labels, head=head, model_dir=model_dir, source=source)
    save_head(out, header, arrays)
    return header


def fit_head(
    task: Task,
    kind: str,
    texts: list[str],
    labels: list[str],
    *,
    head: str = "linear",
    model_dir: Path | None = None,
    source: dict[str, Any] | None = None,
    pad: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit a head on in-memory rows: (header, arrays) for `headfile.save_head` or `head_from`.

    The labels must lie in the task's label set; the header's `source` fields say where the rows
    came from (a file and its sha256, or a topic). With `pad` (linear heads only), labels that
    have no rows are added with a weight of zero and an intercept far below the others, so the
    head covers the task's label set (as `load_head` requires) and never predicts them: how a
    head learned from a stream's first judge labels is saved."""
    import sklearn

    if kind not in KINDS:
        raise ConfigError(f"unknown head kind {kind!r}; known: {', '.join(KINDS)}")
    if head not in HEADS or (head != "linear" and kind != "tfidf"):
        raise ConfigError(f"head {head!r} is not available for kind {kind!r} (nb and knn need tfidf features)")
    unknown = sorted(set(labels) - set(task.labels))
    if unknown:
        raise ConfigError(f"rows have labels outside task {task.name!r}: {unknown[:5]}")
    if len(set(labels)) < 2:
        raise ConfigError(f"a head needs rows of at least two labels, got {sorted(set(labels))}")
    if pad and head != "linear":
        raise ConfigError("only linear heads can be padded to the task's label set")
    started = time.perf_counter()
    model, extra = _fit(kind, head, texts, labels, model_dir)
    if pad:
        _pad_classes(model if kind == "embedding" else model.steps[-1][1], task.labels)
    header: dict[str, Any] = {
        "format": FORMAT,
        "task": task.name,
        "kind": kind,
        "head": head,
        "labels": [str(c) for c in model.classes_],
        **(source or {}),
        "rows": len(texts),
        "train_seconds": round(time.perf_counter() - started, 1),
        "sklearn": sklearn.__version__,
        **extra,
    }
    fields, arrays = _export(kind, head, model, texts)
    header.update(fields)
    return header, arrays


def _pad_classes(classifier: Any, labels: Sequence[str]) -> None:
    """Extend a fitted logistic regression to every label in `labels` (see `fit_head`'s `pad`)."""
    import numpy as np

    seen = [str(c) for c in classifier.classes_]
    missing = [label for label in labels if label not in seen]
    if not missing:
        return
    coef, intercept = np.asarray(classifier.coef_), np.asarray(classifier.intercept_, dtype=np.float64)
    if coef.shape[0] == 1:  # binary: one logit z for the second class == softmax over (-z/2, z/2)
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    floor = float(intercept.min()) - _PAD_MARGIN
    classifier.coef_ = np.vstack([coef, np.zeros((len(missing), coef.shape[1]))])
    classifier.intercept_ = np.concatenate([intercept, np.full(len(missing), floor)])
    classifier.classes_ = np.asarray(seen + missing, dtype=object)


def head_from(header: dict[str, Any], arrays: dict[str, Any]) -> Head:
    """The loaded form of a freshly fitted head, without a file round trip (same arrays)."""
    return Head(header=header, model=build_model(header, dict(arrays)))


def _tfidf_spec(vectorizer: Any) -> dict[str, Any]:
    """The parameters inference needs to tokenise exactly as `vectorizer` did."""
    defaults = {"lowercase": True, "norm": "l2", "use_idf": True, "strip_accents": None, "binary": False}
    params = vectorizer.get_params()
    changed = {name: params[name] for name, value in defaults.items() if params[name] != value}
    if changed or params["token_pattern"] != r"(?u)\b\w\w+\b" or params["preprocessor"] or params["tokenizer"]:
        raise ConfigError(f"cannot export a TF-IDF vectorizer with non-default parameters {changed}")
    return {
        "analyzer": params["analyzer"],
        "ngram_range": list(params["ngram_range"]),
        "sublinear_tf": params["sublinear_tf"],
    }


def _vocab_arrays(i: int, vectorizer: Any) -> dict[str, Any]:
    import numpy as np

    terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
    return {f"f{i}.vocab": text_array(terms), f"f{i}.idf": vectorizer.idf_.astype(np.float32)}


def _export(kind: str, head: str, model: Any, texts: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header fields, arrays) of a fitted scikit-learn model, for `headfile.save_head`."""
    import numpy as np

    if kind == "embedding":
        classifier, vectorizers = model, []
    else:
        steps = [step for _, step in model.steps]
        first, classifier = steps[0], steps[-1]
        vectorizers = [t for _, t in first.transformer_list] if hasattr(first, "transformer_list") else [first]
    arrays: dict[str, Any] = {}
    for i, vectorizer in enumerate(vectorizers):
        arrays.update(_vocab_arrays(i, vectorizer))
    fields: dict[str, Any] = {"features": {"tfidf": [_tfidf_spec(v) for v in vectorizers]}}
    if head == "linear":
        fields["classifier"] = {"type": "linear"}
        arrays.update(quantize("coef", classifier.coef_))
        arrays["intercept"] = classifier.intercept_.astype(np.float64)
    elif head == "nb":
        fields["classifier"] = {"type": "complement_nb"}
        arrays.update(quantize("log_prob", classifier.feature_log_prob_))
    else:
        fields["classifier"] = {"type": "knn", "k": int(classifier.n_neighbors)}
        arrays.update(_knn_arrays(vectorizers[0], classifier, texts))
    return fields, arrays


def _knn_arrays(vectorizer: Any, classifier: Any, texts: list[str]) -> dict[str, Any]:
    """The training rows as n-gram counts in the smallest integer types that hold them (the
    tf-idf vectors are recomputed at load): a kNN head is its training set."""
    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer

    if classifier.metric != "cosine" or classifier.weights != "distance":
        raise ConfigError("only cosine, distance-weighted kNN heads can be exported")
    counter = CountVectorizer(
        analyzer=vectorizer.analyzer, ngram_range=vectorizer.ngram_range, vocabulary=vectorizer.vocabulary_
    )
    counts = counter.transform(texts).tocsr()
    counts.sort_indices()
    return {
        "knn.data": counts.data.astype(np.min_scalar_type(int(counts.data.max(initial=0)))),
        "knn.indices": counts.indices.astype(np.min_scalar_type(max(counts.shape[1] - 1, 0))),
        "knn.indptr": counts.indptr.astype(np.int64),
        "knn.shape": np.asarray(counts.shape, dtype=np.int64),
        "knn.labels": np.asarray(classifier._y, dtype=np.int32),
    }


def load_head(path: Path, task: Task, kind: str) -> Head:
    """Load a head for `task`; refuse (ConfigError) another kind, format or label set. The header
    is checked before any array is read."""
    header = read_header(path)
    if header.get("format") != FORMAT or header.get("kind") != kind:
        raise ConfigError(f"{path} is a {header.get('kind')!r} head (format {header.get('format')}), not {kind!r}")
    if set(header.get("labels", ())) != set(task.labels):
        raise ConfigError(f"{path} was trained for labels {header.get('labels')}, not task {task.name!r}'s label set")
    return Head(header=header, model=load_model(path, header))
