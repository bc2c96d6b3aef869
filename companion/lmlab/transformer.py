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

All are built from one :class:`TransformerConfig`. The sublayers, ``MultiHeadAttention``
(MHA, GQA and MQA through ``num_kv_heads``, a teaching path and a fast SDPA path, a
``KVCache``) and ``FeedForward``, live in :mod:`lmlab.sublayers` and are re-exported here.
Boolean masks mean ``True = may attend``. Positions live in :mod:`lmlab.positions`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lmlab._checks import (
    check_bool, check_choice, check_float, check_ids, check_int, check_tensor,
)
from lmlab.positions import RotaryEmbedding, sinusoidal_positions
from lmlab.sublayers import FFNS, FeedForward, KVCache, MultiHeadAttention

__all__ = [
    "TransformerConfig", "KVCache", "kv_cache_bytes_per_token", "MultiHeadAttention",
    "FeedForward", "TransformerBlock", "GPT", "Encoder", "EncoderDecoder",
]

NORMS = ("layernorm", "rmsnorm")
NORM_PLACEMENTS = ("pre", "post")
POSITIONS = ("learned", "sinusoidal", "rotary", "none")


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
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"changes: unknown fields {unknown}; allowed: "
                             f"{sorted(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-ready)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TransformerConfig:
        """Build from :meth:`to_dict`'s output; an unknown field is an error naming it."""
        if not isinstance(values, Mapping):
            raise TypeError(f"values: expected a dict of config fields, got "
                            f"{type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"config: unknown fields {unknown}; allowed: {sorted(known)}")
        return cls(**values)

    @classmethod
    def _preset(cls, values: dict[str, Any], overrides: dict[str, Any]) -> TransformerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"overrides: unknown fields {unknown}; allowed: {sorted(known)}")
        return cls(**{**values, **overrides})

    @classmethod
    def tiny(cls, **overrides: Any) -> TransformerConfig:
        """2 layers, 64 wide, 4 heads, context 64: for tests and live demos."""
        return cls._preset(dict(vocab_size=256, context_length=64, d_model=64, num_layers=2,
                                num_heads=4), overrides)

    @classmethod
    def small(cls, **overrides: Any) -> TransformerConfig:
        """4 layers, 128 wide, 4 heads, context 128: trains on a CPU in minutes."""
        return cls._preset(dict(vocab_size=1024, context_length=128, d_model=128, num_layers=4,
                                num_heads=4), overrides)

    @classmethod
    def gpt2_small(cls, **overrides: Any) -> TransformerConfig:
        """GPT-2 small: 12 layers, 768 wide, 12 heads, context 1024, 124M parameters."""
        return cls._preset(dict(vocab_size=50257, context_length=1024, d_model=768, num_layers=12,
                                num_heads=12, ffn="gelu_tanh"), overrides)

    @classmethod
    def minilm(cls, **overrides: Any) -> TransformerConfig:
        """all-MiniLM-L6-v2's shape (BERT): post-norm, exact GELU, token types, 6 x 384."""
        return cls._preset(dict(vocab_size=30522, context_length=512, d_model=384, num_layers=6,
                                num_heads=12, d_ff=1536, ffn="gelu", norm_placement="post",
                                norm_eps=1e-12, final_norm=False, type_vocab_size=2,
                                embedding_norm=True, tie_embeddings=False), overrides)

    @classmethod
    def smollm2(cls, **overrides: Any) -> TransformerConfig:
        """SmolLM2-135M's shape (Llama): RMSNorm, rotary, SwiGLU, 9 query and 3 key/value heads."""
        return cls._preset(dict(vocab_size=49152, context_length=8192, d_model=576, num_layers=30,
                                num_heads=9, num_kv_heads=3, d_ff=1536, ffn="swiglu",
                                norm="rmsnorm", position="rotary", rope_base=100000.0,
                                attention_bias=False, mlp_bias=False), overrides)


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
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype: expected a torch.dtype such as torch.bfloat16, got "
                        f"{type(dtype).__name__} {dtype!r}")
    item = torch.empty((), dtype=dtype).element_size()
    return 2 * config.num_layers * config.num_kv_heads * config.head_dim * item


