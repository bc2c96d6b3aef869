"""The two sublayers of a transformer block: multi-head attention and the feed-forward network.

:class:`MultiHeadAttention` covers multi-head, grouped-query and multi-query attention through
``num_kv_heads``, self- and cross-attention, masks and a per-layer :class:`KVCache`. The query,
key and value projections are stored fused, one ``qkv_proj`` matrix of ``(H + 2G) D`` rows (as
nanoGPT and :class:`torch.nn.MultiheadAttention` do), so self-attention projects with one
matrix product. It has a teaching path (each line an equation, the weights returned for plots)
and a fast path through :func:`torch.nn.functional.scaled_dot_product_attention` (with
``enable_gqa`` where torch has it); both give the same result for every mask.
:class:`FeedForward` is the position-wise MLP (GELU, tanh-GELU, ReLU or SwiGLU).
:mod:`lmlab.transformer` builds blocks and models from them and re-exports both classes.

Masks, as in :func:`torch.nn.functional.scaled_dot_product_attention`: a boolean mask means
``True = may attend``; a floating-point mask is added to the scores (``0`` keeps a key,
``-inf`` removes it). Either is broadcastable to ``(B, H, T, S)``: ``(T, S)``, ``(B, T, S)``
as ``mask[:, None]``, a key padding mask ``(B, S)`` as ``mask[:, None, None, :]``, or the full
``(B, H, T, S)``. A query left with no key it may attend to (every key masked) gets a zero
vector, on every path and device.
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

# A CPU decode step with at least this many query rows (batch x query heads) shares key/value
# heads by one grouped matrix product; fewer rows go to SDPA. With one thread, against SDPA's
# enable_gqa: 1.1x-2.1x at 32 rows or more for caches of 256-4,096 tokens; at 6-12 rows 0.5x-0.9x
# below 1,024 cached tokens and at most 1.1x above (the product's three calls cost more than
# the keys it reads once). Measured by `python benchmarks/bench_gqa.py --sweep`.
_GROUPED_DECODE_ROWS = 32


def _check_like(name: str, value: torch.Tensor, weight: torch.Tensor) -> None:
    """``value`` must be on the weights' device, and of their dtype (or, under autocast, of
    float32 or the autocast dtype)."""
    if value.device != weight.device:
        raise ValueError(f"{name}: on {value.device} but the layer's weights are on "
                         f"{weight.device}; move one of them (.to(device))")
    if value.dtype == weight.dtype:
        return
    kind = value.device.type
    if kind in ("cpu", "cuda", "mps", "xpu") and torch.is_autocast_enabled(kind) and \
            value.dtype in (torch.float32, torch.get_autocast_dtype(kind)):
        return
    raise TypeError(f"{name}: dtype {value.dtype} differs from the layer's weights "
                    f"({weight.dtype}); convert one of them, or use autocast")


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
        self.k: torch.Tensor | None = None  # (B, G, capacity, D)
        self.v: torch.Tensor | None = None

    def check_update(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Raise unless :meth:`update` accepts ``k`` and ``v`` (nothing is stored).

        Raises:
            TypeError: k or v is not a floating-point tensor, or their dtypes differ (from each
                other or from what is stored).
            ValueError: not 4-D, empty, k and v of different shapes or devices, a layout other
                than the stored ``(B, G, D)``, another device, or more than ``max_length``
                tokens in all.
        """
        check_tensor("k", k, ndim=4, dtype="float")
        check_tensor("v", v, ndim=4, dtype="float")
        B, G, T, D = k.shape
        if B == 0 or G == 0 or T == 0 or D == 0:
            raise ValueError(f"k: expected non-empty (B, G, T, D), got shape {tuple(k.shape)}")
        if v.shape != k.shape:
            raise ValueError(f"v: expected k's shape (B, G, T, D) = {tuple(k.shape)}, got "
                             f"{tuple(v.shape)}")
        if v.dtype != k.dtype:
            raise TypeError(f"v: dtype {v.dtype} differs from k's {k.dtype}")
        if v.device != k.device:
            raise ValueError(f"v: on {v.device} but k is on {k.device}")
        if self.length + T > self.max_length:
            raise ValueError(f"k: {self.length} cached + {T} new tokens exceed the cache's "
                             f"max_length {self.max_length}")
        if self.k is not None:
            stored = (self.k.shape[0], self.k.shape[1], self.k.shape[3])
            if (B, G, D) != stored:
                raise ValueError(f"k: (B, G, D) = {(B, G, D)} does not match the cache's "
                                 f"{stored}")
            if k.dtype != self.k.dtype:
                raise TypeError(f"k: dtype {k.dtype} differs from the cache's {self.k.dtype}")
            if k.device != self.k.device:
                raise ValueError(f"k: on {k.device} but the cache is on {self.k.device}")

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append new keys and values; return every key and value stored so far.

        Args:
            k: the new tokens' keys.
            v: their values (k's shape, dtype and device).

        Returns:
            ``(keys, values)`` of every token stored, the new ones last.

        Shape:
            k, v ``(B, G, T, D)`` -> ``(B, G, S, D)`` each, ``S`` the tokens stored so far.
        """
        self.check_update(k, v)
        B, G, T, D = k.shape
        if self.k is None or self.v is None:
            capacity = min(self.max_length, max(T, 256))
            self.k = k.new_zeros(B, G, capacity, D)
            self.v = v.new_zeros(B, G, capacity, D)
        if self.length + T > self.k.shape[2]:  # grow by doubling, up to max_length
            capacity = min(self.max_length, max(2 * self.k.shape[2], self.length + T))
            self.k = torch.cat([self.k, self.k.new_zeros(B, G, capacity - self.k.shape[2], D)], 2)
            self.v = torch.cat([self.v, self.v.new_zeros(B, G, capacity - self.v.shape[2], D)], 2)
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

    The projections are stored fused: ``qkv_proj`` holds the query rows ``[0, HD)``, then the
    key rows and the value rows (``GD`` each); self-attention projects with one matrix product,
    cross-attention uses the query rows on ``x`` and the key/value rows on ``context``. When the
    keys and values come from a sequence of another width (``kv_d_model != d_model``) there are
    two matrices instead, ``q_proj`` and ``kv_proj`` (key rows, then value rows), and the layer
    is for cross-attention only. :meth:`qkv_weights` and :meth:`qkv_biases` give the three
    matrices either way.

    Args:
        d_model: width ``C`` of the input and output.
        num_heads: query heads ``H``; ``d_model`` must be a multiple of it.
        num_kv_heads: key/value heads ``G`` (divides ``num_heads``); ``None`` means ``num_heads``.
        bias: biases in the projections.
        dropout: dropout on the attention weights (training only).
        kv_d_model: width of the sequence keys and values come from (cross-attention to an
            encoder of another width); ``None`` means ``d_model``.

    Shape:
        x ``(B, T, C)``, context ``(B, S, kv_d_model)``, mask broadcastable to ``(B, H, T, S)``
        -> out ``(B, T, C)``, weights ``(B, H, T, S)`` (or ``None`` on the fast path).

    Example:
        >>> attn = MultiHeadAttention(64, 8, num_kv_heads=2)
        >>> attn.qkv_proj.weight.shape  # (H + 2G) D = (8 + 2 * 2) * 8 rows
        torch.Size([96, 64])
        >>> out, _ = attn(torch.randn(1, 5, 64), is_causal=True)
        >>> out.shape
        torch.Size([1, 5, 64])
    """

    qkv_proj: nn.Linear | None
    q_proj: nn.Linear | None
    kv_proj: nn.Linear | None

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
        self.kv_d_model = kv_d_model
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        H, G, D = num_heads, num_kv_heads, self.head_dim
        if kv_d_model == d_model:  # one fused matrix: query rows, key rows, value rows
            self.qkv_proj = nn.Linear(d_model, (H + 2 * G) * D, bias=bias)
            self.q_proj = self.kv_proj = None
        else:  # keys and values read another width: two matrices
            self.qkv_proj = None
            self.q_proj = nn.Linear(d_model, H * D, bias=bias)
            self.kv_proj = nn.Linear(kv_d_model, 2 * G * D, bias=bias)
        self.out_proj = nn.Linear(H * D, d_model, bias=bias)

    def qkv_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The query, key and value projection matrices, as views of the stored weights.

        Returns:
            ``(W_q, W_k, W_v)``; writing into a view (under ``torch.no_grad()``) changes the
            layer.

        Shape:
            ``(H D, C)``, ``(G D, kv_d_model)``, ``(G D, kv_d_model)``
        """
        return self._split(lambda layer: layer.weight)

    def qkv_biases(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The query, key and value biases as views (``None`` when ``bias=False``).

        Shape:
            ``(H D,)``, ``(G D,)``, ``(G D,)``
        """
        if self.out_proj.bias is None:
            return None
        return self._split(lambda layer: layer.bias)

    def _split(self, get: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        HD, GD = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        if self.qkv_proj is not None:
            q, k, v = get(self.qkv_proj).split([HD, GD, GD])
            return q, k, v
        assert self.q_proj is not None and self.kv_proj is not None
        k, v = get(self.kv_proj).split([GD, GD])
        return get(self.q_proj), k, v

    def check_mask(self, mask: object, B: int, T: int, S: int, device: torch.device,
                   name: str = "mask") -> torch.Tensor | None:
        """Raise unless ``mask`` is ``None`` or a mask :meth:`forward` accepts for these sizes.

        Args:
            mask: the mask to check.
            B: batch size.
            T: number of queries.
            S: number of keys (cached ones included).
            device: where the queries are.
            name: the parameter's name, for the message.

        Returns:
            ``mask``, unchanged.

        Raises:
            TypeError: not a tensor, or neither bool nor floating point.
            ValueError: a shape that does not broadcast to ``(B, H, T, S)`` (more than 4
                dimensions included), or another device.
        """
        if mask is None:
            return None
        check_tensor(name, mask)
        assert isinstance(mask, torch.Tensor)
        if mask.dtype != torch.bool and not mask.is_floating_point():
            raise TypeError(f"{name}: expected a bool tensor (True = may attend) or a float "
                            f"tensor added to the scores (-inf = may not), got dtype {mask.dtype}")
        full = (B, self.num_heads, T, S)
        try:
            fits = mask.dim() <= 4 and torch.broadcast_shapes(mask.shape, full) == full
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f"{name}: shape {tuple(mask.shape)} does not broadcast to (B, H, T, "
                             f"S) = {full}; e.g. (T, S), (B, 1, T, S), or (B, 1, 1, S) for key "
                             "padding")
        if mask.device != device:
            raise ValueError(f"{name}: on {mask.device} but x is on {device}")
        return mask

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, *, is_causal: bool = False,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: KVCache | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``x`` to itself (self-attention) or to ``context`` (cross-attention).

        Args:
            x: the sequence that asks (queries).
            context: the sequence that answers (keys and values); ``None`` for self-attention.
            mask: broadcastable to ``(B, H, T, S)``; boolean (``True = may attend``) or float
                (added to the scores, ``-inf`` = may not attend). A key padding mask ``(B, S)``
                goes in as ``mask[:, None, None, :]``. With a cache, ``S`` counts the cached
                tokens too.
            is_causal: each query sees only keys at its position or earlier, queries aligned with
                the end of the keys (as with a cache; needs ``S >= T``); combined with ``mask``.
            rope: ``(cos, sin)`` of the queries' positions, from
                :class:`lmlab.positions.RotaryEmbedding`; rotates queries and the new keys.
            cache: this layer's :class:`KVCache`; the new keys and values are appended and the
                queries attend to all of them. Self-attention only.
            need_weights: take the teaching path and return the attention weights.

        Returns:
            ``(out, weights)``; ``weights`` is ``None`` unless ``need_weights``. A query with no
            key it may attend to gets zero weights and a zero vector before ``out_proj``.

        Raises:
            TypeError: a tensor of the wrong kind (x or context not floating point, a mask
                neither bool nor float), or a non-bool flag.
            ValueError: wrong shapes (x not ``(B, T, d_model)`` with ``B, T >= 1``, context
                not ``(B, S, kv_d_model)``, a mask that does not broadcast to ``(B, H, T, S)``),
                another device, a cache on cross-attention or too full, or ``is_causal`` with
                fewer keys than queries.
        """
        weight = self.out_proj.weight
        check_tensor("x", x, ndim=3, dtype="float")
        B, T, C = x.shape
        if C != self.d_model or B == 0 or T == 0:
            raise ValueError(f"x: expected shape (B, T, d_model={self.d_model}) with B, T >= 1, "
                             f"got {tuple(x.shape)}")
        _check_like("x", x, weight)
        check_bool("is_causal", is_causal)
        check_bool("need_weights", need_weights)
        if context is None:
            if self.qkv_proj is None:
                raise ValueError(f"context: this layer reads keys and values of width "
                                 f"kv_d_model={self.kv_d_model}; pass that sequence")
            S_new = T
        else:
            check_tensor("context", context, ndim=3, dtype="float")
            if context.shape[0] != B or context.shape[2] != self.kv_d_model or not context.shape[1]:
                raise ValueError(f"context: expected shape (B={B}, S, kv_d_model="
                                 f"{self.kv_d_model}) with S >= 1, got {tuple(context.shape)}")
            _check_like("context", context, weight)
            if cache is not None:
                raise ValueError("cache: only self-attention keeps a key/value cache")
            S_new = context.shape[1]
        S = S_new
        if cache is not None:
            if not isinstance(cache, KVCache):
                raise TypeError(f"cache: expected a KVCache, got {type(cache).__name__}")
            if cache.length + T > cache.max_length:
                raise ValueError(f"k: {cache.length} cached + {T} new tokens exceed the cache's "
                                 f"max_length {cache.max_length}")
            S = cache.length + S_new
        if rope is not None and not (isinstance(rope, tuple) and len(rope) == 2):
            raise TypeError(f"rope: expected a (cos, sin) tuple, got {type(rope).__name__}")
        mask = self.check_mask(mask, B, T, S, x.device)
        if is_causal and S < T:
            raise ValueError(f"is_causal: queries are aligned with the end of the keys, so it "
                             f"needs S >= T keys, got T={T}, S={S}")

        H, G, D = self.num_heads, self.num_kv_heads, self.head_dim
        q, k, v = self._project(x, context)  # (B, T, H D), (B, S_new, G D) twice
        q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, S_new, G, D).transpose(1, 2)  # (B, G, S, D)
        v = v.view(B, S_new, G, D).transpose(1, 2)  # (B, G, S, D)
        if rope is not None:
            q = apply_rotary(q, *rope)
            k = apply_rotary(k, *rope)
        if cache is not None:
            k, v = cache.update(k, v)  # (B, G, S, D), all tokens so far
        # A causal mask only matters for T > 1: one query at the end of the keys sees them all.
        # With no other mask and T == S, SDPA's own causal kernel needs no mask tensor.
        causal = is_causal and T > 1
        sdpa_causal = causal and mask is None and T == S and not need_weights
        no_key = None  # (..., T, 1): queries with no key they may attend to
        if mask is not None:
            if mask.is_floating_point():
                mask = mask.to(q.dtype)
            if causal:
                allowed = causal_mask(T, S, device=x.device)  # (T, S), aligned with the end
                mask = mask & allowed if mask.dtype == torch.bool else \
                    mask.masked_fill(~allowed, float("-inf"))
            no_key = (~mask.any(-1, keepdim=True) if mask.dtype == torch.bool
                      else (mask == float("-inf")).all(-1, keepdim=True))
        elif causal and not sdpa_causal:
            mask = causal_mask(T, S, device=x.device)  # (T, S), every row has a key
        p = self.dropout if self.training else 0.0
        if need_weights:
            out, weights = self._teaching(q, k, v, mask, p)
        else:
            out, weights = self._fast(q, k, v, mask, p, sdpa_causal), None
        if no_key is not None:  # one answer on every backend and device: a zero vector
            out = out.masked_fill(no_key, 0.0)
        out = out.transpose(1, 2).reshape(B, T, H * D)  # (B, T, C): heads side by side
        return self.out_proj(out), weights

    def _project(self, x: torch.Tensor, context: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        HD, GD = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        if self.qkv_proj is not None:
            if context is None:  # self-attention: one matrix product for q, k and v together
                q, k, v = self.qkv_proj(x).split([HD, GD, GD], dim=-1)
                return q, k, v
            w, b = self.qkv_proj.weight, self.qkv_proj.bias  # cross-attention: slice the rows
            q = F.linear(x, w[:HD], None if b is None else b[:HD])  # (B, T, H D)
            kv = F.linear(context, w[HD:], None if b is None else b[HD:])  # (B, S, 2 G D)
        else:
            assert self.q_proj is not None and self.kv_proj is not None and context is not None
            q, kv = self.q_proj(x), self.kv_proj(context)
        k, v = kv.split([GD, GD], dim=-1)
        return q, k, v

    def _teaching(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  mask: torch.Tensor | None, p: float) -> tuple[torch.Tensor, torch.Tensor]:
        group = self.num_heads // self.num_kv_heads
        k = k.repeat_interleave(group, dim=1)  # (B, H, S, D): each kv head serves `group` heads
        v = v.repeat_interleave(group, dim=1)  # (B, H, S, D)
        scores = dot_product_scores(q, k, scale=None)  # (B, H, T, S) = q k^T / sqrt(D)
        if mask is not None and mask.is_floating_point():  # additive: scores + mask
            scores = scores + mask
            mask = mask > float("-inf")  # -inf = may not attend
        weights = masked_softmax(scores, mask)  # (B, H, T, S), rows sum to 1 over allowed keys
        dropped = F.dropout(weights, p) if p else weights
        return dropped @ v, weights  # (B, H, T, D): weighted sum of the values

    def _fast(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: torch.Tensor | None, p: float, is_causal: bool) -> torch.Tensor:
        """SDPA; ``is_causal`` only for ``T == S`` with ``mask`` None (its own kernel)."""
        group = self.num_heads // self.num_kv_heads
        B, H, T, D = q.shape
        if (T == 1 and group > 1 and B * H >= _GROUPED_DECODE_ROWS and mask is None and not p
                and q.device.type == "cpu"):
            # One decode step on CPU: the `group` query heads that share a key/value head
            # become `group` rows of one matrix product, so each cached key is read once.
            # (benchmarks/bench_gqa.py: faster than SDPA's enable_gqa for enough query rows;
            # GPUs keep SDPA.)
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
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                              is_causal=is_causal, **extra)  # (B, H, T, D)

    def extra_repr(self) -> str:
        kv = "" if self.kv_d_model == self.d_model else f", kv_d_model={self.kv_d_model}"
        return (f"d_model={self.d_model}, num_heads={self.num_heads}, "
                f"num_kv_heads={self.num_kv_heads}, head_dim={self.head_dim}{kv}")


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
        self.d_model = check_int("d_model", d_model)
        self.d_ff = check_int("d_ff", d_ff)
        self.ffn = check_choice("ffn", ffn, FFNS)
        check_bool("bias", bias)
        check_float("dropout", dropout, 0.0, 1.0, max_inclusive=False)
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.gate_proj = nn.Linear(d_model, d_ff, bias=bias) if ffn == "swiglu" else None
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP applied to each position independently.

        Raises:
            TypeError: ``x`` is not a floating-point tensor (or not of the weights' dtype).
            ValueError: its last dimension is not ``d_model``, it is empty, or it is on another
                device.
        """
        check_tensor("x", x, dtype="float")
        if x.dim() == 0 or x.shape[-1] != self.d_model or x.numel() == 0:
            raise ValueError(f"x: expected shape (*, d_model={self.d_model}) with at least one "
                             f"position, got {tuple(x.shape)}")
        _check_like("x", x, self.down_proj.weight)
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
