"""Blockwise attention with the online softmax: exact attention in memory linear in the length.

Softmax attention over ``S`` keys needs every score of a query row before it can normalise. The
online softmax (Milakov and Gimelshein, 2018; the FlashAttention recurrence) removes that need:
keep, for every query, the running maximum ``m`` and the running sum ``l`` of ``exp(score - m)``
and a running weighted sum of values; when a new block of keys arrives with a larger maximum,
rescale what was kept by ``exp(m_old - m_new)``. After the last block, dividing by ``l`` gives
exactly the softmax-weighted average, and ``lse = m + log(l)`` is the log-sum-exp of the row.

A block's result is the pair ``(out, lse)``. Two such partial results over disjoint sets of keys
merge exactly (:func:`merge_partials`)::

    lse = logaddexp(lse_a, lse_b)
    out = exp(lse_a - lse) * out_a + exp(lse_b - lse) * out_b

which is all ring attention (:mod:`lmlab.ring`) needs to combine the key/value shards that travel
between devices. :func:`blockwise_attention` runs the recurrence over key blocks; for the
backward pass it keeps only its inputs, ``out`` and ``lse`` (``O(T x D)``), and recomputes each
block's mask and probabilities from them, so neither direction holds more than ``T x
block_size`` scores: memory linear in ``T`` (``benchmarks/bench_memory.py`` measures it).

As in FlashAttention, the running maximum, sum and output are kept in float32 (in float64 for
float64 inputs) whatever the input's precision: partial results (``out``, ``lse``) of
:func:`attend_block`, :func:`merge_partials` and :func:`block_backward` come out in that
accumulation dtype, and :func:`blockwise_attention` casts its output back to the inputs' dtype
once, at the end (its ``lse`` stays in the accumulation dtype).

Boolean masks mean ``True = may attend``; here the only mask is the causal one, built per block
from positions (query ``i`` sees key ``j`` when ``j <= i + S - T``: queries aligned with the end
of the keys, as :func:`lmlab.attention.causal_mask`).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from lmlab._checks import check_bool, check_float, check_int, check_same_device, check_tensor

__all__ = ["accumulation_dtype", "check_qkv", "attend_block", "merge_partials", "block_backward",
           "blockwise_attention"]


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the running maximum, sum and output are kept in for inputs of ``dtype``.

    float32 for lower-precision inputs (bfloat16, float16: their 8 or 11 bits of mantissa would
    lose the small terms added block after block), the input's own dtype from float32 up.

    Args:
        dtype: a floating-point dtype.

    Returns:
        The accumulation dtype.

    Example:
        >>> accumulation_dtype(torch.bfloat16), accumulation_dtype(torch.float64)
        (torch.float32, torch.float64)
    """
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype: expected a torch.dtype, got {type(dtype).__name__}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype: expected a floating-point dtype, got {dtype}")
    return torch.promote_types(dtype, torch.float32)


