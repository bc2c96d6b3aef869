"""Ring attention: a sequence too long for one device, split over a ring of devices.

Each of ``N`` ranks holds one shard of the queries, keys and values. The queries stay put; the
key/value shards travel around the ring, one hop per step, so after ``N`` steps every query shard
has met every key/value shard. Each step's partial attention result ``(out, lse)`` merges into the
running one exactly by log-sum-exp (:func:`lmlab.blockwise.merge_partials`), so the result equals
attention over the whole sequence while no rank ever holds more than two key/value shards.

* The sends and receives for the next step are posted *before* the local block is computed, so
  communication overlaps computation (``torch.distributed.batch_isend_irecv``).
* Two layouts, named by ``layout=`` wherever shards are cut or attended: ``"contiguous"`` (rank
  ``r`` holds tokens ``r T/N .. (r+1) T/N``) and ``"zigzag"``, causal attention with load
  balancing: the sequence is cut into ``2N`` chunks and rank ``r`` holds chunks ``r`` and ``2N -
  1 - r``, one early and one late. Then every step costs every rank the same: its own shard is
  a causal block; a shard from an earlier rank is seen by all of its queries but only through
  that shard's early chunk; a shard from a later rank is seen only by its late queries. With
  contiguous shards rank 0 idles while rank ``N-1`` works, but the result is as exact. Causal
  :func:`ring_attention` cannot tell from the tensors how they were cut, so it requires
  ``layout``; every rank must pass the same one.
* The running maximum, sum and output are kept in float32 for bfloat16/float16 inputs (as in
  :mod:`lmlab.blockwise`), and so are the gradients that travel the ring; results are cast back
  to the inputs' dtype at the end.
* The backward pass (a custom :class:`torch.autograd.Function`) sends the key/value shards
  around the ring again, together with the gradients accumulated for them, which finally hop
  home to the rank that owns the shard: so ring attention trains.

:func:`ring_attention` runs over ``torch.distributed`` (gloo on CPU, NCCL on GPUs, launched with
``torchrun``); :func:`simulate_ring_attention` runs the same steps in one process, for the book
and for tests. :func:`shard_sequence` and :func:`unshard_sequence` cut a sequence into the shards
each rank holds and put them back, in either layout.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.autograd.function import once_differentiable

from lmlab._checks import check_bool, check_float, check_int, check_tensor
from lmlab.blockwise import (
    accumulation_dtype,
    attend_block,
    block_backward,
    check_qkv,
    merge_partials,
)

__all__ = ["LAYOUTS", "ring_schedule", "zigzag_chunks", "shard_sequence", "unshard_sequence",
           "simulate_ring_attention", "ring_attention"]

LAYOUTS = ("contiguous", "zigzag")
"""The two ways to cut a sequence into shards, ``"contiguous"`` (rank ``r`` holds the ``r``-th of ``N``
equal parts) or ``"zigzag"`` (rank ``r`` holds chunks ``r`` and ``2N - 1 - r`` of ``2N``)."""


def ring_schedule(world_size: int) -> list[list[int]]:
    """Which key/value shard each rank holds at each step of the ring.

    At step ``s`` rank ``r`` holds the shard of rank ``(r - s) mod N``: every step, each rank
    passes what it holds to the next rank.

    Args:
        world_size: number of ranks ``N``.

    Returns:
        ``schedule[step][rank]``, the owner of the shard held.

    Example:
        >>> ring_schedule(3)
        [[0, 1, 2], [2, 0, 1], [1, 2, 0]]
    """
    check_int("world_size", world_size, minimum=1)
    return [[(r - s) % world_size for r in range(world_size)] for s in range(world_size)]


def zigzag_chunks(rank: int, world_size: int) -> tuple[int, int]:
    """The two chunks (of ``2 * world_size``) rank ``rank`` holds under zigzag sharding.

    Example:
        >>> [zigzag_chunks(r, 4) for r in range(4)]
        [(0, 7), (1, 6), (2, 5), (3, 4)]
    """
    check_int("world_size", world_size, minimum=1)
    check_int("rank", rank, minimum=0, maximum=world_size - 1)
    return rank, 2 * world_size - 1 - rank


def _check_layout(layout: object, zigzag: object = None) -> str:
    """``layout`` checked; ``zigzag`` (the older bool spelling) mapped onto it."""
    if zigzag is not None:
        check_bool("zigzag", zigzag)
        wanted = "zigzag" if zigzag else "contiguous"
        if layout is not None and layout != wanted:
            raise ValueError(f"zigzag: zigzag={zigzag} contradicts layout={layout!r}; pass "
                             "layout alone")
        layout = wanted
    if layout is None:
        return "contiguous"
    if not isinstance(layout, str):
        raise TypeError(f"layout: expected one of {LAYOUTS}, got {type(layout).__name__} "
                        f"{layout!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {LAYOUTS}, got {layout!r}")
    return layout


def _check_divides(name: str, T: int, world_size: int, zigzag: bool) -> None:
    parts = world_size * (2 if zigzag else 1)
    if T % parts != 0:
        what = f"2 * world_size = {parts} (zigzag)" if zigzag else f"world_size = {parts}"
        raise ValueError(f"{name}: sequence length {T} is not divisible by {what}")


def shard_sequence(x: torch.Tensor, rank: int, world_size: int, layout: str | None = None, *,
                   zigzag: bool | None = None) -> torch.Tensor:
    """The part of a sequence rank ``rank`` holds, along the second-to-last (time) dimension:
    contiguous, or zigzag (chunks ``r`` and ``2N - 1 - r`` of ``2N``).

    Args:
        x: the whole sequence.
        rank: which rank's shard.
        world_size: number of ranks ``N``.
        layout: ``"contiguous"`` (``None``: the default) or ``"zigzag"`` (:data:`LAYOUTS`);
            give the same to :func:`ring_attention` and :func:`unshard_sequence`.
        zigzag: the older spelling: ``True`` for ``layout="zigzag"``, ``False`` for
            ``"contiguous"``.

    Returns:
        The shard.

    Shape:
        x ``(..., T, D)``; returns ``(..., T / N, D)``.

    Example:
        >>> x = torch.arange(8.).view(8, 1)
        >>> shard_sequence(x, 0, 2, layout="zigzag").flatten().tolist()
        [0.0, 1.0, 6.0, 7.0]
    """
    check_tensor("x", x)
    if x.dim() < 2:
        raise ValueError(f"x: expected (..., T, D), got shape {tuple(x.shape)}")
    check_int("world_size", world_size, minimum=1)
    check_int("rank", rank, minimum=0, maximum=world_size - 1)
    zigzag = _check_layout(layout, zigzag) == "zigzag"
    T = x.shape[-2]
    _check_divides("x", T, world_size, zigzag)
    if not zigzag:
        size = T // world_size
        return x[..., rank * size:(rank + 1) * size, :]
    c = T // (2 * world_size)
    early, late = zigzag_chunks(rank, world_size)
    return torch.cat([x[..., early * c:(early + 1) * c, :], x[..., late * c:(late + 1) * c, :]],
                     dim=-2)


def unshard_sequence(shards: list[torch.Tensor], layout: str | None = None, *,
                     zigzag: bool | None = None) -> torch.Tensor:
    """Put the shards of all ranks back into one sequence (the inverse of
    :func:`shard_sequence`).

    Args:
        shards: one shard per rank, in rank order.
        layout: how they were cut, ``"contiguous"`` (``None``: the default) or ``"zigzag"``.
        zigzag: the older spelling: ``True`` for ``layout="zigzag"``.

    Returns:
        The whole sequence.

    Shape:
        each shard ``(..., T / N, D)``; returns ``(..., T, D)``.

    Example:
        >>> x = torch.arange(8.).view(8, 1)
        >>> shards = [shard_sequence(x, r, 2, layout="zigzag") for r in range(2)]
        >>> torch.equal(unshard_sequence(shards, layout="zigzag"), x)
        True
    """
    if isinstance(shards, torch.Tensor) or not isinstance(shards, (list, tuple)):
        raise TypeError(f"shards: expected a list of tensors, got {type(shards).__name__}")
    if not shards:
        raise ValueError("shards: expected one tensor per rank, got an empty list")
    for i, s in enumerate(shards):
        check_tensor(f"shards[{i}]", s)
        if s.dim() < 2:
            raise ValueError(f"shards[{i}]: expected (..., T / N, D), got shape "
                             f"{tuple(s.shape)}")
    zigzag = _check_layout(layout, zigzag) == "zigzag"
    if len({tuple(s.shape) for s in shards}) != 1:
        raise ValueError(f"shards: expected equal shapes, got {[tuple(s.shape) for s in shards]}")
    if len({(s.dtype, s.device) for s in shards}) != 1:
        raise ValueError(f"shards: expected one dtype and device, got "
                         f"{[(str(s.dtype), str(s.device)) for s in shards]}")
    if not zigzag:
        return torch.cat(list(shards), dim=-2)
    if shards[0].shape[-2] % 2:
        raise ValueError(f"shards: zigzag shards have an even length, got {shards[0].shape[-2]}")
    halves = [s.chunk(2, dim=-2) for s in shards]
    return torch.cat([h[0] for h in halves] + [h[1] for h in reversed(halves)], dim=-2)


# --- one step of the ring: which query rows meet which key rows, and how ---------------------
# A piece is (query slice, key slice, causal diagonal?) within the local shards.

def _pieces(rank: int, src: int, T_local: int, causal: bool,
            layout: str) -> list[tuple[slice, slice, bool]]:
    everything = slice(0, T_local)
    if not causal:
        return [(everything, everything, False)]
    if layout == "contiguous":  # own shard causal, earlier shards whole, later ones not at all
        return ([(everything, everything, True)] if src == rank else
                [(everything, everything, False)] if src < rank else [])
    c = T_local // 2
    early, late = slice(0, c), slice(c, T_local)
    if src == rank:  # own shard: early sees early (causal), late sees early and late (causal)
        return [(early, early, True), (late, early, False), (late, late, True)]
    if src < rank:  # earlier rank: its early chunk precedes all our queries, its late follows all
        return [(everything, early, False)]
    return [(late, everything, False)]  # later rank: only our late chunk comes after it


def _merge_rows(out, lse, rows: slice, part_out, part_lse):
    """Merge a partial for query rows ``rows`` into the running (out, lse), out of place."""
    T = out.shape[-2]
    merged_out, merged_lse = merge_partials(out[..., rows, :], lse[..., rows], part_out, part_lse)
    if rows.start == 0 and rows.stop == T:
        return merged_out, merged_lse
    if not torch.is_grad_enabled():  # inside the autograd.Function: write in place
        out[..., rows, :] = merged_out
        lse[..., rows] = merged_lse
        return out, lse
    out = torch.cat([out[..., :rows.start, :], merged_out, out[..., rows.stop:, :]], dim=-2)
    lse = torch.cat([lse[..., :rows.start], merged_lse, lse[..., rows.stop:]], dim=-1)
    return out, lse


# Query rows and keys per tile inside one step: no step holds more than _BLOCK x _BLOCK scores,
# so a rank's memory grows like its shard, T / N, not like (T / N) ** 2.
_BLOCK = 256


def _tiles(rows: slice, cols: slice, diagonal: bool, device: torch.device):
    """Split a piece into tiles of at most ``_BLOCK`` queries x ``_BLOCK`` keys.

    On a causal diagonal piece (rows and cols of equal length, query ``i`` sees key ``j <= i``)
    tiles above the diagonal are skipped and tiles on it get the lower-triangular mask.
    """
    for r0 in range(rows.start, rows.stop, _BLOCK):
        r1 = min(r0 + _BLOCK, rows.stop)
        for c0 in range(cols.start, cols.stop, _BLOCK):
            c1 = min(c0 + _BLOCK, cols.stop)
            i0, j0 = r0 - rows.start, c0 - cols.start  # offsets inside the piece
            if diagonal and j0 > i0:
                continue  # every key after every query
            mask = None
            if diagonal and j0 == i0:
                mask = torch.ones(r1 - r0, c1 - c0, dtype=torch.bool, device=device).tril()
            yield slice(r0, r1), slice(c0, c1), mask


def _step_forward(q, k, v, out, lse, pieces, scale):
    for piece in pieces:
        for rows, keys, mask in _tiles(*piece, q.device):
            part = attend_block(q[..., rows, :], k[..., keys, :], v[..., keys, :], scale, mask)
            out, lse = _merge_rows(out, lse, rows, *part)
    return out, lse


def _step_backward(q, k, v, out, lse, grad_out, pieces, scale, dq):
    """Add this step's share to ``dq`` (in place); return the gradients for this k/v shard, in
    the accumulation dtype."""
    dk = torch.zeros_like(k, dtype=dq.dtype)
    dv = torch.zeros_like(v, dtype=dq.dtype)
    for piece in pieces:
        for rows, keys, mask in _tiles(*piece, q.device):
            dq_p, dk_p, dv_p = block_backward(q[..., rows, :], k[..., keys, :], v[..., keys, :],
                                              out[..., rows, :], lse[..., rows],
                                              grad_out[..., rows, :], scale, mask)
            dq[..., rows, :] += dq_p
            dk[..., keys, :] += dk_p
            dv[..., keys, :] += dv_p
    return dk, dv


def _empty_partial(q: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """No keys seen yet, in the accumulation dtype (float32 for bfloat16 inputs)."""
    acc = accumulation_dtype(q.dtype)
    return (q.new_zeros(q.shape[:-1] + v.shape[-1:], dtype=acc),  # (..., T, Dv)
            q.new_full(q.shape[:-1], float("-inf"), dtype=acc))  # (..., T)


def simulate_ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, world_size: int,
                            causal: bool = False, scale: float | None = None,
                            layout: str | None = None) -> torch.Tensor:
    """Ring attention's steps run in one process: shard, pass key/value shards around, merge.

    Differentiable by autograd. The shards are cut here, so the layout only changes the order of
    the work, never the result.

    Args:
        q: queries of the whole sequence.
        k: keys of the whole sequence.
        v: values of the whole sequence.
        world_size: how many ranks to simulate.
        causal: causal attention (``True = may attend`` to keys at or before the query).
        scale: factor on the dot products; ``None`` for ``D ** -0.5``.
        layout: ``"zigzag"`` or ``"contiguous"`` (see :func:`shard_sequence`); ``None`` for
            zigzag when ``causal``, contiguous otherwise.

    Returns:
        The attention output for the whole sequence, in the original order and the inputs'
        dtype.

    Shape:
        q, k, v ``(..., T, D)``; returns ``(..., T, D)``.

    Example:
        >>> import torch.nn.functional as F
        >>> q, k, v = torch.randn(3, 2, 12, 4).unbind(0)  # (H, T, D) each
        >>> out = simulate_ring_attention(q, k, v, world_size=3, causal=True)
        >>> ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        >>> torch.allclose(out, ref, atol=1e-6)
        True
    """
    check_qkv(q, k, v)
    check_int("world_size", world_size, minimum=1)
    check_bool("causal", causal)
    scale = q.shape[-1] ** -0.5 if scale is None else check_float("scale", scale)
    if layout is None:
        layout = "zigzag" if causal else "contiguous"
    layout = _check_layout(layout)
    if q.shape[-2] != k.shape[-2]:
        raise ValueError(f"k: ring self-attention needs S == T, got T={q.shape[-2]}, "
                         f"S={k.shape[-2]}")
    _check_divides("q", q.shape[-2], world_size, layout == "zigzag")
    # One cast for the whole sequence: autograd then sums the shards' gradients in float32 too.
    acc = accumulation_dtype(q.dtype)
    q_acc, k_acc, v_acc = q.to(acc), k.to(acc), v.to(acc)
    qs = [shard_sequence(q_acc, r, world_size, layout) for r in range(world_size)]
    ks = [shard_sequence(k_acc, r, world_size, layout) for r in range(world_size)]
    vs = [shard_sequence(v_acc, r, world_size, layout) for r in range(world_size)]
    T_local = q.shape[-2] // world_size
    states = [_empty_partial(qs[r], v) for r in range(world_size)]
    for step in ring_schedule(world_size):
        for rank, src in enumerate(step):
            pieces = _pieces(rank, src, T_local, causal, layout)
            states[rank] = _step_forward(qs[rank], ks[src], vs[src], *states[rank], pieces,
                                         scale)
    return unshard_sequence([out for out, _ in states], layout).to(q.dtype)


# --- the real ring over torch.distributed -------------------------------------------------------

def _exchange(send: list[torch.Tensor], group, next_rank: int,
              prev_rank: int) -> tuple[list[torch.Tensor], list]:
    """Post sends of ``send`` to the next rank and receives of as many tensors from the previous
    one; return the receive buffers and the requests (wait on them before using the buffers)."""
    received = [torch.empty_like(t, memory_format=torch.contiguous_format) for t in send]
    ops = [dist.P2POp(dist.isend, t.contiguous(), next_rank, group, tag=i)
           for i, t in enumerate(send)]
    ops += [dist.P2POp(dist.irecv, t, prev_rank, group, tag=i) for i, t in enumerate(received)]
    return received, dist.batch_isend_irecv(ops)


def _neighbours(group) -> tuple[int, int, int, int]:
    rank, size = dist.get_rank(group), dist.get_world_size(group)
    if group is None:
        return rank, size, (rank + 1) % size, (rank - 1) % size
    return (rank, size, dist.get_global_rank(group, (rank + 1) % size),
            dist.get_global_rank(group, (rank - 1) % size))


class _RingAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, scale, causal, layout, group):  # type: ignore[override]
        rank, size, next_rank, prev_rank = _neighbours(group)
        T_local = q.shape[-2]
        out, lse = _empty_partial(q, v)
        k_cur, v_cur = k, v
        for step in range(size):
            src = (rank - step) % size
            if step < size - 1:  # post the next hop first: it travels while we compute
                (k_next, v_next), requests = _exchange([k_cur, v_cur], group, next_rank,
                                                       prev_rank)
            out, lse = _step_forward(q, k_cur, v_cur, out, lse,
                                     _pieces(rank, src, T_local, causal, layout), scale)
            if step < size - 1:
                for request in requests:
                    request.wait()
                k_cur, v_cur = k_next, v_next
        ctx.save_for_backward(q, k, v, out, lse)  # out and lse in the accumulation dtype
        ctx.scale, ctx.causal, ctx.layout, ctx.group = scale, causal, layout, group
        return out.to(q.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        q, k, v, out, lse = ctx.saved_tensors
        group, scale, causal, layout = ctx.group, ctx.scale, ctx.causal, ctx.layout
        rank, size, next_rank, prev_rank = _neighbours(group)
        T_local = q.shape[-2]
        grad_out = grad_out.contiguous()
        dq = torch.zeros_like(q, dtype=out.dtype)  # gradients accumulate in float32 (or wider)
        k_cur, v_cur = k, v
        dk_acc = dv_acc = None  # gradients gathered so far for the k/v shard held
        for step in range(size):
            src = (rank - step) % size
            sends: list[torch.Tensor] = []
            if step < size - 1:
                sends += [k_cur, v_cur]  # the shard for the next step
            if step > 0:
                sends += [dk_acc, dv_acc]  # the gradients of the shard held at the last step
            if sends:
                received, requests = _exchange(sends, group, next_rank, prev_rank)
            dk_loc, dv_loc = _step_backward(q, k_cur, v_cur, out, lse, grad_out,
                                            _pieces(rank, src, T_local, causal, layout), scale,
                                            dq)
            if sends:
                for request in requests:
                    request.wait()
            if step > 0:  # what the previous ranks gathered for the shard we hold now
                dk_acc, dv_acc = received[-2] + dk_loc, received[-1] + dv_loc
            else:
                dk_acc, dv_acc = dk_loc, dv_loc
            if step < size - 1:
                k_cur, v_cur = received[0], received[1]
        if size > 1:  # the last holder of each shard sends its gradients home
            (dk_acc, dv_acc), requests = _exchange([dk_acc, dv_acc], group, next_rank, prev_rank)
            for request in requests:
                request.wait()
        return dq.to(q.dtype), dk_acc.to(k.dtype), dv_acc.to(v.dtype), None, None, None, None


def _local_problem(q, k, v, causal, scale, layout) -> str | None:
    """This rank's bad-input message (checked locally), or None."""
    try:
        check_qkv(q, k, v)
        check_bool("causal", causal)
        if scale is not None:
            check_float("scale", scale)
        if layout is not None:
            _check_layout(layout)
        elif causal:
            raise ValueError(f"layout: causal ring attention needs the layout the shards were "
                             f"cut with, one of {LAYOUTS} (shard_sequence's layout); the "
                             f"tensors cannot tell, and the wrong one gives a wrong result")
        if q.shape[-2] != k.shape[-2]:
            raise ValueError(f"k: ring self-attention needs local S == T, got T={q.shape[-2]}, "
                             f"S={k.shape[-2]}")
        if causal and layout == "zigzag" and q.shape[-2] % 2:
            raise ValueError(f"q: zigzag shards hold two equal chunks, so an even local "
                             f"length, got {q.shape[-2]}")
    except (TypeError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                   scale: float | None = None, group=None, *,
                   layout: str | None = None) -> torch.Tensor:
    """Exact attention over a sequence sharded across the ranks of a process group.

    Call it on every rank of ``group`` with that rank's shards, cut by :func:`shard_sequence`
    with ``layout``. Key/value shards travel the ring by point-to-point sends posted before each
    local block is computed; partial results merge by log-sum-exp (in float32 for bfloat16
    inputs). The backward pass sends key/value shards and their accumulated gradients around the
    ring too.

    Every rank first checks its inputs and shares a description of them with the others, so a
    bad input on any rank (wrong type or shape, a missing or unknown layout, odd zigzag length,
    dtypes, devices or layouts that differ between ranks) raises the same error on every rank
    instead of hanging the ring.

    Args:
        q: this rank's queries.
        k: this rank's keys.
        v: this rank's values.
        causal: causal attention over the whole sequence (``True = may attend`` to keys at or
            before the query).
        scale: factor on the dot products; ``None`` for ``D ** -0.5``.
        group: the process group (``None`` for the default group).
        layout: how the sequence was cut: ``"zigzag"`` (balanced causal work) or
            ``"contiguous"``. Required when ``causal`` (the tensors cannot show it, and the
            wrong layout would give a wrong result); without ``causal`` every key is seen by
            every query and the layout does not matter.

    Returns:
        This rank's shard of the attention output (same order as ``q``, the inputs' dtype).

    Raises:
        RuntimeError: ``torch.distributed`` is not initialised.
        TypeError, ValueError: bad input on this or another rank of the group (the message
            names the parameter, or the rank whose input is bad).

    Shape:
        q, k, v ``(..., T / N, D)``; returns ``(..., T / N, D)``.
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("ring_attention: torch.distributed is not initialised (launch with "
                           "torchrun and call torch.distributed.init_process_group)")
    if group is not None and not isinstance(group, dist.ProcessGroup):
        raise TypeError(f"group: expected a torch.distributed.ProcessGroup or None, got "
                        f"{type(group).__name__}")
    problem = _local_problem(q, k, v, causal, scale, layout)
    meta = None
    if problem is None:
        meta = (str(q.dtype), str(k.dtype), str(v.dtype), q.device.type, tuple(q.shape),
                tuple(k.shape), tuple(v.shape), causal, scale, layout if causal else None)
    gathered: list = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, (problem, meta), group=group)
    if problem is not None:
        kind, message = problem.split(": ", 1)
        raise (TypeError if kind == "TypeError" else ValueError)(message)
    for r, (other, _) in enumerate(gathered):
        if other is not None:  # named after the parameter that rank's message names
            name = other.split(": ", 1)[1].split(":", 1)[0]
            raise ValueError(f"{name}: rank {r} of the group has bad input ({other})")
    fields = ("q dtype", "k dtype", "v dtype", "device type", "q shape", "k shape", "v shape",
              "causal", "scale", "layout")
    for i, field in enumerate(fields):
        values = [m[i] for _, m in gathered]
        if len(set(values)) > 1:
            listed = ", ".join(f"rank {r}: {value}" for r, value in enumerate(values))
            name = "layout" if field == "layout" else "q, k, v"
            raise ValueError(f"{name}: {field} must be the same on every rank, got {listed}")
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return _RingAttention.apply(q, k, v, scale, causal, layout or "contiguous", group)
