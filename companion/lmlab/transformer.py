"""Transformer blocks: self-attention with queries, keys and values, heads, and the block.

Each block reads a ``(B, T, C)`` sequence and returns one of the same width: self-attention lets
every token gather what it needs from the others, the feed-forward network (FFN) then works on
each position alone, and residual connections and norms keep the signal well behaved::

    x = x + attn(norm1(x))     # pre-norm (GPT-2, Llama); post-norm (BERT) normalises after
    x = x + ffn(norm2(x))

Stacked, the same blocks make the three families of chapter 6:

* :class:`GPT` -- decoder-only, causal mask: each token sees itself and the past (GPT, Llama).
* :class:`Encoder` -- bidirectional, padding mask, token types (BERT, MiniLM).
* :class:`EncoderDecoder` -- an encoder, and a decoder whose blocks also attend to the encoder's
  output (cross-attention; the original transformer, T5).

All are built from one :class:`TransformerConfig`. :class:`MultiHeadAttention` covers
multi-head, grouped-query and multi-query attention through ``num_kv_heads``; it has a teaching
path (each line an equation, weights returned for plots) and a fast path through
:func:`torch.nn.functional.scaled_dot_product_attention`. Boolean masks mean
``True = may attend``. Positions live in :mod:`lmlab.positions`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lmlab._checks import check_bool, check_choice, check_float, check_int, check_tensor
from lmlab.attention import causal_mask, dot_product_scores, masked_softmax
from lmlab.io import load_tensors, save_tensors
from lmlab.positions import RotaryEmbedding, apply_rotary, sinusoidal_positions

__all__ = [
    "TransformerConfig", "KVCache", "kv_cache_bytes_per_token", "MultiHeadAttention",
    "FeedForward", "TransformerBlock", "GPT", "Encoder", "EncoderDecoder", "save_model",
    "load_model",
]

NORMS = ("layernorm", "rmsnorm")
NORM_PLACEMENTS = ("pre", "post")
POSITIONS = ("learned", "sinusoidal", "rotary", "none")
FFNS = ("gelu", "gelu_tanh", "relu", "swiglu")

# torch >= 2.5 lets SDPA share key/value heads between query heads without copying them.
_SDPA_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 5)


@dataclass(frozen=True)
class TransformerConfig:
    """Every size and switch of a transformer, validated on creation.

    Presets: :meth:`tiny`, :meth:`small`, :meth:`gpt2_small`, and the shapes of the two real
    models of chapter 7, :meth:`minilm` (BERT) and :meth:`smollm2` (Llama). Each preset takes
    keyword overrides (``TransformerConfig.tiny(vocab_size=512)``).
    """

    vocab_size: int = 256  # V, number of token ids
    context_length: int = 128  # longest sequence the model reads (positions 0..context_length-1)
    d_model: int = 64  # C, width of every token's vector between blocks
    num_layers: int = 2  # number of blocks
    num_heads: int = 4  # H, query heads; d_model must be a multiple of it
    num_kv_heads: int | None = None  # G, key/value heads (None: = num_heads, i.e. plain MHA)
    d_ff: int | None = None  # hidden width of the FFN (None: 4 * d_model)
    ffn: str = "gelu"  # "gelu" (exact, BERT), "gelu_tanh" (GPT-2), "relu", "swiglu" (Llama)
    norm: str = "layernorm"  # "layernorm" or "rmsnorm" (Llama)
    norm_placement: str = "pre"  # "pre" (GPT-2, Llama) or "post" (original transformer, BERT)
    norm_eps: float = 1e-5  # epsilon of every norm (BERT 1e-12)
    final_norm: bool = True  # a norm after the last block (pre-norm models need it; BERT has none)
    position: str = "learned"  # "learned", "sinusoidal", "rotary" or "none"
    rope_base: float = 10000.0  # base of the rotary angles (used when position == "rotary")
    attention_bias: bool = True  # biases in the q, k, v and output projections
    mlp_bias: bool = True  # biases in the FFN's linear layers
    tie_embeddings: bool = True  # the LM head reuses the token embedding matrix
    type_vocab_size: int = 0  # token types (BERT's sentence A/B); 0 = none
    embedding_norm: bool = False  # a norm right after the embeddings (BERT)
    dropout: float = 0.0  # dropout on embeddings, attention weights and residual branches

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "d_model", "num_layers", "num_heads"):
            check_int(name, getattr(self, name))
        if self.num_kv_heads is None:
            object.__setattr__(self, "num_kv_heads", self.num_heads)
        check_int("num_kv_heads", self.num_kv_heads, maximum=self.num_heads)
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model: must be a multiple of num_heads={self.num_heads}, "
                             f"got {self.d_model}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_kv_heads: must divide num_heads={self.num_heads}, "
                             f"got {self.num_kv_heads}")
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        check_int("d_ff", self.d_ff)
        check_choice("ffn", self.ffn, FFNS)
        check_choice("norm", self.norm, NORMS)
        check_choice("norm_placement", self.norm_placement, NORM_PLACEMENTS)
        check_choice("position", self.position, POSITIONS)
        check_float("norm_eps", self.norm_eps, 0.0, 1.0, min_inclusive=False)
        check_float("rope_base", self.rope_base, 1.0, min_inclusive=False)
        check_float("dropout", self.dropout, 0.0, 1.0, max_inclusive=False)
        check_int("type_vocab_size", self.type_vocab_size, minimum=0)
        for name in ("final_norm", "attention_bias", "mlp_bias", "tie_embeddings",
                     "embedding_norm"):
            check_bool(name, getattr(self, name))
        if self.position == "rotary" and self.head_dim % 2:
            raise ValueError(f"position: rotary needs an even head_dim, got {self.head_dim}")
        if self.position == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"position: sinusoidal needs an even d_model, got {self.d_model}")

    @property
    def head_dim(self) -> int:
        """The width ``D`` of one head, ``d_model // num_heads``."""
        return self.d_model // self.num_heads

    def replace(self, **changes: Any) -> TransformerConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-ready)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TransformerConfig:
        """Build from :meth:`to_dict`'s output; an unknown field is an error naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"config: unknown fields {unknown}; allowed: {sorted(known)}")
        return cls(**values)

    @classmethod
    def tiny(cls, **overrides: Any) -> TransformerConfig:
        """2 layers, 64 wide, 4 heads, context 64: for tests and live demos."""
        return cls(**{**dict(vocab_size=256, context_length=64, d_model=64, num_layers=2,
                             num_heads=4), **overrides})

    @classmethod
    def small(cls, **overrides: Any) -> TransformerConfig:
        """4 layers, 128 wide, 4 heads, context 128: trains on a CPU in minutes."""
        return cls(**{**dict(vocab_size=1024, context_length=128, d_model=128, num_layers=4,
                             num_heads=4), **overrides})

    @classmethod
    def gpt2_small(cls, **overrides: Any) -> TransformerConfig:
        """GPT-2 small: 12 layers, 768 wide, 12 heads, context 1024, 124M parameters."""
        return cls(**{**dict(vocab_size=50257, context_length=1024, d_model=768, num_layers=12,
                             num_heads=12, ffn="gelu_tanh"), **overrides})

    @classmethod
    def minilm(cls, **overrides: Any) -> TransformerConfig:
        """all-MiniLM-L6-v2's shape (BERT): post-norm, exact GELU, token types, 6 x 384."""
        return cls(**{**dict(vocab_size=30522, context_length=512, d_model=384, num_layers=6,
                             num_heads=12, d_ff=1536, ffn="gelu", norm_placement="post",
                             norm_eps=1e-12, final_norm=False, type_vocab_size=2,
                             embedding_norm=True, tie_embeddings=False), **overrides})

    @classmethod
    def smollm2(cls, **overrides: Any) -> TransformerConfig:
        """SmolLM2-135M's shape (Llama): RMSNorm, rotary, SwiGLU, 9 query and 3 key/value heads."""
        return cls(**{**dict(vocab_size=49152, context_length=8192, d_model=576, num_layers=30,
                             num_heads=9, num_kv_heads=3, d_ff=1536, ffn="swiglu",
                             norm="rmsnorm", position="rotary", rope_base=100000.0,
                             attention_bias=False, mlp_bias=False), **overrides})