def _check_values(name: str, value: object) -> torch.Tensor:
    """A dense floating-point tensor that holds data (not on the meta device)."""
    check_tensor(name, value, dtype="float")
    assert isinstance(value, torch.Tensor)
    if value.layout != torch.strided:
        raise ValueError(f"{name}: expected a dense (strided) tensor, got layout {value.layout}")
    if value.is_meta:
        raise ValueError(f"{name}: expected a tensor with data, got a meta tensor")
    return value


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Check attention inputs, before any work, as every attention function here does.

    Dense floating-point tensors of one dtype on one device, shaped ``(..., T, D)``, ``(..., S,
    D)`` and ``(..., S, Dv)`` with equal leading dimensions, at least one query and one key, and
    ``D >= 1``.

    Args:
        q: queries.
        k: keys.
        v: values.

    Raises:
        TypeError: one of them is not a floating-point tensor; the message names it.
        ValueError: dtypes, devices or shapes that do not fit together, an empty sequence, a
            sparse or meta tensor; the message names the parameters and what is allowed.

    Example:
        >>> check_qkv(torch.zeros(2, 5, 8), torch.zeros(2, 7, 8), torch.zeros(2, 7, 4))
        >>> check_qkv(torch.zeros(5, 8), torch.zeros(7, 8, dtype=torch.float64), torch.zeros(7, 8))
        Traceback (most recent call last):
        ...
        ValueError: q, k, v: expected one dtype, got torch.float32, torch.float64, torch.float32
    """
    _check_values("q", q)
    _check_values("k", k)
    _check_values("v", v)
    check_same_device(q=q, k=k, v=v)
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"q, k, v: expected one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.dim() < 2 or k.dim() != q.dim() or v.dim() != q.dim():
        raise ValueError(f"q, k, v: expected (..., T, D), (..., S, D), (..., S, Dv) with the "
                         f"same number of dimensions (at least 2), got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[:-2] != k.shape[:-2] or k.shape[:-1] != v.shape[:-1] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q, k, v: expected (..., T, D), (..., S, D), (..., S, Dv) with equal "
                         f"leading dimensions, got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    if q.shape[-2] == 0 or k.shape[-2] == 0 or q.shape[-1] == 0:
        raise ValueError(f"q, k: expected at least one query, one key and D >= 1, got "
                         f"{tuple(q.shape)} and {tuple(k.shape)}")


def _check_mask(mask: object, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor | None:
    """``None``, or a boolean mask on q's device broadcastable to ``(..., T, S)``."""
    if mask is None:
        return None
    check_tensor("mask", mask, dtype="bool")
    assert isinstance(mask, torch.Tensor)
    if mask.layout != torch.strided or mask.is_meta:
        raise ValueError("mask: expected a dense boolean tensor with data")
    if mask.device != q.device:
        raise ValueError(f"mask: expected a mask on {q.device} (where q is), got {mask.device}")
    want = (*q.shape[:-1], k.shape[-2])  # (..., T, S)
    try:
        fits = mask.dim() <= len(want) and torch.broadcast_shapes(mask.shape, want) == want
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(f"mask: expected a shape broadcastable to (..., T, S) = {want}, got "
                         f"{tuple(mask.shape)}")
    return mask


def _check_partial(name_out: str, out: object, name_lse: str, lse: object,
                   lead: torch.Size | None = None) -> None:
    """``out (..., T, D)`` and ``lse (..., T)``, float, on one device."""
    _check_values(name_out, out)
    _check_values(name_lse, lse)
    assert isinstance(out, torch.Tensor) and isinstance(lse, torch.Tensor)
    if out.dim() < 1 or out.shape[:-1] != lse.shape:
        raise ValueError(f"{name_lse}: expected shape {tuple(out.shape[:-1])} ({name_out} "
                         f"without its last dimension), got {tuple(lse.shape)}")
    if lead is not None and lse.shape != lead:
        raise ValueError(f"{name_lse}: expected shape {tuple(lead)} (q without its last "
                         f"dimension), got {tuple(lse.shape)}")
    check_same_device(**{name_out: out, name_lse: lse})


def _tracked(*tensors: torch.Tensor) -> bool:
    """Whether autograd records operations on these tensors (then no in-place shortcuts)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _finite_or_zero(lse: torch.Tensor) -> torch.Tensor:
    """``lse`` with ``-inf`` (rows that see no key) replaced by 0: ``exp(-inf - 0)`` is 0, while
    ``exp(-inf - (-inf))`` would be NaN."""
    return torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
            mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`attend_block` on checked inputs, in their dtype."""
    if not _tracked(q, k, v):  # nothing to differentiate: one (..., T, S) buffer, in place
        scores = q @ k.transpose(-2, -1)  # (..., T, S)
        scores.mul_(scale)
        if mask is not None:
            scores.masked_fill_(~mask, float("-inf"))
        lse = torch.logsumexp(scores, dim=-1)  # (..., T)
        return scores.sub_(_finite_or_zero(lse).unsqueeze(-1)).exp_() @ v, lse
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)  # (..., T)
    weights = torch.exp(scores - _finite_or_zero(lse).unsqueeze(-1))  # rows sum to 1 (or 0)
    return weights @ v, lse


