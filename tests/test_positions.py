"""Tests of lmlab.positions: rotary against Hugging Face's Llama code, sinusoids against the paper."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab.device import seed_everything
from lmlab.positions import (
    RotaryEmbedding, apply_rotary, rotary_cos_sin, rotate_half, sinusoidal_positions,
)


@pytest.mark.parametrize("head_dim,base", [(8, 10000.0), (64, 100000.0), (2, 500.0)])
def test_rotary_matches_transformers_llama(head_dim: int, base: float) -> None:
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb
    config = LlamaConfig(hidden_size=head_dim * 2, num_attention_heads=2, rope_theta=base,
                         max_position_embeddings=64)
    ref = LlamaRotaryEmbedding(config)
    seed_everything(0)
    q, k = torch.randn(2, 2, 11, head_dim), torch.randn(2, 1, 11, head_dim)
    positions = torch.arange(5, 16)
    ref_cos, ref_sin = ref(q, positions[None])
    ref_q, ref_k = apply_rotary_pos_emb(q, k, ref_cos, ref_sin)
    cos, sin = rotary_cos_sin(positions, head_dim, base)
    torch.testing.assert_close(cos, ref_cos[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(apply_rotary(q, cos, sin), ref_q, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(apply_rotary(k, cos, sin), ref_k, rtol=1e-6, atol=1e-6)
    table = RotaryEmbedding(head_dim, 64, base)
    torch.testing.assert_close(table(11, 5)[1], sin)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 20))
def test_rotary_scores_depend_only_on_distance(i: int, j: int, shift: int) -> None:
    seed_everything(1)
    q, k = torch.randn(1, 16, dtype=torch.float64), torch.randn(1, 16, dtype=torch.float64)

    def score(a: int, b: int) -> torch.Tensor:
        ca, sa = rotary_cos_sin(torch.tensor([a]), 16)
        cb, sb = rotary_cos_sin(torch.tensor([b]), 16)
        return apply_rotary(q, ca.double(), sa.double()) @ apply_rotary(k, cb.double(), sb.double()).T

    torch.testing.assert_close(score(i, j), score(i + shift, j + shift), rtol=1e-4, atol=1e-4)


def test_rotation_keeps_length_and_rotate_half_is_a_quarter_turn() -> None:
    x = torch.randn(3, 5, 8)
    cos, sin = rotary_cos_sin(5, 8)
    torch.testing.assert_close(apply_rotary(x, cos, sin).norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(rotate_half(rotate_half(x)), -x)


def test_sinusoidal_matches_the_paper() -> None:
    pe = sinusoidal_positions(50, 16)
    for pos in (0, 7, 49):
        for i in range(8):
            angle = pos / 10000 ** (2 * i / 16)
            assert math.isclose(pe[pos, 2 * i], math.sin(angle), abs_tol=1e-6)
            assert math.isclose(pe[pos, 2 * i + 1], math.cos(angle), abs_tol=1e-6)


@pytest.mark.parametrize("call,error,match", [
    (lambda: sinusoidal_positions(0, 4), ValueError, "context_length"),
    (lambda: sinusoidal_positions(4, 5), ValueError, "d_model: sinusoidal positions need an even"),
    (lambda: sinusoidal_positions(4, 4, base=float("inf")), ValueError, "base"),
    (lambda: rotary_cos_sin(4, 3), ValueError, "head_dim: rotary positions need an even"),
    (lambda: rotary_cos_sin(4.0, 4), TypeError, "positions"),
    (lambda: rotary_cos_sin(torch.tensor([0.5]), 4), TypeError, "positions"),
    (lambda: rotary_cos_sin(4, 4, base=0.5), ValueError, "base"),
    (lambda: apply_rotary(torch.randn(3, 4), *rotary_cos_sin(2, 4)), ValueError, "cos"),
    (lambda: RotaryEmbedding(4, 8)(5, 4), ValueError, "offset"),
    (lambda: RotaryEmbedding(4, 0), ValueError, "context_length"),
])
def test_bad_input(call, error: type, match: str) -> None:
    with pytest.raises(error, match=f"^{match}"):
        call()
