"""Tests of lmlab.attention against torch.nn.functional.scaled_dot_product_attention and formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab import attention as A
from lmlab.device import seed_everything

SHAPES = [  # (leading dims, T, S, D, width of the values)
    ((), 1, 1, 4, 4),
    ((), 5, 7, 8, 3),
    ((3,), 6, 6, 16, 16),
    ((2, 4), 5, 9, 8, 8),  # (B, H, T, D)
    ((2, 4), 1, 12, 32, 32),  # one query against a cache
]


def _random_mask(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    mask = torch.rand(shape, generator=generator) > 0.4
    mask[..., 0] = True  # every query may attend somewhere (fully masked rows: tested below)
    return mask


@pytest.mark.parametrize("lead,T,S,D,Dv", SHAPES)
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("scale", [None, 1.0, 0.3])
def test_sdpa_matches_torch(lead: tuple[int, ...], T: int, S: int, D: int, Dv: int, use_mask: bool,
                            scale: float | None) -> None:
    g = seed_everything(0)
    q, k, v = torch.randn(*lead, T, D), torch.randn(*lead, S, D), torch.randn(*lead, S, Dv)
    mask = _random_mask((*lead, T, S), g) if use_mask else None
    out, weights = A.scaled_dot_product_attention(q, k, v, mask, scale=scale)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(*lead, T))
    if mask is not None:
        assert torch.all(weights[~mask] == 0)


@pytest.mark.parametrize("T", [1, 4, 9])
def test_causal_mask_matches_is_causal(T: int) -> None:
    seed_everything(1)
    q, k, v = torch.randn(2, 3, T, 8), torch.randn(2, 3, T, 8), torch.randn(2, 3, T, 8)
    out, _ = A.scaled_dot_product_attention(q, k, v, A.causal_mask(T))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("T,S", [(1, 5), (3, 8), (6, 6)])
def test_causal_mask_with_cache_equals_last_rows_of_full(T: int, S: int) -> None:
    seed_everything(2)
    q, k, v = torch.randn(2, S, 8), torch.randn(2, S, 8), torch.randn(2, S, 8)
    full, _ = A.scaled_dot_product_attention(q, k, v, A.causal_mask(S))
    last, _ = A.scaled_dot_product_attention(q[:, -T:], k, v, A.causal_mask(T, S))
    torch.testing.assert_close(last, full[:, -T:])
    from torch.nn.attention.bias import causal_lower_right

    ref = F.scaled_dot_product_attention(q[:, -T:], k, v, attn_mask=causal_lower_right(T, S))
    torch.testing.assert_close(last, ref, rtol=1e-5, atol=1e-5)


def test_padding_mask_and_padding_gets_zero_weight() -> None:
    seed_everything(3)
    lengths = torch.tensor([5, 2, 1])
    mask = A.padding_mask(lengths, 6)
    assert mask.tolist()[1] == [True, True, False, False, False, False]
    q, k, v = torch.randn(3, 4, 8), torch.randn(3, 6, 8), torch.randn(3, 6, 8)
    out, w = A.scaled_dot_product_attention(q, k, v, mask[:, None, :])
    assert torch.all(w[1, :, 2:] == 0) and torch.all(w[2, :, 1:] == 0)
    torch.testing.assert_close(w[2, :, 0], torch.ones(4))
    k2, v2 = k.clone(), v.clone()
    k2[~mask] = 1e3 * torch.randn(int((~mask).sum()), 8)
    v2[~mask] = 1e3
    out2, _ = A.scaled_dot_product_attention(q, k2, v2, mask[:, None, :])
    torch.testing.assert_close(out2, out)  # padded keys and values never matter
    for b, n in enumerate(lengths.tolist()):
        alone, _ = A.scaled_dot_product_attention(q[b], k[b, :n], v[b, :n])
        torch.testing.assert_close(out[b], alone)


def test_fully_masked_rows_get_zero_weights() -> None:
    w = A.masked_softmax(torch.randn(2, 3), torch.tensor([[False, False, False], [True, False, True]]))
    assert torch.all(w[0] == 0)
    torch.testing.assert_close(w[1].sum(), torch.tensor(1.0))


def test_fully_masked_rows_match_torch_sdpa() -> None:
    """torch 2.13's F.scaled_dot_product_attention gives a zero output for a row with no key."""
    seed_everything(7)
    q, k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8)
    mask = torch.rand(2, 3, 4, 5) > 0.5
    mask[0, 1, 2] = False  # one query with no allowed key
    mask[1, :, 0] = False
    out, w = A.scaled_dot_product_attention(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert torch.all(out[0, 1, 2] == 0) and torch.all(w[0, 1, 2] == 0)
    assert torch.isnan(torch.softmax(torch.full((3,), float("-inf")), -1)).all()  # the 0/0


@pytest.mark.parametrize("use_mask", [False, True])
def test_nan_scores_stay_visible(use_mask: bool) -> None:
    scores = torch.tensor([[0.0, float("nan"), 1.0], [0.0, 1.0, 2.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]]) if use_mask else None
    w = A.masked_softmax(scores, mask)
    assert torch.isnan(w[0]).all()  # a NaN score makes its row NaN, as torch.softmax does
    assert not torch.isnan(w[1]).any()
    hidden = A.masked_softmax(scores, torch.tensor([[True, False, True]]))
    assert not torch.isnan(hidden).any()  # a masked-out NaN is never read
    q = torch.randn(2, 3, 4)
    q[0, 1, 0] = float("nan")
    out, _ = A.scaled_dot_product_attention(q, torch.randn(2, 5, 4), torch.randn(2, 5, 4))
    assert torch.isnan(out[0, 1]).all() and not torch.isnan(out[1]).any()


def test_dot_product_scores_is_a_matrix_of_dot_products() -> None:
    q, k = torch.randn(3, 5), torch.randn(4, 5)
    ref = torch.tensor([[float(torch.dot(a, b)) for b in k] for a in q])
    torch.testing.assert_close(A.dot_product_scores(q, k), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(A.dot_product_scores(q, k, scale=None), ref / 5 ** 0.5,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lead,T,S", [((), 3, 4), ((2,), 1, 6), ((2, 3), 4, 5)])
def test_additive_matches_bahdanau_formula(lead: tuple[int, ...], T: int, S: int) -> None:
    seed_everything(4)
    D, Adim, Dv = 6, 7, 3
    module = A.AdditiveAttention(D, Adim)
    q, k, v = torch.randn(*lead, T, D), torch.randn(*lead, S, D), torch.randn(*lead, S, Dv)
    out, w = module(q, k, v)
    # e_ts = v_a . tanh(W_a q_t + U_a k_s), one (t, s) pair at a time
    scores = torch.empty(*lead, T, S)
    for t in range(T):
        for s in range(S):
            scores[..., t, s] = module.w_v(torch.tanh(module.w_q(q[..., t, :]) + module.w_k(k[..., s, :])))[..., 0]
    ref_w = torch.softmax(scores, -1)
    torch.testing.assert_close(w, ref_w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, ref_w @ v, rtol=1e-5, atol=1e-5)


def test_modules_match_functions() -> None:
    seed_everything(5)
    q, k, v = torch.randn(2, 3, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 4)
    mask = A.padding_mask(torch.tensor([5, 3]))[:, None, :]
    for scaled, scale in ((True, None), (False, 1.0)):
        out, w = A.DotProductAttention(scaled=scaled)(q, k, v, mask)
        ref_out, ref_w = A.scaled_dot_product_attention(q, k, v, mask, scale=scale)
        torch.testing.assert_close(out, ref_out)
        torch.testing.assert_close(w, ref_w)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 8), st.integers(0, 2**16), st.booleans())
def test_attention_properties(T: int, S: int, seed: int, additive: bool) -> None:
    """Weights are a distribution over keys, and permuting keys with their values changes nothing."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(T, 4, generator=g), torch.randn(S, 4, generator=g), torch.randn(S, 3, generator=g)
    if additive:
        W = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g), torch.randn(5, generator=g)
        out, w = A.additive_attention(q, k, v, *W)
    else:
        out, w = A.scaled_dot_product_attention(q, k, v)
    assert torch.all(w >= 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(T))
    perm = torch.randperm(S, generator=g)
    if additive:
        out_p, w_p = A.additive_attention(q, k[perm], v[perm], *W)
    else:
        out_p, w_p = A.scaled_dot_product_attention(q, k[perm], v[perm])
    torch.testing.assert_close(out_p, out, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(w_p, w[:, perm])
    # the output is a convex combination of the values
    assert torch.all(out <= v.max(0).values + 1e-5) and torch.all(out >= v.min(0).values - 1e-5)


def test_bad_input_raises_clear_errors() -> None:
    q, k, v = torch.randn(2, 3, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 4)
    with pytest.raises(TypeError, match="mask: expected a boolean"):
        A.scaled_dot_product_attention(q, k, v, torch.ones(3, 5))
    with pytest.raises(ValueError, match="mask: shape"):
        A.scaled_dot_product_attention(q, k, v, torch.ones(2, 4, dtype=torch.bool))  # (B, S') wrong
    with pytest.raises(ValueError, match="mask: shape"):
        A.scaled_dot_product_attention(q, k, v, A.padding_mask(torch.tensor([5, 3]), 6)[:, None, :])
    with pytest.raises(ValueError, match="k: width"):
        A.scaled_dot_product_attention(q, torch.randn(2, 5, 7), v)
    with pytest.raises(ValueError, match="v:"):
        A.scaled_dot_product_attention(q, k, torch.randn(2, 4, 4))
    with pytest.raises(ValueError, match="T:"):
        A.causal_mask(0)
    with pytest.raises(ValueError, match="S:"):
        A.causal_mask(4, 3)
    with pytest.raises(ValueError, match="S: padded length"):
        A.padding_mask(torch.tensor([3, 7]), 5)
    with pytest.raises(ValueError, match="lengths: every sequence"):
        A.padding_mask(torch.tensor([3, 0]))
    with pytest.raises(ValueError, match="lengths:"):
        A.padding_mask(torch.tensor([[3]]))
    with pytest.raises(ValueError, match="w_k"):
        A.additive_scores(q, k, torch.randn(4, 8), torch.randn(4, 3), torch.randn(4))
    with pytest.raises(ValueError, match="attention_dim"):
        A.AdditiveAttention(8, 0)
    assert A.AdditiveAttention(8).w_q.weight.shape == (8, 8)


Q, K, V = torch.randn(2, 3, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 4)
W3 = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4)


@pytest.mark.parametrize("call, error, match", [
    (lambda: A.causal_mask(2.0), TypeError, "T"),
    (lambda: A.causal_mask(-1), ValueError, "T"),
    (lambda: A.causal_mask(2, 1.5), TypeError, "S"),
    (lambda: A.padding_mask([2, 3]), TypeError, "lengths"),
    (lambda: A.padding_mask(torch.tensor([2.0, 3.0])), TypeError, "lengths"),
    (lambda: A.padding_mask(torch.tensor([], dtype=torch.long)), ValueError, "lengths"),
    (lambda: A.padding_mask(torch.tensor([2, 3]), 3.0), TypeError, "S"),
    (lambda: A.dot_product_scores(Q.long(), K), TypeError, "q"),
    (lambda: A.dot_product_scores(Q, "k"), TypeError, "k"),
    (lambda: A.dot_product_scores(Q[0, 0], K), ValueError, "q"),
    (lambda: A.dot_product_scores(Q, torch.randn(3, 5, 8)), ValueError, "k"),
    (lambda: A.dot_product_scores(Q, torch.randn(2, 0, 8)), ValueError, "k"),
    (lambda: A.dot_product_scores(Q, K, scale=float("nan")), ValueError, "scale"),
    (lambda: A.dot_product_scores(Q, K, scale="1"), TypeError, "scale"),
    (lambda: A.masked_softmax([1.0]), TypeError, "scores"),
    (lambda: A.masked_softmax(torch.tensor(1.0)), ValueError, "scores"),
    (lambda: A.masked_softmax(torch.randn(2, 3), torch.ones(2, 3, dtype=torch.long)), TypeError,
     "mask"),
    (lambda: A.scaled_dot_product_attention(Q, K, V.int()), TypeError, "v"),
    (lambda: A.scaled_dot_product_attention(Q, K, torch.randn(3, 5, 4)), ValueError, "v"),
    (lambda: A.additive_scores(Q, K, W3[0].long(), *W3[1:]), TypeError, "w_q"),
    (lambda: A.additive_scores(Q, K, W3[0], W3[1], torch.randn(5)), ValueError, "w_v"),
    (lambda: A.additive_attention(Q, K, V[:, :4], *W3), ValueError, "v"),
    (lambda: A.DotProductAttention(scaled="no"), TypeError, "scaled"),
    (lambda: A.AdditiveAttention(8.0), TypeError, "d_model"),
    (lambda: A.AdditiveAttention(0), ValueError, "d_model"),
    (lambda: A.causal_mask(2, device="tpu"), ValueError, "device: expected a device"),
    (lambda: A.causal_mask(2, device=1.5), TypeError, "device: expected a str"),
    (lambda: A.padding_mask(torch.tensor([2, 3], device="meta")), ValueError,
     "lengths: expected a tensor with values, got a meta tensor"),
    # mixed dtypes: raw "expected scalar type Float but found Double" before
    (lambda: A.dot_product_scores(Q.double(), K), TypeError, "q, k: expected one dtype"),
    (lambda: A.scaled_dot_product_attention(Q, K, V.half()), TypeError,
     "q, k, v: expected one dtype, got q torch.float32, k torch.float32, v torch.float16"),
    (lambda: A.additive_scores(Q, K, W3[0].double(), *W3[1:]), TypeError,
     "q, w_q, w_k, w_v: expected one dtype"),
    (lambda: A.additive_scores(Q, K, torch.randn(0, 8), torch.randn(0, 8), torch.randn(0)),
     ValueError, r"w_q: expected shape \(A, 8\) with A >= 1"),
    (lambda: A.AdditiveAttention(8)(Q.double(), K.double(), V.double()), TypeError,
     "q, w_q, w_k, w_v: expected one dtype"),
    (lambda: A.AdditiveAttention(8)(Q, torch.randn(2, 5, 3), V), ValueError,
     r"k: expected width d_model=8, got shape \(2, 5, 3\)"),
    (lambda: A.AdditiveAttention(8)(Q[..., :4], K, V), ValueError, "q: expected width d_model=8"),
    (lambda: A.masked_softmax(torch.randn(2, 3), [[True] * 3] * 2), TypeError,
     "mask: expected a torch.Tensor"),
    (lambda: A.scaled_dot_product_attention(Q, K, V, mask=torch.ones(3, 5, dtype=torch.bool,
                                                                      device="meta")),
     ValueError, "scores, mask: expected tensors on one device"),
])
def test_bad_input_names_the_parameter(call, error, match) -> None:
    with pytest.raises(error, match=f"^{match}"):
        call()


@pytest.mark.gpu
@pytest.mark.parametrize("additive", [False, True])
def test_attention_on_gpu_matches_cpu(gpu_device: torch.device, additive: bool) -> None:
    seed_everything(6)
    q, k, v = torch.randn(2, 4, 7, 16), torch.randn(2, 4, 9, 16), torch.randn(2, 4, 9, 16)
    mask = A.causal_mask(7, 9)
    module = A.AdditiveAttention(16, 8) if additive else A.DotProductAttention()
    out, w = module(q, k, v, mask)
    gpu_out, gpu_w = module.to(gpu_device)(q.to(gpu_device), k.to(gpu_device), v.to(gpu_device),
                                           A.causal_mask(7, 9, device=gpu_device))
    torch.testing.assert_close(gpu_out.cpu(), out, rtol=1e-3, atol=1e-3)  # TF32 matmuls on GPU
    torch.testing.assert_close(gpu_w.cpu(), w, rtol=1e-3, atol=1e-3)