def attend_block(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of ``q`` over one block of keys, as a partial result ``(out, lse)``.

    ``out`` is the softmax-weighted average of ``v`` over the keys the mask allows, and ``lse``
    the log-sum-exp of those scores. A query that may attend to no key of the block gets
    ``out = 0`` and ``lse = -inf``, which :func:`merge_partials` treats as "nothing here". Both
    come out in :func:`accumulation_dtype` (float32 for bfloat16 inputs), ready to merge.

    Args:
        q: queries.
        k: keys.
        v: values.
        scale: factor on the dot products (usually ``D ** -0.5``), a finite number.
        mask: optional boolean mask, ``True = may attend``, broadcastable to ``(..., T, S)``.

    Returns:
        ``(out, lse)``.

    Raises:
        TypeError: an input of the wrong type (not a float tensor, a mask not boolean, ``scale``
            not a number); the message names it.
        ValueError: shapes, dtypes or devices that do not fit together, or a NaN/infinite
            ``scale``.

    Shape:
        q ``(..., T, D)``, k ``(..., S, D)``, v ``(..., S, Dv)``; out ``(..., T, Dv)``, lse
        ``(..., T)``.

    Example:
        >>> q, k, v = torch.ones(2, 4), torch.ones(3, 4), torch.arange(6.).view(3, 2)
        >>> out, lse = attend_block(q, k, v, scale=0.5)
        >>> out[0].round(decimals=4).tolist(), round(lse[0].item(), 4)  # scores all 2: mean
        ([2.0, 3.0], 3.0986)
    """
    check_qkv(q, k, v)
    scale = check_float("scale", scale)
    mask = _check_mask(mask, q, k)
    acc = accumulation_dtype(q.dtype)
    return _attend(q.to(acc), k.to(acc), v.to(acc), scale, mask)


def _merge(out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor,
           lse_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`merge_partials` on checked inputs of one dtype."""
    lse = torch.logaddexp(lse_a, lse_b)  # (..., T)
    safe = _finite_or_zero(lse)
    w_a = torch.exp(lse_a - safe).unsqueeze(-1)  # (..., T, 1); 0 where lse_a is -inf
    w_b = torch.exp(lse_b - safe).unsqueeze(-1)
    return w_a * out_a + w_b * out_b, lse


def merge_partials(out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor,
                   lse_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge two partial attention results over disjoint sets of keys, exactly.

    Each partial is a softmax-weighted average ``out`` over its keys and the log-sum-exp ``lse``
    of its scores; the merged pair is what attention over the union of keys gives. A row whose
    ``lse`` is ``-inf`` on one side contributes nothing from that side. The result is in the
    :func:`accumulation_dtype` of the inputs' dtypes (float32 for bfloat16 partials).

    Args:
        out_a: the first partial output.
        lse_a: its log-sum-exp.
        out_b: the second partial output.
        lse_b: its log-sum-exp.

    Returns:
        ``(out, lse)`` over both sets of keys.

    Raises:
        TypeError: an input that is not a floating-point tensor; the message names it.
        ValueError: shapes that differ or do not pair ``out`` with ``lse``, or tensors on
            different devices.

    Shape:
        out ``(..., T, D)``, lse ``(..., T)``.

    Example:
        >>> q, k, v = torch.randn(3, 4), torch.randn(6, 4), torch.randn(6, 2)
        >>> a = attend_block(q, k[:2], v[:2], scale=0.5)
        >>> b = attend_block(q, k[2:], v[2:], scale=0.5)
        >>> out, lse = merge_partials(*a, *b)
        >>> full, full_lse = attend_block(q, k, v, scale=0.5)
        >>> torch.allclose(out, full, atol=1e-6), torch.allclose(lse, full_lse, atol=1e-6)
        (True, True)
    """
    for name, value in (("out_a", out_a), ("lse_a", lse_a), ("out_b", out_b), ("lse_b", lse_b)):
        _check_values(name, value)
    if out_a.shape != out_b.shape or lse_a.shape != lse_b.shape:
        raise ValueError(f"out_a/out_b and lse_a/lse_b: expected equal shapes, got "
                         f"{tuple(out_a.shape)}, {tuple(out_b.shape)}, {tuple(lse_a.shape)}, "
                         f"{tuple(lse_b.shape)}")
    _check_partial("out_a", out_a, "lse_a", lse_a)
    check_same_device(out_a=out_a, lse_a=lse_a, out_b=out_b, lse_b=lse_b)
    dtype = out_a.dtype
    for t in (lse_a, out_b, lse_b):
        dtype = torch.promote_types(dtype, t.dtype)
    acc = accumulation_dtype(dtype)
    return _merge(out_a.to(acc), lse_a.to(acc), out_b.to(acc), lse_b.to(acc))


def _delta(out: torch.Tensor, grad_out: torch.Tensor,
           grad_lse: torch.Tensor | None) -> torch.Tensor:
    """``rowsum(grad_out * out) - grad_lse``, the term every key block's backward subtracts."""
    delta = (grad_out * out).sum(-1, keepdim=True)  # (..., T, 1)
    return delta if grad_lse is None else delta - grad_lse.unsqueeze(-1)


def _block_grads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, safe_lse: torch.Tensor,
                 grad_out: torch.Tensor, delta: torch.Tensor, scale: float,
                 mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`block_backward` on checked inputs of one dtype, with ``delta`` precomputed."""
    lean = not _tracked(q, k, v, safe_lse, grad_out, delta)  # then (..., T, S) buffers in place
    scores = q @ k.transpose(-2, -1)  # (..., T, S)
    scores = scores.mul_(scale) if lean else scores * scale
    if mask is not None:
        scores = scores.masked_fill_(~mask, float("-inf")) if lean else \
            scores.masked_fill(~mask, float("-inf"))
    if lean:
        p = scores.sub_(safe_lse.unsqueeze(-1)).exp_()  # (..., T, S)
    else:
        p = torch.exp(scores - safe_lse.unsqueeze(-1))
    dv = p.transpose(-2, -1) @ grad_out  # (..., S, Dv)
    dp = grad_out @ v.transpose(-2, -1)  # (..., T, S)
    ds = dp.sub_(delta).mul_(p) if lean else p * (dp - delta)  # (..., T, S)
    dq = (ds @ k) * scale  # (..., T, D)
    dk = (ds.transpose(-2, -1) @ q) * scale  # (..., S, D)
    return dq, dk, dv


def block_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                   lse: torch.Tensor, grad_out: torch.Tensor, scale: float,
                   mask: torch.Tensor | None = None, grad_lse: torch.Tensor | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of full attention that flow through one block of keys (the FlashAttention
    backward), recomputing the block's probabilities from the final ``lse``.

    With ``P = exp(q k^T * scale - lse)`` (this block's columns of the full softmax) and
    ``delta = rowsum(grad_out * out)``: ``dv = P^T grad_out``, ``dS = P * (grad_out v^T - delta
    + grad_lse)``, ``dq = dS k * scale`` (this block's share) and ``dk = dS^T q * scale``. The
    gradients come out in :func:`accumulation_dtype` (float32 for bfloat16 inputs), to be summed
    over blocks before casting back.

    Args:
        q: queries.
        k: this block's keys.
        v: this block's values.
        out: the final attention output over all keys.
        lse: the final log-sum-exp over all keys.
        grad_out: gradient of the loss with respect to ``out``.
        scale: factor on the dot products, a finite number.
        mask: optional boolean mask for the block, ``True = may attend``, broadcastable to
            ``(..., T, S)``.
        grad_lse: optional gradient of the loss with respect to ``lse``.

    Returns:
        ``(dq, dk, dv)``: ``dq`` is this block's share (sum the shares over all blocks).

    Raises:
        TypeError: an input of the wrong type; the message names it.
        ValueError: shapes, dtypes or devices that do not fit together, or a NaN/infinite
            ``scale``.

    Shape:
        q ``(..., T, D)``; k ``(..., S, D)``, v ``(..., S, Dv)``; out, grad_out ``(..., T, Dv)``;
        lse, grad_lse ``(..., T)``.

    Example:
        >>> q, k, v = (torch.randn(5, 4, requires_grad=True) for _ in range(3))
        >>> out, lse = attend_block(q, k, v, scale=0.5)
        >>> grad_out = torch.randn(5, 4)
        >>> ref = torch.autograd.grad((out * grad_out).sum(), (q, k, v))
        >>> with torch.no_grad():
        ...     ours = block_backward(q, k, v, out, lse, grad_out, scale=0.5)
        >>> all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours, ref))
        True
    """
    check_qkv(q, k, v)
    out_shape = (*q.shape[:-1], v.shape[-1])
    for name, t in (("out", out), ("grad_out", grad_out)):
        _check_values(name, t)
        if tuple(t.shape) != out_shape:
            raise ValueError(f"{name}: expected shape {out_shape} (q's (..., T) and v's Dv), got "
                             f"{tuple(t.shape)}")
    _check_partial("out", out, "lse", lse, q.shape[:-1])
    if grad_lse is not None:
        _check_partial("out", out, "grad_lse", grad_lse, q.shape[:-1])
    scale = check_float("scale", scale)
    mask = _check_mask(mask, q, k)
    check_same_device(q=q, out=out, grad_out=grad_out)
    acc = accumulation_dtype(q.dtype)
    out, lse, grad_out = out.to(acc), lse.to(acc), grad_out.to(acc)
    delta = _delta(out, grad_out, None if grad_lse is None else grad_lse.to(acc))
    return _block_grads(q.to(acc), k.to(acc), v.to(acc), _finite_or_zero(lse), grad_out, delta,
                        scale, mask)


def _key_blocks(T: int, S: int, block_size: int, causal: bool):
    """``(start, end, masked)`` per key block; blocks no query may see are skipped, and
    ``masked`` says whether some query sees only part of the block (the causal diagonal)."""
    offset = S - T  # query i sees key j when j <= i + offset
    for start in range(0, S, block_size):
        end = min(start + block_size, S)
        if not causal:
            yield start, end, False
        elif start <= (T - 1) + offset:  # the last query sees this block's first key
            yield start, end, end - 1 > offset  # unless the first query sees its last key


def _block_mask(T: int, start: int, end: int, offset: int, device: torch.device) -> torch.Tensor:
    """``True = may attend`` for all ``T`` queries and keys ``start..end``; built when needed,
    in the forward and again in the backward, never kept."""
    rows = torch.arange(T, device=device)[:, None]
    cols = torch.arange(start, end, device=device)[None, :]
    return cols <= rows + offset  # (T, end - start)


class _BlockwiseAttention(torch.autograd.Function):
    """Online-softmax forward in the accumulation dtype; the backward keeps q, k, v, out and lse
    (``O(T x D)``) and recomputes each block's mask and probabilities."""

    @staticmethod
    def forward(ctx, q, k, v, scale, causal, block_size):  # type: ignore[override]
        T, S = q.shape[-2], k.shape[-2]
        acc = accumulation_dtype(q.dtype)
        q_acc = q.to(acc)
        out = q_acc.new_zeros(q.shape[:-1] + v.shape[-1:])  # (..., T, Dv)
        lse = q_acc.new_full(q.shape[:-1], float("-inf"))  # (..., T)
        for start, end, masked in _key_blocks(T, S, block_size, causal):
            mask = _block_mask(T, start, end, S - T, q.device) if masked else None
            part = _attend(q_acc, k[..., start:end, :].to(acc), v[..., start:end, :].to(acc),
                           scale, mask)
            out, lse = _merge(out, lse, *part)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.scale, ctx.causal, ctx.block_size = scale, causal, block_size
        return out.to(q.dtype), lse

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_lse):  # type: ignore[override]
        q, k, v, out, lse = ctx.saved_tensors
        T, S = q.shape[-2], k.shape[-2]
        acc = out.dtype
        q_acc = q.to(acc)
        grad_out = torch.zeros_like(out) if grad_out is None else grad_out.to(acc)
        delta = _delta(out, grad_out, None if grad_lse is None else grad_lse.to(acc))
        safe = _finite_or_zero(lse)
        dq = torch.zeros_like(q_acc)
        dk = k.new_zeros(k.shape, dtype=acc)  # zero for blocks no query sees
        dv = v.new_zeros(v.shape, dtype=acc)
        for start, end, masked in _key_blocks(T, S, ctx.block_size, ctx.causal):
            mask = _block_mask(T, start, end, S - T, q.device) if masked else None
            dq_b, dk_b, dv_b = _block_grads(q_acc, k[..., start:end, :].to(acc),
                                            v[..., start:end, :].to(acc), safe, grad_out, delta,
                                            ctx.scale, mask)
            dq += dq_b
            dk[..., start:end, :] = dk_b
            dv[..., start:end, :] = dv_b
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None


def blockwise_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                        causal: bool = False, block_size: int = 128,
                        scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact softmax attention computed one key block at a time with the online softmax.

    Equals ``torch.nn.functional.scaled_dot_product_attention`` (within float rounding) but
    never holds more than ``T x block_size`` scores, in the forward or the backward pass. For
    the backward it keeps only ``q, k, v``, ``out`` and ``lse`` (memory ``O(T x D)``): each
    block's causal mask and probabilities are recomputed from them. The running maximum, sum
    and output are kept in :func:`accumulation_dtype` (float32 for bfloat16 inputs) and the
    output is cast to the inputs' dtype at the end.

    Args:
        q: queries.
        k: keys.
        v: values.
        causal: if True, query ``i`` sees key ``j`` only when ``j <= i + S - T`` (``True = may
            attend``; with ``T == S`` the usual lower-triangular mask). Needs ``T <= S``.
        block_size: keys per block, an int >= 1.
        scale: factor on the dot products; ``None`` for ``D ** -0.5``.

    Returns:
        ``(out, lse)``: the attention output (in the inputs' dtype) and the log-sum-exp of each
        query's scores (in the accumulation dtype), for :func:`merge_partials`. Both are
        differentiable.

    Raises:
        TypeError: an input of the wrong type; the message names it.
        ValueError: shapes, dtypes or devices that do not fit together, ``block_size < 1``, a
            NaN/infinite ``scale``, or ``causal`` with ``T > S``.

    Shape:
        q ``(..., T, D)``, k ``(..., S, D)``, v ``(..., S, Dv)``; out ``(..., T, Dv)``, lse
        ``(..., T)``.

    Example:
        >>> import torch.nn.functional as F
        >>> q, k, v = torch.randn(3, 2, 10, 8).unbind(0)  # (H, T, D) each
        >>> out, lse = blockwise_attention(q, k, v, causal=True, block_size=4)
        >>> ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        >>> torch.allclose(out, ref, atol=1e-6)
        True
    """
    check_qkv(q, k, v)
    check_bool("causal", causal)
    check_int("block_size", block_size, minimum=1)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    else:
        scale = check_float("scale", scale)
    if causal and q.shape[-2] > k.shape[-2]:
        raise ValueError(f"causal: needs T <= S (queries aligned with the end of the keys), got "
                         f"T={q.shape[-2]}, S={k.shape[-2]}")
    return _BlockwiseAttention.apply(q, k, v, scale, causal, block_size)
