"""vLLM in-process backend: the offline `vllm.LLM` engine labels a whole batch in one call.

Spec: `vllm:MODEL[?max_model_len=4096&gpu_memory_utilization=0.9&logprobs=1&...]`, e.g.
`vllm:Qwen/Qwen2.5-7B-Instruct?max_model_len=4096`. Engine options are listed in
`ENGINE_OPTIONS`; vLLM is pinned (`vllm>=0.12,<0.13`) because its parameter classes change
between releases, and imported only when the first batch arrives.

Each prompt is its task's few-shot prompt; its `SamplingParams` carry
`structured_outputs=StructuredOutputsParams(choice=labels)`, so vLLM can only emit a label, and
`logprobs=k`, so the confidence is exp(sum of the answer tokens' log-probs). Those log-probs are
vLLM's raw ones (before the choice mask), so the confidence is the model's unconstrained
probability of the label text: a lower bound of its probability among the labels.

Request building and output parsing are pure functions over plain data (`Sample` mirrors the
part of `RequestOutput` used here), tested without vLLM. One engine per process, created lazily;
`generate` blocks, so it runs in a worker thread under a lock.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tribunal.consumers.classifiers.base import Classifier, Prediction, Stopwatch
from tribunal.consumers.classifiers.registry import ClassifierSpec
from tribunal.core.errors import ClassifierError, ConfigError, FatalError, InvalidOutputError
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import TaskRegistry

__all__ = [
    "ENGINE_OPTIONS",
    "Sample",
    "VllmClassifier",
    "build_prompts",
    "engine_kwargs",
    "parse_sample",
    "sample_from_output",
    "sampling_kwargs",
    "vllm",
]


def _flag(value: str) -> bool:
    if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
        raise ValueError(f"not a boolean: {value!r}")
    return value.lower() in ("1", "true", "yes")


# Spec options passed to `vllm.LLM(...)`, with how to parse each.
ENGINE_OPTIONS: dict[str, Callable[[str], Any]] = {
    "max_model_len": int,
    "gpu_memory_utilization": float,
    "tensor_parallel_size": int,
    "dtype": str,
    "quantization": str,
    "seed": int,
    "enforce_eager": _flag,
    "max_num_seqs": int,
}
CLASSIFIER_OPTIONS = frozenset({"logprobs"})

_ENGINES: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}
_ENGINES_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Sample:
    """The generated text of one request and the log-prob of each token it chose."""

    text: str
    token_logprobs: tuple[float, ...] = ()


def engine_kwargs(options: Mapping[str, str]) -> dict[str, Any]:
    """`vllm.LLM` keyword arguments from spec options; `ConfigError` for unknown or bad ones."""
    kwargs: dict[str, Any] = {}
    for name, raw in options.items():
        if name in CLASSIFIER_OPTIONS:
            continue
        parse = ENGINE_OPTIONS.get(name)
        if parse is None:
            raise ConfigError(f"unknown vllm option {name!r}; known: {', '.join(sorted(ENGINE_OPTIONS))}")
        try:
            kwargs[name] = parse(raw)
        except ValueError as exc:
            raise ConfigError(f"vllm option {name}={raw!r}: {exc}") from None
    return kwargs


def build_prompts(items: Sequence[Item], tasks: TaskRegistry) -> list[str]:
    """Each item's few-shot prompt, in order."""
    return [tasks.get(item.task).render_prompt(item.text) for item in items]


def sampling_kwargs(labels: Sequence[str], logprobs: int) -> dict[str, Any]:
    """`SamplingParams` keyword arguments; `structured_outputs` holds `StructuredOutputsParams`
    keyword arguments. Greedy (temperature 0) so a worker's vote is reproducible."""
    return {
        "temperature": 0.0,
        "max_tokens": max(len(label) for label in labels) + 2,  # a token is at least a character
        "logprobs": logprobs,
        "structured_outputs": {"choice": list(labels)},
    }


