"""Tests of lmlab.transformer against torch's own attention and encoder layers, and identities."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmlab.device import seed_everything
from lmlab.model_files import load as lmlab_load
from lmlab.sublayers import FeedForward, KVCache, MultiHeadAttention
from lmlab.transformer import GPT, Encoder, EncoderDecoder, TransformerBlock
from lmlab.transformer_config import TransformerConfig, kv_cache_bytes_per_token

ATOL = dict(rtol=1e-5, atol=1e-5)
ROOT = Path(__file__).resolve().parents[1]


def _mask(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    mask = torch.rand(shape, generator=g) > 0.4
    mask[..., 0] = True  # every query may attend somewhere
    return mask


# ------------------------------------------------------------------------------- attention

@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
@pytest.mark.parametrize("masking", ["none", "causal", "padding", "both"])
@pytest.mark.parametrize("T", [1, 7])
def test_fast_path_equals_teaching_path(num_kv_heads: int, masking: str, T: int) -> None:
    g = seed_everything(0)
    attn = MultiHeadAttention(32, 4, num_kv_heads).eval()
    x = torch.randn(3, T, 32)
    mask = _mask((3, 1, 1, T), g) if masking in ("padding", "both") else None
    causal = masking in ("causal", "both")
    fast, none = attn(x, mask=mask, is_causal=causal)
    slow, weights = attn(x, mask=mask, is_causal=causal, need_weights=True)
    assert none is None
    torch.testing.assert_close(fast, slow, **ATOL)
    assert weights.shape == (3, 4, T, T)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, T), **ATOL)


@pytest.mark.parametrize("num_kv_heads", [8, 2, 1])
@pytest.mark.parametrize("batch", [3, 4])  # 24 and 32 query rows: SDPA, then grouped products
def test_one_query_decode_path_equals_sdpa(num_kv_heads: int, batch: int,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # One query per head on CPU: with B * H >= 32 rows and shared key/value heads, one grouped
    # matrix product (SDPA must not run); otherwise SDPA.
    seed_everything(2)
    attn = MultiHeadAttention(64, 8, num_kv_heads).eval()
    q = torch.randn(batch, 8, 1, 8)
    k, v = torch.randn(batch, num_kv_heads, 50, 8), torch.randn(batch, num_kv_heads, 50, 8)
    group = 8 // num_kv_heads
    expected = F.scaled_dot_product_attention(q, k.repeat_interleave(group, 1),
                                              v.repeat_interleave(group, 1))
    sdpa, sdpa_calls = F.scaled_dot_product_attention, []

    def counting_sdpa(*args, **kwargs):
        sdpa_calls.append(1)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting_sdpa)
    torch.testing.assert_close(attn._fast(q, k, v, None, 0.0, False), expected, **ATOL)
    assert len(sdpa_calls) == (0 if batch * 8 >= 32 and group > 1 else 1)


def test_cross_attention_fast_equals_teaching() -> None:
    seed_everything(1)
    attn = MultiHeadAttention(32, 8, 2, kv_d_model=24).eval()
    x, ctx = torch.randn(2, 5, 32), torch.randn(2, 9, 24)
    mask = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    mask[1, ..., 6:] = False
    fast, _ = attn(x, ctx, mask)
    with torch.no_grad():
        slow, w = attn(x, ctx, mask, need_weights=True)
    torch.testing.assert_close(fast, slow, **ATOL)
    assert float(w[1, ..., 6:].abs().max()) == 0.0


def _copy_into_torch_mha(ours: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat(ours.qkv_weights()))  # torch's layout is ours
        ref.in_proj_bias.copy_(torch.cat(ours.qkv_biases()))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)


@pytest.mark.parametrize("d_model,num_heads", [(16, 1), (32, 4), (48, 6)])
@pytest.mark.parametrize("causal", [False, True])
def test_matches_torch_multihead_attention(d_model: int, num_heads: int, causal: bool) -> None:
    g = seed_everything(2)
    ours = MultiHeadAttention(d_model, num_heads, num_kv_heads=num_heads).eval()
    ref = nn.MultiheadAttention(d_model, num_heads, batch_first=True).eval()
    _copy_into_torch_mha(ours, ref)
    x = torch.randn(2, 6, d_model)
    keep = _mask((2, 6), g)  # True = real token
    causal_allowed = torch.ones(6, 6, dtype=torch.bool).tril()
    out, w = ours(x, mask=keep[:, None, None, :], is_causal=causal, need_weights=True)
    fast, _ = ours(x, mask=keep[:, None, None, :], is_causal=causal)
    ref_out, ref_w = ref(x, x, x, key_padding_mask=~keep,
                         attn_mask=~causal_allowed if causal else None,
                         average_attn_weights=False)  # torch: True = may NOT attend
    torch.testing.assert_close(out, ref_out, **ATOL)
    torch.testing.assert_close(fast, ref_out, **ATOL)
    torch.testing.assert_close(w, ref_w, **ATOL)


@pytest.mark.parametrize("num_kv_heads", [1, 2, 4, 8])
def test_grouped_query_equals_multi_head_with_shared_kv(num_kv_heads: int) -> None:
    """GQA equals MHA whose key/value heads are copies shared within each group (1 = MQA)."""
    seed_everything(3)
    gqa = MultiHeadAttention(64, 8, num_kv_heads).eval()
    mha = MultiHeadAttention(64, 8, 8).eval()
    group, D = 8 // num_kv_heads, 8
    with torch.no_grad():
        mha.out_proj.load_state_dict(gqa.out_proj.state_dict())
        mha.qkv_weights()[0].copy_(gqa.qkv_weights()[0])
        mha.qkv_biases()[0].copy_(gqa.qkv_biases()[0])
        for i in (1, 2):  # keys, values
            src_w, src_b = gqa.qkv_weights()[i], gqa.qkv_biases()[i]
            mha.qkv_weights()[i].copy_(src_w.view(num_kv_heads, D, 64)
                                       .repeat_interleave(group, 0).reshape(64, 64))
            mha.qkv_biases()[i].copy_(src_b.view(num_kv_heads, D).repeat_interleave(group, 0)
                                      .reshape(64))
    x = torch.randn(2, 5, 64)
    for need in (False, True):
        torch.testing.assert_close(gqa(x, is_causal=True, need_weights=need)[0],
                                   mha(x, is_causal=True, need_weights=need)[0], **ATOL)
    if num_kv_heads == 8:  # num_kv_heads == num_heads is plain MHA: the same module
        assert gqa.qkv_weights()[1].shape == (64, 64)


def test_mqa_has_one_key_value_head() -> None:
    attn = MultiHeadAttention(64, 8, 1)
    w_q, w_k, w_v = attn.qkv_weights()
    assert w_q.shape == (64, 64) and w_k.shape == (8, 64) and w_v.shape == (8, 64)
    assert attn.qkv_proj.weight.shape == (64 + 2 * 8, 64)  # stored fused


def test_attention_with_cache_equals_full() -> None:
    seed_everything(4)
    attn = MultiHeadAttention(32, 4, 2).eval()
    x = torch.randn(2, 9, 32)
    full, _ = attn(x, is_causal=True)
    cache = KVCache(16)
    parts = [attn(x[:, :4], is_causal=True, cache=cache)[0]]
    parts += [attn(x[:, t:t + 1], is_causal=True, cache=cache)[0] for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(parts, 1), full, **ATOL)
    assert cache.length == 9
    assert cache.bytes_per_token == 2 * 2 * 8 * 4 and cache.nbytes == 2 * 9 * 2 * 2 * 8 * 4


# ------------------------------------------------------------------------------- blocks

def _copy_into_encoder_layer(block: TransformerBlock, ref: nn.TransformerEncoderLayer) -> None:
    _copy_into_torch_mha(block.attn, ref.self_attn)
    with torch.no_grad():
        ref.linear1.load_state_dict(block.ffn.up_proj.state_dict())
        ref.linear2.load_state_dict(block.ffn.down_proj.state_dict())
        ref.norm1.load_state_dict(block.attn_norm.state_dict())
        ref.norm2.load_state_dict(block.ffn_norm.state_dict())


@pytest.mark.parametrize("placement", ["pre", "post"])
@pytest.mark.parametrize("ffn", ["gelu", "relu"])
@pytest.mark.parametrize("causal", [False, True])
def test_block_matches_torch_encoder_layer(placement: str, ffn: str, causal: bool) -> None:
    seed_everything(5)
    config = TransformerConfig.tiny(d_model=32, num_heads=4, d_ff=48, ffn=ffn,
                                    norm_placement=placement, norm_eps=1e-6)
    block = TransformerBlock(config).eval()
    for p in block.parameters():  # non-trivial norms and biases
        nn.init.normal_(p, 0.0, 0.3)
    ref = nn.TransformerEncoderLayer(32, 4, 48, dropout=0.0, activation=ffn, batch_first=True,
                                     norm_first=placement == "pre", layer_norm_eps=1e-6).eval()
    _copy_into_encoder_layer(block, ref)
    x = torch.randn(3, 7, 32)
    mask = nn.Transformer.generate_square_subsequent_mask(7) if causal else None
    expected = ref(x, src_mask=mask, is_causal=causal)
    torch.testing.assert_close(block(x, is_causal=causal), expected, **ATOL)
    out, w = block(x, is_causal=causal, need_weights=True)
    torch.testing.assert_close(out, expected, **ATOL)


@pytest.mark.parametrize("ffn", ["gelu", "gelu_tanh", "relu", "swiglu"])
def test_feed_forward_formulas(ffn: str) -> None:
    seed_everything(6)
    f = FeedForward(8, 12, ffn)
    x = torch.randn(4, 8)
    h = x @ f.up_proj.weight.T + f.up_proj.bias
    if ffn == "swiglu":
        gate = x @ f.gate_proj.weight.T + f.gate_proj.bias
        h = gate * torch.sigmoid(gate) * h
    elif ffn == "gelu":
        h = 0.5 * h * (1 + torch.erf(h / 2 ** 0.5))
    elif ffn == "gelu_tanh":
        h = 0.5 * h * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (h + 0.044715 * h ** 3)))
    else:
        h = h.clamp(min=0)
    torch.testing.assert_close(f(x), h @ f.down_proj.weight.T + f.down_proj.bias, **ATOL)
    assert (f.gate_proj is None) == (ffn != "swiglu")


def test_rmsnorm_block_uses_rms() -> None:
    block = TransformerBlock(TransformerConfig.tiny(norm="rmsnorm", norm_eps=1e-6))
    x = torch.randn(2, 3, 64)
    expected = x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()
    torch.testing.assert_close(block.attn_norm(x), expected, **ATOL)


def test_block_keeps_width_and_ablation_switches() -> None:
    seed_everything(7)
    block = TransformerBlock(TransformerConfig.tiny()).eval()
    x = torch.randn(2, 5, 64)
    assert block(x).shape == x.shape
    block.attention_enabled = block.ffn_enabled = False
    torch.testing.assert_close(block(x), x)  # only the residual paths remain


def _torch_sublayers(ref: nn.TransformerEncoderLayer, ffn: str, mask: torch.Tensor | None
                     ) -> tuple:
    """torch's attention and FFN of an encoder layer, as functions of one input."""
    act = F.gelu if ffn == "gelu" else F.relu

    def attend(h: torch.Tensor) -> torch.Tensor:
        return ref.self_attn(h, h, h, attn_mask=mask, need_weights=False)[0]

    return attend, lambda h: ref.linear2(act(ref.linear1(h)))


