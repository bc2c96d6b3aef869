"""Sparse attention: each query attends to a chosen subset of positions, and only that is computed.

A :class:`SparsePattern` says which key ``j`` query ``i`` may attend to, as the union of

* a sliding window (local attention): ``0 <= i - j < window`` (causal) or ``|i - j| < window``;
* a strided (dilated) pattern: ``(i - j) % stride == 0``, every ``stride``-th position;
* global tokens: the first ``num_global`` positions attend to every position and every position
  attends to them;

and always the query's own position, all of it limited to ``j <= i`` when ``causal``. The same
pattern comes out three ways: as a boolean mask (``True = may attend``, :meth:`SparsePattern.mask`,
for plots and for dense masked attention), as a block layout (:meth:`SparsePattern.layout`: which
``block_size x block_size`` tiles of the mask hold any ``True``), and as a ``mask_mod`` for
:func:`torch.nn.attention.flex_attention.flex_attention` (:func:`flex_sparse_attention`).

:func:`block_sparse_attention` computes only the tiles the layout keeps: it gathers, for every
query block, the key blocks it keeps, runs one batched matrix product and softmax over them, and
masks inside the tiles. Its cost grows with the number of kept tiles (``T x window`` for a sliding
window), not with ``T ** 2``, and autograd differentiates it, so it trains on CPU (flex attention
has no CPU backward in torch 2.13).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from lmlab._checks import check_bool, check_float, check_int, check_tensor
from lmlab.blockwise import check_qkv

__all__ = ["SparsePattern", "sliding_window_mask", "strided_mask", "global_mask",
           "block_layout", "block_sparse_attention", "flex_block_mask", "flex_sparse_attention"]


@dataclass(frozen=True)
class SparsePattern:
    """Which keys each query may attend to: a union of window, strided and global parts.

    Every query may attend to itself. With ``causal``, no query attends to a later position.

    Example:
        >>> SparsePattern(window=2).mask(4).int().tolist()
        [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    """

    window: int | None = None  # sliding window: 0 <= i - j < window (|i - j| when not causal)
    stride: int | None = None  # strided/dilated: keys with (i - j) a multiple of stride
    num_global: int = 0  # positions 0..num_global-1 attend to, and are attended by, every position
    causal: bool = True  # no key after the query (j <= i)

    def __post_init__(self) -> None:
        if self.window is not None:
            check_int("window", self.window, minimum=1)
        if self.stride is not None:
            check_int("stride", self.stride, minimum=1)
        check_int("num_global", self.num_global, minimum=0)
        check_bool("causal", self.causal)
        if self.window is None and self.stride is None and self.num_global == 0:
            raise ValueError("SparsePattern: expected at least one of window, stride or "
                             "num_global (>= 1)")

    def allows(self, i: torch.Tensor | int, j: torch.Tensor | int) -> torch.Tensor | bool:
        """``True`` where query position ``i`` may attend to key position ``j`` (broadcasting).

        Args:
            i: query positions, an int or an integer tensor.
            j: key positions, an int or an integer tensor.

        Returns:
            A boolean tensor of the broadcast shape (a bool for two ints).

        Example:
            >>> SparsePattern(window=2).allows(torch.arange(4), torch.tensor(1)).tolist()
            [False, True, True, False]
        """
        for name, value in (("i", i), ("j", j)):
            if isinstance(value, torch.Tensor):
                check_tensor(name, value, dtype="int")
            else:
                check_int(name, value, minimum=None)
        if isinstance(i, torch.Tensor) and isinstance(j, torch.Tensor) and i.device != j.device:
            raise ValueError(f"i, j: expected positions on one device, got {i.device} and "
                             f"{j.device}")
        return self._allows(i, j)

    def _allows(self, i, j):
        """:meth:`allows` without checks: only tensor operations, so it also serves as flex
        attention's ``mask_mod`` (traced by ``torch.compile``)."""
        d = i - j
        allowed = d == 0
        if self.window is not None:
            allowed = allowed | ((d < self.window) & (d > -self.window))
        if self.stride is not None:
            allowed = allowed | (d % self.stride == 0)
        if self.num_global > 0:
            allowed = allowed | (i < self.num_global) | (j < self.num_global)
        if self.causal:
            allowed = allowed & (d >= 0)
        return allowed

    def mask(self, T: int, device: torch.device | str | None = None) -> torch.Tensor:
        """The boolean mask (``True = may attend``) for a sequence of length ``T``.

        Shape:
            ``(T, T)``.
        """
        check_int("T", T, minimum=1)
        positions = torch.arange(T, device=_check_device(device))
        return self._allows(positions[:, None], positions[None, :])  # (T, T)

    def layout(self, T: int, block_size: int,
               device: torch.device | str | None = None) -> torch.Tensor:
        """Which ``block_size x block_size`` tiles of :meth:`mask` hold any ``True``.

        Computed from the pattern's rule per tile, without building the ``T x T`` mask; equal to
        ``block_layout(self.mask(T), block_size)``.

        Shape:
            ``(T / block_size, T / block_size)``.

        Example:
            >>> SparsePattern(window=4).layout(16, 4).int().tolist()
            [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
        """
        check_int("T", T, minimum=1)
        _check_block_size(T, block_size)
        device = _check_device(device)
        nb = T // block_size
        a = torch.arange(nb, device=device)[:, None]  # query blocks
        b = torch.arange(nb, device=device)[None, :]  # key blocks
        # i - j over a tile takes every value in [lo, hi].
        lo = (a - b) * block_size - (block_size - 1)
        hi = (a - b) * block_size + (block_size - 1)
        if self.causal:
            lo = lo.clamp(min=0)
        kept = (lo <= 0) & (hi >= 0)  # the diagonal
        if self.window is not None:
            w_lo = 0 if self.causal else -(self.window - 1)
            kept = kept | ((lo <= self.window - 1) & (hi >= w_lo))
        if self.stride is not None:
            kept = kept | (torch.div(hi, self.stride, rounding_mode="floor") * self.stride >= lo)
        if self.num_global > 0:
            g = self.num_global
            q_first, k_first = a * block_size, b * block_size
            q_last = q_first + block_size - 1
            if self.causal:  # a global query i sees j <= i; a global key j is seen by i >= j
                global_q = (q_first < g) & (k_first <= torch.clamp(q_last, max=g - 1))
                global_k = (k_first < g) & (q_last >= k_first)
            else:
                global_q = (q_first < g) & (k_first >= 0)
                global_k = (k_first < g) & (q_first >= 0)
            kept = kept | global_q | global_k
        return kept & (lo <= hi)


def sliding_window_mask(T: int, window: int, causal: bool = True,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """Local attention: query ``i`` sees keys ``j`` with ``0 <= i - j < window`` (``|i - j| <
    window`` when not causal). ``True = may attend``.

    Args:
        T: sequence length.
        window: keys per query, the query's own position included (causal case).
        causal: no key after the query.
        device: where to build the mask.

    Returns:
        The boolean mask.

    Shape:
        ``(T, T)``.

    Example:
        >>> sliding_window_mask(4, 2).int().tolist()
        [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    """
    return SparsePattern(window=window, causal=causal).mask(T, device)


def strided_mask(T: int, stride: int, causal: bool = True,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Strided (dilated) attention: query ``i`` sees keys ``j`` with ``(i - j) % stride == 0``.
    ``True = may attend``.

    Args:
        T: sequence length.
        stride: distance between attended positions.
        causal: no key after the query.
        device: where to build the mask.

    Returns:
        The boolean mask.

    Shape:
        ``(T, T)``.

    Example:
        >>> strided_mask(5, 2).int().tolist()
        [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [1, 0, 1, 0, 0], [0, 1, 0, 1, 0], [1, 0, 1, 0, 1]]
    """
    return SparsePattern(stride=stride, causal=causal).mask(T, device)


def global_mask(T: int, num_global: int, causal: bool = True,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Global tokens: the first ``num_global`` positions see, and are seen by, every position
    (plus each query's own position). ``True = may attend``.

    Args:
        T: sequence length.
        num_global: how many leading positions are global.
        causal: no key after the query.
        device: where to build the mask.

    Returns:
        The boolean mask.

    Shape:
        ``(T, T)``.

    Example:
        >>> global_mask(4, 1, causal=False).int().tolist()
        [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1]]
    """
    check_int("num_global", num_global, minimum=1)
    return SparsePattern(num_global=num_global, causal=causal).mask(T, device)


def _check_device(device: object, allow_none: bool = True) -> torch.device | None:
    """``None`` (where allowed), or a ``torch.device`` or a string torch can read as one."""
    if device is None and allow_none:
        return None
    if not isinstance(device, (str, torch.device)):
        allowed = "a torch.device, a str such as 'cpu' or 'cuda:0'" + (", or None" if allow_none
                                                                        else "")
        raise TypeError(f"device: expected {allowed}, got {type(device).__name__} {device!r}")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device: {device!r} is not a device torch knows (e.g. 'cpu', "
                         f"'cuda:0', 'mps')") from err


def _check_block_size(T: int, block_size: int) -> None:
    check_int("block_size", block_size, minimum=1)
    if T % block_size != 0:
        raise ValueError(f"block_size: expected a divisor of the sequence length T={T}, "
                         f"got {block_size}")


def block_layout(mask: torch.Tensor, block_size: int) -> torch.Tensor:
    """Which ``block_size x block_size`` tiles of a boolean mask hold any ``True``.

    Args:
        mask: boolean mask, ``True = may attend``.
        block_size: tile side; must divide ``T``.

    Returns:
        The block layout, ``True`` for a tile block-sparse attention computes.

    Shape:
        mask ``(T, T)``; returns ``(T / block_size, T / block_size)``.

    Example:
        >>> block_layout(sliding_window_mask(6, 2), 2).int().tolist()
        [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    """
    check_tensor("mask", mask, ndim=2, dtype="bool")
    T = mask.shape[0]
    if mask.shape[1] != T or T == 0:
        raise ValueError(f"mask: expected a square (T, T) mask with T >= 1, got shape "
                         f"{tuple(mask.shape)}")
    _check_block_size(T, block_size)
    nb = T // block_size
    return mask.view(nb, block_size, nb, block_size).any(dim=3).any(dim=1)


# One group of query blocks that keep the same number of key blocks: their indices (a slice
# where they are consecutive), the key blocks of each, and where the gathered tiles must be
# masked (``True = masked out``; None where every element may attend).
_Group = tuple[torch.Tensor | slice, torch.Tensor, torch.Tensor | None]


def _plan_from(layout: torch.Tensor, block_size: int,
               allowed) -> tuple[list[_Group], torch.Tensor | None]:
    counts = layout.sum(dim=1)
    groups, order = [], []
    offsets = torch.arange(block_size, device=layout.device)
    for c in torch.unique(counts).tolist():
        rows = (counts == c).nonzero().squeeze(1)  # (R,)
        if c == 0:
            raise ValueError("pattern: some query block attends to no key block")
        cols = layout[rows].nonzero()[:, 1].view(len(rows), c)  # (R, c)
        q_pos = rows[:, None] * block_size + offsets  # (R, bs)
        k_pos = (cols[:, :, None] * block_size + offsets).flatten(1)  # (R, c * bs)
        element = allowed(q_pos[:, :, None], k_pos[:, None, :])  # (R, bs, c * bs)
        if not bool(element.any(dim=-1).all()):
            raise ValueError("pattern: some query attends to no key (a mask row is all False)")
        first, R = int(rows[0]), len(rows)
        consecutive = bool((rows == torch.arange(first, first + R, device=rows.device)).all())
        if bool(element.all()):
            masked = None
        elif bool((element == element[:1]).all()):
            masked = ~element[:1]  # (1, bs, c * bs): the same tiles' mask for every row
        else:
            masked = ~element  # (R, bs, c * bs)
        groups.append((slice(first, first + R) if consecutive else rows, cols, masked))
        order.append(rows)
    order_all = torch.cat(order)
    if bool((order_all == torch.arange(len(order_all), device=order_all.device)).all()):
        return groups, None  # already in query-block order
    return groups, torch.argsort(order_all)


@functools.lru_cache(maxsize=16)
def _pattern_plan(pattern: SparsePattern, T: int, block_size: int,
                  device: torch.device) -> tuple[list[_Group], torch.Tensor | None]:
    return _plan_from(pattern.layout(T, block_size, device), block_size, pattern._allows)


_SCORES_PER_STEP = 1 << 18  # 1 MB of float32 scores per batched product: fits a 2 MB L2 cache


def block_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           pattern: SparsePattern | torch.Tensor, block_size: int = 64,
                           scale: float | None = None) -> torch.Tensor:
    """Attention that computes only the ``block_size x block_size`` tiles a pattern keeps.

    Equal to dense attention with the pattern's mask (``torch.nn.functional.
    scaled_dot_product_attention(q, k, v, attn_mask=pattern.mask(T))``) in value and gradient,
    at a cost proportional to the number of kept tiles. Query blocks that keep the same number
    of key blocks are processed together: gather their key/value blocks, one batched matrix
    product, mask inside the tiles, softmax, one more matrix product.

    Args:
        q: queries.
        k: keys.
        v: values.
        pattern: a :class:`SparsePattern`, or any boolean mask ``(T, T)`` (``True = may
            attend``; every row needs a ``True``).
        block_size: tile side; must divide ``T``.
        scale: factor on the dot products; ``None`` for ``D ** -0.5``.

    Returns:
        The attention output.

    Shape:
        q, k, v ``(..., T, D)``; returns ``(..., T, D)``.

    Example:
        >>> import torch.nn.functional as F
        >>> q, k, v = torch.randn(3, 2, 32, 8).unbind(0)  # (H, T, D) each
        >>> pattern = SparsePattern(window=8, num_global=2)
        >>> out = block_sparse_attention(q, k, v, pattern, block_size=8)
        >>> ref = F.scaled_dot_product_attention(q, k, v, attn_mask=pattern.mask(32))
        >>> torch.allclose(out, ref, atol=1e-6)
        True
    """
    check_qkv(q, k, v)
    T, D = q.shape[-2], q.shape[-1]
    if k.shape[-2] != T:
        raise ValueError(f"k: block-sparse self-attention needs S == T, got T={T}, "
                         f"S={k.shape[-2]}")
    _check_block_size(T, block_size)
    scale = D ** -0.5 if scale is None else check_float("scale", scale)
    if isinstance(pattern, SparsePattern):
        groups, inverse = _pattern_plan(pattern, T, block_size, q.device)
    elif isinstance(pattern, torch.Tensor):
        check_tensor("pattern", pattern, ndim=2, dtype="bool")
        if pattern.layout != torch.strided:
            raise ValueError(f"pattern: expected a dense boolean mask, got layout "
                             f"{pattern.layout}")
        if pattern.shape != (T, T):
            raise ValueError(f"pattern: expected a ({T}, {T}) mask, got {tuple(pattern.shape)}")
        if pattern.device != q.device:
            raise ValueError(f"pattern: expected a mask on {q.device}, got {pattern.device}")
        groups, inverse = _plan_from(block_layout(pattern, block_size), block_size,
                                     lambda i, j: pattern[i, j])
    else:
        raise TypeError(f"pattern: expected a SparsePattern or a boolean torch.Tensor, got "
                        f"{type(pattern).__name__}")
    nb = T // block_size
    lead = q.shape[:-2]
    qb = (q * scale).reshape(-1, nb, block_size, D)  # (N, nb, bs, D) with N the leading dims
    kb = k.reshape(-1, nb, block_size, D)
    vb = v.reshape(-1, nb, block_size, v.shape[-1])
    outs = []
    for rows, cols, masked in groups:
        R, c = cols.shape
        q_g = qb[:, rows]  # (N, R, bs, D)
        k_g = kb[:, cols].flatten(2, 3)  # (N, R, c * bs, D): each row's kept key blocks
        v_g = vb[:, cols].flatten(2, 3)  # (N, R, c * bs, D)
        # At most _SCORES_PER_STEP scores at a time: the working set stays in the CPU's cache,
        # so the time grows with the number of tiles and not faster. `split` (not slicing)
        # keeps the backward linear: its gradient is one concatenation, not a full-size
        # buffer per step.
        step = max(1, _SCORES_PER_STEP // (qb.shape[0] * block_size * c * block_size))
        masks = ([masked] * len(range(0, R, step)) if masked is None or len(masked) == 1
                 else masked.split(step))  # (1 or r, bs, c * bs) each
        for q_s, k_s, v_s, mask in zip(q_g.split(step, 1), k_g.split(step, 1),
                                       v_g.split(step, 1), masks):
            scores = q_s @ k_s.transpose(-2, -1)  # (N, r, bs, c * bs)
            if mask is not None:  # matmul keeps its inputs, not this: in place is safe
                scores.masked_fill_(mask, float("-inf"))
            outs.append(torch.softmax(scores, dim=-1) @ v_s)  # (N, r, bs, D)
    out = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]  # (N, nb, bs, D)
    if inverse is not None:
        out = out[:, inverse]  # back to query-block order
    return out.reshape(*lead, T, v.shape[-1])


def flex_block_mask(pattern: SparsePattern, T: int, device: torch.device | str,
                    block_size: int = 128):
    """The pattern as flex attention's ``BlockMask`` (the kept tiles plus the ``mask_mod``).

    Args:
        pattern: the sparse pattern.
        T: sequence length.
        device: where flex attention will run.
        block_size: flex attention's tile side.

    Returns:
        A ``torch.nn.attention.flex_attention.BlockMask``.
    """
    from torch.nn.attention.flex_attention import create_block_mask

    if not isinstance(pattern, SparsePattern):
        raise TypeError(f"pattern: expected a SparsePattern, got {type(pattern).__name__}")
    check_int("T", T, minimum=1)
    device = _check_device(device, allow_none=False)
    check_int("block_size", block_size, minimum=1)

    def mask_mod(b, h, q_idx, kv_idx):
        return pattern._allows(q_idx, kv_idx)

    return create_block_mask(mask_mod, None, None, T, T, device=device, BLOCK_SIZE=block_size)


def flex_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          pattern: SparsePattern, block_mask=None) -> torch.Tensor:
    """The pattern through :func:`torch.nn.attention.flex_attention.flex_attention`.

    On CUDA this is the fused, trainable kernel (wrap ``flex_attention`` in ``torch.compile``
    for speed, as the GPU benchmark does); on CPU torch 2.13 runs its forward only.

    Args:
        q: queries.
        k: keys.
        v: values.
        pattern: the sparse pattern.
        block_mask: a precomputed :func:`flex_block_mask` (built here if ``None``).

    Returns:
        The attention output, equal to dense attention with ``pattern.mask(T)``.

    Shape:
        q, k, v ``(B, H, T, D)``; returns ``(B, H, T, D)``.
    """
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    check_qkv(q, k, v)
    if q.dim() != 4:
        raise ValueError(f"q: expected (B, H, T, D), got shape {tuple(q.shape)}")
    T = q.shape[-2]
    if k.shape[-2] != T:
        raise ValueError(f"k: sparse self-attention needs S == T, got T={T}, S={k.shape[-2]}")
    if not isinstance(pattern, SparsePattern):
        raise TypeError(f"pattern: expected a SparsePattern, got {type(pattern).__name__}")
    if block_mask is None:
        block_mask = flex_block_mask(pattern, T, q.device)
    elif not isinstance(block_mask, BlockMask):
        raise TypeError(f"block_mask: expected a BlockMask from flex_block_mask or None, got "
                        f"{type(block_mask).__name__}")
    elif tuple(block_mask.seq_lengths) != (T, T):
        raise ValueError(f"block_mask: made for sequences of {tuple(block_mask.seq_lengths)}, "
                         f"but T = {T} (build it with flex_block_mask(pattern, {T}, device))")
    return flex_attention(q, k, v, block_mask=block_mask)
