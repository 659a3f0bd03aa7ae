"""Trained heads: training, the saved header, label-set checks, train-on-first-use caching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tribunal.consumers.classifiers.base import check_predictions
from tribunal.consumers.classifiers.heads import file_sha256, load_head, read_header, train_head
from tribunal.consumers.classifiers.registry import build_classifier, check_spec
from tribunal.core.errors import ConfigError
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import load_tasks

pytest.importorskip("sklearn")

TASKS = load_tasks()
POSITIVE = ["great film", "loved it", "wonderful acting", "a joy to watch", "brilliant and moving", "superb fun"]
NEGATIVE = ["awful film", "hated it", "terrible acting", "a bore to watch", "dull and lifeless", "dreadful mess"]


def _data(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = [json.dumps({"id": str(i), "text": t, "label": y}) for i, (t, y) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def sentiment_data(tmp_path: Path) -> Path:
    rows = [(t, "positive") for t in POSITIVE] + [(t, "negative") for t in NEGATIVE]
    return _data(tmp_path / "train.jsonl", rows)


def test_train_writes_header_with_hash(sentiment_data: Path, tmp_path: Path) -> None:
    """The header names task, kind, label set and the training data's sha256."""
    out = tmp_path / "h.npz"
    header = train_head(TASKS.get("sentiment"), "tfidf", sentiment_data, out)
    assert read_header(out) == header
    assert header["task"] == "sentiment" and header["kind"] == "tfidf"
    assert set(header["labels"]) == {"negative", "positive"}
    assert header["data_sha256"] == file_sha256(sentiment_data) and header["rows"] == 12


async def test_head_classifies_inside_the_label_set(sentiment_data: Path, tmp_path: Path) -> None:
    """A loaded tfidf head labels its task's items with probabilities; confidence is the top one."""
    out = tmp_path / "h.npz"
    train_head(TASKS.get("sentiment"), "tfidf", sentiment_data, out)
    classifier = build_classifier(f"tfidf:{out}", TASKS)
    texts = ["loved the acting", "awful and dull", "", "zzzz qqqq", "😡" * 50, "x" * 5000]
    items = [Item(id=str(i), text=t or " ", task="sentiment") for i, t in enumerate(texts)]
    predictions = await classifier.classify(items)
    check_predictions(items, predictions, TASKS, classifier.model_id)
    assert [p.label for p in predictions[:2]] == ["positive", "negative"]
    for p in predictions:
        assert p.probabilities is not None and sum(p.probabilities.values()) == pytest.approx(1.0)
        assert 0.0 <= p.confidence <= 1.0 and p.confidence == max(p.probabilities.values())


async def test_items_of_another_task_abstain(sentiment_data: Path, tmp_path: Path) -> None:
    """An item of a task the head was not trained for gets an abstention, never a foreign label."""
    out = tmp_path / "h.npz"
    train_head(TASKS.get("sentiment"), "tfidf", sentiment_data, out)
    classifier = build_classifier(f"tfidf:{out}", TASKS)
    items = [Item(id="1", text="great", task="sentiment3"), Item(id="2", text="great", task="sentiment")]
    predictions = await classifier.classify(items)
    check_predictions(items, predictions, TASKS, classifier.model_id)
    assert predictions[0].label is None and predictions[0].reason
    assert predictions[1].label == "positive"


def test_label_set_mismatch_is_refused(sentiment_data: Path, tmp_path: Path) -> None:
    """A head whose label set differs from the task's is refused before its arrays are read."""
    out = tmp_path / "h.npz"
    train_head(TASKS.get("sentiment"), "tfidf", sentiment_data, out)
    with pytest.raises(ConfigError, match="label set"):
        load_head(out, TASKS.get("sentiment3"), "tfidf")
    with pytest.raises(ConfigError, match="not 'embedding'"):
        load_head(out, TASKS.get("sentiment"), "embedding")