@pytest.mark.parametrize("placement", ["pre", "post"])
@pytest.mark.parametrize("ffn", ["gelu", "relu"])
@pytest.mark.parametrize("causal", [False, True])
def test_block_without_residual_is_its_sublayers_composed(placement: str, ffn: str,
                                                          causal: bool) -> None:
    seed_everything(6)
    config = TransformerConfig.tiny(d_model=32, num_heads=4, d_ff=48, ffn=ffn, residual=False,
                                    norm_placement=placement, norm_eps=1e-6)
    block = TransformerBlock(config).eval()
    for p in block.parameters():  # non-trivial norms and biases
        nn.init.normal_(p, 0.0, 0.3)
    ref = nn.TransformerEncoderLayer(32, 4, 48, dropout=0.0, activation=ffn, batch_first=True,
                                     layer_norm_eps=1e-6).eval()
    _copy_into_encoder_layer(block, ref)
    x = torch.randn(3, 7, 32)
    mask = nn.Transformer.generate_square_subsequent_mask(7) if causal else None
    attend, feed = _torch_sublayers(ref, ffn, mask)
    with torch.no_grad():
        if placement == "pre":  # x = sublayer(norm(x)), no x + ...
            expected = feed(ref.norm2(attend(ref.norm1(x))))
        else:  # x = norm(sublayer(x))
            expected = ref.norm2(feed(ref.norm1(attend(x))))
        torch.testing.assert_close(block(x, is_causal=causal), expected, **ATOL)
    assert not torch.allclose(expected, TransformerBlock(config.replace(residual=True))
                              .eval().requires_grad_(False)(x, is_causal=causal))


