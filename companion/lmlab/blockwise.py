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
between devices. :func:`blockwise_attention` runs the recurrence over key blocks; its backward
pass recomputes each block's probabilities from the saved ``lse`` (nothing of size ``T x S`` is
kept), so both directions use memory linear in ``T``.

Boolean masks mean ``True = may attend``; here the only mask is the causal one, built per block
from positions (query ``i`` sees key ``j`` when ``j <= i + S - T``: queries aligned with the end
of the keys, as :func:`lmlab.attention.causal_mask`).
"""

from __future__ import annotations

import torch

from lmlab._checks import check_bool, check_float, check_int, check_same_device, check_tensor

__all__ = ["attend_block", "merge_partials", "block_backward", "blockwise_attention"]


def _block_mask(T: int, S: int, q_start: int, k_start: int, k_len: int, offset: int,
                device: torch.device) -> torch.Tensor:
    """``True = may attend`` for queries ``q_start..q_start+T`` and keys ``k_start..+k_len``."""
    rows = torch.arange(q_start, q_start + T, device=device)[:, None]
    cols = torch.arange(k_start, k_start + k_len, device=device)[None, :]
    return cols <= rows + offset  # (T, k_len)


def attend_block(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of ``q`` over one block of keys, as a partial result ``(out, lse)``.

    ``out`` is the softmax-weighted average of ``v`` over the keys the mask allows, and ``lse``
    the log-sum-exp of those scores. A query that may attend to no key of the block gets
    ``out = 0`` and ``lse = -inf``, which :func:`merge_partials` treats as "nothing here".

    Args:
        q: queries.
        k: keys.
        v: values.
        scale: factor on the dot products (usually ``D ** -0.5``).
        mask: optional boolean mask, ``True = may attend``, broadcastable to ``(..., T, S)``.

    Returns:
        ``(out, lse)``.

    Shape:
        q ``(..., T, D)``, k and v ``(..., S, D)``; out ``(..., T, D)``, lse ``(..., T)``.

    Example:
        >>> q, k, v = torch.ones(2, 4), torch.ones(3, 4), torch.arange(6.).view(3, 2)
        >>> out, lse = attend_block(q, k, v, scale=0.5)
        >>> out[0].round(decimals=4).tolist(), round(lse[0].item(), 4)  # scores all 2: mean
        ([2.0, 3.0], 3.0986)
    """
    if not _tracked(q, k, v):  # nothing to differentiate: one (..., T, S) buffer, in place
        scores = q @ k.transpose(-2, -1)  # (..., T, S)
        scores.mul_(scale)
        if mask is not None:
            scores.masked_fill_(~mask, float("-inf"))
        lse = torch.logsumexp(scores, dim=-1)  # (..., T)
        safe = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
        return scores.sub_(safe.unsqueeze(-1)).exp_() @ v, lse
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)  # (..., T)
    # exp(-inf - (-inf)) is NaN: rows with no allowed key get weight 0 instead.
    safe = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
    weights = torch.exp(scores - safe.unsqueeze(-1))  # (..., T, S), rows sum to 1 (or 0)
    return weights @ v, lse


