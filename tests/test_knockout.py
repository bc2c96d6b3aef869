"""lmlab.knockout against references: weights zeroed by hand, prompts run alone, and every
value vector's token scores computed in full."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from lmlab.knockout import (direct_push, ffn_activations, neuron_off, next_token_logits,
                            switched_off, token_z_scores, value_logits)
from lmlab.transformer import GPT
from lmlab.transformer_config import TransformerConfig


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    config = TransformerConfig.tiny(num_layers=3, ffn="swiglu", norm="rmsnorm",
                                    position="rotary", attention_bias=False, mlp_bias=False)
    m = GPT(config).eval()
    with torch.no_grad():  # a trained-looking final norm weight, not all ones
        m.norm.weight.uniform_(-0.5, 2.0)
    return m


PROMPTS = [[5, 17, 3, 99], [7], [250, 1, 2, 3, 4, 5, 6, 200]]


def test_next_token_logits_equals_each_prompt_run_alone(model: GPT) -> None:
    got = next_token_logits(model, PROMPTS)
    with torch.no_grad():
        alone = torch.stack([model(torch.tensor([p]))[0, -1] for p in PROMPTS])
    assert got.shape == (3, model.config.vocab_size)
    assert_close(got, alone, atol=1e-5, rtol=1e-5)
    assert next_token_logits(model, [torch.tensor(PROMPTS[0])]).shape == (1, 256)


def test_switched_off_equals_zeroed_weights_and_restores_flags(model: GPT) -> None:
    clone = GPT(model.config).eval()
    clone.load_state_dict(model.state_dict())
    with torch.no_grad():  # the reference: the sublayers' output projections zeroed
        clone.blocks[0].ffn.down_proj.weight.zero_()
        clone.blocks[2].ffn.down_proj.weight.zero_()
        clone.blocks[1].attn.out_proj.weight.zero_()
    with switched_off(model, ffn=[0, 2], attention=range(1, 2)):
        assert [b.ffn_enabled for b in model.blocks] == [False, True, False]
        assert [b.attention_enabled for b in model.blocks] == [True, False, True]
        got = next_token_logits(model, PROMPTS)
    assert_close(got, next_token_logits(clone, PROMPTS), atol=1e-5, rtol=1e-5)
    assert all(b.ffn_enabled and b.attention_enabled for b in model.blocks)
    with pytest.raises(RuntimeError), switched_off(model, ffn=[1]):
        raise RuntimeError("inside")
    assert all(b.ffn_enabled for b in model.blocks)


def test_neuron_off_equals_a_zeroed_column(model: GPT) -> None:
    clone = GPT(model.config).eval()
    clone.load_state_dict(model.state_dict())
    with torch.no_grad():
        clone.blocks[1].ffn.down_proj.weight[:, 37] = 0
    with neuron_off(model, 1, 37):
        got = next_token_logits(model, PROMPTS)
    assert_close(got, next_token_logits(clone, PROMPTS), atol=1e-5, rtol=1e-5)
    assert not model.blocks[1].ffn.down_proj._forward_pre_hooks  # the hook is gone
    assert not torch.allclose(got, next_token_logits(model, PROMPTS), atol=1e-4)


def test_ffn_activations_sum_to_the_ffn_output(model: GPT) -> None:
    trace = ffn_activations(model, PROMPTS[2])
    L, T, F = 3, 8, model.blocks[0].ffn.d_ff
    assert trace.hidden.shape == (L, T, F) and trace.output.shape == (L, T, 64)
    for i, block in enumerate(model.blocks):  # output = sum_i h_i v_i
        W = block.ffn.down_proj.weight  # (C, F)
        assert_close(trace.output[i], trace.hidden[i] @ W.T, atol=1e-5, rtol=1e-5)
    # the first block's hidden units from its own input, by hand: silu(gate(x)) * up(x)
    x, _ = model.embed(torch.tensor([PROMPTS[2]]))
    with torch.no_grad():
        h = model.blocks[0].attn_norm(x)
        x = x + model.blocks[0].attn(h, is_causal=True, rope=model.embed(
            torch.tensor([PROMPTS[2]]))[1])[0]
        n = model.blocks[0].ffn_norm(x)[0]
        ffn = model.blocks[0].ffn
        hand = torch.nn.functional.silu(ffn.gate_proj(n)) * ffn.up_proj(n)
    assert_close(trace.hidden[0], hand, atol=1e-5, rtol=1e-5)


def test_value_logits_are_what_the_final_norm_and_head_do_to_a_direction(model: GPT) -> None:
    v = model.blocks[2].ffn.down_proj.weight[:, 5].detach()
    with torch.no_grad():
        reference = model.lm_head(model.norm(v))  # (V,): RMSNorm then the head
    got = value_logits(model, 2, 5)
    scale = v.pow(2).mean().add(model.norm.eps).rsqrt()  # the positive 1 / rms
    assert_close(got * scale, reference, atol=1e-5, rtol=1e-4)


def test_direct_push_and_z_scores_against_every_value_vectors_scores(model: GPT) -> None:
    token = 42
    trace = ffn_activations(model, PROMPTS[0])
    hidden = trace.hidden[:, -1]  # (L, F)
    push = direct_push(model, hidden, token)
    z = token_z_scores(model, token)
    for layer in range(3):
        for neuron in (0, 9, 200):
            scores = value_logits(model, layer, neuron).double()  # (V,)
            centred = scores[token] - scores.mean()
            assert_close(push[layer, neuron].double(), hidden[layer, neuron].double() * centred,
                         atol=1e-5, rtol=1e-4)
            expected = centred / scores.std(unbiased=False)
            assert_close(z[layer, neuron].double(), expected, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("call, error, match", [
    (lambda m: next_token_logits(m, []), ValueError, "ids: expected at least one prompt"),
    (lambda m: next_token_logits(m, [[1], []]), ValueError, r"ids\[1\]: expected at least"),
    (lambda m: next_token_logits(m, [[1, 256]]), ValueError, r"ids\[0\]"),
    (lambda m: next_token_logits(m, "abc"), TypeError, "ids: expected a list"),
    (lambda m: next_token_logits(m, [[1.5]]), TypeError, r"ids\[0\]"),
    (lambda m: next_token_logits("gpt", [[1]]), TypeError, "model: expected GPT"),
    (lambda m: switched_off(m, ffn=[3]).__enter__(), ValueError, r"ffn\[0\]"),
    (lambda m: switched_off(m, attention=5).__enter__(), TypeError, "attention: expected"),
    (lambda m: neuron_off(m, 0, 256).__enter__(), ValueError, "neuron"),
    (lambda m: value_logits(m, -1, 0), ValueError, "layer"),
    (lambda m: direct_push(m, torch.zeros(3, 5), 1), ValueError, "hidden: expected shape"),
    (lambda m: token_z_scores(m, 256), ValueError, "token"),
    (lambda m: ffn_activations(m, []), ValueError, "ids: expected at least one"),
])
def test_bad_input_names_the_parameter(model: GPT, call, error, match) -> None:
    with pytest.raises(error, match=match):
        call(model)
    assert all(b.ffn_enabled and b.attention_enabled for b in model.blocks)
