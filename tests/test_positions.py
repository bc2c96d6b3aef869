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
    (lambda: RotaryEmbedding(4, 8)(5, 4), ValueError,
     r"T, offset: positions 4..8 \(offset=4, T=5\) exceed the table's context_length=8"),
    # a negative offset used to slice from the end: 0 rows for -2, 15 rows for -1
    (lambda: RotaryEmbedding(8, 16)(4, offset=-2), ValueError, "offset: expected an int >= 0"),
    (lambda: RotaryEmbedding(8, 16)(4, offset=-1), ValueError, "offset: expected an int >= 0"),
    (lambda: RotaryEmbedding(8, 16)(4, offset=13), ValueError, "T, offset: positions 13..16"),
    (lambda: RotaryEmbedding(8, 16)(-1), ValueError, "T: expected an int >= 1"),
    (lambda: RotaryEmbedding(8, 16)(0), ValueError, "T: expected an int >= 1"),
    (lambda: RotaryEmbedding(8, 16)(True), TypeError, "T: expected an int"),
    (lambda: RotaryEmbedding(8, 16)(2.0), TypeError, "T: expected an int"),
    (lambda: RotaryEmbedding(8, 16)(torch.tensor(2)), TypeError, "T: expected an int"),
    (lambda: RotaryEmbedding(8, 16)(2, None), TypeError, "offset: expected an int"),
    (lambda: RotaryEmbedding(8, 16)(2, False), TypeError, "offset: expected an int"),
    (lambda: RotaryEmbedding(5, 16), ValueError, "head_dim: rotary positions need an even"),
    # rotate_half pairs i with i + D/2: an odd width has no such pairs
    (lambda: rotate_half(torch.randn(3, 5)), ValueError, "x: expected an even last dimension"),
    (lambda: rotate_half(torch.tensor(1.0)), ValueError, "x: expected an even last dimension"),
    (lambda: rotate_half([1.0, 2.0]), TypeError, "x: expected a torch.Tensor"),
    (lambda: rotate_half(torch.ones(4, dtype=torch.bool)), TypeError, "x: expected a float"),
    # integer x used to be truncated back to integers after the rotation
    (lambda: apply_rotary(torch.ones(2, 4, dtype=torch.long), *rotary_cos_sin(2, 4)), TypeError,
     "x: expected a float tensor"),
    (lambda: apply_rotary(torch.randn(2, 4), torch.ones(2, 4, dtype=torch.long),
                          rotary_cos_sin(2, 4)[1]), TypeError, "cos: expected a float tensor"),
    (lambda: apply_rotary(torch.randn(2, 4), rotary_cos_sin(2, 4)[0], [[0.0] * 4] * 2),
     TypeError, "sin: expected a torch.Tensor"),
    (lambda: apply_rotary(torch.randn(4), *rotary_cos_sin(1, 4)), ValueError, r"x: expected shape"),
    (lambda: apply_rotary(torch.randn(2, 5), *rotary_cos_sin(2, 6)), ValueError, "x: expected an even"),
    # cos/sin whose leading dimensions do not broadcast to x's
    (lambda: apply_rotary(torch.randn(2, 3, 5, 8), torch.randn(3, 1, 5, 8),
                          torch.randn(3, 1, 5, 8)), ValueError, r"cos: expected shape \(\.\.\., T, D\)"),
    (lambda: apply_rotary(torch.randn(5, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 8)),
     ValueError, "cos: expected shape"),
    (lambda: apply_rotary(torch.randn(2, 5, 8), rotary_cos_sin(5, 8)[0], torch.randn(6, 8)),
     ValueError, "sin: expected shape"),
    (lambda: apply_rotary(torch.randn(2, 5, 8), rotary_cos_sin(5, 8)[0], torch.randn(1, 5, 8)),
     ValueError, r"sin: expected the shape of cos \(5, 8\)"),
    (lambda: apply_rotary(torch.randn(2, 5, 8), *[t.to("meta") for t in rotary_cos_sin(5, 8)]),
     ValueError, "x, cos, sin: expected tensors on one device"),
    (lambda: rotary_cos_sin(torch.zeros(2, 2, dtype=torch.long), 4), ValueError, "positions"),
    (lambda: rotary_cos_sin(True, 4), TypeError, "positions"),
    (lambda: rotary_cos_sin(0, 4), ValueError, "positions"),
    (lambda: RotaryEmbedding(4, 0), ValueError, "context_length"),
])
def test_bad_input(call, error: type, match: str) -> None:
    with pytest.raises(error, match=f"^{match}"):
        call()


def test_positions_accept_numpy_ints_and_batched_tables() -> None:
    import numpy as np
    torch.testing.assert_close(rotary_cos_sin(np.int64(3), 4)[0], rotary_cos_sin(3, 4)[0])
    # a (B, 1, T, D) table (Hugging Face's per-sequence positions) broadcasts over the heads
    x = torch.randn(2, 3, 5, 8)
    cos, sin = rotary_cos_sin(5, 8)
    batched = apply_rotary(x, cos[None, None].expand(2, 1, 5, 8), sin[None, None].expand(2, 1, 5, 8))
    torch.testing.assert_close(batched, apply_rotary(x, cos, sin))
    table = RotaryEmbedding(8, 16)
    assert table(4, 12)[0].shape == (4, 8)  # the last four rows are allowed


def test_rotary_table_compiles_without_graph_break() -> None:
    table = RotaryEmbedding(8, 32)

    def rotate(x, offset):
        cos, sin = table(x.shape[-2], offset)
        return apply_rotary(x, cos, sin)

    compiled = torch.compile(rotate, backend="eager", fullgraph=True)
    for T, offset in ((5, 0), (1, 5), (1, 6), (3, 7)):  # a prefill, then cached steps
        x = torch.randn(2, 4, T, 8)
        torch.testing.assert_close(compiled(x, offset), rotate(x, offset))
    torch._dynamo.reset()