@pytest.mark.parametrize("residual", [True, False])
def test_block_without_norms_matches_torch_with_identity_norms(residual: bool) -> None:
    seed_everything(8)
    config = TransformerConfig.tiny(d_model=32, num_heads=4, d_ff=48, block_norms=False,
                                    residual=residual)
    block = TransformerBlock(config).eval()
    assert isinstance(block.attn_norm, nn.Identity) and isinstance(block.ffn_norm, nn.Identity)
    assert not [n for n in block.state_dict() if "norm" in n]
    ref = nn.TransformerEncoderLayer(32, 4, 48, dropout=0.0, activation="gelu",
                                     batch_first=True, norm_first=True).eval()
    _copy_into_torch_mha(block.attn, ref.self_attn)
    with torch.no_grad():
        ref.linear1.load_state_dict(block.ffn.up_proj.state_dict())
        ref.linear2.load_state_dict(block.ffn.down_proj.state_dict())
    x = torch.randn(2, 6, 32)
    attend, feed = _torch_sublayers(ref, "gelu",
                                    nn.Transformer.generate_square_subsequent_mask(6))
    with torch.no_grad():
        if residual:  # torch's pre-norm layer with its norms taken out
            h = x + attend(x)
            expected = h + feed(h)
        else:
            expected = feed(attend(x))
        torch.testing.assert_close(block(x, is_causal=True), expected, **ATOL)
    # the model keeps its final norm (and the embedding norm when asked for)
    model = GPT(config.replace(embedding_norm=True))
    assert isinstance(model.norm, nn.LayerNorm) and isinstance(model.embed.norm, nn.LayerNorm)


