"""Head files: a trained head as plain arrays in one `.npz` (no pickle), and its numpy inference.

Why not pickle/joblib: unpickling runs whatever code the file names, so a head someone hands you
is a program. An `.npz` read with `allow_pickle=False` holds numbers and bytes only; the model is
rebuilt from them by the code below, which is the only code that runs.

Layout of `FILE.npz` (every member a plain numeric array):

    header            the JSON header (uint8 bytes): task, labels, kind, head, training data sha256,
                      and the recipe: `features` (TF-IDF blocks, or the sentence encoder) and
                      `classifier` (linear, complement_nb or knn) with their parameters
    f<i>.vocab        TF-IDF block i: its terms as a JSON list (uint8 bytes), in column order
    f<i>.idf          TF-IDF block i: inverse document frequencies, one per term
    coef, intercept   linear: weights (classes x features; one row for two classes) and biases
    log_prob          complement_nb: per-class feature log weights (classes x features)
    <name>.scale      a weight matrix is stored as int16 per row, times this per-row scale (see
                      `quantize`): a third of float32's bytes after compression, and the
                      probabilities differ from the float model's by < 3e-4 (measured)
    knn.*             knn: the training rows as n-gram counts (CSR data/indices/indptr/shape) and
                      their label indices; their TF-IDF vectors are recomputed at load

Inference reproduces scikit-learn's `TfidfVectorizer` (sublinear tf, idf, l2 norm per block, blocks
side by side), `LogisticRegression`, `ComplementNB` and `KNeighborsClassifier(metric="cosine",
weights="distance")`; tests/unit/test_headfile.py checks it against the fitted originals.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tribunal.core.errors import ConfigError

__all__ = [
    "FORMAT",
    "HeadModel",
    "TfidfBlock",
    "build_model",
    "from_text_array",
    "load_model",
    "quantize",
    "read_header",
    "save_head",
    "text_array",
]

FORMAT = 2
Array = npt.NDArray[Any]


def quantize(name: str, weights: Array) -> dict[str, Array]:
    """`{name: int16 rows, name.scale: float32 per row}` for a weight matrix.

    With more than one row, each feature's mean over the rows is subtracted first: both the
    softmax of logistic regression and Complement NB's normalisation are invariant to adding
    the same `x . m` to every class's score, and the centred weights are smaller, so the int16
    steps are finer. A single row (binary logistic regression) is kept as it is."""
    matrix = np.asarray(weights, dtype=np.float64)
    if matrix.shape[0] > 1:
        matrix = matrix - matrix.mean(axis=0, keepdims=True)
    peak = np.abs(matrix).max(axis=1, keepdims=True)
    scale = np.where(peak > 0, peak / 32767.0, 1.0)
    return {name: np.round(matrix / scale).astype(np.int16), f"{name}.scale": scale.astype(np.float32)}


def _dequantize(arrays: dict[str, Array]) -> None:
    """Replace every `X` that has an `X.scale` by its float64 weights, in place."""
    for name in [n for n in arrays if f"{n}.scale" in arrays]:
        scale = arrays.pop(f"{name}.scale").astype(np.float64)
        arrays[name] = arrays[name].astype(np.float64) * scale


def text_array(value: Any) -> Array:
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


def from_text_array(array: Array) -> Any:
    return json.loads(array.tobytes().decode("utf-8"))


@dataclass(frozen=True)
class TfidfBlock:
    """One TF-IDF feature block: n-gram counts over a fixed vocabulary, then tf-idf and l2 norm."""

    analyzer: str  # "word" or "char_wb"
    ngram_range: tuple[int, int]
    sublinear_tf: bool
    vocabulary: list[str]
    idf: Array
    _counter: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once: validating a 100k-term vocabulary costs far more than counting a batch.
        object.__setattr__(self, "_counter", self._counter_for())

    def _counter_for(self) -> Any:
        """scikit-learn's own analyzer with the training parameters, so tokenisation is identical
        by construction; fitted on nothing (the vocabulary is given)."""
        from sklearn.feature_extraction.text import CountVectorizer

        counter = CountVectorizer(
            analyzer=self.analyzer,
            ngram_range=self.ngram_range,
            vocabulary={term: i for i, term in enumerate(self.vocabulary)},
            dtype=np.float64,
        )
        counter.transform([""])  # validates the vocabulary now, not on the first batch
        return counter

    def counts(self, texts: list[str]) -> Any:
        """Raw n-gram counts (CSR, one row per text)."""
        return self._counter.transform(texts)

    def weigh(self, counts: Any) -> Any:
        """Counts -> l2-normalised tf-idf rows, as `TfidfTransformer` computes them."""
        from sklearn.preprocessing import normalize

        weighted = counts.astype(np.float64, copy=True)
        if self.sublinear_tf:
            np.log(weighted.data, out=weighted.data)
            weighted.data += 1.0
        weighted.data *= self.idf[weighted.indices]
        return normalize(weighted, norm="l2", copy=False)

    def transform(self, texts: list[str]) -> Any:
        return self.weigh(self.counts(texts))


def _softmax(scores: Array) -> Array:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    out: Array = exp / exp.sum(axis=1, keepdims=True)
    return out


@dataclass(frozen=True)
class HeadModel:
    """Features (TF-IDF blocks, or none when the input is already vectors) and a classifier.

    `predict_proba(inputs)` takes texts when there are blocks, else a (rows x dim) float matrix,
    and returns one probability row per input over `labels` (header order)."""

    blocks: tuple[TfidfBlock, ...]
    classifier: str  # "linear", "complement_nb" or "knn"
    arrays: dict[str, Array]
    labels: int
    k: int = 10

    def features(self, inputs: Any) -> Any:
        if not self.blocks:
            return np.asarray(inputs, dtype=np.float64)
        from scipy.sparse import hstack

        texts = list(inputs)
        parts = [block.transform(texts) for block in self.blocks]
        return parts[0] if len(parts) == 1 else hstack(parts, format="csr")

    def predict_proba(self, inputs: Any) -> Array:
        features = self.features(inputs)
        if self.classifier == "linear":
            return self._linear(features)
        if self.classifier == "complement_nb":
            return _softmax(np.asarray(features @ self.arrays["log_prob"].T, dtype=np.float64))
        return self._knn(features)

    def _linear(self, features: Any) -> Array:
        coef = self.arrays["coef"]
        scores = np.asarray(features @ coef.T, dtype=np.float64) + self.arrays["intercept"]
        if coef.shape[0] == 1:  # two classes: one logit for the second class
            from scipy.special import expit  # no overflow warning for a very confident logit

            positive = expit(scores[:, 0])
            out: Array = np.column_stack([1.0 - positive, positive])
            return out
        return _softmax(scores)

    def _knn(self, features: Any) -> Array:
        """Distance-weighted votes of the k nearest training rows by cosine distance (rows are
        l2-normalised, so distance = 1 - dot product); an exact match outweighs all others."""
        train, labels = self.arrays["knn_rows"], self.arrays["knn.labels"]
        distances = np.clip(1.0 - np.asarray((features @ train.T).todense(), dtype=np.float64), 0.0, 2.0)
        k = min(self.k, distances.shape[1])
        nearest = np.argpartition(distances, k - 1, axis=1)[:, :k]
        near_d = np.take_along_axis(distances, nearest, axis=1)
        with np.errstate(divide="ignore"):
            weights = 1.0 / near_d
        exact = near_d == 0.0
        rows_with_exact = exact.any(axis=1)
        weights[rows_with_exact] = exact[rows_with_exact].astype(np.float64)
        proba = np.zeros((distances.shape[0], self.labels))
        np.add.at(proba, (np.arange(distances.shape[0])[:, None], labels[nearest]), weights)
        out: Array = proba / proba.sum(axis=1, keepdims=True)
        return out


def save_head(out: Path, header: dict[str, Any], arrays: dict[str, Array]) -> None:
    """Write `header` and `arrays` to `out` (.npz, compressed) atomically: a temp file renamed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.npz")
    members: dict[str, Any] = {"header": text_array(header), **arrays}
    savez: Any = np.savez_compressed  # its stubs mistake ** members for its own keyword arguments
    with tmp.open("wb") as handle:
        savez(handle, **members)
    os.replace(tmp, out)


