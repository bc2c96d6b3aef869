"""The hot paths compile as one graph: a GPT forward, one cached decode step and
MultiHeadAttention under ``torch.compile(backend="eager", fullgraph=True)`` on the CPU.

``fullgraph=True`` turns any graph break (a host sync such as ``int(ids.max())`` or
``.item()``, an unsupported Python construct) into an error, so these tests fail if a check in
a forward pass stops the device. ``backend="eager"`` traces with Dynamo and runs the captured
graph with eager kernels: the test is about tracing, not about code generation, and the results
must equal the uncompiled module's.
"""

from __future__ import annotations

import copy

import pytest
import torch

from lmlab.device import seed_everything
from lmlab.sublayers import KVCache, MultiHeadAttention
from lmlab.transformer import GPT
from lmlab.transformer_config import TransformerConfig

ATOL = dict(rtol=1e-5, atol=1e-5)
CONFIGS = {
    "gpt2": TransformerConfig.tiny(ffn="gelu_tanh"),
    "llama": TransformerConfig.tiny(norm="rmsnorm", position="rotary", ffn="swiglu",
                                    num_kv_heads=2, attention_bias=False, mlp_bias=False),
}


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _compile(module: torch.nn.Module) -> torch.nn.Module:
    return torch.compile(module, backend="eager", fullgraph=True)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_gpt_forward_compiles_without_a_graph_break(name: str) -> None:
    g = seed_everything(0)
    model = GPT(CONFIGS[name]).eval()
    ids = torch.randint(0, 256, (2, 9), generator=g)
    with torch.no_grad():
        torch.testing.assert_close(_compile(model)(ids), model(ids), **ATOL)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_gpt_loss_compiles_without_a_graph_break(name: str) -> None:
    """The target check (ids in range or -100) is queued, not a host sync."""
    g = seed_everything(2)
    model = GPT(CONFIGS[name])
    ids = torch.randint(0, 256, (2, 9), generator=g)
    targets = ids[:, 1:].masked_fill(ids[:, 1:] < 30, -100)
    logits, loss = _compile(model)(ids[:, :-1], targets)
    expected_logits, expected = model(ids[:, :-1], targets)
    torch.testing.assert_close(loss, expected, **ATOL)
    loss.backward()  # the compiled graph trains


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cached_decode_step_compiles_without_a_graph_break(name: str) -> None:
    g = seed_everything(1)
    model = GPT(CONFIGS[name]).eval()
    ids = torch.randint(0, 256, (2, 8), generator=g)
    with torch.no_grad():
        cache = model.new_cache()
        model(ids[:, :7], cache=cache)  # the prompt, eagerly
        eager_cache = copy.deepcopy(cache)
        step = _compile(model)(ids[:, 7:], cache=cache, last_only=True)  # one new token
        expected = model(ids[:, 7:], cache=eager_cache, last_only=True)
    torch.testing.assert_close(step, expected, **ATOL)
    torch.testing.assert_close(step, model(ids)[:, -1:], **ATOL)
    assert cache[0].length == eager_cache[0].length == 8


@pytest.mark.parametrize("need_weights", [False, True])
def test_attention_compiles_without_a_graph_break(need_weights: bool) -> None:
    g = seed_everything(2)
    attn = MultiHeadAttention(32, 4, 2).eval()
    x = torch.randn(2, 6, 32, generator=g)
    padding = torch.rand(2, 1, 1, 6, generator=g) > 0.3  # key padding, some rows of keys empty
    additive = torch.randn(6, 6, generator=g)
    compiled = _compile(attn)
    with torch.no_grad():
        for mask in (None, padding, additive):
            out, w = compiled(x, mask=mask, is_causal=True, need_weights=need_weights)
            ref, ref_w = attn(x, mask=mask, is_causal=True, need_weights=need_weights)
            torch.testing.assert_close(out, ref, **ATOL)
            if need_weights:
                torch.testing.assert_close(w, ref_w, **ATOL)


def test_attention_with_a_cache_compiles_without_a_graph_break() -> None:
    g = seed_everything(3)
    attn = MultiHeadAttention(32, 4, 1).eval()
    x = torch.randn(1, 5, 32, generator=g)
    with torch.no_grad():
        cache, eager_cache = KVCache(8), KVCache(8)
        attn(x[:, :4], is_causal=True, cache=cache)
        attn(x[:, :4], is_causal=True, cache=eager_cache)
        out, _ = _compile(attn)(x[:, 4:], is_causal=True, cache=cache)
        ref, _ = attn(x[:, 4:], is_causal=True, cache=eager_cache)
    torch.testing.assert_close(out, ref, **ATOL)