def test_default_block_is_unchanged_and_checkpoints_load() -> None:
    config = TransformerConfig.tiny()
    assert config.residual and config.block_norms
    assert "residual" not in repr(config) and "block_norms" not in repr(config)
    assert "residual=False" in repr(config.replace(residual=False))
    old = {k: v for k, v in config.to_dict().items() if k not in ("residual", "block_norms")}
    assert TransformerConfig.from_dict(old) == config  # files written before the switches
    path = ROOT / "book" / "checkpoints" / "gpt_shakespeare.safetensors"
    model = GPT.load(path)  # strict: every tensor of the file has its place
    assert model.config.residual and model.config.block_norms
    ids = torch.arange(1, 17)[None]
    with torch.no_grad():  # the pre-norm formula written out, bit for bit
        x, _ = model.embed(ids)
        for block in model.blocks:
            x = x + block.attn(block.attn_norm(x), is_causal=True)[0]
            x = x + block.ffn(block.ffn_norm(x))
        expected = model.lm_head(model.norm(x))
        assert torch.equal(model(ids), expected)
    assert isinstance(lmlab_load(ROOT / "book" / "checkpoints" / "encdec_g2p.safetensors"),
                      EncoderDecoder)


def test_experiment_switches_round_trip_through_a_model_file(tmp_path) -> None:
    seed_everything(9)
    model = GPT(TransformerConfig.tiny(residual=False, block_norms=False)).eval()
    model.save(tmp_path / "m.safetensors")
    again = GPT.load(tmp_path / "m.safetensors")
    assert again.config == model.config and not again.config.residual
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    with torch.no_grad():
        torch.testing.assert_close(again(ids), model(ids), rtol=0, atol=0)


# ------------------------------------------------------------------------------- models

CONFIGS = {
    "gpt2": TransformerConfig.tiny(ffn="gelu_tanh"),
    "llama": TransformerConfig.tiny(norm="rmsnorm", position="rotary", ffn="swiglu",
                                    num_kv_heads=2, attention_bias=False, mlp_bias=False,
                                    d_ff=96),
    "sinusoidal-mqa": TransformerConfig.tiny(position="sinusoidal", num_kv_heads=1,
                                             tie_embeddings=False),
    "post-norm": TransformerConfig.tiny(norm_placement="post", final_norm=False,
                                        embedding_norm=True),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("t_change", [0, 3, 8])
def test_future_tokens_never_change_earlier_outputs(name: str, t_change: int) -> None:
    g = seed_everything(8)
    model = GPT(CONFIGS[name]).eval()
    ids = torch.randint(0, 256, (2, 9), generator=g)
    changed = ids.clone()
    changed[:, t_change] = (changed[:, t_change] + 1) % 256
    a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :t_change], b[:, :t_change], rtol=0, atol=0)
    assert not torch.allclose(a[:, t_change], b[:, t_change])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cached_forward_equals_full_forward(name: str) -> None:
    g = seed_everything(9)
    model = GPT(CONFIGS[name]).eval()
    ids = torch.randint(0, 256, (2, 12), generator=g)
    cache = model.new_cache()
    pieces = [model(ids[:, :5], cache=cache)]
    pieces += [model(ids[:, t:t + 1], cache=cache) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(pieces, 1), model(ids), **ATOL)
    per_layer = sum(c.bytes_per_token for c in cache)
    assert per_layer == kv_cache_bytes_per_token(model.config)


def test_teaching_weights_per_layer_and_causal() -> None:
    model = GPT(TransformerConfig.tiny()).eval()
    logits, weights = model(torch.tensor([[1, 2, 3, 4]]), need_weights=True)
    assert len(weights) == 2 and weights[0].shape == (1, 4, 4, 4)
    assert float(weights[1].detach().triu(1).abs().max()) == 0.0
    torch.testing.assert_close(logits, model(torch.tensor([[1, 2, 3, 4]])), **ATOL)


def test_gpt2_small_parameter_count_and_tying() -> None:
    with torch.device("meta"):
        model = GPT(TransformerConfig.gpt2_small())
    assert model.num_parameters() == 124_439_808  # GPT-2 small, as published
    assert model.lm_head.weight is model.embed.tok_emb.weight
    untied = GPT(TransformerConfig.tiny(tie_embeddings=False))
    assert untied.lm_head.weight is not untied.embed.tok_emb.weight


def test_smollm2_parameter_count() -> None:
    with torch.device("meta"):
        model = GPT(TransformerConfig.smollm2())
    assert model.num_parameters() == 134_515_008  # SmolLM2-135M