def test_bundled_heads_resolve_inside_the_package_not_the_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tfidf:bundled:NAME` is found next to the package from any working directory; a missing
    one says it is missing from the installation, and names cannot climb out of the folder."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="missing from this installation"):
        build_classifier("tfidf:bundled:no-such-head", TASKS)
    for name in ("../sentiment-tfidf", "/etc/passwd", ".hidden"):
        with pytest.raises(ConfigError, match="plain names"):
            build_classifier(f"tfidf:bundled:{name}", TASKS)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("good", "positive"), ("bad", "negative"), ("meh", "neutral")], "outside"),
        ([("good", "positive"), ("fine", "positive")], "no rows"),
    ],
)
def test_training_data_must_match_the_task(tmp_path: Path, rows: list[tuple[str, str]], message: str) -> None:
    """Labels outside the task, or a task label without rows, stop training."""
    data = _data(tmp_path / "d.jsonl", rows)
    with pytest.raises(ConfigError, match=message):
        train_head(TASKS.get("sentiment"), "tfidf", data, tmp_path / "h.npz")


def test_missing_head_without_training_data_is_a_config_error(tmp_path: Path) -> None:
    """A spec naming a missing file and no ?train= says how to make one."""
    with pytest.raises(ConfigError, match="tribunal train"):
        build_classifier(f"tfidf:{tmp_path / 'none.npz'}", TASKS)


def test_train_on_first_use_then_cache(sentiment_data: Path, tmp_path: Path) -> None:
    """?train= trains once, reuses the file while the data is unchanged, retrains when it changes."""
    out = tmp_path / "models" / "s.npz"
    spec = f"tfidf:{out}?task=sentiment&train={sentiment_data}"
    build_classifier(spec, TASKS)
    first = out.stat().st_mtime_ns
    build_classifier(spec, TASKS)
    assert out.stat().st_mtime_ns == first
    with sentiment_data.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "x", "text": "fantastic", "label": "positive"}) + "\n")
    build_classifier(spec, TASKS)
    assert read_header(out)["data_sha256"] == file_sha256(sentiment_data)


def test_default_cache_location(sentiment_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a path the head is cached at .tribunal/models/<task>-<kind>.npz."""
    monkeypatch.chdir(tmp_path)
    build_classifier(f"tfidf?task=sentiment&train={sentiment_data}", TASKS)
    assert (tmp_path / ".tribunal" / "models" / "sentiment-tfidf.npz").is_file()


def test_spec_task_must_match_the_head(sentiment_data: Path, tmp_path: Path) -> None:
    """A spec asking for another task than the head's is refused."""
    out = tmp_path / "h.npz"
    train_head(TASKS.get("sentiment"), "tfidf", sentiment_data, out)
    with pytest.raises(ConfigError, match="spec asks"):
        build_classifier(f"tfidf:{out}?task=sentiment3", TASKS)


async def test_naive_bayes_head(sentiment_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """head=nb trains Complement NB at its own default path and still answers inside the label set."""
    monkeypatch.chdir(tmp_path)
    classifier = build_classifier(f"tfidf?task=sentiment&train={sentiment_data}&head=nb", TASKS)
    assert read_header(tmp_path / ".tribunal" / "models" / "sentiment-tfidf-nb.npz")["head"] == "nb"
    items = [Item(id="1", text="loved it", task="sentiment"), Item(id="2", text="hated it", task="sentiment")]
    predictions = await classifier.classify(items)
    check_predictions(items, predictions, TASKS, classifier.model_id)
    assert [p.label for p in predictions] == ["positive", "negative"]


def test_nb_needs_tfidf_features(sentiment_data: Path, tmp_path: Path) -> None:
    """Naive Bayes on (signed) embeddings is refused."""
    with pytest.raises(ConfigError, match="nb and knn need tfidf"):
        train_head(TASKS.get("sentiment"), "embedding", sentiment_data, tmp_path / "h.npz", head="nb")


def test_check_spec_says_what_is_missing_without_loading_or_training(sentiment_data: Path, tmp_path: Path) -> None:
    """The demo's pre-flight: a missing head is one ConfigError; a trainable one passes untrained."""
    with pytest.raises(ConfigError, match="missing from this installation"):
        check_spec("tfidf:bundled:no-such-head", TASKS)
    with pytest.raises(ConfigError, match="tribunal train"):
        check_spec(f"tfidf:{tmp_path / 'none.npz'}", TASKS)
    with pytest.raises(ConfigError, match="does not exist"):
        check_spec(f"tfidf:{tmp_path / 'none.npz'}?task=sentiment&train={tmp_path / 'nothing.jsonl'}", TASKS)
    check_spec(f"tfidf:{tmp_path / 'none.npz'}?task=sentiment&train={sentiment_data}", TASKS)
    assert not (tmp_path / "none.npz").exists(), "a check never trains"
    with pytest.raises(ConfigError, match="cannot import"):
        check_spec("py:no_such_module_anywhere:factory", TASKS)
