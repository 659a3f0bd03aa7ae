"""Pure request building and output parsing of the vLLM backend (no vLLM needed)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from tribunal.consumers.classifiers.registry import build_classifier
from tribunal.consumers.classifiers.vllm_backend import (
    Sample,
    build_prompts,
    engine_kwargs,
    parse_sample,
    sample_from_output,
    sampling_kwargs,
)
from tribunal.core.errors import ConfigError, InvalidOutputError
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import load_tasks

LABELS = ("negative", "neutral", "positive")


def test_sampling_kwargs_constrain_to_the_labels_greedily() -> None:
    """Sampling is greedy, asks logprobs, and structured output allows exactly the labels."""
    kwargs = sampling_kwargs(LABELS, 2)
    assert kwargs["structured_outputs"] == {"choice": ["negative", "neutral", "positive"]}
    assert kwargs["temperature"] == 0.0
    assert kwargs["logprobs"] == 2
    assert kwargs["max_tokens"] >= len("positive")


def test_prompts_follow_each_items_task() -> None:
    """Items of different tasks in one batch each get their own task's few-shot prompt."""
    tasks = load_tasks()
    items = [Item(id="a", text="loved it", task="sentiment"), Item(id="b", text="card lost", task="intent")]
    prompts = build_prompts(items, tasks)
    assert prompts[0].endswith("Text: loved it\nSentiment:")
    assert prompts[1].endswith("Query: card lost\nIntent:")


def test_engine_kwargs_parse_known_options_and_skip_classifier_ones() -> None:
    """Engine options are typed; `logprobs` belongs to the classifier, not the engine."""
    kwargs = engine_kwargs(
        {"max_model_len": "4096", "gpu_memory_utilization": "0.9", "enforce_eager": "true", "logprobs": "3"}
    )
    assert kwargs == {"max_model_len": 4096, "gpu_memory_utilization": 0.9, "enforce_eager": True}


@pytest.mark.parametrize("options", [{"max_model_lenn": "1"}, {"max_model_len": "big"}, {"enforce_eager": "maybe"}])
def test_engine_kwargs_refuse_unknown_or_malformed_options(options: dict[str, str]) -> None:
    """A typo or a bad value is a ConfigError naming the option."""
    with pytest.raises(ConfigError, match="option"):
        engine_kwargs(options)


def test_parse_sample_confidence_is_exp_of_summed_logprobs() -> None:
    """The label's probability is the product of its tokens' probabilities."""
    prediction = parse_sample(Sample("positive", (math.log(0.8), math.log(0.5))), LABELS)
    assert prediction.label == "positive"
    assert prediction.confidence == pytest.approx(0.4)


@pytest.mark.parametrize("text", ["Positive", "mixed", "", "positive."])
def test_parse_sample_refuses_text_outside_the_labels(text: str) -> None:
    """Whatever the engine emits outside the label set is InvalidOutputError."""
    with pytest.raises(InvalidOutputError):
        parse_sample(Sample(text, (-0.1,)), LABELS)


def test_parse_sample_refuses_a_missing_confidence() -> None:
    """Without logprobs there is no confidence to report, which is an error, not a guess."""
    with pytest.raises(InvalidOutputError, match="log-probs"):
        parse_sample(Sample("neutral", ()), LABELS)


def test_sample_from_output_reads_the_chosen_tokens_logprobs() -> None:
    """From a RequestOutput-shaped object, each chosen token's logprob is read, not the top one."""

    def logprob(value: float) -> SimpleNamespace:
        return SimpleNamespace(logprob=value)

    completion = SimpleNamespace(
        text="neutral",
        token_ids=[11, 12],
        logprobs=[{11: logprob(-0.7), 99: logprob(-0.1)}, {12: logprob(-0.2)}],
    )
    sample = sample_from_output(SimpleNamespace(outputs=[completion]))
    assert sample == Sample("neutral", (-0.7, -0.2))


def test_factory_needs_a_model_and_positive_logprobs() -> None:
    """A spec without a model, or asking no logprobs, is a ConfigError before vLLM is imported."""
    tasks = load_tasks()
    with pytest.raises(ConfigError, match="model"):
        build_classifier("vllm", tasks)
    with pytest.raises(ConfigError, match="logprobs"):
        build_classifier("vllm:Qwen/Qwen2.5-7B-Instruct?logprobs=0", tasks)