def test_minilm_parameter_count() -> None:
    with torch.device("meta"):
        model = Encoder(TransformerConfig.minilm())
    assert sum(p.numel() for p in model.parameters()) == 22_565_376  # BertModel without pooler


def test_encoder_padding_does_not_change_real_tokens() -> None:
    g = seed_everything(10)
    enc = Encoder(TransformerConfig.tiny(type_vocab_size=2, norm_placement="post",
                                         final_norm=False, embedding_norm=True)).eval()
    ids = torch.randint(1, 256, (1, 5), generator=g)
    types = torch.tensor([[0, 0, 0, 1, 1]])
    alone = enc(ids, types)
    padded_ids = torch.cat([ids, torch.randint(1, 256, (1, 3), generator=g)], 1)
    padded_types = torch.cat([types, torch.zeros(1, 3, dtype=torch.long)], 1)
    keep = torch.tensor([[True] * 5 + [False] * 3])
    out = enc(padded_ids, padded_types, keep)
    torch.testing.assert_close(out[:, :5], alone, **ATOL)
    assert not torch.allclose(enc(ids), alone)  # token types matter
    hidden, weights = enc(padded_ids, padded_types, keep, need_weights=True)
    torch.testing.assert_close(hidden, out, **ATOL)
    assert float(weights[0].detach()[..., 5:].abs().max()) == 0.0


def test_without_positions_permuting_inputs_permutes_outputs() -> None:
    g = seed_everything(11)
    enc = Encoder(TransformerConfig.tiny(position="none")).eval()
    ids = torch.randint(0, 256, (1, 6), generator=g)
    perm = torch.randperm(6, generator=g)
    torch.testing.assert_close(enc(ids[:, perm]), enc(ids)[:, perm], **ATOL)
    with_pos = Encoder(TransformerConfig.tiny(position="learned")).eval()
    assert not torch.allclose(with_pos(ids[:, perm]), with_pos(ids)[:, perm], atol=1e-4)


def test_encoder_decoder_masks() -> None:
    g = seed_everything(12)
    model = EncoderDecoder(TransformerConfig.tiny(vocab_size=30, d_model=32, num_heads=4),
                           TransformerConfig.tiny(vocab_size=40, position="rotary",
                                                  num_kv_heads=2)).eval()
    src = torch.randint(0, 30, (2, 6), generator=g)
    tgt = torch.randint(0, 40, (2, 5), generator=g)
    keep = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    logits = model(src, tgt, keep)
    assert logits.shape == (2, 5, 40)
    src2 = src.clone()
    src2[1, 4:] = (src2[1, 4:] + 1) % 30  # change only padding
    torch.testing.assert_close(model(src2, tgt, keep)[1], logits[1], **ATOL)
    tgt2 = tgt.clone()
    tgt2[:, 3] = (tgt2[:, 3] + 1) % 40  # change a later target token
    torch.testing.assert_close(model(src, tgt2, keep)[:, :3], logits[:, :3], rtol=0, atol=0)


def test_model_follows_device_buffers_are_not_saved(tmp_path) -> None:
    model = GPT(CONFIGS["llama"])
    assert not any("cos" in k or "sin" in k for k in model.state_dict())
    model = GPT(CONFIGS["sinusoidal-mqa"])
    assert not any("sinusoid" in k for k in model.state_dict())


# ------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs,error,match", [
    (dict(d_model=30, num_heads=4), ValueError, "d_model: must be a multiple"),
    (dict(d_model=32, num_heads=4, num_kv_heads=3), ValueError, "num_kv_heads: must divide"),
    (dict(d_model=32, num_heads=4, dropout=-0.1), ValueError, "dropout"),
    (dict(d_model="32", num_heads=4), TypeError, "d_model: expected an int"),
])
def test_attention_rejects_bad_sizes(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=f"^{match}"):
        MultiHeadAttention(**kwargs)


def test_attention_rejects_bad_inputs() -> None:
    attn = MultiHeadAttention(16, 2)
    with pytest.raises(ValueError, match=r"^x: expected shape \(B, T, d_model=16\)"):
        attn(torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match="^x: expected 3 dimensions"):
        attn(torch.randn(3, 16))
    with pytest.raises(TypeError, match="^x: expected a float tensor"):
        attn(torch.ones(1, 3, 16, dtype=torch.long))
    with pytest.raises(TypeError, match="^mask: expected a bool tensor"):
        attn(torch.randn(1, 3, 16), mask=torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="^cache: only self-attention"):
        attn(torch.randn(1, 3, 16), torch.randn(1, 2, 16), cache=KVCache(4))
    cache = KVCache(4)
    with pytest.raises(ValueError, match="^k: 0 cached \\+ 5 new tokens exceed"):
        attn(torch.randn(1, 5, 16), cache=cache)
    with pytest.raises(ValueError, match="^max_length"):
        KVCache(0)