def _open(path: Path) -> Any:
    """The lazy .npz reader; a pickle (joblib head of an older Tribunal) or any other file is refused."""
    if not zipfile.is_zipfile(path):
        raise ConfigError(
            f"{path} is not a Tribunal head file (.npz); heads saved as pickles by older versions are "
            f"never loaded (a pickle can run code): retrain it with `tribunal train`"
        )
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read head file {path}: {exc}") from None


def read_header(path: Path) -> dict[str, Any]:
    """The JSON header of a head file, without loading its arrays; `ConfigError` if unreadable."""
    if not path.is_file():
        raise ConfigError(f"no head file at {path}")
    with _open(path) as npz:
        try:
            header: dict[str, Any] = from_text_array(npz["header"])
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"head file {path} has no readable header: {exc!r}") from None
    return header


def load_model(path: Path, header: dict[str, Any]) -> HeadModel:
    """Rebuild the model a header describes from the arrays of `path`."""
    try:
        with _open(path) as npz:
            arrays = {name: npz[name] for name in npz.files if name != "header"}
        return build_model(header, arrays)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise ConfigError(f"head file {path} is incomplete or inconsistent: {exc!r}; retrain it") from None


def build_model(header: dict[str, Any], arrays: dict[str, Array]) -> HeadModel:
    """The model of a header and its arrays (consumed: the vocabularies are popped)."""
    blocks = tuple(
        TfidfBlock(
            analyzer=str(spec["analyzer"]),
            ngram_range=(int(spec["ngram_range"][0]), int(spec["ngram_range"][1])),
            sublinear_tf=bool(spec["sublinear_tf"]),
            vocabulary=[str(t) for t in from_text_array(arrays.pop(f"f{i}.vocab"))],
            idf=arrays.pop(f"f{i}.idf").astype(np.float64),
        )
        for i, spec in enumerate(header["features"].get("tfidf", []))
    )
    if any(len(b.vocabulary) != len(b.idf) for b in blocks):
        raise ValueError("a vocabulary and its idf differ in length")
    _dequantize(arrays)
    classifier = header["classifier"]
    kind = str(classifier["type"])
    if kind not in {"linear", "complement_nb", "knn"}:
        raise ValueError(f"unknown classifier type {kind!r}")
    _check_shapes(kind, blocks, arrays, len(header["labels"]))
    if kind == "knn":
        arrays["knn_rows"] = _knn_rows(blocks, arrays)
    labels = len(header["labels"])
    return HeadModel(blocks=blocks, classifier=kind, arrays=arrays, labels=labels, k=int(classifier.get("k", 10)))


