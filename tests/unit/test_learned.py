"""Workers that learn from the judge: the retrain schedule, padded heads, the versioned store, the
hot swap at a batch boundary, the model version on votes, and the join of labels with texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tribunal.consumers.classifiers.heads import fit_head, head_from
from tribunal.consumers.classifiers.learned import LearnedClassifier, LearnedStore, learned, model_id
from tribunal.consumers.classifiers.registry import build_classifier
from tribunal.consumers.label_harvest import Harvest, due, join, learn_from_labels
from tribunal.consumers.policy.target import Rule, lineage
from tribunal.consumers.worker import WorkerProcessor
from tribunal.core.errors import ConfigError
from tribunal.core.records import Record
from tribunal.core.settings import Settings, load_settings
from tribunal.schemas.codec import decode, encode
from tribunal.schemas.messages import DecidedBy, EscalationReason, Item, JudgeRequest, Verdict, VoteBatch
from tribunal.schemas.tasks import load_tasks

pytest.importorskip("sklearn")

TASKS = load_tasks()
SENTIMENT3 = TASKS.get("sentiment3")
GOOD = ["great film", "loved it", "wonderful acting", "a joy to watch", "brilliant and moving", "superb fun"]
BAD = ["awful film", "hated it", "terrible acting", "a bore to watch", "dull and lifeless", "dreadful mess"]


def _rows(n: int = 1) -> Harvest:
    rows = Harvest()
    for _ in range(n):
        rows.texts += GOOD + BAD
        rows.labels += ["positive"] * len(GOOD) + ["negative"] * len(BAD)
    return rows


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("labels", "fitted_on", "every", "first", "expected"),
    [
        (0, None, 500, 200, False),
        (199, None, 500, 200, False),
        (200, None, 500, 200, True),
        (699, 200, 500, 200, False),
        (700, 200, 500, 200, True),
        (5, 5, 1, 2, False),
        (6, 5, 1, 2, True),
    ],
)
def test_retrain_schedule(labels: int, fitted_on: int | None, every: int, first: int, expected: bool) -> None:
    assert due(labels, fitted_on, every, first) is expected


def test_padded_head_covers_the_task_and_never_predicts_an_unseen_label() -> None:
    """Fitted on two of sentiment3's three labels: the head names all three, 'neutral' gets ~0."""
    rows = _rows()
    header, arrays = fit_head(SENTIMENT3, "tfidf", rows.texts, rows.labels, pad=True)
    assert set(header["labels"]) == set(SENTIMENT3.labels)
    head = head_from(header, arrays)
    probs = head.model.predict_proba(["loved the acting", "dull film", "neutral words here"])
    neutral = head.classes.index("neutral")
    assert probs[:, neutral].max() < 1e-20
    assert [head.classes[int(r.argmax())] for r in probs[:2]] == ["positive", "negative"]


def test_unpadded_or_one_label_fits_are_refused() -> None:
    with pytest.raises(ConfigError, match="two labels"):
        fit_head(SENTIMENT3, "tfidf", GOOD, ["positive"] * len(GOOD), pad=True)
    with pytest.raises(ConfigError, match="outside"):
        fit_head(SENTIMENT3, "tfidf", GOOD, ["joyful"] * len(GOOD))
    with pytest.raises(ConfigError, match="linear"):
        fit_head(SENTIMENT3, "tfidf", GOOD + BAD, _rows().labels, pad=True, head="nb")


def test_store_publishes_numbered_versions_atomically(tmp_path: Path) -> None:
    store = LearnedStore(tmp_path, "sentiment3")
    assert store.latest() is None and store.versions() == []
    rows = _rows()
    header, arrays = fit_head(SENTIMENT3, "tfidf", rows.texts, rows.labels, pad=True)
    assert store.publish(header, dict(arrays)) == 1
    assert store.publish(header, dict(arrays)) == 2
    (store.directory / ".v000003.npz.123.tmp.npz").write_bytes(b"half written")
    (store.directory / "notes.txt").write_text("not a head")
    assert store.versions() == [1, 2] and store.path(2).name == "v000002.npz"
    with pytest.raises(ConfigError, match="directory"):
        LearnedStore(tmp_path, "../escape")


def _publish(store: LearnedStore, n: int = 1) -> int:
    rows = _rows(n)
    header, arrays = fit_head(SENTIMENT3, "tfidf", rows.texts, rows.labels, pad=True)
    return store.publish(header, arrays)


async def test_worker_model_swaps_only_at_a_batch_boundary_and_names_its_version(tmp_path: Path) -> None:
    """Abstain before v1; a new version is picked up at the next classify() call once poll_s has
    passed, never within a call; every prediction names the version that made it."""
    store, clock = LearnedStore(tmp_path, "sentiment3"), Clock()
    worker = LearnedClassifier(store, SENTIMENT3, poll_s=10.0, clock=clock)
    items = [Item(id=f"i{n}", text=t, task="sentiment3") for n, t in enumerate(["loved it", "awful mess"])]
    first = await worker.classify(items)
    assert all(p.label is None and "no learned head" in (p.reason or "") for p in first)
    _publish(store)
    assert all(p.label is None for p in await worker.classify(items)), "not before poll_s"
    clock.now = 10.0
    batch = await worker.classify(items)
    assert [p.label for p in batch] == ["positive", "negative"]
    assert {p.model for p in batch} == {model_id("sentiment3", 1)} == {"tfidf:learned/sentiment3@v1"}
    _publish(store, 2)
    clock.now = 15.0
    assert {p.model for p in await worker.classify(items)} == {model_id("sentiment3", 1)}
    clock.now = 20.0
    assert {p.model for p in await worker.classify(items)} == {model_id("sentiment3", 2)}
    assert worker.version == 2 and worker.model_id == "tfidf:learned/sentiment3@v2"


