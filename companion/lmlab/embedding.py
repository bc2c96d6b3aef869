"""Token embeddings: ids in, vectors out, and back to vocabulary scores.

A token id selects one row of the embedding matrix ``W`` of shape ``(V, C)``; that is the same as
multiplying a one-hot vector by ``W``, only without the multiplications. At the other end of a
language model, the LM head turns a ``C``-wide vector into ``V`` scores, one per token. Tying the
two (the head reuses ``W``, as GPT-2 does) saves ``V * C`` parameters. Every constructor takes
``(vocab_size, d_model)`` in that order::

    emb = TokenEmbedding(vocab_size=50257, d_model=768)
    x = emb(ids)                      # (B, T) -> (B, T, C)
    logits = emb.unembed(hidden)      # (B, T, C) -> (B, T, V), the tied LM head
    head = LMHead(vocab_size=50257, d_model=768)   # an untied head with its own weight
    embedding_cost(50257, 768).head_params         # 0: tied, what the tie saves

Later chapters build GPT and BERT models on these pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lmlab._checks import (
    check_bool, check_float, check_ids, check_int, check_same_device, check_tensor,
)

__all__ = ["TokenEmbedding", "LMHead", "EmbeddingCost", "embedding_cost"]


def _check_features(name: str, x: object, weight: torch.Tensor, d_model: int) -> torch.Tensor:
    """``x`` is a float tensor of ``weight``'s dtype and device whose last dimension is C."""
    check_tensor(name, x, dtype="float")
    if x.dim() == 0 or x.shape[-1] != d_model:
        raise ValueError(f"{name}: last dimension must be d_model={d_model}, got shape "
                         f"{tuple(x.shape)}")
    if x.dtype != weight.dtype:
        raise TypeError(f"{name}: expected dtype {weight.dtype} (the weight's), got {x.dtype}")
    check_same_device(**{name: x, "weight": weight})
    return x


class TokenEmbedding(nn.Module):
    """The input embedding, which doubles as the tied output projection.

    Args:
        vocab_size: number of token ids ``V``.
        d_model: width of each vector ``C``.
        init_std: standard deviation of the normal initialisation (GPT-2 uses 0.02), > 0.

    Shape:
        - ``forward``: ids ``(*)`` of integers in ``[0, V)`` -> ``(*, C)``.
        - ``unembed``: ``(*, C)`` -> ``(*, V)``.

    Example:
        >>> emb = TokenEmbedding(vocab_size=10, d_model=4)
        >>> emb(torch.tensor([[1, 2, 3]])).shape
        torch.Size([1, 3, 4])
        >>> emb.unembed(torch.zeros(1, 3, 4)).shape
        torch.Size([1, 3, 10])
    """

    def __init__(self, vocab_size: int, d_model: int, init_std: float = 0.02) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size)
        check_int("d_model", d_model)
        check_float("init_std", init_std, minimum=0.0, min_inclusive=False)
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.weight = nn.Parameter(torch.empty(vocab_size, d_model))  # (V, C)
        nn.init.normal_(self.weight, mean=0.0, std=init_std)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Look up one row of the weight per id: ``W[ids]``.

        Args:
            ids: an integer tensor of token ids in ``[0, V)``, on the weight's device.

        Returns:
            The vectors, shape ``(*, C)``.

        Raises:
            ValueError: an id outside ``[0, V)`` (on a GPU the check runs on the device and a
                failure surfaces at the next synchronisation), or ids on another device.
        """
        check_tensor("ids", ids, dtype="int")
        check_same_device(ids=ids, weight=self.weight)
        check_ids("ids", ids, self.vocab_size)  # no host sync on a GPU
        return F.embedding(ids, self.weight)  # (*, C)

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """The tied LM head: a score per token, ``x @ W.T`` (no extra parameters).

        Args:
            x: final vectors, shape ``(*, C)``, of the weight's dtype and device.

        Returns:
            The logits, shape ``(*, V)``.
        """
        _check_features("x", x, self.weight, self.d_model)
        return F.linear(x, self.weight)  # (*, V)

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, d_model={self.d_model}"


class LMHead(nn.Module):
    """An untied LM head: its own ``(V, C)`` weight, ``logits = x @ W_out.T (+ b)``.

    Args:
        vocab_size: number of output scores ``V``.
        d_model: input width ``C``.
        bias: add a learned bias per token.

    Shape:
        ``(*, C)`` -> ``(*, V)``.

    Example:
        >>> LMHead(vocab_size=10, d_model=4)(torch.zeros(2, 3, 4)).shape
        torch.Size([2, 3, 10])
    """

    def __init__(self, vocab_size: int, d_model: int, bias: bool = False) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size)
        check_int("d_model", d_model)
        check_bool("bias", bias)
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.proj = nn.Linear(d_model, vocab_size, bias=bias)  # weight (V, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores for every token of the vocabulary, shape ``(*, V)``."""
        _check_features("x", x, self.proj.weight, self.d_model)
        return self.proj(x)  # (*, V)

    def extra_repr(self) -> str:
        bias = self.proj.bias is not None
        return f"vocab_size={self.vocab_size}, d_model={self.d_model}, bias={bias}"


@dataclass(frozen=True)
class EmbeddingCost:
    """Parameters of the embedding and the LM head, and the head's compute per token.

    The embedding itself costs no arithmetic (a row lookup); the head multiplies and adds once
    per weight for every position it scores.
    """

    vocab_size: int  # V, number of token ids
    d_model: int  # C, model width
    tied: bool  # whether the LM head reuses the embedding matrix
    embedding_params: int  # V * C, the input embedding matrix
    head_params: int  # extra parameters of the LM head (0 when tied, else V * C)
    head_flops_per_token: int  # 2 * V * C: one multiply and one add per weight

    def __post_init__(self) -> None:
        check_int("vocab_size", self.vocab_size)
        check_int("d_model", self.d_model)
        check_bool("tied", self.tied)
        weights = self.vocab_size * self.d_model
        for name, want in (("embedding_params", weights),
                           ("head_params", 0 if self.tied else weights),
                           ("head_flops_per_token", 2 * weights)):
            got = check_int(name, getattr(self, name), minimum=0)
            if got != want:
                raise ValueError(f"{name}: expected {want} for vocab_size={self.vocab_size}, "
                                 f"d_model={self.d_model}, tied={self.tied}, got {got} (use "
                                 f"embedding_cost() to build one)")

    @property
    def total_params(self) -> int:
        """Embedding plus LM-head parameters."""
        return self.embedding_params + self.head_params


def embedding_cost(vocab_size: int, d_model: int, tied: bool = True) -> EmbeddingCost:
    """How many parameters the embedding and the LM head take, and the head's FLOPs per token.

    Args:
        vocab_size: number of token ids ``V``.
        d_model: model width ``C``.
        tied: whether the head reuses the embedding weight (no bias either way).

    Returns:
        An :class:`EmbeddingCost`.

    Example:
        >>> c = embedding_cost(50257, 768, tied=False)
        >>> c.total_params, c.head_flops_per_token
        (77194752, 77194752)
    """
    check_int("vocab_size", vocab_size)
    check_int("d_model", d_model)
    check_bool("tied", tied)
    weights = vocab_size * d_model
    return EmbeddingCost(vocab_size=vocab_size, d_model=d_model, tied=tied,
                         embedding_params=weights, head_params=0 if tied else weights,
                         head_flops_per_token=2 * weights)