def _norm(config: TransformerConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.d_model, eps=config.norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.norm_eps)


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
        check_bool("cross_attention", cross_attention)
        if kv_d_model is not None:
            check_int("kv_d_model", kv_d_model)
            if not cross_attention:
                raise ValueError("kv_d_model: only a block with cross_attention=True reads "
                                 "another sequence")
        c = config
        self.d_model = c.d_model
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

        ``memory`` is the encoder output ``(B, S, kv_d_model)`` for cross-attention,
        ``memory_mask`` its mask (broadcastable to ``(B, H, T, S)``, like ``mask``).

        Raises:
            TypeError: ``x`` or ``memory`` is not a floating-point tensor.
            ValueError: ``x`` is not ``(B, T, d_model)``; ``memory`` is missing on a block with
                cross-attention, given to one without, or not ``(B, S, kv_d_model)``; and
                :meth:`MultiHeadAttention.forward`'s cases.
        """
        check_tensor("x", x, ndim=3, dtype="float")
        if x.shape[-1] != self.d_model or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"x: expected shape (B, T, d_model={self.d_model}) with B, T >= 1, "
                             f"got {tuple(x.shape)}")
        weight = self.attn.out_proj.weight
        if x.device != weight.device:
            raise ValueError(f"x: on {x.device} but the block's weights are on {weight.device}")
        cross_attn, cross_norm = self.cross_attn, self.cross_norm
        if cross_attn is None:
            if memory is not None or memory_mask is not None:
                raise ValueError("memory: this block has no cross-attention (build it with "
                                 "cross_attention=True)")
        elif memory is None:
            raise ValueError("memory: a block with cross-attention needs the encoder output")
        else:
            _check_memory(memory, x.shape[0], cross_attn.kv_d_model, x.device)
            cross_attn.check_mask(memory_mask, x.shape[0], x.shape[1], memory.shape[1],
                                  x.device, "memory_mask")
        weights = None
        if self.attention_enabled:
            def attend(h: torch.Tensor) -> torch.Tensor:
                nonlocal weights
                out, weights = self.attn(h, mask=mask, is_causal=is_causal, rope=rope,
                                         cache=cache, need_weights=need_weights)
                return out
            x = self._residual(x, self.attn_norm, attend)
        if cross_attn is not None:
            x = self._residual(x, cross_norm,
                               lambda h: cross_attn(h, memory, memory_mask)[0])
        if self.ffn_enabled:
            x = self._residual(x, self.ffn_norm, self.ffn)
        return (x, weights) if need_weights else x


def _check_memory(memory: object, batch: int, width: int, device: torch.device) -> None:
    """The encoder output for cross-attention: ``(batch, S, width)`` floats, ``S >= 1``."""
    memory = check_tensor("memory", memory, ndim=3, dtype="float")
    if memory.shape[0] != batch or memory.shape[2] != width or memory.shape[1] == 0:
        raise ValueError(f"memory: expected shape (B={batch}, S, {width}) with S >= 1 (the "
                         f"batch of the ids, the encoder's width), got {tuple(memory.shape)}")
    if memory.device != device:
        raise ValueError(f"memory: on {memory.device} but the queries are on {device}")


def _check_ids(name: str, ids: object, vocab_size: int, context_length: int,
               weight: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Shape, device and range of a model's ids; the range check never syncs a GPU."""
    ids = check_tensor(name, ids, ndim=2, dtype="int")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one sequence of at least one token, got "
                         f"shape {tuple(ids.shape)}")
    if ids.shape[1] + offset > context_length:
        raise ValueError(f"{name}: {ids.shape[1] + offset} tokens exceed context_length="
                         f"{context_length}")
    if ids.device != weight.device:
        raise ValueError(f"{name}: on {ids.device} but the model is on {weight.device}")
    return check_ids(name, ids, vocab_size)


