"""Pure pieces of the numpy MiniLM encoder (no weights needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("scipy")

from tribunal.consumers.classifiers.minilm import MiniLMEncoder, _gelu, _layer_norm


@pytest.mark.parametrize("x", [-6.0, -1.0, -0.1, 0.0, 0.3, 1.0, 4.0])
def test_gelu_is_the_exact_erf_form(x: float) -> None:
    """GELU(x) = x * Phi(x), the erf form BERT was trained with (not the tanh approximation)."""
    expected = 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))
    assert float(_gelu(np.array([x], dtype=np.float32))[0]) == pytest.approx(expected, abs=1e-6)


def test_layer_norm_zero_mean_unit_variance() -> None:
    """LayerNorm with identity affine gives each row mean 0 and variance 1."""
    x = np.array([[1.0, 2.0, 3.0, 10.0]], dtype=np.float32)
    out = _layer_norm(x, np.ones(4, np.float32), np.zeros(4, np.float32), 1e-12)
    assert out.mean() == pytest.approx(0.0, abs=1e-6)
    assert out.var() == pytest.approx(1.0, abs=1e-5)


def test_pool_ignores_padding_and_normalises() -> None:
    """Mean pooling averages only unmasked positions, then scales rows to unit norm."""
    hidden = np.array([[[3.0, 4.0], [100.0, -100.0]]], dtype=np.float32)
    mask = np.array([[1.0, 0.0]], dtype=np.float32)
    pooled = MiniLMEncoder._pool(hidden, mask)
    assert pooled[0].tolist() == pytest.approx([0.6, 0.8])
