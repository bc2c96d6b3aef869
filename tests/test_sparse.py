"""lmlab.sparse: patterns, block layouts and block-sparse attention against dense masked SDPA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab.attention import causal_mask
from lmlab.sparse import (
    SparsePattern,
    block_layout,
    block_sparse_attention,
    flex_block_mask,
    flex_sparse_attention,
    global_mask,
    sliding_window_mask,
    strided_mask,
)

TOL = {"atol": 1e-5, "rtol": 1e-5}

PATTERNS = [
    SparsePattern(window=5),
    SparsePattern(window=5, causal=False),
    SparsePattern(stride=3),
    SparsePattern(stride=4, causal=False),
    SparsePattern(num_global=2),
    SparsePattern(num_global=3, causal=False),
    SparsePattern(window=4, stride=4),  # Sparse Transformer's strided attention
    SparsePattern(window=3, num_global=1, causal=False),  # Longformer
    SparsePattern(window=1, stride=7, num_global=5),
]


def _qkv(shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*shape, generator=g, dtype=dtype, requires_grad=True)
                 for _ in range(3))


def _grads(fn, q, k, v, seed=1):
    out = fn(q, k, v)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    return (out, *torch.autograd.grad((out * weight).sum(), (q, k, v)))


def _brute_force(pattern: SparsePattern, T: int) -> torch.Tensor:
    """The pattern's rule written out with Python loops, position by position."""
    m = torch.zeros(T, T, dtype=torch.bool)
    for i in range(T):
        for j in range(T):
            ok = i == j
            if pattern.window is not None:
                ok |= abs(i - j) < pattern.window
            if pattern.stride is not None:
                ok |= (i - j) % pattern.stride == 0
            ok |= i < pattern.num_global or j < pattern.num_global
            if pattern.causal:
                ok &= j <= i
            m[i, j] = ok
    return m


@pytest.mark.parametrize("pattern", PATTERNS, ids=repr)
def test_mask_matches_the_rule(pattern):
    assert torch.equal(pattern.mask(23), _brute_force(pattern, 23))


def test_named_masks():
    assert torch.equal(sliding_window_mask(9, 3), _brute_force(SparsePattern(window=3), 9))
    assert torch.equal(strided_mask(9, 3, causal=False),
                       _brute_force(SparsePattern(stride=3, causal=False), 9))
    assert torch.equal(global_mask(9, 2), _brute_force(SparsePattern(num_global=2), 9))


@pytest.mark.parametrize("T", [1, 7, 64])
def test_window_at_least_the_sequence_is_causal(T):
    for window in (T, T + 5):
        assert torch.equal(sliding_window_mask(T, window), causal_mask(T))
    q, k, v = _qkv((2, 3, 64, 8))
    ours = _grads(lambda *a: block_sparse_attention(*a, SparsePattern(window=64), 16), q, k, v)
    ref = _grads(lambda *a: F.scaled_dot_product_attention(*a, is_causal=True), q, k, v)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, **TOL)


@settings(max_examples=60, deadline=None)
@given(nb=st.integers(1, 9), block_size=st.integers(1, 8), window=st.none() | st.integers(1, 30),
       stride=st.none() | st.integers(1, 12), num_global=st.integers(0, 10),
       causal=st.booleans())
def test_layout_equals_the_tiles_of_the_mask(nb, block_size, window, stride, num_global, causal):
    if window is None and stride is None and num_global == 0:
        window = 1
    pattern = SparsePattern(window, stride, num_global, causal)
    T = nb * block_size
    assert torch.equal(pattern.layout(T, block_size), block_layout(pattern.mask(T), block_size))


@pytest.mark.parametrize("pattern", PATTERNS, ids=repr)
def test_block_sparse_equals_dense_masked_attention(pattern):
    q, k, v = _qkv((2, 3, 48, 8))
    mask = pattern.mask(48)
    for block_size in (4, 16):
        ours = _grads(lambda *a: block_sparse_attention(*a, pattern, block_size), q, k, v)
        ref = _grads(lambda *a: F.scaled_dot_product_attention(*a, attn_mask=mask), q, k, v)
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a, b, **TOL)
        # the same with the mask given as a tensor
        ours = _grads(lambda *a: block_sparse_attention(*a, mask, block_size), q, k, v)
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("scores_per_step", [1, 500])
@pytest.mark.parametrize("pattern", PATTERNS, ids=repr)
def test_block_sparse_in_small_steps_equals_dense(pattern, scores_per_step, monkeypatch):
    # Long inputs go through in steps of a few query blocks; force that on a short one.
    import lmlab.sparse

    monkeypatch.setattr(lmlab.sparse, "_SCORES_PER_STEP", scores_per_step)
    q, k, v = _qkv((2, 48, 8), seed=3)
    ours = _grads(lambda *a: block_sparse_attention(*a, pattern, 4), q, k, v)
    ref = _grads(lambda *a: F.scaled_dot_product_attention(*a, attn_mask=pattern.mask(48)),
                 q, k, v)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, **TOL)