def _check_padding(name: str, mask: object, shape: torch.Size, device: torch.device
                   ) -> torch.Tensor:
    """A ``(B, S)`` boolean padding mask, ``True`` on real tokens, matching its ids."""
    mask = check_tensor(name, mask, ndim=2, dtype="bool")
    if mask.shape != shape:
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(mask.shape)}")
    if mask.device != device:
        raise ValueError(f"{name}: on {mask.device} but the ids are on {device}")
    return mask


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
            if not isinstance(cache, (list, tuple)) or len(cache) != len(self.blocks):
                raise ValueError(f"cache: expected a list of {len(self.blocks)} KVCache (one "
                                 "per layer, from new_cache())")
            if not all(isinstance(c, KVCache) and c.length == cache[0].length for c in cache):
                raise ValueError("cache: expected KVCache objects holding the same tokens "
                                 "(from new_cache())")
            offset = cache[0].length
        check_bool("need_weights", need_weights)
        check_bool("last_only", last_only)
        _check_ids("ids", ids, self.config.vocab_size, self.config.context_length,
                   self.lm_head.weight, offset)
        if (memory is None) != (self.cross_d_model is None):
            raise ValueError("memory: needed exactly when the model has cross-attention "
                             f"(cross_d_model={self.cross_d_model})")
        mmask = None
        if memory is not None:
            assert self.cross_d_model is not None
            _check_memory(memory, ids.shape[0], self.cross_d_model, ids.device)
            if memory_mask is not None:
                _check_padding("memory_mask", memory_mask, memory.shape[:2], memory.device)
                mmask = memory_mask[:, None, None, :]  # (B, 1, 1, S)
        elif memory_mask is not None:
            raise ValueError("memory_mask: given without memory")
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
        check_bool("need_weights", need_weights)
        mask = None
        if padding_mask is not None:
            _check_padding("padding_mask", padding_mask, ids.shape, ids.device)
            mask = padding_mask[:, None, None, :]  # (B, 1, 1, S)
        if token_type_ids is not None:
            if not self.config.type_vocab_size:
                raise ValueError("token_type_ids: this config has type_vocab_size=0")
            check_tensor("token_type_ids", token_type_ids, ndim=2, dtype="int")
            if token_type_ids.shape != ids.shape or token_type_ids.device != ids.device:
                raise ValueError(f"token_type_ids: expected shape {tuple(ids.shape)} on "
                                 f"{ids.device} (like ids), got {tuple(token_type_ids.shape)} "
                                 f"on {token_type_ids.device}")
            check_ids("token_type_ids", token_type_ids, self.config.type_vocab_size)
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
        if not isinstance(encoder_config, TransformerConfig):
            raise TypeError("encoder_config: expected a TransformerConfig, got "
                            f"{type(encoder_config).__name__}")
        decoder_config = encoder_config if decoder_config is None else decoder_config
        if not isinstance(decoder_config, TransformerConfig):
            raise TypeError("decoder_config: expected a TransformerConfig, got "
                            f"{type(decoder_config).__name__}")
        self.encoder = Encoder(encoder_config)
        self.decoder = GPT(decoder_config, cross_d_model=encoder_config.d_model)

    def encode(self, src: torch.Tensor, src_padding_mask: torch.Tensor | None = None
               ) -> torch.Tensor:
        """The encoder's output ``(B, S, C)``."""
        self._check_src(src, src_padding_mask)
        return self.encoder(src, padding_mask=src_padding_mask)

    def _check_src(self, src: object, src_padding_mask: object) -> torch.Tensor:
        c = self.encoder.config
        src = _check_ids("src", src, c.vocab_size, c.context_length,
                         self.encoder.embed.tok_emb.weight)
        if src_padding_mask is not None:
            _check_padding("src_padding_mask", src_padding_mask, src.shape, src.device)
        return src

    def forward(self, src: torch.Tensor, tgt: torch.Tensor,
                src_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-target-token logits at every target position (teacher forcing).

        Raises:
            ValueError: ``src`` and ``tgt`` hold different numbers of sequences, and the cases
                of :meth:`Encoder.forward` and :meth:`GPT.forward`.
        """
        src = self._check_src(src, src_padding_mask)
        tgt = check_tensor("tgt", tgt, ndim=2, dtype="int")
        if src.shape[0] != tgt.shape[0]:
            raise ValueError(f"tgt: expected the batch of src ({src.shape[0]} sequences), got "
                             f"shape {tuple(tgt.shape)}")
        memory = self.encoder(src, padding_mask=src_padding_mask)  # (B, S, C)
        return self.decoder(tgt, memory=memory, memory_mask=src_padding_mask)  # (B, T, V)

    def num_parameters(self) -> int:
        """Trainable parameters, tied weights counted once."""
        return sum(p.numel() for p in self.parameters())