def kv_cache_bytes_per_token(config: TransformerConfig, dtype: torch.dtype = torch.float32) -> int:
    """Bytes a key/value cache holds per token: ``2 * layers * G * D * bytes``.

    Args:
        config: the model's config.
        dtype: the cache's dtype.

    Returns:
        Bytes per cached token (per sequence of the batch).

    Example:
        >>> kv_cache_bytes_per_token(TransformerConfig.smollm2())  # 30 layers, 3 kv heads of 64
        46080
    """
    if not isinstance(config, TransformerConfig):
        raise TypeError(f"config: expected a TransformerConfig, got {type(config).__name__}")
    item = torch.empty((), dtype=dtype).element_size()
    return 2 * config.num_layers * config.num_kv_heads * config.head_dim * item


class KVCache:
    """One attention layer's cached keys and values, grown as tokens are generated.

    Keys and values of the tokens seen so far are kept so that each new token needs only its
    own projections. The storage is allocated for ``max_length`` tokens on first use, in the
    dtype and on the device of the first keys.

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
            self.k = k.new_zeros(B, G, self.max_length, D)
            self.v = v.new_zeros(B, G, self.max_length, v.shape[-1])
        elif self.k.shape[0] != B or self.k.shape[1] != G or self.k.shape[3] != D:
            raise ValueError(f"k: shape {tuple(k.shape)} does not match the cache's "
                             f"(B, G, D) = {(self.k.shape[0], self.k.shape[1], self.k.shape[3])}")
        assert self.v is not None
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


def _norm(config: TransformerConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.d_model, eps=config.norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.norm_eps)


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


class TransformerBlock(nn.Module):
    """Self-attention, optional cross-attention, and the FFN, each with a residual and a norm.

    Pre-norm: ``x = x + sublayer(norm(x))``. Post-norm: ``x = norm(x + sublayer(x))``. For
    ablations, ``attention_enabled`` and ``ffn_enabled`` (plain attributes, ``True`` by default)
    switch a sublayer off, leaving only its residual path.

    Args:
        config: sizes and switches.
        cross_attention: add a cross-attention sublayer (the decoder of an encoder-decoder).
        kv_d_model: width of the encoder output for cross-attention (default ``d_model``).

    Shape:
        x ``(B, T, C)`` -> ``(B, T, C)``; with ``need_weights`` also the self-attention weights
        ``(B, H, T, S)``.
    """

    def __init__(self, config: TransformerConfig, cross_attention: bool = False,
                 kv_d_model: int | None = None) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config: expected a TransformerConfig, got {type(config).__name__}")
        c = config
        self.pre_norm = c.norm_placement == "pre"
        self.attn_norm = _norm(c)
        self.attn = MultiHeadAttention(c.d_model, c.num_heads, c.num_kv_heads, c.attention_bias,
                                       c.dropout)
        self.cross_norm = _norm(c) if cross_attention else None
        self.cross_attn = (MultiHeadAttention(c.d_model, c.num_heads, c.num_kv_heads,
                                              c.attention_bias, c.dropout, kv_d_model)
                           if cross_attention else None)
        self.ffn_norm = _norm(c)
        self.ffn = FeedForward(c.d_model, c.d_ff, c.ffn, c.mlp_bias)
        self.drop = nn.Dropout(c.dropout)
        self.attention_enabled = True
        self.ffn_enabled = True

    def _residual(self, x: torch.Tensor, norm: nn.Module, branch: Any) -> torch.Tensor:
        if self.pre_norm:
            return x + self.drop(branch(norm(x)))
        return norm(x + self.drop(branch(x)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *,
                is_causal: bool = False, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: KVCache | None = None, memory: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, need_weights: bool = False,
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """One block; see :meth:`MultiHeadAttention.forward` for the arguments.

        ``memory`` is the encoder output for cross-attention, ``memory_mask`` its mask
        (broadcastable to ``(B, H, T, S)``).
        """
        weights = None
        if self.attention_enabled:
            def attend(h: torch.Tensor) -> torch.Tensor:
                nonlocal weights
                out, weights = self.attn(h, mask=mask, is_causal=is_causal, rope=rope,
                                         cache=cache, need_weights=need_weights)
                return out
            x = self._residual(x, self.attn_norm, attend)
        if self.cross_attn is not None:
            if memory is None:
                raise ValueError("memory: a block with cross-attention needs the encoder output")
            cross_attn, cross_norm = self.cross_attn, self.cross_norm
            x = self._residual(x, cross_norm,
                               lambda h: cross_attn(h, memory, memory_mask)[0])
        if self.ffn_enabled:
            x = self._residual(x, self.ffn_norm, self.ffn)
        return (x, weights) if need_weights else x


def _check_ids(name: str, ids: object, vocab_size: int, context_length: int,
               weight: torch.Tensor, offset: int = 0) -> torch.Tensor:
    ids = check_tensor(name, ids, ndim=2, dtype="int")
    if ids.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one token, got shape {tuple(ids.shape)}")
    if ids.shape[1] + offset > context_length:
        raise ValueError(f"{name}: {ids.shape[1] + offset} tokens exceed context_length="
                         f"{context_length}")
    if ids.device != weight.device:
        raise ValueError(f"{name}: on {ids.device} but the model is on {weight.device}")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{name}: ids must be in [0, {vocab_size}), got [{low}, {high}]")
    return ids


class _Embeddings(nn.Module):
    """Token (+ absolute position) (+ token type) embeddings, then norm and dropout."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = (nn.Embedding(c.context_length, c.d_model) if c.position == "learned"
                        else None)
        if c.position == "sinusoidal":
            self.register_buffer("sinusoid", sinusoidal_positions(c.context_length, c.d_model),
                                 persistent=False)  # (T, C)
        else:
            self.sinusoid = None
        self.type_emb = nn.Embedding(c.type_vocab_size, c.d_model) if c.type_vocab_size else None
        self.norm = _norm(c) if c.embedding_norm else None
        self.rotary = (RotaryEmbedding(c.head_dim, c.context_length, c.rope_base)
                       if c.position == "rotary" else None)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, ids: torch.Tensor, offset: int = 0,
                token_type_ids: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        T = ids.shape[1]
        x = self.tok_emb(ids)  # (B, T, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(offset, offset + T, device=ids.device))  # (T, C)
        if self.sinusoid is not None:
            x = x + self.sinusoid[offset:offset + T]
        if self.type_emb is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(ids)
            x = x + self.type_emb(token_type_ids)
        elif token_type_ids is not None:
            raise ValueError("token_type_ids: this config has type_vocab_size=0")
        if self.norm is not None:
            x = self.norm(x)
        rope = self.rotary(T, offset) if self.rotary is not None else None
        return self.drop(x), rope


