"""Attention: score every key against a query, softmax the scores, average the values.

The three steps of chapter 4, one pure function each::

    scores  = dot_product_scores(q, k, scale=D ** -0.5)   # (..., T, S) similarity
    weights = masked_softmax(scores, mask)                # (..., T, S) rows sum to one
    out     = weights @ v                                 # (..., T, D) weighted average

:func:`scaled_dot_product_attention` does all three and returns both ``out`` and ``weights``, so
the weights can be plotted. :func:`additive_attention` (Bahdanau) scores with a small
feed-forward network instead of a dot product. Both work on any leading dimensions: ``(T, D)``,
``(B, T, D)`` or ``(B, H, T, D)`` for several heads.

Boolean masks mean ``True = may attend`` (as in
:func:`torch.nn.functional.scaled_dot_product_attention`); build them with :func:`causal_mask`
and :func:`padding_mask`. This module is pure attention math and depends on no model: the
sequence-to-sequence decoder that uses it lives in :mod:`lmlab.rnn`
(:class:`lmlab.rnn.AttentionDecoder`), and the transformer chapters import it too.

Shape letters (the package table): ``T`` queries, ``S`` keys, ``D`` the width of queries and
keys (``head_dim``), ``A`` the width of the additive score network (``attention_dim``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lmlab._checks import (
    check_bool, check_device, check_float, check_int, check_not_meta, check_same_device,
    check_same_dtype, check_tensor,
)

__all__ = [
    "causal_mask", "padding_mask", "dot_product_scores", "masked_softmax",
    "scaled_dot_product_attention", "additive_scores", "additive_attention",
    "DotProductAttention", "AdditiveAttention",
]


def causal_mask(T: int, S: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """The mask that lets each query see only keys at its own position or earlier.

    Queries are aligned with the *end* of the keys (query ``i`` sits at key position
    ``S - T + i``), which is what decoding with a key/value cache needs: the last query sees every
    key. For ``T == S`` this is the usual lower triangle.

    Args:
        T: number of queries (>= 1).
        S: number of keys (>= ``T``); defaults to ``T``.
        device: where to put the mask.

    Returns:
        A boolean mask, ``True = may attend``.

    Shape:
        ``(T, S)``

    Example:
        >>> causal_mask(2, 3).int().tolist()
        [[1, 1, 0], [1, 1, 1]]
    """
    check_int("T", T)
    S = T if S is None else S
    check_int("S", S, minimum=T)
    check_device("device", device)
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def padding_mask(lengths: torch.Tensor, S: int | None = None) -> torch.Tensor:
    """The mask that hides the padding at the end of each sequence of a batch.

    Args:
        lengths: the true length of each sequence (each in ``1..S``).
        S: the padded length; defaults to ``lengths.max()``.

    Returns:
        A boolean mask, ``True = may attend`` (a real position), ``False`` on padding. Use
        ``mask[:, None, :]`` to apply it to ``(B, T, S)`` scores.

    Shape:
        lengths ``(B,)`` -> mask ``(B, S)``

    Example:
        >>> padding_mask(torch.tensor([3, 1]), 4).int().tolist()
        [[1, 1, 1, 0], [1, 0, 0, 0]]
    """
    check_tensor("lengths", lengths, ndim=1, dtype="int")
    if lengths.numel() == 0:
        raise ValueError("lengths: expected at least one sequence, got none")
    check_not_meta("lengths", lengths)
    longest = int(lengths.max())
    S = longest if S is None else check_int("S", S)
    if int(lengths.min()) < 1:
        raise ValueError(f"lengths: every sequence needs length >= 1, got {int(lengths.min())}")
    if longest > S:
        raise ValueError(f"S: padded length {S} is shorter than the longest sequence ({longest})")
    return torch.arange(S, device=lengths.device) < lengths[:, None]  # (B, S)


def _check_mask(mask: torch.Tensor | None, scores_shape: torch.Size) -> None:
    if mask is None:
        return
    check_tensor("mask", mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"mask: expected a boolean tensor (True = may attend), got {mask.dtype}")
    try:
        torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError as err:
        raise ValueError(f"mask: shape {tuple(mask.shape)} does not broadcast to the scores' shape "
                         f"(..., T, S) = {tuple(scores_shape)}") from err


def _check_qk(q: object, k: object, v: object | None = None) -> None:
    check_tensor("q", q, dtype="float")
    check_tensor("k", k, dtype="float")
    assert isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor)
    tensors = {"q": q, "k": k}
    if v is not None:
        check_tensor("v", v, dtype="float")
        assert isinstance(v, torch.Tensor)
        tensors["v"] = v
    for name, x in tensors.items():
        if x.dim() < 2:
            raise ValueError(f"{name}: expected at least 2 dimensions (..., length, width), "
                             f"got shape {tuple(x.shape)}")
        if x.shape[-1] == 0 or x.shape[-2] == 0:
            raise ValueError(f"{name}: empty length or width, shape {tuple(x.shape)}")
    check_same_device(**tensors)
    check_same_dtype(**tensors)
    try:
        torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
    except RuntimeError as err:
        raise ValueError(f"k: leading dimensions {tuple(k.shape[:-2])} do not broadcast with the "
                         f"queries' {tuple(q.shape[:-2])}") from err
    if v is not None:
        if k.shape[:-1] != v.shape[:-1]:
            raise ValueError(f"v: expected one value per key, shape {tuple(k.shape[:-1])} + (width,), "
                             f"got {tuple(v.shape)}")


def dot_product_scores(q: torch.Tensor, k: torch.Tensor, scale: float | None = 1.0) -> torch.Tensor:
    """Similarity of every query with every key: their dot product, times ``scale``.

    Args:
        q: queries.
        k: keys, of the same width ``D`` as the queries.
        scale: multiply the scores by this (``D ** -0.5`` for scaled attention); ``None`` means
            ``D ** -0.5``. Must be finite.

    Returns:
        The scores ``q @ k^T * scale``.

    Shape:
        q ``(..., T, D)``, k ``(..., S, D)`` -> ``(..., T, S)``

    Example:
        >>> dot_product_scores(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0], [1.0, 0.0]]))
        tensor([[11.,  1.]])
    """
    _check_qk(q, k)
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"k: width {k.shape[-1]} differs from the queries' width {q.shape[-1]}")
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    else:
        scale = check_float("scale", scale)
    return (q @ k.transpose(-2, -1)) * scale  # (..., T, S)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over the keys (last axis), giving masked-out keys exactly zero weight.

    A query whose keys are all masked gets all-zero weights, so its output is a zero vector.
    :func:`torch.nn.functional.scaled_dot_product_attention` (torch 2.13, CPU) also returns zeros
    for such a row, while a plain ``softmax`` over a row of ``-inf`` gives NaN; the tests check
    both. A NaN among the allowed scores is not hidden: it makes its row NaN, as in ``softmax``
    (a masked-out score is never read, whatever its value).

    Args:
        scores: attention scores.
        mask: boolean, ``True = may attend``, broadcastable to ``scores``.

    Returns:
        Weights that are non-negative and sum to one over the allowed keys.

    Shape:
        scores ``(..., T, S)``, mask broadcastable to it -> ``(..., T, S)``

    Example:
        >>> masked_softmax(torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[True, True, False]]))
        tensor([[0.5000, 0.5000, 0.0000]])
    """
    check_tensor("scores", scores, dtype="float")
    if scores.dim() == 0:
        raise ValueError("scores: expected at least 1 dimension (..., S), got a scalar")
    _check_mask(mask, scores.shape)
    if mask is None:
        return torch.softmax(scores, dim=-1)
    check_same_device(scores=scores, mask=mask)
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    no_key = ~mask.any(dim=-1, keepdim=True)  # rows where every key is masked: 0/0
    return weights.masked_fill(no_key, 0.0)  # (..., T, S)


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None,
                                 scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention with dot-product scores: ``softmax(q k^T / sqrt(D)) v``.

    Matches :func:`torch.nn.functional.scaled_dot_product_attention` (which returns only the
    output), and also returns the weights.

    Args:
        q: queries.
        k: keys, as wide as the queries.
        v: values, one per key (their width may differ from ``D``; the output has it).
        mask: boolean, ``True = may attend``, broadcastable to ``(..., T, S)``; e.g.
            :func:`causal_mask` or ``padding_mask(lengths)[:, None, :]``.
        scale: score multiplier; ``None`` means ``D ** -0.5``, ``1.0`` gives plain dot-product
            attention.

    Returns:
        ``(out, weights)``: the weighted average of the values for each query, and the weights.

    Shape:
        q ``(..., T, D)``, k ``(..., S, D)``, v ``(..., S, D)`` -> out ``(..., T, D)``, weights
        ``(..., T, S)``. With heads: ``(B, H, T, D)``.

    Example:
        >>> q = torch.zeros(1, 2); k = torch.zeros(3, 2); v = torch.tensor([[0.0], [3.0], [6.0]])
        >>> out, w = scaled_dot_product_attention(q, k, v)
        >>> out, w
        (tensor([[3.]]), tensor([[0.3333, 0.3333, 0.3333]]))
    """
    _check_qk(q, k, v)
    scores = dot_product_scores(q, k, scale)  # (..., T, S)
    weights = masked_softmax(scores, mask)  # (..., T, S)
    return weights @ v, weights  # (..., T, D), (..., T, S)


def additive_scores(q: torch.Tensor, k: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor,
                    w_v: torch.Tensor) -> torch.Tensor:
    """Bahdanau's scores: a one-hidden-layer network of query and key, ``w_v . tanh(W_q q + W_k k)``.

    Args:
        q: queries.
        k: keys (their width may differ from the queries'; ``w_k`` then has the keys' width).
        w_q: projects queries to the attention width ``A``.
        w_k: projects keys to the attention width ``A``.
        w_v: the output vector of the score network.

    Returns:
        One score per query and key.

    Shape:
        q ``(..., T, D)``, k ``(..., S, D)``, w_q ``(A, D)``, w_k ``(A, D)``, w_v ``(A,)`` ->
        ``(..., T, S)``

    Example:
        >>> eye = torch.eye(2)
        >>> additive_scores(torch.zeros(1, 2), torch.zeros(3, 2), eye, eye, torch.ones(2))
        tensor([[0., 0., 0.]])
    """
    _check_qk(q, k)
    for name, w in (("w_q", w_q), ("w_k", w_k), ("w_v", w_v)):
        check_tensor(name, w, dtype="float")
    check_same_device(q=q, w_q=w_q, w_k=w_k, w_v=w_v)
    check_same_dtype(q=q, w_q=w_q, w_k=w_k, w_v=w_v)
    if w_q.dim() != 2 or w_q.shape[0] == 0 or w_q.shape[1] != q.shape[-1]:
        raise ValueError(f"w_q: expected shape (A, {q.shape[-1]}) with A >= 1, got "
                         f"{tuple(w_q.shape)}")
    if w_k.dim() != 2 or w_k.shape != (w_q.shape[0], k.shape[-1]):
        raise ValueError(f"w_k: expected shape ({w_q.shape[0]}, {k.shape[-1]}), got {tuple(w_k.shape)}")
    if w_v.shape != (w_q.shape[0],):
        raise ValueError(f"w_v: expected shape ({w_q.shape[0]},), got {tuple(w_v.shape)}")
    hidden = torch.tanh((q @ w_q.T).unsqueeze(-2) + (k @ w_k.T).unsqueeze(-3))  # (..., T, S, A)
    return hidden @ w_v  # (..., T, S)


def additive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w_q: torch.Tensor,
                       w_k: torch.Tensor, w_v: torch.Tensor,
                       mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive (Bahdanau) attention: :func:`additive_scores`, softmax, weighted average.

    Args:
        q: queries.
        k: keys.
        v: values, one per key.
        w_q: query projection (see :func:`additive_scores`).
        w_k: key projection.
        w_v: score vector.
        mask: boolean, ``True = may attend``, broadcastable to ``(..., T, S)``.

    Returns:
        ``(out, weights)`` as in :func:`scaled_dot_product_attention`.

    Shape:
        q ``(..., T, D)``, k ``(..., S, D)``, v ``(..., S, D)`` -> out ``(..., T, D)``,
        weights ``(..., T, S)``

    Example:
        >>> eye = torch.eye(2); v = torch.tensor([[0.0], [3.0], [6.0]])
        >>> out, w = additive_attention(torch.zeros(1, 2), torch.zeros(3, 2), v, eye, eye, torch.ones(2))
        >>> out
        tensor([[3.]])
    """
    _check_qk(q, k, v)
    weights = masked_softmax(additive_scores(q, k, w_q, w_k, w_v), mask)  # (..., T, S)
    return weights @ v, weights  # (..., T, D), (..., T, S)