async def test_an_unreadable_version_is_skipped_and_the_head_in_use_stays(tmp_path: Path) -> None:
    store = LearnedStore(tmp_path, "sentiment3")
    _publish(store)
    worker = LearnedClassifier(store, SENTIMENT3, poll_s=0.0)
    assert worker.maybe_swap() and worker.version == 1
    store.path(2).write_bytes(b"not a zip file")
    assert not worker.maybe_swap()
    predictions = await worker.classify([Item(id="a", text="loved it", task="sentiment3")])
    assert predictions[0].model == model_id("sentiment3", 1)


def test_learned_spec_builds_from_the_registry(tmp_path: Path) -> None:
    built = build_classifier(f"learned:{tmp_path}?task=sentiment3&poll_s=0", TASKS)
    assert isinstance(built, LearnedClassifier) and built.model_id == "tfidf:learned/sentiment3@none"
    with pytest.raises(ConfigError, match="task"):
        build_classifier("learned", TASKS)
    assert learned is not None


def test_a_rule_pins_a_learned_lineage_not_its_version() -> None:
    """A hot swap keeps the rule applicable; another model does not."""
    assert lineage("tfidf:learned/s@v12") == "tfidf:learned/s" and lineage("vader") == "vader"
    rule = Rule(task="s", version=3, workers=("w1", "w4"), models={"w1": "vader", "w4": "tfidf:learned/s@v1"})
    assert rule.applies_to({"w1": "vader", "w4": "tfidf:learned/s@v7"})
    assert not rule.applies_to({"w1": "vader", "w4": "tfidf:bundled:sentiment-tfidf"})
    assert not rule.applies_to({"w1": "afinn", "w4": "tfidf:learned/s@v1"})


def _request(item_id: str, text: str, task: str = "sentiment3") -> JudgeRequest:
    item = Item(id=item_id, text=text, task=task)
    return JudgeRequest(item=item, reason=EscalationReason.DISAGREEMENT, policy="target", policy_version=1)


def _verdict(item_id: str, label: str, by: DecidedBy = DecidedBy.JUDGE, task: str = "sentiment3") -> Verdict:
    return Verdict(item_id=item_id, task=task, label=label, decided_by=by, policy="target", policy_version=1,
                   item_produced_at=1.0)  # fmt: skip


def test_join_keeps_judge_labels_with_texts_only() -> None:
    """Judge verdicts (labels and audits) of the task, the last per item; workers' and fallback
    labels, other tasks and labels whose text is gone are left out and counted."""
    requests = [_request("a", "loved it"), _request("b", "awful"), _request("c", "meh"), _request("x", "t", "intent")]
    verdicts = [
        _verdict("a", "neutral"),
        _verdict("b", "negative"),
        _verdict("a", "positive"),  # an audit of the same item later: the last wins
        _verdict("c", "neutral", DecidedBy.WORKERS),
        _verdict("d", "neutral", DecidedBy.FALLBACK),
        _verdict("e", "neutral"),  # no request on `judge` any more
        _verdict("x", "neutral", task="sentiment"),
    ]
    rows = join(requests, verdicts, "sentiment3")
    assert list(zip(rows.texts, rows.labels, strict=True)) == [("awful", "negative"), ("loved it", "positive")]
    assert rows.skipped == {"decided_by_workers": 1, "decided_by_fallback": 1, "no_text": 1}


def test_learn_from_labels_publishes_when_due(tmp_path: Path) -> None:
    settings, store = Settings(), LearnedStore(tmp_path, "sentiment3")
    few = learn_from_labels(settings, SENTIMENT3, _rows(), store, every=24, first=20)
    assert few["published"] is False and store.latest() is None
    one = learn_from_labels(settings, SENTIMENT3, _rows(2), store, every=24, first=20)
    assert one["published"] and one["version"] == 1 and one["model"] == "tfidf:learned/sentiment3@v1"
    again = learn_from_labels(settings, SENTIMENT3, _rows(3), store, every=24, first=20)
    assert again["published"] is False and again["previous_rows"] == 24
    forced = learn_from_labels(settings, SENTIMENT3, _rows(3), store, every=24, first=20, force=True)
    assert forced["version"] == 2 and store.versions() == [1, 2]


async def test_a_worker_writes_the_version_that_labelled_the_batch_on_each_vote(tmp_path: Path) -> None:
    """The vote's `model` is the prediction's (the hot-swapped version), not a fixed model id."""
    store = LearnedStore(tmp_path, "sentiment3")
    _publish(store)
    settings = load_settings(topics={"prefix": "l-"}, worker={"name": "w4"})
    item = Item(id="i", text="loved it", task="sentiment3")
    record = Record("l-items", 0, 3, b"i", item, 0, encode(item))
    classifier = LearnedClassifier(store, SENTIMENT3, poll_s=0.0)
    [output] = await WorkerProcessor(settings, classifier, TASKS).process([record], 0)
    batch = decode(output.value, VoteBatch)
    [vote] = [batch.vote(row) for row in batch.votes]
    assert batch.model == "tfidf:learned/sentiment3@v1"
    assert vote.worker == "w4" and vote.label == "positive" and vote.model == "tfidf:learned/sentiment3@v1"
