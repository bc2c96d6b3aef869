"""Grouped-query attention after training: changing how many key/value heads a model has.

A model with ``G`` key/value heads serves query head ``h`` from key/value head
``h // (H / G)`` (:class:`lmlab.sublayers.MultiHeadAttention`). :func:`regroup_kv_heads` moves a
trained model to another ``G``:

* **fewer heads** (multi-head -> grouped-query -> multi-query): each new key/value head is the
  mean of the old heads it replaces (their rows of the fused projection, weights and biases),
  as in the grouped-query attention paper (Ainslie et al., 2023, "GQA: Training Generalized
  Multi-Query Transformer Models from Multi-Head Checkpoints"). The cache shrinks by the same
  factor; the outputs change, since the heads it merges were trained to differ (the paper then
  trains a little more);
* **more heads** (for instance back to multi-head): each old head is copied to the query heads
  it served. The model computes exactly what it did, with a larger cache.

Rotary positions rotate keys after the projection and rotate every head the same way, so the
mean of the projections is the projection the merged head needs.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lmlab._checks import check_bool, check_choice, check_int
from lmlab.sublayers import MultiHeadAttention
from lmlab.transformer_config import TransformerConfig

__all__ = ["MERGES", "regroup_kv_heads"]

MERGES = ("mean", "first")


def _regroup(weight: torch.Tensor, old: int, new: int, merge: str) -> torch.Tensor:
    """Rows of ``old`` heads -> rows of ``new`` heads: merged consecutive heads, or copies."""
    rows = weight.shape[0] // old
    heads = weight.reshape(old, rows, *weight.shape[1:])  # (old, D, ...) one block per head
    if new < old:
        groups = heads.reshape(new, old // new, rows, *weight.shape[1:])  # (new, old/new, D, ...)
        heads = groups.mean(dim=1) if merge == "mean" else groups[:, 0]
    else:
        heads = heads.repeat_interleave(new // old, dim=0)  # (new, D, ...)
    return heads.reshape(new * rows, *weight.shape[1:])


def _linear_like(old: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                      device=weight.device, dtype=weight.dtype)
    layer.weight = nn.Parameter(weight, requires_grad=old.weight.requires_grad)
    if bias is not None:
        layer.bias = nn.Parameter(bias, requires_grad=old.weight.requires_grad)
    return layer


def _regroup_layer(layer: MultiHeadAttention, new: int, merge: str) -> None:
    """Replace the key and value rows of ``layer``'s projection with ``new`` heads' rows."""
    old = layer.num_kv_heads
    _, w_k, w_v = layer.qkv_weights()
    rows = [_regroup(w_k, old, new, merge), _regroup(w_v, old, new, merge)]
    biases = layer.qkv_biases()
    bias_rows = None
    if biases is not None:
        bias_rows = [_regroup(biases[1], old, new, merge), _regroup(biases[2], old, new, merge)]
    if layer.qkv_proj is not None:  # fused: query rows stay, key and value rows change
        proj = layer.qkv_proj
        weight = torch.cat([layer.qkv_weights()[0], *rows])  # ((H + 2 G') D, C)
        bias = None if biases is None or bias_rows is None else torch.cat([biases[0], *bias_rows])
        layer.qkv_proj = _linear_like(proj, weight, bias)
    else:  # keys and values of another width: only kv_proj changes
        assert layer.kv_proj is not None
        layer.kv_proj = _linear_like(layer.kv_proj, torch.cat(rows),
                                     None if bias_rows is None else torch.cat(bias_rows))
    layer.num_kv_heads = new


@torch.no_grad()
def regroup_kv_heads(model: nn.Module, num_kv_heads: int, *, merge: str = "mean",
                     inplace: bool = False) -> nn.Module:
    """The model with ``num_kv_heads`` key/value heads in every attention layer.

    Merging (``num_kv_heads`` divides the current count) averages the key and value projections
    of the heads merged (or keeps the first, ``merge="first"``); splitting (the current count
    divides ``num_kv_heads``) copies them, and leaves the model's outputs unchanged. Every :class:`~lmlab.sublayers.MultiHeadAttention`
    inside ``model`` changes, and every ``config`` attribute that is a
    :class:`~lmlab.transformer_config.TransformerConfig` gets the new ``num_kv_heads``, so the model
    saves and loads as usual.

    Args:
        model: any module holding :class:`~lmlab.sublayers.MultiHeadAttention` layers (a
            :class:`~lmlab.transformer.GPT`, :class:`~lmlab.transformer.Encoder`, ...).
        num_kv_heads: the new count; must divide every layer's ``num_heads`` and divide, or be
            a multiple of, its current ``num_kv_heads``.
        merge: how heads merge: ``"mean"`` averages them (the GQA paper's choice), ``"first"``
            keeps the first head of each group (the paper's weaker baseline).
        inplace: change ``model`` itself (no second copy of the weights in memory) instead of a
            deep copy.

    Returns:
        The regrouped model (``model`` itself when ``inplace``).

    Raises:
        TypeError: ``model`` is not a module, or an argument has the wrong type.
        ValueError: ``model`` has no attention layer, or ``num_kv_heads`` does not fit a layer.

    Example:
        >>> from lmlab.transformer import GPT
        >>> model = GPT(TransformerConfig.tiny(num_kv_heads=2)).eval()
        >>> ids = torch.tensor([[1, 2, 3, 4]])
        >>> mha = regroup_kv_heads(model, 4)  # split: the same model, a larger cache
        >>> torch.allclose(mha(ids), model(ids), atol=1e-5)
        True
        >>> mqa = regroup_kv_heads(model, 1)  # merge: the mean of the two heads
        >>> mqa.config.num_kv_heads, mqa.blocks[0].attn.qkv_weights()[1].shape  # (G D, C)
        (1, torch.Size([16, 64]))
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    check_int("num_kv_heads", num_kv_heads)
    check_choice("merge", merge, MERGES)
    check_bool("inplace", inplace)
    layers = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    if not layers:
        raise ValueError("model: has no lmlab MultiHeadAttention layer to regroup")
    for layer in layers:  # every check before any change
        old, H = layer.num_kv_heads, layer.num_heads
        if H % num_kv_heads:
            raise ValueError(f"num_kv_heads: must divide num_heads={H}, got {num_kv_heads}")
        if old % num_kv_heads and num_kv_heads % old:
            raise ValueError(f"num_kv_heads: must divide or be a multiple of the current "
                             f"num_kv_heads={old}, got {num_kv_heads}")
    if not inplace:
        model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            _regroup_layer(module, num_kv_heads, merge)
        config = getattr(module, "config", None)
        if isinstance(config, TransformerConfig):
            module.config = config.replace(num_kv_heads=num_kv_heads)
    return model