@settings(max_examples=40, deadline=None)
@given(nb=st.integers(1, 6), block_size=st.integers(1, 8), window=st.none() | st.integers(1, 20),
       stride=st.none() | st.integers(1, 9), num_global=st.integers(0, 6), causal=st.booleans(),
       D=st.integers(1, 8), lead=st.sampled_from([(), (2,), (2, 2)]), seed=st.integers(0, 999))
def test_block_sparse_equals_dense_any_shape(nb, block_size, window, stride, num_global, causal,
                                             D, lead, seed):
    if window is None and stride is None and num_global == 0:
        stride = 2
    pattern = SparsePattern(window, stride, num_global, causal)
    T = nb * block_size
    q, k, v = _qkv((*lead, T, D), seed=seed)
    ours = _grads(lambda *a: block_sparse_attention(*a, pattern, block_size), q, k, v)
    ref = _grads(lambda *a: F.scaled_dot_product_attention(*a, attn_mask=pattern.mask(T)),
                 q, k, v)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, **TOL)


def test_cost_follows_the_kept_tiles():
    """A sliding window keeps O(T / block_size) tiles, so the scores hold O(T) elements."""
    pattern = SparsePattern(window=16)
    kept = [int(pattern.layout(T, 16).sum()) for T in (256, 512, 1024)]
    assert kept == [31, 63, 127]  # two tiles per query block but the first: 2 * T / 16 - 1


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("window_size", [1, 4, 8])
def test_sliding_window_matches_local_attention(causal, window_size):
    """local-attention's ``window_size`` with ``exact_windowsize=True`` sees ``window_size``
    positions back (and forward when not causal) besides the query's own: our ``window`` is
    ``window_size + 1``."""
    from local_attention import LocalAttention

    reference = LocalAttention(window_size=window_size, causal=causal, exact_windowsize=True,
                               autopad=True)
    q, k, v = _qkv((2, 3, 40, 16), seed=window_size)
    pattern = SparsePattern(window=window_size + 1, causal=causal)
    ours = _grads(lambda *a: block_sparse_attention(*a, pattern, 8), q, k, v)
    ref = _grads(lambda *a: reference(*a), q, k, v)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("pattern", PATTERNS[:4] + PATTERNS[6:7], ids=repr)
def test_flex_forward_on_cpu_equals_dense(pattern):
    """torch 2.13 runs flex attention's forward (not its backward) on CPU, uncompiled."""
    q, k, v = (t.detach() for t in _qkv((1, 2, 128, 16)))
    out = flex_sparse_attention(q, k, v, pattern)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=pattern.mask(128))
    torch.testing.assert_close(out, ref, **TOL)


@pytest.mark.gpu
@pytest.mark.parametrize("pattern", PATTERNS, ids=repr)
def test_flex_on_gpu_equals_dense(pattern, gpu_device):
    if gpu_device.type != "cuda":
        pytest.skip("flex attention runs on CUDA")
    q, k, v = (t.detach().to(gpu_device).requires_grad_() for t in _qkv((2, 4, 256, 32)))
    mask = pattern.mask(256, gpu_device)
    block_mask = flex_block_mask(pattern, 256, gpu_device)
    ours = _grads(lambda *a: flex_sparse_attention(*a, pattern, block_mask), q, k, v)
    ref = _grads(lambda *a: F.scaled_dot_product_attention(*a, attn_mask=mask), q, k, v)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    ours = _grads(lambda *a: block_sparse_attention(*a, pattern, 64), q, k, v)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