def test_models_reject_bad_ids() -> None:
    model = GPT(TransformerConfig.tiny(context_length=8))
    with pytest.raises(ValueError, match="^ids: 9 tokens exceed context_length=8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(TypeError, match="^ids: expected an int tensor"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"^ids: expected ids in \[0, 256\)"):
        model(torch.tensor([[1, 256]]))
    with pytest.raises(ValueError, match=r"^ids: expected ids in \[0, 256\)"):
        model(torch.tensor([[-1, 2]]))
    with pytest.raises(ValueError, match="^ids: expected at least one sequence"):
        model(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="^ids: expected 2 dimensions"):
        model(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="^memory: needed exactly when"):
        model(torch.zeros(1, 3, dtype=torch.long), memory=torch.zeros(1, 2, 64))
    cache = model.new_cache()
    model(torch.zeros(1, 6, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="^ids: 9 tokens exceed context_length=8"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="^cache: expected a list of 2 KVCache"):
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache[:1])
    with pytest.raises(TypeError, match="^config"):
        GPT({"d_model": 3})
    with pytest.raises(TypeError, match="^config"):
        Encoder(None)
    enc = Encoder(TransformerConfig.tiny())
    with pytest.raises(ValueError, match="^padding_mask: expected shape"):
        enc(torch.zeros(1, 3, dtype=torch.long), padding_mask=torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="^padding_mask: expected a bool tensor"):
        enc(torch.zeros(1, 3, dtype=torch.long), padding_mask=torch.ones(1, 3))
    with pytest.raises(ValueError, match="^token_type_ids: this config has type_vocab_size=0"):
        enc(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))


META = torch.device("meta")
IDS = torch.tensor([[1, 2, 3]])


