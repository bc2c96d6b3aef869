"""lmlab.blockwise: online-softmax attention against torch's scaled_dot_product_attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab.blockwise import (
    accumulation_dtype,
    attend_block,
    block_backward,
    blockwise_attention,
    check_qkv,
    merge_partials,
)

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


def _saved_while(fn, *args) -> tuple[torch.Tensor, int]:
    """Run ``fn(*args)``; return its first output and the bytes of the distinct storages the
    graph keeps: tensors saved for backward (``saved_tensors_hooks`` sees each) and tensors
    stored as attributes of custom functions' contexts (which no hook sees)."""
    saved: list[torch.Tensor] = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*args)[0]

    def tensors(value):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from tensors(item)
        elif isinstance(value, dict):
            for item in value.values():
                yield from tensors(item)

    stack, seen = [out.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        saved.extend(tensors(getattr(node, "__dict__", {})))
        stack.extend(n for n, _ in node.next_functions)
    storages = {(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()) for t in saved}
    return out, sum(n for _, n in storages)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("T, S, block_size", [(1024, 1024, 16), (512, 1536, 64)])
def test_saved_state_is_linear_in_the_length(causal, dtype, T, S, block_size):
    """For the backward pass the graph keeps q, k, v, out and lse (O(T x D)) and at most
    O(T x block_size) more; never the T x S causal masks (issue 16: it kept T * S booleans)."""
    D = 8
    q, k, v = _qkv((1, T, D), (1, S, D), dtype=dtype)
    out, held = _saved_while(
        lambda *a: blockwise_attention(*a, causal=causal, block_size=block_size), q, k, v)
    acc = 4  # bytes per element: out and lse are kept in float32
    inputs = sum(t.numel() * t.element_size() for t in (q, k, v))
    allowed = inputs + (T * D + T) * acc + T * block_size * acc
    assert held <= allowed, (held, allowed, T * S)
    assert out.grad_fn is not None


def test_dtype_follows_inputs_float64():
    q, k, v = _qkv((2, 6, 4), (2, 6, 4), dtype=torch.float64)
    out, lse = blockwise_attention(q, k, v, causal=True, block_size=4)
    assert out.dtype == lse.dtype == torch.float64
    torch.testing.assert_close(out, _reference(q, k, v, True), atol=1e-12, rtol=1e-12)


def within_rounding(ours: torch.Tensor, ref: torch.Tensor, mantissa_bits: int) -> None:
    """``ours`` is within one unit in the last place of the low-precision format (2 ** (e -
    mantissa_bits) for |ref| in [2 ** e, 2 ** (e + 1))) of the float64 reference, plus 2 ** -10
    of the largest value for entries near zero. Rounding a float64 result once costs half a
    unit; accumulating in bfloat16 costs several (measured: 2.4x to 12x this tolerance)."""
    ref = ref.detach()
    exponent = torch.floor(torch.log2(ref.abs().clamp_min(1e-30)))
    tol = torch.exp2(exponent - mantissa_bits) + 2**-10 * ref.abs().max()
    err = (ours.detach().double() - ref).abs()
    assert bool((err <= tol).all()), f"{(err / tol).max().item():.2f}x the tolerance"


@pytest.mark.parametrize("dtype, mantissa_bits", [(torch.bfloat16, 7), (torch.float16, 10)])
@pytest.mark.parametrize("T, S, block_size, causal", [(256, 256, 16, True), (300, 300, 7, True),
                                                      (128, 128, 128, True), (90, 200, 32, False)])
@pytest.mark.parametrize("seed", [0, 1])
def test_low_precision_accumulates_in_float32(dtype, mantissa_bits, T, S, block_size, causal,
                                              seed):
    """bfloat16/float16 inputs: output and gradients as accurate as the float64 result rounded
    once to the input's precision (the running max, sum and output stay in float32)."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, n, 32, generator=g).to(dtype) for n in (T, S, S))
    weight = torch.randn(2, T, 32, generator=g).to(dtype)
    full = [t.double().requires_grad_() for t in (q, k, v)]
    ref_out = _reference(*full, causal)
    ref = (ref_out, *torch.autograd.grad((ref_out * weight.double()).sum(), full))
    low = [t.clone().requires_grad_() for t in (q, k, v)]
    out, lse = blockwise_attention(*low, causal=causal, block_size=block_size)
    assert out.dtype == dtype and lse.dtype == torch.float32
    ours = (out, *torch.autograd.grad((out * weight).sum(), low))
    for a, b in zip(ours, ref):
        assert a.dtype == dtype
        within_rounding(a, b, mantissa_bits)


def test_block_functions_return_float32_partials_for_bfloat16():
    q, k, v = (torch.randn(6, 4).bfloat16() for _ in range(3))
    out, lse = attend_block(q, k, v, 0.5)
    assert out.dtype == lse.dtype == torch.float32
    merged = merge_partials(out.bfloat16(), lse.bfloat16(), out, lse)
    assert all(t.dtype == torch.float32 for t in merged)
    grads = block_backward(q, k, v, out, lse, torch.ones(6, 4).bfloat16(), 0.5)
    assert all(t.dtype == torch.float32 for t in grads)
    assert accumulation_dtype(torch.float16) == torch.float32
    assert accumulation_dtype(torch.float64) == torch.float64


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

    def test_attend_block(self):
        q, k, v = torch.randn(2, 5, 4), torch.randn(2, 7, 4), torch.randn(2, 7, 3)
        for bad, name in (("q", "q"), (q.long(), "q"), (q.to(torch.complex64), "q")):
            with pytest.raises(TypeError, match=f"^{name}:"):
                attend_block(bad, k, v, 0.5)
        with pytest.raises(TypeError, match="^v:"):
            attend_block(q, k, None, 0.5)
        with pytest.raises(ValueError, match="^q, k, v:"):
            attend_block(q, k[:, :, :3], v, 0.5)  # D differs
        with pytest.raises(ValueError, match="^q, k, v:"):
            attend_block(q, k, v[:, :6], 0.5)  # S differs
        with pytest.raises(ValueError, match="^q, k, v:"):
            attend_block(q[0], k, v, 0.5)  # dimensions differ
        with pytest.raises(ValueError, match="^q, k, v: expected one dtype"):
            attend_block(q.double(), k, v, 0.5)
        with pytest.raises(ValueError, match="^q: expected a tensor with data"):
            attend_block(q.to("meta"), k.to("meta"), v.to("meta"), 0.5)
        with pytest.raises(ValueError, match="^k: expected a dense"):
            attend_block(q, k.to_sparse(), v, 0.5)
        for scale in ("0.5", None, torch.tensor(0.5), True):
            with pytest.raises(TypeError, match="^scale:"):
                attend_block(q, k, v, scale)
        for scale in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match="^scale:"):
                attend_block(q, k, v, scale)
        with pytest.raises(TypeError, match="^mask:"):
            attend_block(q, k, v, 0.5, torch.ones(5, 7))
        for shape in ((5, 6), (3, 5, 7), (1, 2, 5, 7), (7, 5)):
            with pytest.raises(ValueError, match=r"^mask: expected a shape broadcastable"):
                attend_block(q, k, v, 0.5, torch.ones(shape, dtype=torch.bool))
        with pytest.raises(ValueError, match="^mask:"):
            attend_block(q, k, v, 0.5, torch.ones(5, 7, dtype=torch.bool, device="meta"))
        for shape in ((5, 7), (2, 1, 7), (7,)):  # what broadcasts is accepted
            attend_block(q, k, v, 0.5, torch.ones(shape, dtype=torch.bool))

    def test_block_backward(self):
        q, k, v = torch.randn(2, 5, 4), torch.randn(2, 7, 4), torch.randn(2, 7, 3)
        out, lse = attend_block(q, k, v, 0.5)
        g = torch.randn(2, 5, 3)
        block_backward(q, k, v, out, lse, g, 0.5)  # fine
        with pytest.raises(TypeError, match="^k:"):
            block_backward(q, k.int(), v, out, lse, g, 0.5)
        with pytest.raises(TypeError, match="^out:"):
            block_backward(q, k, v, out.tolist(), lse, g, 0.5)
        with pytest.raises(TypeError, match="^grad_out:"):
            block_backward(q, k, v, out, lse, None, 0.5)
        with pytest.raises(ValueError, match="^out: expected shape"):
            block_backward(q, k, v, out[:, :4], lse, g, 0.5)
        with pytest.raises(ValueError, match="^grad_out: expected shape"):
            block_backward(q, k, v, out, lse, torch.randn(2, 5, 4), 0.5)
        with pytest.raises(ValueError, match="^lse: expected shape"):
            block_backward(q, k, v, out, lse[:, :4], g, 0.5)
        with pytest.raises(ValueError, match="^grad_lse: expected shape"):
            block_backward(q, k, v, out, lse, g, 0.5, grad_lse=lse[0])
        with pytest.raises(TypeError, match="^grad_lse:"):
            block_backward(q, k, v, out, lse, g, 0.5, grad_lse=lse.bool())
        with pytest.raises(TypeError, match="^scale:"):
            block_backward(q, k, v, out, lse, g, "0.5")
        with pytest.raises(ValueError, match="^scale:"):
            block_backward(q, k, v, out, lse, g, float("-inf"))
        with pytest.raises(ValueError, match="^mask:"):
            block_backward(q, k, v, out, lse, g, 0.5, torch.ones(7, 5, dtype=torch.bool))
        with pytest.raises(ValueError, match="^out: expected a tensor with data"):
            block_backward(q, k, v, out.to("meta"), lse, g, 0.5)

    def test_check_qkv_and_accumulation_dtype(self):
        x = torch.randn(3, 4)
        check_qkv(x, x, x)
        with pytest.raises(TypeError, match="^q:"):
            check_qkv(x.numpy(), x, x)
        with pytest.raises(TypeError, match="^dtype:"):
            accumulation_dtype("bfloat16")
        with pytest.raises(ValueError, match="^dtype:"):
            accumulation_dtype(torch.int64)

    def test_merge_partials_more(self):
        out, lse = torch.randn(3, 4), torch.randn(3)
        with pytest.raises(TypeError, match="^lse_b:"):
            merge_partials(out, lse, out, lse.long())
        with pytest.raises(ValueError, match="^out_b: expected a tensor with data"):
            merge_partials(out, lse, out.to("meta"), lse)
        with pytest.raises(ValueError, match="^lse_a:"):
            merge_partials(out[None], lse, out[None], lse)


@pytest.mark.gpu
def test_inputs_on_two_devices_are_refused(gpu_device):
    q = torch.randn(3, 4)
    with pytest.raises(ValueError, match="one device"):
        blockwise_attention(q, q.to(gpu_device), q)
    with pytest.raises(ValueError, match="^mask:"):
        attend_block(q, q, q, 0.5, torch.ones(3, 3, dtype=torch.bool, device=gpu_device))