class DotProductAttention(nn.Module):
    """Dot-product attention as a module (no parameters), scaled by ``D ** -0.5`` or not.

    Args:
        scaled: divide the scores by ``sqrt(D)`` (scaled dot-product attention).

    Shape:
        q ``(..., T, D)``, k ``(..., S, D)``, v ``(..., S, D)``, mask broadcastable to
        ``(..., T, S)`` -> out ``(..., T, D)``, weights ``(..., T, S)``
    """

    def __init__(self, scaled: bool = True) -> None:
        super().__init__()
        self.scaled = check_bool("scaled", scaled)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(out, weights)`` of :func:`scaled_dot_product_attention`; shapes as there."""
        return scaled_dot_product_attention(q, k, v, mask, scale=None if self.scaled else 1.0)

    def extra_repr(self) -> str:
        return f"scaled={self.scaled}"


class AdditiveAttention(nn.Module):
    """Additive (Bahdanau) attention with learned projections.

    Args:
        d_model: width ``D`` of the queries and keys.
        attention_dim: width ``A`` of the score network's hidden layer (default ``d_model``).

    Shape:
        q ``(..., T, D)``, k ``(..., S, D)``, v ``(..., S, D)``, mask broadcastable to
        ``(..., T, S)`` -> out ``(..., T, D)``, weights ``(..., T, S)``
    """

    def __init__(self, d_model: int, attention_dim: int | None = None) -> None:
        super().__init__()
        check_int("d_model", d_model)
        attention_dim = d_model if attention_dim is None else check_int("attention_dim",
                                                                        attention_dim)
        self.d_model = d_model
        self.w_q = nn.Linear(d_model, attention_dim, bias=False)
        self.w_k = nn.Linear(d_model, attention_dim, bias=False)
        self.w_v = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(out, weights)`` of :func:`additive_attention`; shapes as there."""
        _check_qk(q, k, v)
        for name, x in (("q", q), ("k", k)):
            if x.shape[-1] != self.d_model:
                raise ValueError(f"{name}: expected width d_model={self.d_model}, got shape "
                                 f"{tuple(x.shape)}")
        return additive_attention(q, k, v, self.w_q.weight, self.w_k.weight, self.w_v.weight[0], mask)