def merge_partials(out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor,
                   lse_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge two partial attention results over disjoint sets of keys, exactly.

    Each partial is a softmax-weighted average ``out`` over its keys and the log-sum-exp ``lse``
    of its scores; the merged pair is what attention over the union of keys gives. A row whose
    ``lse`` is ``-inf`` on one side contributes nothing from that side.

    Args:
        out_a: the first partial output.
        lse_a: its log-sum-exp.
        out_b: the second partial output.
        lse_b: its log-sum-exp.

    Returns:
        ``(out, lse)`` over both sets of keys.

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
        check_tensor(name, value, dtype="float")
    if out_a.shape != out_b.shape or lse_a.shape != lse_b.shape:
        raise ValueError(f"out_a/out_b and lse_a/lse_b: expected equal shapes, got "
                         f"{tuple(out_a.shape)}, {tuple(out_b.shape)}, {tuple(lse_a.shape)}, "
                         f"{tuple(lse_b.shape)}")
    if out_a.shape[:-1] != lse_a.shape:
        raise ValueError(f"lse_a: expected shape {tuple(out_a.shape[:-1])} (out without its last "
                         f"dimension), got {tuple(lse_a.shape)}")
    lse = torch.logaddexp(lse_a, lse_b)  # (..., T)
    safe = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
    w_a = torch.exp(lse_a - safe).unsqueeze(-1)  # (..., T, 1); 0 where lse_a is -inf
    w_b = torch.exp(lse_b - safe).unsqueeze(-1)
    return w_a * out_a + w_b * out_b, lse


def block_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                   lse: torch.Tensor, grad_out: torch.Tensor, scale: float,
                   mask: torch.Tensor | None = None, grad_lse: torch.Tensor | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of full attention that flow through one block of keys (the FlashAttention
    backward), recomputing the block's probabilities from the final ``lse``.

    With ``P = exp(q k^T * scale - lse)`` (this block's columns of the full softmax) and
    ``delta = rowsum(grad_out * out)``: ``dv = P^T grad_out``, ``dS = P * (grad_out v^T - delta
    + grad_lse)``, ``dq = dS k * scale`` (this block's share) and ``dk = dS^T q * scale``.

    Args:
        q: queries.
        k: this block's keys.
        v: this block's values.
        out: the final attention output over all keys.
        lse: the final log-sum-exp over all keys.
        grad_out: gradient of the loss with respect to ``out``.
        scale: factor on the dot products.
        mask: optional boolean mask for the block, ``True = may attend``.
        grad_lse: optional gradient of the loss with respect to ``lse``.

    Returns:
        ``(dq, dk, dv)``: ``dq`` is this block's share (sum the shares over all blocks).

    Shape:
        q, out, grad_out ``(..., T, D)``; k, v ``(..., S, D)``; lse, grad_lse ``(..., T)``.
    """
    safe = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
    delta = (grad_out * out).sum(-1, keepdim=True)  # (..., T, 1)
    if grad_lse is not None:
        delta = delta - grad_lse.unsqueeze(-1)
    lean = not _tracked(q, k, v, out, lse, grad_out)  # then two (..., T, S) buffers, in place
    scores = q @ k.transpose(-2, -1)  # (..., T, S)
    scores = scores.mul_(scale) if lean else scores * scale
    if mask is not None:
        scores = scores.masked_fill_(~mask, float("-inf")) if lean else \
            scores.masked_fill(~mask, float("-inf"))
    shifted = scores - safe.unsqueeze(-1) if not lean else scores.sub_(safe.unsqueeze(-1))
    p = shifted.exp_() if lean else torch.exp(shifted)  # (..., T, S)
    dv = p.transpose(-2, -1) @ grad_out  # (..., S, D)
    dp = grad_out @ v.transpose(-2, -1)  # (..., T, S)
    ds = dp.sub_(delta).mul_(p) if lean else p * (dp - delta)  # (..., T, S)
    dq = (ds @ k) * scale  # (..., T, D)
    dk = (ds.transpose(-2, -1) @ q) * scale  # (..., S, D)
    return dq, dk, dv


def _tracked(*tensors: torch.Tensor) -> bool:
    """Whether autograd records operations on these tensors (then no in-place shortcuts)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _blocks(S: int, block_size: int) -> list[tuple[int, int]]:
    return [(s, min(s + block_size, S)) for s in range(0, S, block_size)]


def _causal_blocks(T: int, S: int, block_size: int, causal: bool,
                   device: torch.device) -> list[tuple[int, int, torch.Tensor | None]]:
    """Key blocks with their causal masks; blocks no query may see are skipped."""
    offset = S - T
    result = []
    for start, end in _blocks(S, block_size):
        if not causal:
            result.append((start, end, None))
        elif start <= (T - 1) + offset:  # the last query sees this block's first key
            fully_visible = end - 1 <= offset  # the first query sees its last key
            mask = None if fully_visible else _block_mask(T, S, 0, start, end - start, offset,
                                                          device)
            result.append((start, end, mask))
    return result


class _BlockwiseAttention(torch.autograd.Function):
    """Online-softmax forward; backward recomputes each block (nothing of size T x S saved)."""

    @staticmethod
    def forward(ctx, q, k, v, scale, causal, block_size):  # type: ignore[override]
        T, S = q.shape[-2], k.shape[-2]
        blocks = _causal_blocks(T, S, block_size, causal, q.device)
        out = q.new_zeros(q.shape[:-1] + v.shape[-1:])  # (..., T, D)
        lse = q.new_full(q.shape[:-1], float("-inf"))  # (..., T)
        for start, end, mask in blocks:
            part = attend_block(q, k[..., start:end, :], v[..., start:end, :], scale, mask)
            out, lse = merge_partials(out, lse, *part)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.scale, ctx.blocks = scale, blocks
        return out, lse

    @staticmethod
    def backward(ctx, grad_out, grad_lse):  # type: ignore[override]
        q, k, v, out, lse = ctx.saved_tensors
        if grad_out is None:
            grad_out = torch.zeros_like(out)
        dq = torch.zeros_like(q)
        dk = torch.zeros_like(k)
        dv = torch.zeros_like(v)
        for start, end, mask in ctx.blocks:
            dq_b, dk_b, dv_b = block_backward(q, k[..., start:end, :], v[..., start:end, :], out,
                                              lse, grad_out, ctx.scale, mask, grad_lse)
            dq += dq_b
            dk[..., start:end, :] = dk_b
            dv[..., start:end, :] = dv_b
        return dq, dk, dv, None, None, None


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Shared checks for attention inputs: float tensors, one dtype and device, matching shapes."""
    check_tensor("q", q, dtype="float")
    check_tensor("k", k, dtype="float")
    check_tensor("v", v, dtype="float")
    check_same_device(q=q, k=k, v=v)
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"q, k, v: expected one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.dim() < 2 or k.dim() != q.dim() or v.dim() != q.dim():
        raise ValueError(f"q, k, v: expected (..., T, D), (..., S, D), (..., S, D) with the same "
                         f"number of dimensions (at least 2), got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[:-2] != k.shape[:-2] or k.shape[:-1] != v.shape[:-1] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q, k, v: expected (..., T, D), (..., S, D), (..., S, D) with equal "
                         f"leading dimensions, got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    if q.shape[-2] == 0 or k.shape[-2] == 0 or q.shape[-1] == 0:
        raise ValueError(f"q, k: expected at least one query, one key and D >= 1, got "
                         f"{tuple(q.shape)} and {tuple(k.shape)}")


def blockwise_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                        causal: bool = False, block_size: int = 128,
                        scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact softmax attention computed one key block at a time with the online softmax.

    Equals ``torch.nn.functional.scaled_dot_product_attention`` (within float rounding) but
    never holds more than ``T x block_size`` scores, in the forward or the backward pass: the
    backward recomputes each block's probabilities from the saved log-sum-exp.

    Args:
        q: queries.
        k: keys.
        v: values.
        causal: if True, query ``i`` sees key ``j`` only when ``j <= i + S - T`` (``True = may
            attend``; with ``T == S`` the usual lower-triangular mask). Needs ``T <= S``.
        block_size: keys per block.
        scale: factor on the dot products; ``None`` for ``D ** -0.5``.

    Returns:
        ``(out, lse)``: the attention output and the log-sum-exp of each query's scores, for
        :func:`merge_partials`. Both are differentiable.

    Shape:
        q ``(..., T, D)``, k ``(..., S, D)``, v ``(..., S, D)``; out ``(..., T, D)``, lse
        ``(..., T)``.

    Example:
        >>> import torch.nn.functional as F
        >>> q, k, v = torch.randn(3, 2, 10, 8).unbind(0)  # (H, T, D) each
        >>> out, lse = blockwise_attention(q, k, v, causal=True, block_size=4)
        >>> ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        >>> torch.allclose(out, ref, atol=1e-6)
        True
    """
    _check_qkv(q, k, v)
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
