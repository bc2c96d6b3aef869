"""lmlab.gqa: moving a trained model between multi-head, grouped-query and multi-query attention."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lmlab.device import seed_everything
from lmlab.gqa import regroup_kv_heads
from lmlab.transformer import GPT, Encoder, EncoderDecoder
from lmlab.transformer_config import TransformerConfig

ATOL = dict(rtol=1e-5, atol=1e-5)
CONFIGS = {
    "rotary": TransformerConfig.tiny(num_heads=8, num_kv_heads=4, position="rotary"),
    "learned-bias": TransformerConfig.tiny(num_heads=8, num_kv_heads=4),
    "llama-like": TransformerConfig.tiny(num_heads=8, num_kv_heads=4, position="rotary",
                                         norm="rmsnorm", ffn="swiglu", attention_bias=False),
}


def _ids(T: int = 20) -> torch.Tensor:
    return torch.randint(0, 256, (2, T), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("new", [8, 4])
def test_splitting_keeps_the_outputs(name: str, new: int) -> None:
    seed_everything(0)
    model = GPT(CONFIGS[name]).eval()
    split = regroup_kv_heads(model, new)
    assert split.config.num_kv_heads == new
    assert all(block.attn.num_kv_heads == new for block in split.blocks)
    torch.testing.assert_close(split(_ids()), model(_ids()), **ATOL)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("new", [2, 1])
def test_merging_heads_that_agree_keeps_the_outputs(name: str, new: int) -> None:
    # Split 4 -> 8 copies each head; merging the copies back (8 -> 4) must give the model back,
    # and merging a model whose heads agree within each group to `new` heads changes nothing.
    seed_everything(0)
    narrow = GPT(CONFIGS[name].replace(num_kv_heads=new)).eval()
    wide = regroup_kv_heads(narrow, 8)
    torch.testing.assert_close(regroup_kv_heads(wide, new)(_ids()), narrow(_ids()), **ATOL)
    torch.testing.assert_close(regroup_kv_heads(wide, 4)(_ids()), narrow(_ids()), **ATOL)


def test_merging_averages_the_projections() -> None:
    seed_everything(0)
    model = GPT(CONFIGS["learned-bias"])
    merged = regroup_kv_heads(model, 2)
    D = model.config.head_dim
    for old, new in zip(model.blocks, merged.blocks):
        for i in (1, 2):  # keys, values
            w = old.attn.qkv_weights()[i].view(4, D, -1)  # 4 heads of D rows
            b = old.attn.qkv_biases()[i].view(4, D)
            torch.testing.assert_close(new.attn.qkv_weights()[i].view(2, D, -1),
                                       torch.stack([w[0:2].mean(0), w[2:4].mean(0)]))
            torch.testing.assert_close(new.attn.qkv_biases()[i].view(2, D),
                                       torch.stack([b[0:2].mean(0), b[2:4].mean(0)]))
        # queries and outputs are untouched; the projection stays one fused matrix
        torch.testing.assert_close(new.attn.qkv_weights()[0], old.attn.qkv_weights()[0])
        torch.testing.assert_close(new.attn.out_proj.weight, old.attn.out_proj.weight)
        assert new.attn.qkv_proj.weight.shape == ((8 + 2 * 2) * D, 64)


def test_merging_can_keep_the_first_head() -> None:
    seed_everything(0)
    model = GPT(CONFIGS["learned-bias"])
    first = regroup_kv_heads(model, 2, merge="first")
    D = model.config.head_dim
    for old, new in zip(model.blocks, first.blocks):
        w = old.attn.qkv_weights()[2].view(4, D, -1)
        torch.testing.assert_close(new.attn.qkv_weights()[2].view(2, D, -1), w[0::2])


@pytest.mark.parametrize("enc_width", [64, 32])
def test_cross_attention_regroups(enc_width: int) -> None:
    """Cross-attention of the same width (fused q/k/v) and of another width (q_proj and
    kv_proj) split exactly and merge to the mean."""
    seed_everything(0)
    model = EncoderDecoder(TransformerConfig.tiny(d_model=enc_width, num_heads=8),
                           TransformerConfig.tiny(num_heads=8, num_kv_heads=4)).eval()
    src, tgt = _ids(7), _ids(5)
    split = regroup_kv_heads(model, 8)
    torch.testing.assert_close(split(src, tgt), model(src, tgt), **ATOL)
    merged = regroup_kv_heads(model, 2)
    D = 8
    old, new = model.decoder.blocks[0].cross_attn, merged.decoder.blocks[0].cross_attn
    assert (new.qkv_proj is None) == (enc_width != 64)
    w = old.qkv_weights()[1].view(4, D, -1)
    torch.testing.assert_close(new.qkv_weights()[1].view(2, D, -1),
                               torch.stack([w[0:2].mean(0), w[2:4].mean(0)]))
    assert merged(src, tgt).shape == (2, 5, 256)


def test_merged_model_differs_and_caches_and_trains() -> None:
    seed_everything(0)
    model = GPT(CONFIGS["rotary"]).eval()
    merged = regroup_kv_heads(model, 1)
    ids = _ids()
    assert not torch.allclose(merged(ids), model(ids), atol=1e-3)  # merging is lossy
    # the cache has the new head count and cached decoding equals a full pass
    cache = merged.new_cache()
    first = merged(ids[:, :12], cache=cache)
    last = merged(ids[:, 12:13], cache=cache)
    assert cache[0].k.shape[1] == 1
    torch.testing.assert_close(torch.cat([first, last], 1), merged(ids[:, :13]), **ATOL)
    merged.train()
    loss = merged(ids).logsumexp(-1).mean()
    loss.backward()
    assert merged.blocks[0].attn.qkv_proj.weight.grad is not None


def test_copy_or_in_place() -> None:
    seed_everything(0)
    model = GPT(CONFIGS["rotary"])
    before = model.blocks[0].attn.qkv_proj.weight.clone()
    other = regroup_kv_heads(model, 2)
    assert other is not model and model.config.num_kv_heads == 4
    torch.testing.assert_close(model.blocks[0].attn.qkv_proj.weight, before)
    same = regroup_kv_heads(model, 2, inplace=True)
    assert same is model and model.config.num_kv_heads == 2
    assert model.blocks[0].attn.qkv_weights()[1].shape == (2 * 8, 64)
    assert model.blocks[0].attn.qkv_proj.weight.shape == ((8 + 2 * 2) * 8, 64)


def test_regrouped_model_saves_and_loads(tmp_path) -> None:
    seed_everything(0)
    merged = regroup_kv_heads(GPT(CONFIGS["llama-like"]).eval(), 1)
    merged.save(tmp_path / "mqa.safetensors")
    loaded = GPT.load(tmp_path / "mqa.safetensors")
    assert loaded.config.num_kv_heads == 1
    torch.testing.assert_close(loaded(_ids()), merged(_ids()))


def test_encoder_regroups_too() -> None:
    seed_everything(0)
    encoder = Encoder(TransformerConfig.minilm(num_layers=1, num_heads=12, vocab_size=100)).eval()
    ids = torch.randint(0, 100, (2, 9))
    split = regroup_kv_heads(encoder, 12)  # already 12: unchanged
    torch.testing.assert_close(split(ids), encoder(ids), **ATOL)
    assert regroup_kv_heads(encoder, 3).config.num_kv_heads == 3


def test_bad_input() -> None:
    model = GPT(CONFIGS["rotary"])
    with pytest.raises(TypeError, match="model"):
        regroup_kv_heads("model", 2)
    with pytest.raises(TypeError, match="num_kv_heads"):
        regroup_kv_heads(model, 2.0)
    with pytest.raises(ValueError, match="num_kv_heads"):
        regroup_kv_heads(model, 0)
    with pytest.raises(ValueError, match="num_kv_heads: must divide num_heads=8"):
        regroup_kv_heads(model, 3)
    six = GPT(TransformerConfig.tiny(d_model=72, num_heads=12, num_kv_heads=4))
    with pytest.raises(ValueError, match="current num_kv_heads=4"):
        regroup_kv_heads(six, 6)
    with pytest.raises(ValueError, match="no lmlab MultiHeadAttention"):
        regroup_kv_heads(nn.Linear(2, 2), 1)
    with pytest.raises(ValueError, match="merge"):
        regroup_kv_heads(model, 2, merge="max")
    with pytest.raises(TypeError, match="inplace"):
        regroup_kv_heads(model, 2, inplace=1)
    assert model.config.num_kv_heads == 4  # nothing changed by the failed calls
