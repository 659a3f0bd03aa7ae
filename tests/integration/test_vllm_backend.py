"""The vLLM backend against a real engine: only where vLLM and a local checkpoint exist."""

from __future__ import annotations

import os

import pytest

from tribunal.consumers.classifiers.registry import build_classifier
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import load_tasks

pytestmark = pytest.mark.slow


async def test_real_engine_answers_inside_the_label_set() -> None:
    """A real vLLM engine labels obvious sentences inside the label set with confidences in [0, 1]."""
    pytest.importorskip("vllm", reason="vLLM is only installed on GPU machines")
    model = os.environ.get("TRIBUNAL_VLLM_MODEL")
    if not model:
        pytest.skip("set TRIBUNAL_VLLM_MODEL to a local HF checkpoint to run this test")
    tasks = load_tasks()
    classifier = build_classifier(f"vllm:{model}?max_model_len=2048&gpu_memory_utilization=0.5", tasks)
    texts = {"I loved this film, wonderful!": "positive", "Terrible, a total waste of money.": "negative"}
    items = [Item(id=str(i), text=text) for i, text in enumerate(texts)]
    predictions = await classifier.classify(items)
    assert all(p.label in ("negative", "positive") for p in predictions)
    assert all(0.0 <= p.confidence <= 1.0 for p in predictions)
    assert [p.label for p in predictions] == list(texts.values())