def test_blocks_reject_bad_input() -> None:
    config = TransformerConfig.tiny()
    block = TransformerBlock(config)
    x = torch.randn(2, 3, 64)
    cases = [
        (lambda: block(torch.randn(2, 3, 32)), ValueError,
         r"^x: expected shape \(B, T, d_model=64\)"),
        (lambda: block(torch.randn(0, 3, 64)), ValueError, "^x: expected shape .* B, T >= 1"),
        (lambda: block(torch.randn(2, 3, 64, device=META)), ValueError, "^x: on meta but"),
        (lambda: block(x.long()), TypeError, "^x: expected a float tensor"),
        (lambda: block(x, memory=torch.randn(2, 4, 64)), ValueError,
         "^memory: this block has no cross-attention"),
        (lambda: block(x, torch.ones(5, 5, dtype=torch.bool)), ValueError, "^mask: shape"),
        (lambda: TransformerBlock(config, 1), TypeError, "^cross_attention: expected True or"),
        (lambda: TransformerBlock(config, kv_d_model=32), ValueError,
         "^kv_d_model: only a block with cross_attention=True"),
    ]
    cross = TransformerBlock(config, cross_attention=True, kv_d_model=32)
    memory = torch.randn(2, 4, 32)
    cases += [
        (lambda: cross(x), ValueError, "^memory: a block with cross-attention needs"),
        (lambda: cross(x, memory=torch.randn(2, 4, 64)), ValueError,
         r"^memory: expected shape \(B=2, S, 32\)"),
        (lambda: cross(x, memory=torch.randn(3, 4, 32)), ValueError,
         r"^memory: expected shape \(B=2, S, 32\)"),
        (lambda: cross(x, memory=memory.long()), TypeError, "^memory: expected a float tensor"),
        (lambda: cross(x, memory=torch.randn(2, 4, 32, device=META)), ValueError,
         "^memory: on meta but the queries are on cpu"),
        (lambda: cross(x, memory=memory, memory_mask=torch.ones(2, 5, dtype=torch.bool)),
         ValueError, r"^memory_mask: shape \(2, 5\) does not broadcast"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


def test_gpt_and_decoder_reject_bad_input() -> None:
    gpt = GPT(TransformerConfig.tiny(context_length=8))
    dec = GPT(TransformerConfig.tiny(), cross_d_model=32)
    memory = torch.randn(1, 4, 32)
    cases = [
        (lambda: gpt(torch.zeros(0, 3, dtype=torch.long)), ValueError,
         "^ids: expected at least one sequence"),
        (lambda: gpt(torch.zeros(1, 3, dtype=torch.long, device=META)), ValueError,
         "^ids: on meta but the model is on cpu"),
        (lambda: gpt(IDS, cache=[1, 2]), ValueError, "^cache: expected KVCache objects"),
        (lambda: gpt(IDS, need_weights=1), TypeError, "^need_weights: expected True or False"),
        (lambda: gpt(IDS, last_only="y"), TypeError, "^last_only: expected True or False"),
        (lambda: gpt(IDS, memory_mask=torch.ones(1, 2, dtype=torch.bool)), ValueError,
         "^memory_mask: given without memory"),
        (lambda: dec(IDS, memory=torch.randn(1, 4, 64)), ValueError,
         r"^memory: expected shape \(B=1, S, 32\)"),
        (lambda: dec(IDS, memory=torch.randn(2, 4, 32)), ValueError,
         r"^memory: expected shape \(B=1, S, 32\)"),
        (lambda: dec(IDS, memory=torch.randn(1, 0, 32)), ValueError, "^memory: .* S >= 1"),
        (lambda: dec(IDS, memory=torch.randn(4, 32)), ValueError, "^memory: expected 3 dim"),
        (lambda: dec(IDS, memory=torch.randn(1, 4, 32, device=META)), ValueError,
         "^memory: on meta but the queries are on cpu"),
        (lambda: dec(IDS, memory=memory, memory_mask=torch.ones(1, 3, dtype=torch.bool)),
         ValueError, r"^memory_mask: expected shape \(1, 4\)"),
        (lambda: dec(IDS, memory=memory, memory_mask=torch.ones(1, 4)), TypeError,
         "^memory_mask: expected a bool tensor"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


def test_encoder_rejects_bad_token_types_and_masks() -> None:
    enc = Encoder(TransformerConfig.tiny(type_vocab_size=2))
    cases = [
        (lambda: enc(IDS, torch.tensor([[0, 1, 2]])), ValueError,
         r"^token_type_ids: expected ids in \[0, 2\)"),
        (lambda: enc(IDS, torch.tensor([[0, -1, 0]])), ValueError,
         r"^token_type_ids: expected ids in \[0, 2\)"),
        (lambda: enc(IDS, torch.zeros(1, 3)), TypeError, "^token_type_ids: expected an int"),
        (lambda: enc(IDS, torch.zeros(1, 4, dtype=torch.long)), ValueError,
         r"^token_type_ids: expected shape \(1, 3\)"),
        (lambda: enc(IDS, torch.zeros(1, 3, dtype=torch.long, device=META)), ValueError,
         "^token_type_ids: expected shape .* on meta"),
        (lambda: enc(IDS, padding_mask=torch.ones(1, 3, dtype=torch.bool, device=META)),
         ValueError, "^padding_mask: on meta but the ids are on cpu"),
        (lambda: enc(torch.zeros(0, 3, dtype=torch.long)), ValueError,
         "^ids: expected at least one sequence"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


def test_encoder_decoder_rejects_bad_input() -> None:
    model = EncoderDecoder(TransformerConfig.tiny(vocab_size=20),
                           TransformerConfig.tiny(vocab_size=30))
    src, tgt = torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long)
    cases = [
        (lambda: model(src, torch.zeros(3, 2, dtype=torch.long)), ValueError,
         r"^tgt: expected the batch of src \(2 sequences\)"),
        (lambda: model(src, tgt, torch.ones(2, 5, dtype=torch.bool)), ValueError,
         r"^src_padding_mask: expected shape \(2, 4\)"),
        (lambda: model(torch.full((2, 4), 20), tgt), ValueError,
         r"^src: expected ids in \[0, 20\)"),
        (lambda: model(src, torch.full((2, 2), 30)), ValueError,
         r"^ids: expected ids in \[0, 30\)"),
        (lambda: model(src, [[1]]), TypeError, "^tgt: expected a torch.Tensor"),
        (lambda: model.encode(src.float()), TypeError, "^src: expected an int tensor"),
        (lambda: EncoderDecoder({}), TypeError, "^encoder_config: expected a TransformerConfig"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


# ------------------------------------------------------------------------------- the LM loss


@pytest.mark.parametrize("name", list(CONFIGS))
def test_loss_with_targets_is_torchs_cross_entropy_and_its_gradient(name: str) -> None:
    g = seed_everything(18)
    model = GPT(CONFIGS[name])
    ids = torch.randint(0, 256, (3, 12), generator=g)
    targets = ids[:, 1:].clone()
    targets[0, :4] = -100  # padding: no loss there
    logits, loss = model(ids[:, :-1], targets)
    torch.testing.assert_close(logits, model(ids[:, :-1]))
    kept = targets != -100
    expected = -torch.log_softmax(logits.double(), -1)[kept].gather(
        1, targets[kept][:, None]).mean()  # mean nats over the kept targets, by hand
    assert loss.dtype == torch.float32 and loss.shape == ()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=1e-6)
    loss.backward()
    ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    nn.functional.cross_entropy(model(ids[:, :-1]).transpose(1, 2), targets).backward()
    for a, p in zip(ours, model.parameters()):
        torch.testing.assert_close(a, p.grad)


def test_loss_is_float32_for_a_low_precision_model() -> None:
    g = seed_everything(19)
    model = GPT(CONFIGS["gpt2"]).to(torch.bfloat16)
    ids = torch.randint(0, 256, (2, 9), generator=g)
    logits, loss = model(ids[:, :-1], ids[:, 1:])
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    expected = nn.functional.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
    assert torch.equal(loss, expected)
    _, nan = model(ids[:, :-1], torch.full_like(ids[:, 1:], -100))
    assert torch.isnan(nan)  # nothing to average, as torch's cross_entropy


def test_targets_are_checked() -> None:
    model = GPT(TransformerConfig.tiny())
    ids = torch.zeros(2, 5, dtype=torch.long)
    for targets, error, match in [
        (torch.zeros(2, 4, dtype=torch.long), ValueError, r"^targets: expected shape \(2, 5\)"),
        (torch.zeros(2, 5), TypeError, "^targets"),
        ([[0] * 5] * 2, TypeError, "^targets"),
        (torch.full((2, 5), 256), ValueError, r"^targets: expected ids in \[0, 256\) or -100"),
        (torch.full((2, 5), -1), ValueError, "^targets: expected ids in"),
        (torch.zeros(2, 5, dtype=torch.long, device="meta"), ValueError, "^targets"),
    ]:
        with pytest.raises(error, match=match):
            model(ids, targets)
    with pytest.raises(ValueError, match="^targets: the loss needs"):
        model(ids, ids, last_only=True)
    with pytest.raises(ValueError, match="^targets: the loss needs"):
        model(ids, ids, need_weights=True)


# ------------------------------------------------------------------------------- training, GPU

def test_gpt_learns_a_repeating_sequence() -> None:
    seed_everything(15)
    model = GPT(TransformerConfig.tiny(vocab_size=16, context_length=16, d_model=32))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = torch.arange(16).repeat(4, 1) % 5  # 0 1 2 3 4 0 1 ...
    losses = []
    for _ in range(30):
        _, loss = model(ids[:, :-1], ids[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.1 * losses[0]


@pytest.mark.gpu
def test_bf16_training_steps_on_gpu(gpu_device: torch.device) -> None:
    from lmlab.device import autocast
    seed_everything(16)
    model = GPT(CONFIGS["llama"]).to(gpu_device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ids = (torch.arange(33, device=gpu_device).repeat(8, 1) * 7) % 256
    losses = []
    for _ in range(20):
        with autocast(gpu_device):
            logits, loss = model(ids[:, :-1], ids[:, 1:])
        assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(CONFIGS))
def test_gpu_matches_cpu(gpu_device: torch.device, name: str) -> None:
    """fp32 on the GPU matches the CPU within 1e-4 (TF32 off); bf16 autocast within 5e-2."""
    from lmlab.device import autocast
    g = seed_everything(17)
    model = GPT(CONFIGS[name]).eval()
    ids = torch.randint(0, 256, (2, 20), generator=g)
    cpu = model(ids)
    gpu_model = model.to(gpu_device)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        on_gpu = gpu_model(ids.to(gpu_device)).cpu()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    torch.testing.assert_close(on_gpu, cpu, rtol=1e-4, atol=1e-4)
    with autocast(gpu_device):
        half = gpu_model(ids.to(gpu_device)).float().cpu()
    torch.testing.assert_close(half, cpu, rtol=5e-2, atol=5e-2)


def test_last_only_equals_the_last_row() -> None:
    model = GPT(CONFIGS["llama"]).eval()
    ids = torch.tensor([[4, 5, 6, 7]])
    torch.testing.assert_close(model(ids, last_only=True), model(ids)[:, -1:], **ATOL)




def test_benchmark_scripts_run_at_a_tiny_size(load_script) -> None:
    """The GPU script's --cpu-smoke mode and the CPU benchmarks run (their timings are not
    checked here: timings belong to the benchmarks' printed ratios)."""
    threads = torch.get_num_threads()
    try:
        results = load_script("benchmarks/gpu.py").main(["--cpu-smoke", "--skip-tests"])
        assert results["lmlab GPT"] > 0 and results["TransformerEncoderLayer"] > 0
        ratio = load_script("benchmarks/bench_transformer.py").main(
            ["--d-model", "32", "--num-layers", "1", "--num-heads", "2", "--context-length",
             "16", "--vocab-size", "64", "--batch-size", "2", "--steps", "1", "--repeats", "1"])
        assert ratio > 0
        ratios = load_script("benchmarks/bench_generation.py").main(
            ["--new", "8", "--d-model", "48", "--prompt", "4"])
        assert set(ratios) == {8}
    finally:
        torch.set_num_threads(threads)


def test_kv_cache_grows_past_its_first_allocation() -> None:
    seed_everything(18)
    model = GPT(TransformerConfig.tiny(context_length=600, d_model=32, num_heads=2)).eval()
    ids = torch.randint(0, 256, (1, 520))
    cache = model.new_cache()
    pieces = [model(ids[:, :200], cache=cache)]
    pieces += [model(ids[:, t:t + 40], cache=cache) for t in range(200, 520, 40)]
    torch.testing.assert_close(torch.cat(pieces, 1), model(ids), **ATOL)
    assert cache[0].length == 520 and cache[0].k.shape[2] == 600  # 256 -> 512 -> max 600
