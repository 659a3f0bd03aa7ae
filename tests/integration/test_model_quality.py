"""Quality floors of the cheap workers on the shared datasets (regression checks, not benchmarks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tribunal.consumers.classifiers.registry import build_classifier
from tribunal.offline.evaluate import Run, evaluate, load_items
from tribunal.schemas.tasks import load_tasks

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DATASETS.is_dir(), reason=f"shared datasets not found at {DATASETS}"),
]
TASKS = load_tasks()


async def _accuracy(spec: str, task: str, data: Path, stride: int = 1) -> float:
    items = load_items(data, task, TASKS, stride=stride)
    report = await evaluate(task, str(data), items, [Run("x", spec, "worker", build_classifier(spec, TASKS))], TASKS)
    return float(report.as_json()["classifiers"][0]["accuracy"])


@pytest.mark.parametrize(("kind", "floor"), [("vader", 0.62), ("textblob", 0.58), ("afinn", 0.58)])
async def test_lexicons_beat_chance_on_sst2(kind: str, floor: float) -> None:
    """Calibrated lexicons stay well above the 51% majority baseline of sst2/test."""
    pytest.importorskip({"vader": "vaderSentiment", "textblob": "textblob", "afinn": "afinn"}[kind])
    assert await _accuracy(kind, "sentiment", DATASETS / "sst2" / "test.jsonl") > floor


async def test_ternary_lexicon_predicts_neutral_on_tweets() -> None:
    """The 3-class neutral band is used: VADER labels some tweets neutral and beats 50%."""
    pytest.importorskip("vaderSentiment")
    data = DATASETS / "tweeteval_sentiment" / "val.jsonl"
    items = load_items(data, "sentiment3", TASKS, limit=400)
    report = await evaluate(
        "sentiment3", str(data), items, [Run("v", "vader", "worker", build_classifier("vader", TASKS))], TASKS
    )
    labels = {p.label for p in report.runs[0].predictions}
    assert labels == {"negative", "neutral", "positive"}
    assert report.as_json()["classifiers"][0]["accuracy"] > 0.5


async def test_tfidf_head_on_banking77(tmp_path: Path) -> None:
    """A tfidf head trained on banking77/train scores > 85% on a spread sample of its test split."""
    pytest.importorskip("sklearn")
    spec = f"tfidf:{tmp_path / 'i.npz'}?task=intent&train={DATASETS / 'banking77' / 'train.jsonl'}&head=nb"
    assert await _accuracy(spec, "intent", DATASETS / "banking77" / "test.jsonl", stride=7) > 0.8
