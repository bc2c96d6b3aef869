"""Tests for lmlab.embedding against PyTorch's own layers and FLOP counter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lmlab.device import seed_everything
from lmlab.embedding import EmbeddingCost, LMHead, TokenEmbedding, embedding_cost


@pytest.mark.parametrize("shape", [(5,), (2, 7), (3, 2, 4)])
@pytest.mark.parametrize("vocab_size,d_model", [(11, 4), (300, 16)])
def test_embedding_is_a_row_lookup_and_a_one_hot_product(shape, vocab_size, d_model):
    seed_everything(0)
    emb = TokenEmbedding(vocab_size, d_model)
    ids = torch.randint(0, vocab_size, shape)
    out = emb(ids)
    assert out.shape == (*shape, d_model)
    reference = nn.Embedding(vocab_size, d_model)
    with torch.no_grad():
        reference.weight.copy_(emb.weight)
    torch.testing.assert_close(out, reference(ids))
    one_hot = F.one_hot(ids, vocab_size).float()  # (*, V)
    torch.testing.assert_close(out, one_hot @ emb.weight)


@pytest.mark.parametrize("vocab_size,d_model", [(11, 4), (300, 16)])
def test_unembed_is_a_linear_layer_sharing_the_weight(vocab_size, d_model):
    seed_everything(1)
    emb = TokenEmbedding(vocab_size, d_model)
    x = torch.randn(2, 5, d_model)
    linear = nn.Linear(d_model, vocab_size, bias=False)
    with torch.no_grad():
        linear.weight.copy_(emb.weight)
    torch.testing.assert_close(emb.unembed(x), linear(x))
    # Tied: the gradient of the logits flows into the one shared matrix, from both ends.
    ids = torch.randint(0, vocab_size, (2, 5))
    emb.unembed(emb(ids)).sum().backward()
    assert emb.weight.grad is not None and emb.weight.grad.abs().sum() > 0
    assert sum(p.numel() for p in emb.parameters()) == vocab_size * d_model


def test_lm_head_matches_linear():
    seed_everything(2)
    head = LMHead(vocab_size=20, d_model=8, bias=True)
    x = torch.randn(3, 8)
    torch.testing.assert_close(head(x), F.linear(x, head.proj.weight, head.proj.bias))


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("vocab_size,d_model", [(1000, 32), (50257, 64)])
def test_embedding_cost_counts_real_parameters_and_flops(tied, vocab_size, d_model):
    emb = TokenEmbedding(vocab_size, d_model)
    modules = [emb] if tied else [emb, LMHead(vocab_size, d_model)]
    cost = embedding_cost(vocab_size, d_model, tied=tied)
    assert cost.total_params == sum(p.numel() for m in modules for p in m.parameters())
    tokens = 6
    ids = torch.randint(0, vocab_size, (1, tokens))
    with FlopCounterMode(display=False) as counter:
        x = emb(ids)
    assert counter.get_total_flops() == 0  # a lookup, no arithmetic
    with FlopCounterMode(display=False) as counter:
        (emb.unembed(x) if tied else modules[1](x))
    assert counter.get_total_flops() == cost.head_flops_per_token * tokens


def test_gpt2_sizes():
    tied, untied = embedding_cost(50257, 768), embedding_cost(50257, 768, tied=False)
    assert untied.total_params - tied.total_params == 38_597_376


def test_argument_order_is_vocab_size_then_d_model():
    emb, head = TokenEmbedding(11, 3), LMHead(11, 3)
    assert emb.weight.shape == head.proj.weight.shape == (11, 3)
    cost = embedding_cost(11, 3)
    assert (cost.vocab_size, cost.d_model) == (11, 3)


@pytest.mark.parametrize("make", [TokenEmbedding, LMHead, embedding_cost])
@pytest.mark.parametrize("vocab_size,d_model,error,name", [
    (0, 4, ValueError, "vocab_size"), (10, 0, ValueError, "d_model"),
    (-3, 4, ValueError, "vocab_size"), (10, -1, ValueError, "d_model"),
    (10.0, 4, TypeError, "vocab_size"), (10, 4.0, TypeError, "d_model"),
    (True, 4, TypeError, "vocab_size"), ("10", 4, TypeError, "vocab_size"),
    (None, 4, TypeError, "vocab_size"),
])
def test_bad_sizes(make, vocab_size, d_model, error, name):
    with pytest.raises(error, match=f"^{name}"):
        make(vocab_size, d_model)


@pytest.mark.parametrize("init_std,error", [(0.0, ValueError), (-0.1, ValueError),
                                            (float("nan"), ValueError),
                                            (float("inf"), ValueError), ("0.02", TypeError)])
def test_bad_init_std(init_std, error):
    with pytest.raises(error, match="^init_std"):
        TokenEmbedding(10, 4, init_std=init_std)


def test_bad_flags():
    with pytest.raises(TypeError, match="^bias"):
        LMHead(10, 4, bias="yes")
    with pytest.raises(TypeError, match="^tied"):
        embedding_cost(10, 4, tied=1)


def test_bad_ids():
    emb = TokenEmbedding(10, 4)
    with pytest.raises(ValueError, match=r"^ids: expected ids in \[0, 10\), got values from 3 "
                                         r"to 10"):
        emb(torch.tensor([3, 10]))
    with pytest.raises(ValueError, match="^ids: expected a tensor with values, got a meta"):
        TokenEmbedding(10, 4).to("meta")(torch.tensor([1], device="meta"))
    with pytest.raises(ValueError, match="^ids, weight: expected tensors on one device"):
        emb(torch.tensor([1], device="meta"))
    with pytest.raises(ValueError, match="^ids"):
        emb(torch.tensor([-1]))
    with pytest.raises(TypeError, match="^ids"):
        emb(torch.tensor([1.0]))
    with pytest.raises(TypeError, match="^ids"):
        emb(torch.tensor([True]))
    with pytest.raises(TypeError, match="^ids"):
        emb([1, 2])
    assert emb(torch.tensor([], dtype=torch.long)).shape == (0, 4)
    assert emb(torch.tensor([1, 2], dtype=torch.int32)).shape == (2, 4)


@pytest.mark.parametrize("module", ["tied", "untied"])
def test_bad_features(module):
    layer = TokenEmbedding(10, 4) if module == "tied" else LMHead(10, 4)
    head = layer.unembed if module == "tied" else layer
    with pytest.raises(ValueError, match="^x: last dimension must be d_model=4"):
        head(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="^x"):
        head(torch.tensor(1.0))
    with pytest.raises(TypeError, match="^x: expected dtype torch.float32"):
        head(torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="^x"):
        head(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="^x"):
        head([[0.0] * 4])
    with pytest.raises(ValueError, match="one device"):
        head(torch.zeros(2, 4, device="meta"))


def test_embedding_cost_is_consistent():
    cost = embedding_cost(10, 4, tied=False)
    assert EmbeddingCost(10, 4, False, 40, 40, 80) == cost
    bad = [(dict(head_params=0), ValueError, "head_params: expected 40 for vocab_size=10"),
           (dict(embedding_params=41), ValueError, "embedding_params: expected 40"),
           (dict(head_flops_per_token=-1), ValueError, "head_flops_per_token: expected an int >= 0"),
           (dict(vocab_size=True), TypeError, "vocab_size: expected an int"),
           (dict(d_model=0), ValueError, "d_model: expected an int >= 1"),
           (dict(tied=1), TypeError, "tied: expected True or False"),
           (dict(head_params="40"), TypeError, "head_params: expected an int")]
    for change, error, match in bad:
        fields = dict(vocab_size=10, d_model=4, tied=False, embedding_params=40, head_params=40,
                      head_flops_per_token=80) | change
        with pytest.raises(error, match=f"^{match}"):
            EmbeddingCost(**fields)


def test_embedding_compiles_without_graph_break():
    emb = TokenEmbedding(10, 4)
    compiled = torch.compile(emb, backend="eager", fullgraph=True)
    ids = torch.tensor([[1, 9, 0]])
    torch.testing.assert_close(compiled(ids), emb(ids))
    with pytest.raises(RuntimeError, match=r"ids: expected ids in \[0, 10\)"):
        compiled(torch.tensor([[1, 10, 0]]))  # still checked, on the device
    torch._dynamo.reset()


@pytest.mark.gpu
def test_embedding_on_gpu_matches_cpu(gpu_device):
    seed_everything(3)
    emb = TokenEmbedding(500, 32)
    ids = torch.randint(0, 500, (4, 9))
    x = torch.randn(4, 9, 32)
    gpu = TokenEmbedding(500, 32).to(gpu_device)
    gpu.load_state_dict(emb.state_dict())
    out = gpu(ids.to(gpu_device))
    assert out.device.type == gpu_device.type
    torch.testing.assert_close(out.cpu(), emb(ids))
    torch.testing.assert_close(gpu.unembed(x.to(gpu_device)).cpu(), emb.unembed(x),
                               rtol=1e-4, atol=1e-4)  # TF32 / other kernels on the GPU