def _check_shapes(kind: str, blocks: tuple[TfidfBlock, ...], arrays: dict[str, Array], labels: int) -> None:
    """Fail at load, not on the first item: every array the classifier needs, sized consistently."""
    width = sum(len(b.vocabulary) for b in blocks)
    if kind == "linear":
        coef, intercept = arrays["coef"], arrays["intercept"]
        rows = 1 if labels == 2 else labels
        if coef.ndim != 2 or coef.shape[0] != rows or intercept.shape != (rows,) or (blocks and coef.shape[1] != width):
            raise ValueError(f"coef {coef.shape} / intercept {intercept.shape} do not fit {labels} labels x {width}")
    elif kind == "complement_nb":
        if arrays["log_prob"].shape != (labels, width):
            raise ValueError(f"log_prob {arrays['log_prob'].shape} does not fit {labels} labels x {width} features")
    else:
        shape = tuple(int(n) for n in arrays["knn.shape"])
        labels_of_rows = arrays["knn.labels"]
        if len(blocks) != 1 or shape[1] != width or labels_of_rows.shape != (shape[0],):
            raise ValueError(f"knn rows {shape} do not fit one block of {width} features")
        if labels_of_rows.size and (labels_of_rows.min() < 0 or labels_of_rows.max() >= labels):
            raise ValueError("knn row labels outside the label set")


def _knn_rows(blocks: tuple[TfidfBlock, ...], arrays: dict[str, Array]) -> Any:
    """The training rows' tf-idf vectors, recomputed from their stored counts (one block)."""
    from scipy.sparse import csr_matrix

    shape = tuple(int(n) for n in arrays["knn.shape"])
    counts = csr_matrix(
        (arrays["knn.data"].astype(np.float64), arrays["knn.indices"].astype(np.int64), arrays["knn.indptr"]),
        shape=shape,
    )
    return blocks[0].weigh(counts)