class TestBadInput:
    def test_pattern(self):
        with pytest.raises(ValueError, match="^window:"):
            SparsePattern(window=0)
        with pytest.raises(TypeError, match="^window:"):
            SparsePattern(window=2.5)
        with pytest.raises(ValueError, match="^stride:"):
            SparsePattern(stride=-1)
        with pytest.raises(ValueError, match="^num_global:"):
            SparsePattern(window=2, num_global=-1)
        with pytest.raises(TypeError, match="^causal:"):
            SparsePattern(window=2, causal="yes")
        with pytest.raises(ValueError, match="^SparsePattern:"):
            SparsePattern()
        with pytest.raises(ValueError, match="^T:"):
            SparsePattern(window=2).mask(0)
        with pytest.raises(ValueError, match="^block_size:"):
            SparsePattern(window=2).layout(10, 4)
        with pytest.raises(ValueError, match="^window:"):
            sliding_window_mask(8, 0)
        with pytest.raises(ValueError, match="^stride:"):
            strided_mask(8, 0)
        with pytest.raises(ValueError, match="^num_global:"):
            global_mask(8, 0)

    def test_block_layout(self):
        with pytest.raises(TypeError, match="^mask:"):
            block_layout(torch.ones(4, 4), 2)
        with pytest.raises(ValueError, match="^mask:"):
            block_layout(torch.ones(4, 6, dtype=torch.bool), 2)
        with pytest.raises(ValueError, match="^block_size:"):
            block_layout(torch.ones(6, 6, dtype=torch.bool), 4)
        with pytest.raises(ValueError, match="^block_size:"):
            block_layout(torch.ones(6, 6, dtype=torch.bool), 0)

    def test_block_sparse_attention(self):
        q = torch.randn(2, 16, 8)
        pattern = SparsePattern(window=4)
        with pytest.raises(ValueError, match="^block_size:"):
            block_sparse_attention(q, q, q, pattern, 5)
        with pytest.raises(ValueError, match="^block_size:"):
            block_sparse_attention(q, q, q, pattern, 0)
        with pytest.raises(TypeError, match="^block_size:"):
            block_sparse_attention(q, q, q, pattern, None)
        with pytest.raises(ValueError, match="^q, k, v: expected one dtype"):
            block_sparse_attention(q, q.double(), q, pattern, 4)
        with pytest.raises(ValueError, match="^k:"):
            block_sparse_attention(q, q[:, :8], q[:, :8], pattern, 4)
        with pytest.raises(TypeError, match="^pattern:"):
            block_sparse_attention(q, q, q, "window", 4)
        with pytest.raises(TypeError, match="^pattern:"):
            block_sparse_attention(q, q, q, torch.ones(16, 16), 4)
        with pytest.raises(ValueError, match="^pattern:"):
            block_sparse_attention(q, q, q, torch.ones(8, 8, dtype=torch.bool), 4)
        empty_row = torch.ones(16, 16, dtype=torch.bool)
        empty_row[3] = False
        with pytest.raises(ValueError, match="^pattern:"):
            block_sparse_attention(q, q, q, empty_row, 4)
        with pytest.raises(ValueError, match="^scale:"):
            block_sparse_attention(q, q, q, pattern, 4, scale=float("inf"))
        with pytest.raises(TypeError, match="^q:"):
            block_sparse_attention(q.numpy(), q, q, pattern, 4)

    def test_flex(self):
        q = torch.randn(2, 16, 8)
        with pytest.raises(TypeError, match="^pattern:"):
            flex_block_mask(torch.ones(16, 16, dtype=torch.bool), 16, "cpu")
        with pytest.raises(ValueError, match="^q:"):
            flex_sparse_attention(q, q, q, SparsePattern(window=4))

    def test_positions_and_devices(self):
        pattern = SparsePattern(window=4)
        with pytest.raises(TypeError, match="^i: expected an int tensor"):
            pattern.allows(torch.tensor([1.5]), torch.tensor([0]))
        with pytest.raises(TypeError, match="^j:"):
            pattern.allows(3, "1")
        with pytest.raises(TypeError, match="^i:"):
            pattern.allows(True, 1)
        assert pattern.allows(3, 1) and not pattern.allows(1, 3)
        for bad in ("gpu", "nope:0"):
            with pytest.raises(ValueError, match="^device:"):
                pattern.mask(8, device=bad)
            with pytest.raises(ValueError, match="^device:"):
                pattern.layout(8, 4, device=bad)
            with pytest.raises(ValueError, match="^device:"):
                sliding_window_mask(8, 2, device=bad)
            with pytest.raises(ValueError, match="^device:"):
                flex_block_mask(pattern, 16, bad)
        with pytest.raises(TypeError, match="^device:"):
            strided_mask(8, 2, device=0.5)
        with pytest.raises(TypeError, match="^device:"):
            flex_block_mask(pattern, 16, None)
        with pytest.raises(TypeError, match="^causal:"):
            global_mask(8, 1, causal=None)

    def test_masks_and_block_masks_of_the_wrong_kind(self):
        q = torch.randn(1, 2, 16, 8)
        pattern = SparsePattern(window=4)
        sparse_mask = torch.ones(16, 16, dtype=torch.bool).to_sparse()
        with pytest.raises(ValueError, match="^pattern: expected a dense"):
            block_sparse_attention(q, q, q, sparse_mask, 4)
        with pytest.raises(ValueError, match="^pattern: expected a mask on cpu"):
            block_sparse_attention(q, q, q, torch.ones(16, 16, dtype=torch.bool,
                                                       device="meta"), 4)
        with pytest.raises(ValueError, match="^q: expected a tensor with data"):
            block_sparse_attention(q.to("meta"), q.to("meta"), q.to("meta"), pattern, 4)
        with pytest.raises(TypeError, match="^scale:"):
            block_sparse_attention(q, q, q, pattern, 4, scale="1")
        with pytest.raises(TypeError, match="^pattern:"):
            flex_sparse_attention(q, q, q, "window")
        with pytest.raises(TypeError, match="^block_mask:"):
            flex_sparse_attention(q, q, q, pattern, block_mask="precomputed")
        with pytest.raises(ValueError, match="^block_mask: made for sequences of"):
            flex_sparse_attention(q, q, q, pattern, flex_block_mask(pattern, 32, "cpu"))
        with pytest.raises(ValueError, match="^k: sparse self-attention needs S == T"):
            flex_sparse_attention(q, q[..., :8, :], q[..., :8, :], pattern)
