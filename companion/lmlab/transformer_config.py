"""The config of a transformer: every size and switch, validated on creation, with presets.

:class:`TransformerConfig` builds every model of :mod:`lmlab.transformer` (GPT, encoder,
encoder-decoder) and the real models of chapter 7 (:meth:`TransformerConfig.minilm`,
:meth:`TransformerConfig.smollm2`); :func:`kv_cache_bytes_per_token` is what a config's
key/value cache costs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from lmlab._checks import check_bool, check_choice, check_float, check_int
from lmlab.sublayers import FFNS

__all__ = ["EXPERIMENT_SWITCHES", "NORMS", "NORM_PLACEMENTS", "POSITIONS", "TransformerConfig",
           "kv_cache_bytes_per_token"]

NORMS = ("layernorm", "rmsnorm")
"""The norms a config may choose."""
NORM_PLACEMENTS = ("pre", "post")
"""The two places for the norms, before each sublayer (GPT-2, Llama) or after its residual
(BERT)."""
POSITIONS = ("learned", "sinusoidal", "rotary", "none")
"""How a config encodes positions."""
EXPERIMENT_SWITCHES = ("block_norms", "residual")
"""Fields that only experiments turn off; ``True`` in every model file written before them."""


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
    block_norms: bool = True  # False: no norm inside the blocks (final and embedding norms stay)
    residual: bool = True  # False: no skip path, x = sublayer(norm(x)) (experiments only)

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
        for name in ("final_norm", "block_norms", "residual", "attention_bias", "mlp_bias",
                     "tie_embeddings", "embedding_norm"):
            check_bool(name, getattr(self, name))
        if self.position == "rotary" and self.head_dim % 2:
            raise ValueError(f"position: rotary needs an even head_dim, got {self.head_dim}")
        if self.position == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"position: sinusoidal needs an even d_model, got {self.d_model}")

    def __repr__(self) -> str:
        # The two experiment switches show only when off, so a usual config reads as before.
        shown = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                 if f.name not in EXPERIMENT_SWITCHES or getattr(self, f.name) is not True]
        return f"{type(self).__name__}({', '.join(shown)})"

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
