"""Head files: the `.npz` format reproduces the fitted scikit-learn models exactly, and loading
one never runs code (pickles, object arrays and foreign files are refused)."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("sklearn")

from tribunal.consumers.classifiers.headfile import load_model, read_header, save_head, text_array  # noqa: E402
from tribunal.consumers.classifiers.heads import _export, _fit, load_head, train_head  # noqa: E402
from tribunal.core.errors import ConfigError  # noqa: E402
from tribunal.schemas.tasks import load_tasks  # noqa: E402

TASKS = load_tasks()
WORDS = {
    "positive": ["great", "loved", "wonderful", "joy", "brilliant", "superb", "fun", "moving", "fine", "kind"],
    "negative": ["awful", "hated", "terrible", "bore", "dull", "dreadful", "mess", "lifeless", "rude", "slow"],
    "neutral": ["opens", "nine", "store", "tuesday", "address", "ticket", "says", "list", "page", "form"],
}
PROBES = [
    "great fun and a joy",
    "awful, dull and slow",
    "the store opens at nine",
    "loved it but the ending was a mess",
    "Brilliant!!! BRILLIANT",
    "nothing in the vocabulary here zzz",
    "",
    "dreadful dreadful dreadful terrible",
    "a kind, moving page",
    "x" * 300,
]


def _rows(labels: list[str], per_label: int = 12) -> list[tuple[str, str]]:
    """Distinct texts mixing each label's words with shared filler, deterministic."""
    rows = []
    for label in labels:
        words = WORDS[label]
        for i in range(per_label):
            text = f"{words[i % 10]} and {words[(i * 3 + 1) % 10]} film number {i} with {words[(i * 7 + 2) % 10]}"
            rows.append((text, label))
    return rows


def _data(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"id": str(i), "text": t, "label": y}) + "\n" for i, (t, y) in enumerate(rows)))
    return path


@pytest.mark.parametrize(
    ("task", "head"),
    [("sentiment", "linear"), ("sentiment", "nb"), ("sentiment", "knn"), ("sentiment3", "linear"),
     ("sentiment3", "nb"), ("sentiment3", "knn")],
)  # fmt: skip
def test_saved_head_predicts_what_the_fitted_model_predicts(tmp_path: Path, task: str, head: str) -> None:
    """Probabilities from the .npz match scikit-learn's own predict_proba on seen and unseen texts."""
    labels = list(TASKS.get(task).labels)
    rows = _rows(labels)
    data = _data(tmp_path / "d.jsonl", rows)
    out = tmp_path / "h.npz"
    header = train_head(TASKS.get(task), "tfidf", data, out, head=head)
    fitted, _ = _fit("tfidf", head, [t for t, _ in rows], [y for _, y in rows], None)
    loaded = load_head(out, TASKS.get(task), "tfidf")
    probes = PROBES + [t for t, _ in rows[::5]]
    if head == "knn":
        # A text sharing no n-gram with any training row is equally far from all of them; which
        # k rows scikit-learn then picks is an implementation detail, so compare the others.
        probes = [p for p in probes if loaded.model.features([p]).nnz]
    expected = fitted.predict_proba(probes)
    got = loaded.model.predict_proba(probes)
    assert header["labels"] == [str(c) for c in fitted.classes_]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=3e-4)  # int16 weights
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_embedding_head_round_trips(tmp_path: Path) -> None:
    """A logistic regression on vectors (the embedding head) exports and predicts the same."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(90, 16))
    labels = np.array(["negative", "neutral", "positive"])[vectors[:, :3].argmax(axis=1)]
    model = LogisticRegression(C=10.0, max_iter=2000).fit(vectors, labels)
    fields, arrays = _export("embedding", "linear", model, [])
    header = {"format": 2, "labels": [str(c) for c in model.classes_], **fields}
    save_head(tmp_path / "e.npz", header, arrays)
    assert read_header(tmp_path / "e.npz") == json.loads(json.dumps(header))
    probe = rng.normal(size=(20, 16))
    got = load_model(tmp_path / "e.npz", read_header(tmp_path / "e.npz")).predict_proba(probe)
    np.testing.assert_allclose(got, model.predict_proba(probe), atol=3e-4)  # int16 weights


class _Trap:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path(self.path).touch, ())


def test_a_pickle_is_never_loaded(tmp_path: Path) -> None:
    """A joblib/pickle head (older Tribunal, or hostile) is refused with what to do; nothing runs."""
    witness = tmp_path / "ran"
    head = tmp_path / "old.joblib"
    head.write_bytes(pickle.dumps({"model": _Trap(str(witness))}))
    with pytest.raises(ConfigError, match="retrain it with `tribunal train`"):
        read_header(head)
    assert not witness.exists()


def test_an_npz_with_an_object_array_is_refused_without_running_it(tmp_path: Path) -> None:
    """np.savez pickles object arrays; loading with allow_pickle=False refuses them."""
    witness = tmp_path / "ran"
    head = tmp_path / "evil.npz"
    header = {"format": 2, "kind": "tfidf", "labels": ["negative", "positive"], "features": {"tfidf": []},
              "classifier": {"type": "linear"}, "task": "sentiment"}  # fmt: skip
    trap = np.empty(1, dtype=object)
    trap[0] = _Trap(str(witness))
    np.savez(head, header=text_array(header), coef=trap, intercept=np.zeros(1))
    with pytest.raises(ConfigError, match=r"inconsistent|cannot read"):
        load_head(head, TASKS.get("sentiment"), "tfidf")
    assert not witness.exists()


def test_a_zip_without_header_or_arrays_is_a_config_error(tmp_path: Path) -> None:
    empty = tmp_path / "e.npz"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ConfigError, match="header"):
        read_header(empty)
    partial = tmp_path / "p.npz"
    header = {"format": 2, "kind": "tfidf", "task": "sentiment", "labels": ["negative", "positive"],
              "features": {"tfidf": []}, "classifier": {"type": "linear"}}  # fmt: skip
    save_head(partial, header, {})
    with pytest.raises(ConfigError, match="incomplete"):
        load_head(partial, TASKS.get("sentiment"), "tfidf")


def test_extreme_logits_give_certain_probabilities_without_warnings() -> None:
    """A very confident binary head saturates at 0/1 quietly (warnings are errors in the tests)."""
    from tribunal.consumers.classifiers.headfile import HeadModel

    model = HeadModel(
        blocks=(), classifier="linear", arrays={"coef": np.array([[1e4]]), "intercept": np.zeros(1)}, labels=2
    )
    np.testing.assert_allclose(model.predict_proba(np.array([[5.0], [-5.0], [0.0]])), [[0, 1], [1, 0], [0.5, 0.5]])
