"""Token embeddings: ids in, vectors out, and back to vocabulary scores.

A token id selects one row of the embedding matrix ``W`` of shape ``(V, C)``; that is the same as
multiplying a one-hot vector by ``W``, only without the multiplications. At the other end of a
language model, the LM head turns a ``C``-wide vector into ``V`` scores, one per token. Tying the
two (the head reuses ``W``, as GPT-2 does) saves ``V * C`` parameters::

    emb = TokenEmbedding(vocab_size=50257, d_model=768)
    x = emb(ids)                      # (B, T) -> (B, T, C)
    logits = emb.unembed(hidden)      # (B, T, C) -> (B, T, V), the tied LM head
    embedding_cost(50257, 768).total_params   # 38,597,376: what the tie saves

Later chapters build GPT and BERT models on these pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TokenEmbedding", "LMHead", "EmbeddingCost", "embedding_cost"]


def _check_sizes(vocab_size: object, d_model: object) -> None:
    for name, value in (("vocab_size", vocab_size), ("d_model", d_model)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")


class TokenEmbedding(nn.Module):
    """The input embedding, which doubles as the tied output projection.

    Args:
        vocab_size: number of token ids ``V``.
        d_model: width of each vector ``C``.
        init_std: standard deviation of the normal initialisation (GPT-2 uses 0.02).

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
        _check_sizes(vocab_size, d_model)
        if not init_std > 0:
            raise ValueError(f"init_std: expected a positive float, got {init_std!r}")
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.weight = nn.Parameter(torch.empty(vocab_size, d_model))  # (V, C)
        nn.init.normal_(self.weight, mean=0.0, std=init_std)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Look up one row of the weight per id: ``W[ids]``."""
        if ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"ids: expected an int64 or int32 tensor, got {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise IndexError(f"ids: values must be in [0, {self.vocab_size}), got "
                             f"[{int(ids.min())}, {int(ids.max())}]")
        return F.embedding(ids, self.weight)  # (*, C)

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """The tied LM head: a score per token, ``x @ W.T`` (no extra parameters)."""
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x: last dimension must be d_model={self.d_model}, got "
                             f"{tuple(x.shape)}")
        return F.linear(x, self.weight)  # (*, V)

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, d_model={self.d_model}"


class LMHead(nn.Module):
    """An untied LM head: its own ``(V, C)`` weight, ``logits = x @ W_out.T (+ b)``.

    Args:
        d_model: input width ``C``.
        vocab_size: number of output scores ``V``.
        bias: add a learned bias per token.

    Shape:
        ``(*, C)`` -> ``(*, V)``.
    """

    def __init__(self, d_model: int, vocab_size: int, bias: bool = False) -> None:
        super().__init__()
        _check_sizes(vocab_size, d_model)
        self.proj = nn.Linear(d_model, vocab_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores for every token of the vocabulary."""
        return self.proj(x)  # (*, V)


@dataclass(frozen=True)
class EmbeddingCost:
    """Parameters and compute of the embedding and the LM head for one token."""

    vocab_size: int  # V, number of token ids
    d_model: int  # C, model width
    tied: bool  # whether the LM head reuses the embedding matrix
    embedding_params: int  # V * C, the input embedding matrix
    head_params: int  # extra parameters of the LM head (0 when tied, else V * C)
    embedding_flops_per_token: int  # 0: an embedding is a row lookup, not arithmetic
    head_flops_per_token: int  # 2 * V * C: one multiply and one add per weight

    @property
    def total_params(self) -> int:
        """Embedding plus LM-head parameters."""
        return self.embedding_params + self.head_params


def embedding_cost(vocab_size: int, d_model: int, tied: bool = True) -> EmbeddingCost:
    """How many parameters and FLOPs per token the embedding and the LM head take.

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
    _check_sizes(vocab_size, d_model)
    weights = vocab_size * d_model
    return EmbeddingCost(vocab_size=vocab_size, d_model=d_model, tied=bool(tied),
                         embedding_params=weights, head_params=0 if tied else weights,
                         embedding_flops_per_token=0, head_flops_per_token=2 * weights)
