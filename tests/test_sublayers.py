"""lmlab.sublayers: every mask kind on both attention paths against a float64 softmax reference
and torch's SDPA; the fused q/k/v projection against torch and the loaders; bad input.

The property test draws the whole space the API accepts: no mask, boolean masks of 2, 3 and 4
dimensions, additive float masks, key padding; ``is_causal`` on or off; grouped key/value
heads (``G < H``); self-attention, cross-attention (``T != S``, of the same or another width)
and a cached continuation (``S = cached + T``). Rows whose keys are all masked are drawn on
purpose: every path gives them zero weights and a zero vector (``out_proj``'s bias after it).
"""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from lmlab.device import seed_everything
from lmlab.sublayers import FeedForward, KVCache, MultiHeadAttention

ATOL = dict(rtol=1e-5, atol=1e-5)
MASK_KINDS = ("none", "bool2", "bool3", "bool4", "additive", "padding")


def _reference(attn: MultiHeadAttention, x: torch.Tensor, source: torch.Tensor,
               mask: torch.Tensor | None, is_causal: bool
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float64 attention written from its definition; queries are the last T rows of ``x``.

    Returns ``(out, weights, sdpa_out)``: the reference output (after ``out_proj``), the
    weights ``(B, H, T, S)``, and torch's SDPA on the same float64 q, k, v and mask.
    """
    a = copy.deepcopy(attn).double()
    x, source = x.double(), source.double()
    (w_q, w_k, w_v), (b_q, b_k, b_v) = a.qkv_weights(), a.qkv_biases()
    B, T, _ = x.shape
    S = source.shape[1]
    H, G, D = a.num_heads, a.num_kv_heads, a.head_dim
    q = (x @ w_q.T + b_q).view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
    k = (source @ w_k.T + b_k).view(B, S, G, D).transpose(1, 2)  # (B, G, S, D)
    v = (source @ w_v.T + b_v).view(B, S, G, D).transpose(1, 2)
    k, v = k.repeat_interleave(H // G, 1), v.repeat_interleave(H // G, 1)  # (B, H, S, D)
    add = torch.zeros(B, H, T, S, dtype=torch.float64)  # what the mask adds to the scores
    if mask is not None:
        add = add + mask.double() if mask.is_floating_point() else \
            add.masked_fill(~mask, float("-inf"))
    if is_causal:  # query i sits at key position S - T + i
        pos_q = torch.arange(S - T, S)[:, None]
        add = add.masked_fill(torch.arange(S)[None, :] > pos_q, float("-inf"))
    scores = q @ k.transpose(-2, -1) / D ** 0.5 + add
    allowed = add > float("-inf")
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    weights = weights.masked_fill(~allowed.any(-1, keepdim=True), 0.0)  # no key: zero weights
    heads = weights @ v  # (B, H, T, D)
    out = a.out_proj(heads.transpose(1, 2).reshape(B, T, H * D))
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=add)  # torch: -inf rows -> 0
    sdpa_out = a.out_proj(sdpa.transpose(1, 2).reshape(B, T, H * D))
    return out, weights, sdpa_out


def _mask(kind: str, B: int, H: int, T: int, S: int, keep: float,
          g: torch.Generator) -> torch.Tensor | None:
    if kind == "none":
        return None
    b = B if torch.rand((), generator=g) < 0.5 else 1
    h = H if torch.rand((), generator=g) < 0.5 else 1
    shape = {"bool2": (T, S), "bool3": (h, T, S), "bool4": (b, h, T, S), "padding": (B, 1, 1, S),
             "additive": [(T, S), (h, T, S), (b, h, T, S)][int(torch.randint(3, (), generator=g))]}
    shape = shape[kind]
    allowed = torch.rand(shape, generator=g) < keep
    if kind != "additive":
        return allowed
    values = torch.randn(shape, generator=g)  # a learned bias, say (ALiBi, T5)
    return values.masked_fill(~allowed, float("-inf"))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(heads=st.sampled_from([(1, 1), (2, 1), (2, 2), (4, 1), (4, 2), (4, 4)]),
       D=st.sampled_from([2, 4]), B=st.integers(1, 3), T=st.integers(1, 5),
       mode=st.sampled_from(["self", "cross", "cross-width", "cache"]),
       S_other=st.integers(1, 6), kind=st.sampled_from(MASK_KINDS), is_causal=st.booleans(),
       keep=st.sampled_from([0.2, 0.6, 1.0]), seed=st.integers(0, 2 ** 16))
# always run: the issue's case (a 2-D mask with is_causal), and each kind with a cache
@example(heads=(4, 2), D=4, B=2, T=5, mode="self", S_other=1, kind="bool2", is_causal=True,
         keep=0.6, seed=0)
@example(heads=(4, 1), D=2, B=2, T=3, mode="cache", S_other=4, kind="additive",
         is_causal=True, keep=0.6, seed=1)
@example(heads=(2, 1), D=4, B=3, T=2, mode="cache", S_other=3, kind="bool3", is_causal=True,
         keep=0.2, seed=2)
@example(heads=(4, 2), D=2, B=2, T=4, mode="cross", S_other=6, kind="padding",
         is_causal=False, keep=0.2, seed=3)
@example(heads=(4, 4), D=2, B=2, T=1, mode="cache", S_other=5, kind="bool4", is_causal=True,
         keep=0.6, seed=4)
def test_every_mask_kind_agrees_on_both_paths(heads, D, B, T, mode, S_other, kind, is_causal,
                                              keep, seed) -> None:
    H, G = heads
    C = H * D
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    kv_width = C + 3 if mode == "cross-width" else C
    attn = MultiHeadAttention(C, H, G, kv_d_model=kv_width).eval()
    x = torch.randn(B, T, C, generator=g)
    prefix = context = None
    if mode == "self":
        S, source = T, x
    elif mode == "cache":
        prefix = torch.randn(B, S_other, C, generator=g)
        S, source = S_other + T, torch.cat([prefix, x], 1)
    else:
        S = S_other
        context = source = torch.randn(B, S, kv_width, generator=g)
    assume(not (is_causal and S < T))  # (an error, tested below)
    mask = _mask(kind, B, H, T, S, keep, g)

    def run(need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        cache = None
        if prefix is not None:
            cache = KVCache(16)
            attn(prefix, is_causal=True, cache=cache)
        return attn(x, context, mask, is_causal=is_causal, cache=cache, need_weights=need_weights)

    with torch.no_grad():
        fast, none = run(False)
        slow, weights = run(True)
        out, ref_weights, sdpa = _reference(attn, x, source, mask, is_causal)
    assert none is None
    torch.testing.assert_close(fast.double(), out, **ATOL)
    torch.testing.assert_close(slow.double(), out, **ATOL)
    torch.testing.assert_close(weights.double(), ref_weights, **ATOL)
    torch.testing.assert_close(sdpa, out, **ATOL)  # the reference is torch's definition


def test_the_issue_example_2d_mask_with_is_causal() -> None:
    """A 2-D mask with ``is_causal=True`` was dropped on the fast path (max |difference| from
    torch 0.92 on this example); it is now combined with the causal mask."""
    seed_everything(0)
    attn = MultiHeadAttention(40, 5).eval()
    x = torch.randn(3, 11, 40)
    mask = torch.rand(11, 11) > 0.5
    mask.fill_diagonal_(True)
    with torch.no_grad():
        fast, _ = attn(x, mask=mask, is_causal=True)
        as_4d, _ = attn(x, mask=mask[None, None], is_causal=True)
        slow, _ = attn(x, mask=mask, is_causal=True, need_weights=True)
        out, _, sdpa = _reference(attn, x, x, mask, True)
        plain, _ = attn(x, is_causal=True)
    torch.testing.assert_close(fast, as_4d, rtol=0, atol=0)
    torch.testing.assert_close(fast.double(), sdpa, **ATOL)
    torch.testing.assert_close(slow.double(), out, **ATOL)
    assert float((fast - plain).abs().max()) > 0.1  # the mask matters


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("float_mask", [False, True])
def test_a_query_with_no_key_gets_a_zero_vector(need_weights: bool, float_mask: bool) -> None:
    seed_everything(1)
    attn = MultiHeadAttention(16, 4, 2).eval()
    x = torch.randn(2, 5, 16, requires_grad=True)
    allowed = torch.ones(5, 5, dtype=torch.bool)
    allowed[2] = False  # query 2 may attend to nothing
    mask = torch.zeros(5, 5).masked_fill(~allowed, float("-inf")) if float_mask else allowed
    out, weights = attn(x, mask=mask, need_weights=need_weights)
    torch.testing.assert_close(out[:, 2], attn.out_proj.bias.expand(2, 16))
    if need_weights:
        assert float(weights.detach()[:, :, 2].abs().max()) == 0.0
    out.sum().backward()
    assert bool(torch.isfinite(x.grad).all())


def test_is_causal_needs_at_least_as_many_keys_as_queries() -> None:
    attn = MultiHeadAttention(16, 2)
    with pytest.raises(ValueError, match="^is_causal: .* needs S >= T keys, got T=4, S=3"):
        attn(torch.randn(1, 4, 16), torch.randn(1, 3, 16), is_causal=True)


def test_float_mask_follows_the_queries_dtype() -> None:
    seed_everything(2)
    attn = MultiHeadAttention(16, 2).eval().double()
    x = torch.randn(1, 4, 16, dtype=torch.float64)
    bias = torch.randn(4, 4)  # float32 mask, float64 model
    fast, _ = attn(x, mask=bias)
    slow, _ = attn(x, mask=bias, need_weights=True)
    torch.testing.assert_close(fast, slow)


# ------------------------------------------------------------------------- fused projection

def test_projection_is_stored_fused_and_matches_torch_multihead_attention() -> None:
    """One ``(H + 2G) D x C`` matrix, laid out as torch's ``in_proj_weight``; cross-attention of
    the same width slices it as torch does."""
    seed_everything(3)
    ours = MultiHeadAttention(32, 4).eval()
    assert [n for n, _ in ours.named_parameters()] == [
        "qkv_proj.weight", "qkv_proj.bias", "out_proj.weight", "out_proj.bias"]
    ref = torch.nn.MultiheadAttention(32, 4, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv_proj.weight)
        ref.in_proj_bias.copy_(ours.qkv_proj.bias)
        ref.out_proj.load_state_dict(ours.out_proj.state_dict())
    x, memory = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    torch.testing.assert_close(ours(x)[0], ref(x, x, x)[0], **ATOL)
    torch.testing.assert_close(ours(x, memory)[0], ref(x, memory, memory)[0], **ATOL)
    w_q, w_k, w_v = ours.qkv_weights()
    assert w_q.data_ptr() == ours.qkv_proj.weight.data_ptr()  # views, not copies
    torch.testing.assert_close(torch.cat([w_q, w_k, w_v]), ours.qkv_proj.weight)


def test_another_kv_width_has_separate_query_and_key_value_projections() -> None:
    seed_everything(4)
    attn = MultiHeadAttention(32, 8, 2, kv_d_model=24).eval()
    assert attn.qkv_proj is None
    assert attn.q_proj.weight.shape == (32, 32) and attn.kv_proj.weight.shape == (16, 24)
    w_q, w_k, w_v = attn.qkv_weights()
    assert w_k.shape == w_v.shape == (8, 24)
    x, ctx = torch.randn(2, 5, 32), torch.randn(2, 9, 24)
    with torch.no_grad():
        out, _, _ = _reference(attn, x, ctx, None, False)
        torch.testing.assert_close(attn(x, ctx)[0].double(), out, **ATOL)
    with pytest.raises(ValueError, match="^context: this layer reads keys and values of width"):
        attn(x)


def test_bert_query_key_value_tensors_fill_the_fused_projection(tmp_path) -> None:
    """Loading by table concatenates a checkpoint's separate q, k, v tensors (a tiny BERT from
    ``transformers``), and a missing one is an error naming it."""
    pytest.importorskip("transformers")
    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertModel

    from lmlab.data import minilm_dir
    from lmlab.pretrained import SentenceEncoder

    torch.manual_seed(0)
    ref = BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                               num_attention_heads=4, intermediate_size=64,
                               max_position_embeddings=32)).eval()
    ref.save_pretrained(tmp_path, safe_serialization=True)
    shutil.copy(minilm_dir() / "tokenizer.json", tmp_path / "tokenizer.json")
    attn = SentenceEncoder.from_pretrained(tmp_path).model.blocks[0].attn
    hf = ref.encoder.layer[0].attention.self
    w_q, w_k, w_v = attn.qkv_weights()
    assert torch.equal(w_q, hf.query.weight) and torch.equal(w_k, hf.key.weight)
    assert torch.equal(w_v, hf.value.weight)
    assert torch.equal(attn.qkv_biases()[2], hf.value.bias)
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["encoder.layer.0.attention.self.value.weight"]
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError,
                       match="missing tensor 'encoder.layer.0.attention.self.value.weight'"):
        SentenceEncoder.from_pretrained(tmp_path)
    tensors["encoder.layer.0.attention.self.value.weight"] = torch.zeros(16, 32)
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"'encoder.layer.0.attention.self.value.weight' has "
                                         r"shape \(16, 32\), expected \(32, 32\)"):
        SentenceEncoder.from_pretrained(tmp_path)


# ------------------------------------------------------------------------- bad input

def _attn() -> MultiHeadAttention:
    return MultiHeadAttention(16, 4, 2)


X = torch.randn(2, 3, 16)
META = torch.device("meta")


@pytest.mark.parametrize("call,error,match", [
    (lambda a: a([[1.0]]), TypeError, "^x: expected a torch.Tensor"),
    (lambda a: a(X.long()), TypeError, "^x: expected a float tensor"),
    (lambda a: a(X.double()), TypeError, "^x: dtype torch.float64 differs"),
    (lambda a: a(X[0]), ValueError, "^x: expected 3 dimensions"),
    (lambda a: a(torch.randn(2, 3, 15)), ValueError, r"^x: expected shape \(B, T, d_model=16\)"),
    (lambda a: a(torch.randn(0, 3, 16)), ValueError, r"^x: expected shape .* B, T >= 1"),
    (lambda a: a(torch.randn(2, 0, 16)), ValueError, r"^x: expected shape .* B, T >= 1"),
    (lambda a: a(torch.randn(2, 3, 16, device=META)), ValueError, "^x: on meta but"),
    (lambda a: a(X, torch.randn(2, 4, 15)), ValueError, r"^context: expected shape \(B=2, S, "),
    (lambda a: a(X, torch.randn(3, 4, 16)), ValueError, r"^context: expected shape \(B=2, S, "),
    (lambda a: a(X, torch.randn(2, 0, 16)), ValueError, "^context: expected shape .* S >= 1"),
    (lambda a: a(X, torch.ones(2, 4, 16, dtype=torch.long)), TypeError,
     "^context: expected a float"),
    (lambda a: a(X, torch.randn(2, 4, 16, device=META)), ValueError, "^context: on meta"),
    (lambda a: a(X, mask=torch.ones(3, 3, dtype=torch.long)), TypeError, "^mask: expected a bool"),
    (lambda a: a(X, mask=torch.ones(4, 3, dtype=torch.bool)), ValueError,
     r"^mask: shape \(4, 3\) does not broadcast to \(B, H, T, S\) = \(2, 4, 3, 3\)"),
    (lambda a: a(X, mask=torch.ones(2, 3, 3, dtype=torch.bool)), ValueError,
     r"^mask: shape \(2, 3, 3\) does not broadcast"),  # a 3-D mask lines up with (H, T, S)
    (lambda a: a(X, mask=torch.ones(3, 1, 3, 3, dtype=torch.bool)), ValueError, "^mask: shape"),
    (lambda a: a(X, mask=torch.ones(1, 1, 1, 3, 3, dtype=torch.bool)), ValueError, "^mask: shape"),
    (lambda a: a(X, mask=torch.ones(3, 3, dtype=torch.bool, device=META)), ValueError,
     "^mask: on meta but x is on cpu"),
    (lambda a: a(X, mask=[[True]]), TypeError, "^mask: expected a torch.Tensor"),
    (lambda a: a(X, is_causal=1), TypeError, "^is_causal: expected True or False"),
    (lambda a: a(X, need_weights=None), TypeError, "^need_weights: expected True or False"),
    (lambda a: a(X, cache=[]), TypeError, "^cache: expected a KVCache"),
    (lambda a: a(X, torch.randn(2, 4, 16), cache=KVCache(8)), ValueError, "^cache: only self"),
    (lambda a: a(X, cache=KVCache(2)), ValueError, r"^k: 0 cached \+ 3 new tokens exceed"),
    (lambda a: a(X, rope=[1, 2]), TypeError, r"^rope: expected a \(cos, sin\) tuple"),
])
def test_attention_rejects_bad_input(call, error, match) -> None:
    attn = _attn()
    before = copy.deepcopy(attn.state_dict())
    with pytest.raises(error, match=match):
        call(attn)
    assert all(torch.equal(before[k], v) for k, v in attn.state_dict().items())


def test_a_rejected_call_leaves_the_cache_as_it_was() -> None:
    attn, cache = _attn(), KVCache(8)
    attn(X, is_causal=True, cache=cache)
    with pytest.raises(ValueError, match="^mask: shape"):
        attn(X[:, :1], mask=torch.ones(1, 5, dtype=torch.bool), cache=cache)
    assert cache.length == 3  # checked before the keys were appended


K = torch.randn(1, 2, 3, 4)


@pytest.mark.parametrize("k,v,error,match", [
    (torch.randn(2, 3, 4), torch.randn(2, 3, 4), ValueError, "^k: expected 4 dimensions"),
    (K, torch.randn(1, 2, 2, 4), ValueError, r"^v: expected k's shape \(B, G, T, D\)"),
    (K, torch.randn(1, 2, 3, 5), ValueError, r"^v: expected k's shape"),
    (K, K.double(), TypeError, "^v: dtype torch.float64 differs from k's"),
    (K.long(), K.long(), TypeError, "^k: expected a float tensor"),
    (torch.randn(1, 2, 0, 4), torch.randn(1, 2, 0, 4), ValueError, "^k: expected non-empty"),
    (torch.randn(0, 2, 1, 4), torch.randn(0, 2, 1, 4), ValueError, "^k: expected non-empty"),
    (K, torch.randn(1, 2, 3, 4, device=META), ValueError, "^v: on meta but k is on cpu"),
    ([1], [2], TypeError, "^k: expected a torch.Tensor"),
])
def test_kv_cache_rejects_bad_updates(k, v, error, match) -> None:
    cache = KVCache(8)
    with pytest.raises(error, match=match):
        cache.update(k, v)
    assert cache.length == 0 and cache.k is None


@pytest.mark.parametrize("k,error,match", [
    (torch.randn(2, 2, 1, 4), ValueError, r"^k: \(B, G, D\) = \(2, 2, 4\) does not match the "
                                          r"cache's \(1, 2, 4\)"),
    (torch.randn(1, 1, 1, 4), ValueError, r"^k: \(B, G, D\) = \(1, 1, 4\)"),
    (torch.randn(1, 2, 1, 4).double(), TypeError, "^k: dtype torch.float64 differs from the cache"),
    (torch.randn(1, 2, 6, 4), ValueError, r"^k: 3 cached \+ 6 new tokens exceed"),
])
def test_kv_cache_rejects_updates_unlike_what_it_holds(k, error, match) -> None:
    cache = KVCache(8)
    cache.update(K, K)
    with pytest.raises(error, match=match):
        cache.update(k, k.clone())
    assert cache.length == 3


@pytest.mark.parametrize("value,error", [(0, ValueError), (-1, ValueError), (2.0, TypeError),
                                         (True, TypeError), ("8", TypeError), (None, TypeError)])
def test_kv_cache_rejects_bad_max_length(value, error) -> None:
    with pytest.raises(error, match="^max_length: expected an int"):
        KVCache(value)


@pytest.mark.parametrize("x,error,match", [
    (torch.randn(2, 7), ValueError, r"^x: expected shape \(\*, d_model=8\)"),
    (torch.randn(0, 8), ValueError, "^x: expected shape .* at least one position"),
    (torch.tensor(1.0), ValueError, r"^x: expected shape \(\*, d_model=8\)"),
    (torch.ones(2, 8, dtype=torch.long), TypeError, "^x: expected a float tensor"),
    (torch.randn(2, 8).double(), TypeError, "^x: dtype torch.float64 differs"),
    (torch.randn(2, 8, device=META), ValueError, "^x: on meta but the layer's weights are on cpu"),
    ([1.0] * 8, TypeError, "^x: expected a torch.Tensor"),
])
def test_feed_forward_rejects_bad_input(x, error, match) -> None:
    with pytest.raises(error, match=match):
        FeedForward(8, 12)(x)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(d_model=0, d_ff=4), ValueError, "^d_model: expected an int >= 1"),
    (dict(d_model=4, d_ff=0), ValueError, "^d_ff: expected an int >= 1"),
    (dict(d_model=4.5, d_ff=4), TypeError, "^d_model: expected an int"),
    (dict(d_model=4, d_ff=4, ffn="tanh"), ValueError, "^ffn: expected one of"),
    (dict(d_model=4, d_ff=4, bias="yes"), TypeError, "^bias: expected True or False"),
    (dict(d_model=4, d_ff=4, dropout=1.0), ValueError, "^dropout"),
])
def test_feed_forward_rejects_bad_sizes(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        FeedForward(**kwargs)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(d_model=16, num_heads=4, kv_d_model=0), ValueError, "^kv_d_model: expected an int"),
    (dict(d_model=16, num_heads=4, bias=1), TypeError, "^bias: expected True or False"),
    (dict(d_model=16, num_heads=4, dropout=float("nan")), ValueError, "^dropout"),
    (dict(d_model=16, num_heads=4, num_kv_heads=8), ValueError, "^num_kv_heads: expected"),
    (dict(d_model=16, num_heads=-1), ValueError, "^num_heads: expected an int >= 1"),
])
def test_attention_rejects_bad_sizes(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        MultiHeadAttention(**kwargs)


def test_autocast_lets_float32_inputs_through_but_not_others() -> None:
    attn, ffn = _attn(), FeedForward(16, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert attn(X)[0].dtype == torch.bfloat16 and ffn(X).dtype == torch.bfloat16
        with pytest.raises(TypeError, match="^x: dtype torch.float64 differs"):
            attn(X.double())
    with torch.device("meta"):  # a meta layer on meta inputs: shapes only, no check fails
        meta_attn = MultiHeadAttention(16, 4, 2)
    assert meta_attn(X.to("meta"), is_causal=True)[0].shape == X.shape