def parse_sample(sample: Sample, labels: Sequence[str]) -> Prediction:
    """The prediction in one generated sample; `InvalidOutputError` when it is not a label."""
    answer = sample.text.strip()
    if answer not in labels:
        raise InvalidOutputError(f"vllm answered {answer[:100]!r}, outside the label set")
    if not sample.token_logprobs:
        raise InvalidOutputError("vllm returned no log-probs; was logprobs=0 requested?")
    return Prediction(answer, math.exp(min(sum(sample.token_logprobs), 0.0)))


def sample_from_output(request_output: Any) -> Sample:
    """Read a vLLM `RequestOutput`: first completion's text and each chosen token's log-prob.

    `outputs[0].logprobs` is one dict per position, token id -> object with `.logprob`, and
    always contains the chosen token (`outputs[0].token_ids`)."""
    completion = request_output.outputs[0]
    positions = completion.logprobs or []
    chosen = zip(completion.token_ids, positions, strict=False)
    return Sample(completion.text, tuple(float(step[token].logprob) for token, step in chosen))


def _load_engine(model: str, kwargs: Mapping[str, Any]) -> Any:
    key = (model, tuple(sorted(kwargs.items())))
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            try:
                from vllm import LLM
            except ImportError:
                raise ConfigError("vllm is not installed: pip install -e '.[vllm]' (GPU machines)") from None
            _ENGINES[key] = LLM(model=model, **kwargs)
        return _ENGINES[key]


def _sampling_params(kwargs: Mapping[str, Any]) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    rest = {name: value for name, value in kwargs.items() if name != "structured_outputs"}
    return SamplingParams(**rest, structured_outputs=StructuredOutputsParams(**kwargs["structured_outputs"]))


class VllmClassifier:
    """Labels a batch with one `LLM.generate` call, one choice-constrained request per item."""

    def __init__(self, model_id: str, tasks: TaskRegistry, model: str, kwargs: dict[str, Any], logprobs: int) -> None:
        self.model_id = model_id
        self._tasks = tasks
        self._model = model
        self._kwargs = kwargs
        self._logprobs = logprobs
        self._lock = asyncio.Lock()

    async def classify(self, items: Sequence[Item]) -> list[Prediction]:
        """One prediction per item, in order, each inside its task's label set."""
        async with self._lock:
            return await asyncio.to_thread(self._classify_blocking, list(items))

    async def close(self) -> None:
        """Nothing to release: the process-wide engine lives as long as the process."""

    def _classify_blocking(self, items: list[Item]) -> list[Prediction]:
        watch = Stopwatch()
        engine = _load_engine(self._model, self._kwargs)
        labels = [self._tasks.get(item.task).labels for item in items]
        params = [_sampling_params(sampling_kwargs(ls, self._logprobs)) for ls in labels]
        try:
            outputs = engine.generate(build_prompts(items, self._tasks), params, use_tqdm=False)
        except Exception as exc:
            # vLLM's dead-engine error cannot be recovered in this process; others may be.
            if type(exc).__name__ == "EngineDeadError":
                raise FatalError(f"{self.model_id}: vLLM engine died: {exc}") from exc
            raise ClassifierError(f"{self.model_id}: vLLM generate failed: {exc}") from exc
        per_item = watch.per_item_ms(len(items))
        predictions = [parse_sample(sample_from_output(o), ls) for o, ls in zip(outputs, labels, strict=True)]
        return [Prediction(p.label, p.confidence, None, per_item) for p in predictions]


def vllm(spec: ClassifierSpec, tasks: TaskRegistry) -> Classifier:
    """Factory for `vllm:MODEL?ENGINE_OPTION=...&logprobs=K` (K >= 1, default 1)."""
    if not spec.arg:
        raise ConfigError("vllm classifier needs a model: vllm:Qwen/Qwen2.5-7B-Instruct")
    logprobs = spec.int_option("logprobs", 1)
    if logprobs < 1:
        raise ConfigError("vllm logprobs must be >= 1: the confidence is read from them")
    return VllmClassifier(str(spec), tasks, spec.arg, engine_kwargs(spec.options), logprobs)
