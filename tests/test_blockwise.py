"""lmlab.blockwise: online-softmax attention against torch's scaled_dot_product_attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab.blockwise import attend_block, block_backward, blockwise_attention, merge_partials

TOL = {"atol": 1e-5, "rtol": 1e-5}


def _qkv(shape_q, shape_k, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*shape_q, generator=g, dtype=dtype, requires_grad=True)
    k = torch.randn(*shape_k, generator=g, dtype=dtype, requires_grad=True)
    v = torch.randn(*shape_k, generator=g, dtype=dtype, requires_grad=True)
    return q, k, v


def _reference(q, k, v, causal):
    """SDPA; for T < S the causal mask is end-aligned (query i sees keys <= i + S - T)."""
    T, S = q.shape[-2], k.shape[-2]
    mask = None
    if causal:
        mask = torch.ones(T, S, dtype=torch.bool).tril(S - T)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _grads(fn, q, k, v, seed=1):
    out = fn(q, k, v)
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(out.shape, generator=g, dtype=out.dtype)
    dq, dk, dv = torch.autograd.grad((out * weight).sum(), (q, k, v))
    return out, dq, dk, dv


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("block_size", [1, 3, 16, 64])
def test_equals_sdpa_forward_and_gradients(causal, block_size):
    q, k, v = _qkv((2, 3, 37, 16), (2, 3, 37, 16))
    ours = _grads(lambda *a: blockwise_attention(*a, causal=causal, block_size=block_size)[0],
                  q, k, v)
    ref = _grads(lambda *a: _reference(*a, causal), q, k, v)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, **TOL)


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 24), extra=st.integers(0, 12), D=st.integers(1, 9),
       block_size=st.integers(1, 20), causal=st.booleans(), batch=st.integers(1, 2),
       seed=st.integers(0, 2**16))
def test_equals_sdpa_any_shape(T, extra, D, block_size, causal, batch, seed):
    S = T + extra
    q, k, v = _qkv((batch, T, D), (batch, S, D), seed=seed)
    ours = _grads(lambda *a: blockwise_attention(*a, causal=causal, block_size=block_size)[0],
                  q, k, v)
    ref = _grads(lambda *a: _reference(*a, causal), q, k, v)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, **TOL)


def test_lse_is_logsumexp_of_scores_and_differentiable():
    q, k, v = _qkv((2, 11, 8), (2, 13, 8), seed=3)
    _, lse = blockwise_attention(q, k, v, block_size=4, scale=0.3)
    scores = q @ k.transpose(-2, -1) * 0.3
    ref = torch.logsumexp(scores, -1)
    torch.testing.assert_close(lse, ref, **TOL)
    grads = torch.autograd.grad(lse.sum(), (q, k))
    ref_grads = torch.autograd.grad(ref.sum(), (q, k))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, **TOL)


def test_merge_of_two_halves_equals_full_attention_and_gradients():
    q, k, v = _qkv((2, 9, 8), (2, 20, 8), seed=4)

    def merged(q, k, v):
        a = blockwise_attention(q, k[:, :7], v[:, :7], block_size=3)
        b = blockwise_attention(q, k[:, 7:], v[:, 7:], block_size=5)
        return merge_partials(*a, *b)[0]

    for a, b in zip(_grads(merged, q, k, v), _grads(lambda *x: _reference(*x, False), q, k, v)):
        torch.testing.assert_close(a, b, **TOL)


def test_merge_with_an_empty_partial_is_the_other_partial():
    out = torch.randn(3, 4)
    lse = torch.randn(3)
    empty_out, empty_lse = torch.zeros(3, 4), torch.full((3,), float("-inf"))
    merged_out, merged_lse = merge_partials(out, lse, empty_out, empty_lse)
    torch.testing.assert_close(merged_out, out)
    torch.testing.assert_close(merged_lse, lse)
    both_out, both_lse = merge_partials(empty_out, empty_lse, empty_out, empty_lse)
    assert torch.equal(both_out, empty_out) and torch.isneginf(both_lse).all()


@pytest.mark.parametrize("tracked", [False, True])
def test_block_backward_equals_autograd_with_and_without_in_place_shortcuts(tracked):
    """Outside autograd the block functions work in place; tracked inputs take the plain path."""
    q, k, v = _qkv((2, 7, 5), (2, 9, 5), seed=5)
    mask = torch.ones(7, 9, dtype=torch.bool).tril(2)
    out, lse = attend_block(q, k, v, 0.4, mask)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(6))
    ref = torch.autograd.grad((out * grad_out).sum(), (q, k, v))
    args = [t.detach().requires_grad_(tracked) for t in (q, k, v, out, lse)]
    with torch.set_grad_enabled(tracked):
        plain = attend_block(*args[:3], 0.4, mask)
        ours = block_backward(*args, grad_out, 0.4, mask)
    torch.testing.assert_close(plain[0], out, **TOL)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, **TOL)


def test_fully_masked_rows_give_zero_and_minus_infinity():
    q, k, v = torch.randn(3, 4), torch.randn(5, 4), torch.randn(5, 2)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False
    out, lse = attend_block(q, k, v, 0.5, mask)
    assert torch.equal(out[1], torch.zeros(2)) and torch.isneginf(lse[1])
    assert torch.isfinite(out).all()


def test_backward_saves_nothing_quadratic():
    """The autograd graph keeps q, k, v, out, lse: no tensor of T x S elements."""
    T = 256
    q, k, v = _qkv((1, T, 8), (1, T, 8))
    out, _ = blockwise_attention(q, k, v, causal=True, block_size=16)
    saved = [t.numel() for t in out.grad_fn.saved_tensors]
    assert max(saved) <= T * 8


def test_dtype_follows_inputs_float64():
    q, k, v = _qkv((2, 6, 4), (2, 6, 4), dtype=torch.float64)
    out, lse = blockwise_attention(q, k, v, causal=True, block_size=4)
    assert out.dtype == lse.dtype == torch.float64
    torch.testing.assert_close(out, _reference(q, k, v, True), atol=1e-12, rtol=1e-12)


@pytest.mark.gpu
def test_gpu_equals_sdpa(gpu_device):
    q, k, v = (t.detach().to(gpu_device).requires_grad_() for t in _qkv((2, 4, 70, 32),
                                                                        (2, 4, 70, 32)))
    ours = _grads(lambda *a: blockwise_attention(*a, causal=True, block_size=32)[0], q, k, v)
    ref = _grads(lambda *a: F.scaled_dot_product_attention(*a, is_causal=True), q, k, v)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


class TestBadInput:
    def test_types(self):
        q = torch.randn(4, 8)
        with pytest.raises(TypeError, match="^q:"):
            blockwise_attention([[1.0]], q, q)
        with pytest.raises(TypeError, match="^k:"):
            blockwise_attention(q, q.long(), q)
        with pytest.raises(TypeError, match="^causal:"):
            blockwise_attention(q, q, q, causal=1)
        with pytest.raises(TypeError, match="^block_size:"):
            blockwise_attention(q, q, q, block_size=2.0)
        with pytest.raises(TypeError, match="^scale:"):
            blockwise_attention(q, q, q, scale="1")
        with pytest.raises(TypeError, match="^out_a:"):
            merge_partials(None, q[:, 0], q, q[:, 0])

    def test_values(self):
        q = torch.randn(4, 8)
        with pytest.raises(ValueError, match="^block_size:"):
            blockwise_attention(q, q, q, block_size=0)
        with pytest.raises(ValueError, match="^scale:"):
            blockwise_attention(q, q, q, scale=float("nan"))
        with pytest.raises(ValueError, match="^q, k, v: expected one dtype"):
            blockwise_attention(q, q.double(), q)
        with pytest.raises(ValueError, match="^q, k, v:"):
            blockwise_attention(q, torch.randn(4, 7), q)
        with pytest.raises(ValueError, match="^q, k, v:"):
            blockwise_attention(q, q, torch.randn(5, 8))
        with pytest.raises(ValueError, match="^q, k, v:"):
            blockwise_attention(q[None], q, q)
        with pytest.raises(ValueError, match="^q, k:"):
            blockwise_attention(q[:0], q, q)
        with pytest.raises(ValueError, match="^causal:"):
            blockwise_attention(torch.randn(6, 8), q, q, causal=True)
        with pytest.raises(ValueError, match="^out_a/out_b"):
            merge_partials(q, q[:, 0], q[:2], q[:2, 0])
        with pytest.raises(ValueError, match="^lse_a:"):
            merge_partials(q, q, q, q)
