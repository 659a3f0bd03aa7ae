"""The llama.cpp backend with the real Gemma 3 270M model (assembled from its PyPI package)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tribunal.consumers.classifiers.base import check_predictions
from tribunal.consumers.classifiers.llamacpp import DEFAULT_CACHE_DIR, ensure_gemma
from tribunal.consumers.classifiers.registry import build_classifier
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import load_tasks

pytestmark = pytest.mark.slow

pytest.importorskip("llama_cpp", reason="install the models extra: pip install -e '.[models]'")

OBVIOUS = {
    "I loved this movie, it was wonderful from start to finish.": "positive",
    "Terrible service, the worst experience I have ever had.": "negative",
    "The package arrived on time and works perfectly. Great product!": "positive",
    "Complete waste of money, it broke after one day.": "negative",
    "Absolutely fantastic, I would recommend it to everyone.": "positive",
    "I can't log into my account and support won't answer.": "negative",
}


@pytest.fixture(scope="module")
def gemma() -> Path:
    """The Gemma GGUF in the default cache, assembled on first use."""
    return ensure_gemma(Path(DEFAULT_CACHE_DIR))


async def test_gemma_labels_obvious_sentiment(gemma: Path) -> None:
    """Real model: every answer is in the label set, confidences are probabilities, most are right."""
    tasks = load_tasks()
    classifier = build_classifier(f"llamacpp:{gemma}?n_ctx=1024&threads=2", tasks)
    items = [Item(id=str(i), text=text) for i, text in enumerate(OBVIOUS)]
    predictions = await classifier.classify(items)
    await classifier.close()
    check_predictions(items, predictions, tasks, classifier.model_id)
    assert all(p.label in ("negative", "positive") for p in predictions)
    assert all(p.probabilities and sum(p.probabilities.values()) == pytest.approx(1.0) for p in predictions)
    right = sum(p.label == gold for p, gold in zip(predictions, OBVIOUS.values(), strict=True))
    assert right >= 5, [p.label for p in predictions]


async def test_gemma_intent_answers_stay_in_the_77_labels(gemma: Path) -> None:
    """Real model on the 77-label intent task: greedy and full scoring both answer inside the set."""
    tasks = load_tasks()
    items = [
        Item(id="a", text="My card has not arrived yet, when will it come?", task="intent"),
        Item(id="b", text="Someone stole my card, please block it.", task="intent"),
    ]
    for scoring in ("greedy", "full"):
        classifier = build_classifier(f"llamacpp:{gemma}?n_ctx=1024&threads=2&scoring={scoring}", tasks)
        predictions = await classifier.classify(items)
        check_predictions(items, predictions, tasks, classifier.model_id)
        assert all(p.label in tasks.get("intent").labels for p in predictions)
        assert all(0.0 < p.confidence <= 1.0 for p in predictions)
        if scoring == "full":
            assert all(p.probabilities and len(p.probabilities) == 77 for p in predictions)


async def test_gemma_survives_a_text_longer_than_the_context(gemma: Path) -> None:
    """A text far beyond n_ctx is cut in the middle and still gets a label from the set."""
    tasks = load_tasks()
    classifier = build_classifier(f"llamacpp:{gemma}?n_ctx=512&threads=2", tasks)
    items = [Item(id="long", text="This product is awful. " * 400)]
    predictions = await classifier.classify(items)
    check_predictions(items, predictions, tasks, classifier.model_id)
    assert predictions[0].label in ("negative", "positive")