def _init_weights(model: nn.Module, num_layers: int) -> None:
    """GPT-2's initialisation: N(0, 0.02), residual output projections scaled by 1/sqrt(2L)."""
    for name, p in model.named_parameters():
        if p.dim() < 2:
            continue  # biases stay zero, norms one
        std = 0.02
        if name.endswith(("out_proj.weight", "down_proj.weight")):
            std = 0.02 / (2 * num_layers) ** 0.5
        nn.init.normal_(p, 0.0, std)
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


class GPT(nn.Module):
    """A decoder-only transformer language model: causal blocks and an LM head.

    Args:
        config: sizes and switches.
        cross_d_model: give every block cross-attention to an encoder output of this width (the
            decoder of :class:`EncoderDecoder`); ``None`` for a plain GPT.

    Shape:
        ids ``(B, T)`` -> logits ``(B, T, V)``: the scores of the next token at every position.

    Example:
        >>> torch.manual_seed(0) and None
        >>> model = GPT(TransformerConfig.tiny())
        >>> model(torch.tensor([[1, 2, 3]])).shape
        torch.Size([1, 3, 256])
    """

    def __init__(self, config: TransformerConfig, cross_d_model: int | None = None) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config: expected a TransformerConfig, got {type(config).__name__}")
        if cross_d_model is not None:
            check_int("cross_d_model", cross_d_model)
        self.config = config
        self.cross_d_model = cross_d_model
        self.embed = _Embeddings(config)
        self.blocks = nn.ModuleList(
            TransformerBlock(config, cross_attention=cross_d_model is not None,
                             kv_d_model=cross_d_model) for _ in range(config.num_layers))
        self.norm = _norm(config) if config.final_norm else None
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        _init_weights(self, config.num_layers)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.tok_emb.weight

    def new_cache(self) -> list[KVCache]:
        """An empty :class:`KVCache` per block, for :meth:`forward`'s ``cache``."""
        return [KVCache(self.config.context_length) for _ in self.blocks]

    def forward(self, ids: torch.Tensor, *, cache: list[KVCache] | None = None,
                memory: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None,
                need_weights: bool = False, last_only: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Next-token logits at every position (or only the last).

        Args:
            ids: token ids.
            cache: from :meth:`new_cache`; the ids then continue the cached tokens.
            memory: encoder output ``(B, S, cross_d_model)`` (decoders of an encoder-decoder).
            memory_mask: boolean ``(B, S)``, ``True`` on real source tokens.
            need_weights: also return each block's attention weights (teaching path).
            last_only: compute the LM head for the last position only (generation), giving
                logits ``(B, 1, V)``.

        Returns:
            logits ``(B, T, V)``, or ``(logits, [weights per block])``.
        """
        offset = 0
        if cache is not None:
            if len(cache) != len(self.blocks):
                raise ValueError(f"cache: expected {len(self.blocks)} layers, got {len(cache)}")
            offset = cache[0].length
        _check_ids("ids", ids, self.config.vocab_size, self.config.context_length,
                   self.lm_head.weight, offset)
        if (memory is None) != (self.cross_d_model is None):
            raise ValueError("memory: needed exactly when the model has cross-attention "
                             f"(cross_d_model={self.cross_d_model})")
        mmask = None if memory_mask is None else memory_mask[:, None, None, :]  # (B, 1, 1, S)
        x, rope = self.embed(ids, offset)  # (B, T, C)
        all_weights = []
        for i, block in enumerate(self.blocks):
            x = block(x, is_causal=True, rope=rope, cache=None if cache is None else cache[i],
                      memory=memory, memory_mask=mmask, need_weights=need_weights)
            if need_weights:
                x, w = x
                all_weights.append(w)
        if last_only:
            x = x[:, -1:]  # (B, 1, C)
        if self.norm is not None:
            x = self.norm(x)
        logits = self.lm_head(x)  # (B, T, V)
        return (logits, all_weights) if need_weights else logits

    def num_parameters(self) -> int:
        """Trainable parameters, tied weights counted once."""
        return sum(p.numel() for p in self.parameters())


class Encoder(nn.Module):
    """A bidirectional transformer encoder (BERT): every token sees every real token.

    Args:
        config: sizes and switches (BERT: ``TransformerConfig.minilm()``).

    Shape:
        ids ``(B, T)``, token_type_ids ``(B, T)``, padding_mask ``(B, T)`` -> ``(B, T, C)``.

    Example:
        >>> enc = Encoder(TransformerConfig.tiny(type_vocab_size=2))
        >>> enc(torch.tensor([[5, 6, 0]]), padding_mask=torch.tensor([[True, True, False]])).shape
        torch.Size([1, 3, 64])
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config: expected a TransformerConfig, got {type(config).__name__}")
        self.config = config
        self.embed = _Embeddings(config)
        self.blocks = nn.ModuleList(TransformerBlock(config) for _ in range(config.num_layers))
        self.norm = _norm(config) if config.final_norm else None
        _init_weights(self, config.num_layers)

    def forward(self, ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                padding_mask: torch.Tensor | None = None, *, need_weights: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Contextual vectors for every token.

        Args:
            ids: token ids.
            token_type_ids: segment ids (sentence A = 0, B = 1); zeros when ``None``.
            padding_mask: boolean, ``True`` on real tokens, ``False`` on padding.
            need_weights: also return each block's attention weights (teaching path).

        Returns:
            hidden states ``(B, T, C)``, or ``(hidden, [weights per block])``.
        """
        _check_ids("ids", ids, self.config.vocab_size, self.config.context_length,
                   self.embed.tok_emb.weight)
        mask = None
        if padding_mask is not None:
            check_tensor("padding_mask", padding_mask, ndim=2, dtype="bool")
            if padding_mask.shape != ids.shape:
                raise ValueError(f"padding_mask: expected shape {tuple(ids.shape)}, got "
                                 f"{tuple(padding_mask.shape)}")
            mask = padding_mask[:, None, None, :]  # (B, 1, 1, S)
        if token_type_ids is not None:
            check_tensor("token_type_ids", token_type_ids, ndim=2, dtype="int")
            if token_type_ids.shape != ids.shape:
                raise ValueError(f"token_type_ids: expected shape {tuple(ids.shape)}, got "
                                 f"{tuple(token_type_ids.shape)}")
        x, rope = self.embed(ids, 0, token_type_ids)  # (B, T, C)
        all_weights = []
        for block in self.blocks:
            x = block(x, mask, rope=rope, need_weights=need_weights)
            if need_weights:
                x, w = x
                all_weights.append(w)
        if self.norm is not None:
            x = self.norm(x)
        return (x, all_weights) if need_weights else x


class EncoderDecoder(nn.Module):
    """An encoder and a decoder that cross-attends to it (the original transformer, T5).

    Args:
        encoder_config: the encoder's sizes; its ``vocab_size`` is the source vocabulary.
        decoder_config: the decoder's sizes; its ``vocab_size`` is the target vocabulary.

    Shape:
        src ``(B, S)``, tgt ``(B, T)``, src_padding_mask ``(B, S)`` -> logits ``(B, T, V)``.
    """

    def __init__(self, encoder_config: TransformerConfig,
                 decoder_config: TransformerConfig | None = None) -> None:
        super().__init__()
        decoder_config = encoder_config if decoder_config is None else decoder_config
        if not isinstance(decoder_config, TransformerConfig):
            raise TypeError("decoder_config: expected a TransformerConfig, got "
                            f"{type(decoder_config).__name__}")
        self.encoder = Encoder(encoder_config)
        self.decoder = GPT(decoder_config, cross_d_model=encoder_config.d_model)

    def encode(self, src: torch.Tensor, src_padding_mask: torch.Tensor | None = None
               ) -> torch.Tensor:
        """The encoder's output ``(B, S, C)``."""
        return self.encoder(src, padding_mask=src_padding_mask)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor,
                src_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-target-token logits at every target position (teacher forcing)."""
        memory = self.encode(src, src_padding_mask)  # (B, S, C)
        return self.decoder(tgt, memory=memory, memory_mask=src_padding_mask)  # (B, T, V)

    def num_parameters(self) -> int:
        """Trainable parameters, tied weights counted once."""
        return sum(p.numel() for p in self.parameters())


_MODELS = {"GPT": GPT, "Encoder": Encoder, "EncoderDecoder": EncoderDecoder}


def _configs_of(model: nn.Module) -> dict[str, Any]:
    if isinstance(model, EncoderDecoder):
        return {"encoder": model.encoder.config.to_dict(),
                "decoder": model.decoder.config.to_dict()}
    if isinstance(model, GPT):
        return {"config": model.config.to_dict(), "cross_d_model": model.cross_d_model}
    if isinstance(model, Encoder):
        return {"config": model.config.to_dict()}
    raise TypeError(f"model: expected a GPT, Encoder or EncoderDecoder, got {type(model).__name__}")


def save_model(model: nn.Module, path: str | os.PathLike[str],
               metadata: dict[str, str] | None = None) -> None:
    """Save a model's weights and config to one safetensors file, atomically.

    Args:
        model: a :class:`GPT`, :class:`Encoder` or :class:`EncoderDecoder`.
        path: the ``.safetensors`` file to write.
        metadata: extra strings to store (e.g. the training command).
    """
    configs = _configs_of(model)
    meta = {**(metadata or {}), "lmlab_model": type(model).__name__,
            "lmlab_config": json.dumps(configs, sort_keys=True)}
    # tied weights are stored once, under the embedding's name
    state = {k: v for k, v in model.state_dict().items()
             if not (k.endswith("lm_head.weight") and _tied(model, k))}
    save_tensors(state, path, metadata=meta)


def _tied(model: nn.Module, key: str) -> bool:
    owner = model.decoder if isinstance(model, EncoderDecoder) else model
    return isinstance(owner, GPT) and owner.config.tie_embeddings


def _read_header(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except FileNotFoundError:
        raise
    except Exception as err:  # safetensors raises its own error types on corrupt headers
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from err
    if "lmlab_model" not in meta or "lmlab_config" not in meta:
        raise ValueError(f"{path}: no lmlab model config in the file's metadata")
    if meta["lmlab_model"] not in _MODELS:
        raise ValueError(f"{path}: unknown model class {meta['lmlab_model']!r}")
    return meta["lmlab_model"], json.loads(meta["lmlab_config"])


def load_model(path: str | os.PathLike[str], expected: nn.Module | None = None,
               device: str | torch.device = "cpu") -> nn.Module:
    """Load a model saved by :func:`save_model`; its config is read from the file.

    Args:
        path: the ``.safetensors`` file.
        expected: an existing model to load into; its class and config must match the file's,
            or a ``ValueError`` names the differing fields before any weight is read.
        device: where to put the weights.

    Returns:
        The model (``expected`` itself when given), in eval mode.
    """
    from lmlab._checks import check_file
    path = check_file("path", path)
    name, configs = _read_header(path)
    if expected is not None:
        if type(expected).__name__ != name:
            raise ValueError(f"{path}: holds a {name}, not a {type(expected).__name__}")
        mine = _configs_of(expected)
        if mine != configs:
            diffs = _diff(configs, mine)
            raise ValueError(f"{path}: config does not match the model's: {diffs}")
        model = expected
    elif name == "EncoderDecoder":
        model = EncoderDecoder(TransformerConfig.from_dict(configs["encoder"]),
                               TransformerConfig.from_dict(configs["decoder"]))
    elif name == "GPT":
        model = GPT(TransformerConfig.from_dict(configs["config"]), configs["cross_d_model"])
    else:
        model = Encoder(TransformerConfig.from_dict(configs["config"]))
    try:
        state = load_tensors(path)
    except Exception as err:
        raise ValueError(f"{path}: could not read the weights ({err})") from err
    expected_keys = set(model.state_dict())
    missing = sorted(k for k in expected_keys - set(state)
                     if not (k.endswith("lm_head.weight") and _tied(model, k)))
    unexpected = sorted(set(state) - expected_keys)
    if missing or unexpected:
        raise ValueError(f"{path}: missing tensors {missing[:5]}, unexpected {unexpected[:5]}")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit the config ({err})") from err
    return model.to(device).eval()


def _diff(stored: Any, mine: Any, prefix: str = "") -> str:
    if isinstance(stored, dict) and isinstance(mine, dict):
        parts = [_diff(stored.get(k), mine.get(k), f"{prefix}{k}.")
                 for k in sorted(set(stored) | set(mine)) if stored.get(k) != mine.get(k)]
        return "; ".join(parts)
    return f"{prefix.rstrip('.')} is {stored!r} in the file, {mine!r} in the model"
