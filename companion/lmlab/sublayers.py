"""The two sublayers of a transformer block: multi-head attention and the feed-forward network.

:class:`MultiHeadAttention` covers multi-head, grouped-query and multi-query attention through
``num_kv_heads``, self- and cross-attention, padding and causal masks (``True = may attend``)
and a per-layer :class:`KVCache`. It has a teaching path (each line an equation, the weights
returned for plots) and a fast path through
:func:`torch.nn.functional.scaled_dot_product_attention` (with ``enable_gqa`` where torch has
it). :class:`FeedForward` is the position-wise MLP (GELU, tanh-GELU, ReLU or SwiGLU).
:mod:`lmlab.transformer` builds blocks and models from them and re-exports both classes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lmlab._checks import check_bool, check_choice, check_float, check_int, check_tensor
from lmlab.attention import causal_mask, dot_product_scores, masked_softmax
from lmlab.positions import apply_rotary

__all__ = ["KVCache", "MultiHeadAttention", "FeedForward", "FFNS"]

#: Feed-forward kinds, exact GELU (BERT), tanh GELU (GPT-2), ReLU and SwiGLU (Llama).
FFNS = ("gelu", "gelu_tanh", "relu", "swiglu")

# torch >= 2.5 lets SDPA share key/value heads between query heads without copying them.
_SDPA_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 5)


class KVCache:
    """One attention layer's cached keys and values, grown as tokens are generated.

    Keys and values of the tokens seen so far are kept so that each new token needs only its
    own projections. Storage is allocated on first use (in the dtype and on the device of the
    first keys) for 256 tokens or the first update's length, and doubles as needed, up to
    ``max_length``.

    Args:
        max_length: the most tokens the cache can hold (the model's context length).

    Shape:
        ``update(k, v)`` with k, v ``(B, G, T, D)`` -> all keys and values so far,
        ``(B, G, S, D)`` each.
    """

    def __init__(self, max_length: int) -> None:
        self.max_length = check_int("max_length", max_length)
        self.length = 0  # tokens stored
        self.k: torch.Tensor | None = None  # (B, G, max_length, D)
        self.v: torch.Tensor | None = None

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append new keys and values; return every key and value stored so far."""
        B, G, T, D = k.shape
        if self.length + T > self.max_length:
            raise ValueError(f"k: {self.length} cached + {T} new tokens exceed the cache's "
                             f"max_length {self.max_length}")
        if self.k is None:
            capacity = min(self.max_length, max(T, 256))
            self.k = k.new_zeros(B, G, capacity, D)
            self.v = v.new_zeros(B, G, capacity, v.shape[-1])
        elif self.k.shape[0] != B or self.k.shape[1] != G or self.k.shape[3] != D:
            raise ValueError(f"k: shape {tuple(k.shape)} does not match the cache's "
                             f"(B, G, D) = {(self.k.shape[0], self.k.shape[1], self.k.shape[3])}")
        assert self.v is not None
        if self.length + T > self.k.shape[2]:  # grow by doubling, up to max_length
            capacity = min(self.max_length, max(2 * self.k.shape[2], self.length + T))
            self.k = torch.cat([self.k, self.k.new_zeros(B, G, capacity - self.k.shape[2], D)], 2)
            self.v = torch.cat([self.v, self.v.new_zeros(B, G, capacity - self.v.shape[2],
                                                         self.v.shape[3])], 2)
        self.k[:, :, self.length:self.length + T] = k
        self.v[:, :, self.length:self.length + T] = v
        self.length += T
        return self.k[:, :, :self.length], self.v[:, :, :self.length]  # (B, G, S, D)

    @property
    def bytes_per_token(self) -> int:
        """Bytes of keys plus values stored per token and sequence (0 before first use)."""
        if self.k is None or self.v is None:
            return 0
        return (self.k.shape[1] * self.k.shape[3] * self.k.element_size()
                + self.v.shape[1] * self.v.shape[3] * self.v.element_size())

    @property
    def nbytes(self) -> int:
        """Bytes of the keys and values stored so far (the whole batch)."""
        batch = 0 if self.k is None else self.k.shape[0]
        return batch * self.length * self.bytes_per_token

    def __repr__(self) -> str:
        return f"KVCache(length={self.length}, max_length={self.max_length})"


class MultiHeadAttention(nn.Module):
    """Multi-head attention with ``num_kv_heads`` key/value heads: MHA, GQA or MQA.

    Each token is projected to a query, a key and a value per head; every query is scored
    against the keys, the scores are softmaxed, and the values summed with those weights. With
    ``num_kv_heads < num_heads`` groups of ``num_heads // num_kv_heads`` query heads share one
    key/value head (grouped-query attention; 1 is multi-query attention), which shrinks the
    key/value cache by the same factor.

    Args:
        d_model: width ``C`` of the input and output.
        num_heads: query heads ``H``; ``d_model`` must be a multiple of it.
        num_kv_heads: key/value heads ``G`` (divides ``num_heads``); ``None`` means ``num_heads``.
        bias: biases in the four projections.
        dropout: dropout on the attention weights (training only).
        kv_d_model: width of the sequence keys and values come from (cross-attention to an
            encoder of another width); ``None`` means ``d_model``.

    Shape:
        x ``(B, T, C)``, context ``(B, S, kv_d_model)``, mask broadcastable to ``(B, H, T, S)``
        -> out ``(B, T, C)``, weights ``(B, H, T, S)`` (or ``None`` on the fast path).
    """

    def __init__(self, d_model: int, num_heads: int, num_kv_heads: int | None = None,
                 bias: bool = True, dropout: float = 0.0, kv_d_model: int | None = None) -> None:
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        kv_d_model = d_model if kv_d_model is None else kv_d_model
        check_int("d_model", d_model)
        check_int("num_heads", num_heads)
        check_int("num_kv_heads", num_kv_heads, maximum=num_heads)
        check_int("kv_d_model", kv_d_model)
        check_bool("bias", bias)
        check_float("dropout", dropout, 0.0, 1.0, max_inclusive=False)
        if d_model % num_heads:
            raise ValueError(f"d_model: must be a multiple of num_heads={num_heads}, got {d_model}")
        if num_heads % num_kv_heads:
            raise ValueError(f"num_kv_heads: must divide num_heads={num_heads}, got {num_kv_heads}")
        self.d_model, self.num_heads, self.num_kv_heads = d_model, num_heads, num_kv_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        D = self.head_dim
        self.q_proj = nn.Linear(d_model, num_heads * D, bias=bias)
        self.k_proj = nn.Linear(kv_d_model, num_kv_heads * D, bias=bias)
        self.v_proj = nn.Linear(kv_d_model, num_kv_heads * D, bias=bias)
        self.out_proj = nn.Linear(num_heads * D, d_model, bias=bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, *, is_causal: bool = False,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: KVCache | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``x`` to itself (self-attention) or to ``context`` (cross-attention).

        Args:
            x: the sequence that asks (queries).
            context: the sequence that answers (keys and values); ``None`` for self-attention.
            mask: boolean, ``True = may attend``, broadcastable to ``(B, H, T, S)``: a padding
                mask ``(B, S)`` goes in as ``mask[:, None, None, :]``.
            is_causal: each query sees only keys at its position or earlier, queries aligned with
                the end of the keys (as with a cache); combined with ``mask`` by "and".
            rope: ``(cos, sin)`` of the queries' positions, from
                :class:`lmlab.positions.RotaryEmbedding`; rotates queries and the new keys.
            cache: this layer's :class:`KVCache`; the new keys and values are appended and the
                queries attend to all of them. Self-attention only.
            need_weights: take the teaching path and return the attention weights.

        Returns:
            ``(out, weights)``; ``weights`` is ``None`` unless ``need_weights``.
        """
        check_tensor("x", x, ndim=3, dtype="float")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x: expected width d_model={self.d_model}, got shape {tuple(x.shape)}")
        if context is not None and cache is not None:
            raise ValueError("cache: only self-attention keeps a key/value cache")
        B, T, _ = x.shape
        H, G, D = self.num_heads, self.num_kv_heads, self.head_dim
        source = x if context is None else context
        S_new = source.shape[1]
        if context is None:  # self-attention: one matrix product for q, k and v together
            q, k, v = self._qkv(x).split([H * D, G * D, G * D], dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(source), self.v_proj(source)
        q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, S_new, G, D).transpose(1, 2)  # (B, G, S, D)
        v = v.view(B, S_new, G, D).transpose(1, 2)  # (B, G, S, D)
        if rope is not None:
            q = apply_rotary(q, *rope)
            k = apply_rotary(k, *rope)
        if cache is not None:
            k, v = cache.update(k, v)  # (B, G, S, D), all tokens so far
        S = k.shape[2]
        if mask is not None:
            check_tensor("mask", mask, dtype="bool")
        if is_causal and T > 1:  # one query at the end of the keys may see them all
            causal = causal_mask(T, S, device=x.device)  # (T, S), aligned with the end
            mask = causal if mask is None else mask & causal
        p = self.dropout if self.training else 0.0
        if need_weights:
            out, weights = self._teaching(q, k, v, mask, p)
        else:
            out, weights = self._fast(q, k, v, mask, p, is_causal and T == S), None
        out = out.transpose(1, 2).reshape(B, T, H * D)  # (B, T, C): heads side by side
        return self.out_proj(out), weights

    def _qkv(self, x: torch.Tensor) -> torch.Tensor:
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        bias = None
        if self.q_proj.bias is not None:
            bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        return F.linear(x, weight, bias)  # (B, T, (H + 2G) D)

    def _teaching(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  mask: torch.Tensor | None, p: float) -> tuple[torch.Tensor, torch.Tensor]:
        group = self.num_heads // self.num_kv_heads
        k = k.repeat_interleave(group, dim=1)  # (B, H, S, D): each kv head serves `group` heads
        v = v.repeat_interleave(group, dim=1)  # (B, H, S, D)
        scores = dot_product_scores(q, k, scale=None)  # (B, H, T, S) = q k^T / sqrt(D)
        weights = masked_softmax(scores, mask)  # (B, H, T, S), rows sum to 1 over allowed keys
        dropped = F.dropout(weights, p) if p else weights
        return dropped @ v, weights  # (B, H, T, D): weighted sum of the values

    def _fast(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: torch.Tensor | None, p: float, plain_causal: bool) -> torch.Tensor:
        group = self.num_heads // self.num_kv_heads
        B, H, T, D = q.shape
        if T == 1 and mask is None and not p and q.device.type == "cpu":
            # One decode step on CPU: the `group` query heads that share a key/value head
            # become `group` rows of one matrix product, so each cached key is read once.
            # (benchmarks/bench_gqa.py: faster than SDPA's enable_gqa on CPU; GPUs keep SDPA.)
            G = self.num_kv_heads
            qg = q.reshape(B, G, group, D) * D ** -0.5  # (B, G, H/G, D): head h -> kv h // group
            weights = torch.softmax(qg @ k.transpose(-2, -1), dim=-1)  # (B, G, H/G, S)
            return (weights @ v).view(B, H, 1, D)  # (B, H, 1, D)
        extra: dict[str, Any] = {}
        if group > 1:
            if _SDPA_GQA:
                extra["enable_gqa"] = True
            else:
                k = k.repeat_interleave(group, dim=1)  # (B, H, S, D)
                v = v.repeat_interleave(group, dim=1)
        if plain_causal and mask is not None and mask.dim() == 2:
            mask = None  # the plain causal triangle: let SDPA pick its causal kernel
            extra["is_causal"] = True
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                              **extra)  # (B, H, T, D)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, num_heads={self.num_heads}, "
                f"num_kv_heads={self.num_kv_heads}, head_dim={self.head_dim}")


class FeedForward(nn.Module):
    """The position-wise network: the same two- (or three-) matrix MLP applied to every token.

    ``"gelu"``, ``"gelu_tanh"`` and ``"relu"``: ``down(act(up(x)))``. ``"swiglu"`` (Llama):
    ``down(silu(gate(x)) * up(x))``.

    Args:
        d_model: input and output width ``C``.
        d_ff: hidden width.
        ffn: one of ``"gelu"``, ``"gelu_tanh"``, ``"relu"``, ``"swiglu"``.
        bias: biases in the linear layers.
        dropout: dropout on the output (training only).

    Shape:
        ``(*, C)`` -> ``(*, C)``
    """

    def __init__(self, d_model: int, d_ff: int, ffn: str = "gelu", bias: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        check_int("d_model", d_model)
        check_int("d_ff", d_ff)
        self.ffn = check_choice("ffn", ffn, FFNS)
        check_bool("bias", bias)
        check_float("dropout", dropout, 0.0, 1.0, max_inclusive=False)
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.gate_proj = nn.Linear(d_model, d_ff, bias=bias) if ffn == "swiglu" else None
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP applied to each position independently."""
        h = self.up_proj(x)  # (*, d_ff)
        if self.gate_proj is not None:
            h = F.silu(self.gate_proj(x)) * h
        elif self.ffn == "gelu":
            h = F.gelu(h)
        elif self.ffn == "gelu_tanh":
            h = F.gelu(h, approximate="tanh")
        else:
            h = F.relu(h)
        return self.drop(self.down_proj(h))  # (*, C)
