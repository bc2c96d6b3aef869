"""Positions: how a transformer learns where each token sits.

Attention on its own is blind to order: permute the input tokens and the outputs are permuted the
same way. Three ways to tell the model where each token is:

* learned absolute positions (GPT-2, BERT): a trained vector per position, added to the token's
  embedding (an ``nn.Embedding(context_length, d_model)`` inside the models);
* :func:`sinusoidal_positions` (the original transformer): fixed sines and cosines of
  geometrically spaced frequencies, added the same way;
* rotary positions (RoPE; Llama, SmolLM2): queries and keys are rotated by an angle that grows
  with the position, so their dot product depends only on the *distance* between two tokens.
  :func:`rotary_cos_sin` and :func:`apply_rotary` follow the Llama / Hugging Face convention
  ("rotate half": dimension ``i`` is paired with dimension ``i + D/2``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lmlab._checks import check_float, check_int, check_same_device, check_tensor

__all__ = ["sinusoidal_positions", "rotary_cos_sin", "rotate_half", "apply_rotary",
           "RotaryEmbedding"]


def sinusoidal_positions(context_length: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The fixed position vectors of "Attention Is All You Need".

    Even dimensions ``2i`` hold ``sin(t / base^(2i/C))``, odd ones ``cos`` of the same angle.

    Args:
        context_length: number of positions ``T`` (>= 1).
        d_model: width ``C`` of each vector (even).
        base: the longest wavelength is ``2 pi base``.

    Returns:
        One vector per position.

    Shape:
        ``(T, C)``

    Example:
        >>> sinusoidal_positions(2, 4).round(decimals=3)
        tensor([[0.0000, 1.0000, 0.0000, 1.0000],
                [0.8410, 0.5400, 0.0100, 1.0000]])
    """
    check_int("context_length", context_length)
    check_int("d_model", d_model)
    check_float("base", base, 1.0, min_inclusive=False)
    if d_model % 2:
        raise ValueError(f"d_model: sinusoidal positions need an even width, got {d_model}")
    t = torch.arange(context_length, dtype=torch.float64)[:, None]  # (T, 1)
    inv_freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (C/2,)
    angle = t * inv_freq  # (T, C/2)
    out = torch.stack([angle.sin(), angle.cos()], dim=-1)  # (T, C/2, 2)
    return out.reshape(context_length, d_model).float()  # (T, C)


def rotary_cos_sin(positions: torch.Tensor | int, head_dim: int,
                   base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines of the rotary angles, in the Llama / Hugging Face layout.

    The angle of position ``t`` and frequency ``i`` is ``t * base^(-2i/D)``; the ``D/2``
    frequencies are written twice (``cat(freqs, freqs)``) to line up with :func:`rotate_half`.

    Args:
        positions: the positions (a 1-d integer tensor), or ``T`` for ``0..T-1``.
        head_dim: width ``D`` of a head (even).
        base: the rotary base (10,000 for Llama 2; 100,000 for SmolLM2).

    Returns:
        ``(cos, sin)``.

    Shape:
        ``(T, D)`` each.

    Example:
        >>> cos, sin = rotary_cos_sin(2, 4, base=100.0)
        >>> sin
        tensor([[0.0000, 0.0000, 0.0000, 0.0000],
                [0.8415, 0.0998, 0.8415, 0.0998]])
    """
    check_int("head_dim", head_dim)
    check_float("base", base, 1.0, min_inclusive=False)
    if head_dim % 2:
        raise ValueError(f"head_dim: rotary positions need an even head width, got {head_dim}")
    if isinstance(positions, (int, np.integer)) and not isinstance(positions, bool):
        positions = torch.arange(check_int("positions", positions))
    check_tensor("positions", positions, ndim=1, dtype="int")
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64,
                                            device=positions.device).float() / head_dim))
    freqs = positions.float()[:, None] * inv_freq  # (T, D/2)
    emb = torch.cat([freqs, freqs], dim=-1)  # (T, D)
    return emb.cos(), emb.sin()


def _check_width(name: str, x: object) -> torch.Tensor:
    x = check_tensor(name, x, dtype="float")
    if x.dim() == 0 or x.shape[-1] % 2:
        raise ValueError(f"{name}: expected an even last dimension (pairs i, i + D/2), got shape "
                         f"{tuple(x.shape)}")
    return x


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[x1, x2] -> [-x2, x1]`` on the last axis: a 90-degree turn of each pair ``(i, i+D/2)``.

    Args:
        x: a floating-point tensor whose last dimension ``D`` is even.

    Shape:
        ``(..., D)`` -> ``(..., D)``

    Example:
        >>> rotate_half(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        tensor([-3., -4.,  1.,  2.])
    """
    _check_width("x", x)
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys by their positions' angles: ``x cos + rotate_half(x) sin``.

    Args:
        x: queries or keys (floating point), one head width ``D`` (even) per row.
        cos: from :func:`rotary_cos_sin`, one row per position of ``x``; leading dimensions
            (e.g. a batch of position tables ``(B, 1, T, D)``) must broadcast to ``x``'s.
        sin: likewise, of ``cos``'s shape.

    Returns:
        The rotated tensor, same shape and dtype as ``x``.

    Shape:
        x ``(..., T, D)``, cos and sin ``(T, D)`` -> ``(..., T, D)``

    Example:
        >>> cos, sin = rotary_cos_sin(torch.tensor([3]), 2)
        >>> q = apply_rotary(torch.tensor([[1.0, 0.0]]), cos, sin)
        >>> k = apply_rotary(torch.tensor([[1.0, 0.0]]), *rotary_cos_sin(torch.tensor([1]), 2))
        >>> torch.allclose(q @ k.T, torch.cos(torch.tensor(2.0)))  # depends on 3 - 1 only
        True
    """
    _check_width("x", x)
    if x.dim() < 2:
        raise ValueError(f"x: expected shape (..., T, D) with one row per position, got "
                         f"{tuple(x.shape)}")
    check_tensor("cos", cos, dtype="float")
    check_tensor("sin", sin, dtype="float")
    want = f"(..., T, D) = (..., {x.shape[-2]}, {x.shape[-1]})"
    for name, t in (("cos", cos), ("sin", sin)):
        fits = 2 <= t.dim() <= x.dim() and tuple(t.shape[-2:]) == tuple(x.shape[-2:]) and all(
            a == 1 or a == b for a, b in zip(t.shape[:-2], x.shape[-t.dim():-2]))
        if not fits:
            raise ValueError(f"{name}: expected shape {want} with leading dimensions that "
                             f"broadcast to x {tuple(x.shape)}, got {tuple(t.shape)}")
    if cos.shape != sin.shape:
        raise ValueError(f"sin: expected the shape of cos {tuple(cos.shape)}, got "
                         f"{tuple(sin.shape)}")
    check_same_device(x=x, cos=cos, sin=sin)
    return (x * cos + rotate_half(x) * sin).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """The rotary table for every position up to ``context_length``, kept as buffers.

    The tables are non-persistent buffers: they move with the model (``.to(device)``) and are
    not stored in checkpoints, since they follow from the config.

    Args:
        head_dim: width ``D`` of a head (even).
        context_length: number of positions to precompute.
        base: the rotary base.

    Shape:
        ``forward(T, offset)`` -> ``(cos, sin)``, each ``(T, D)``: positions
        ``offset .. offset+T-1``.
    """

    def __init__(self, head_dim: int, context_length: int, base: float = 10000.0) -> None:
        super().__init__()
        check_int("context_length", context_length)
        cos, sin = rotary_cos_sin(context_length, head_dim, base)
        self.head_dim, self.context_length, self.base = head_dim, context_length, float(base)
        self.register_buffer("cos", cos, persistent=False)  # (T, D)
        self.register_buffer("sin", sin, persistent=False)  # (T, D)

    def forward(self, T: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(cos, sin)`` rows of positions ``offset .. offset+T-1``.

        Args:
            T: how many positions (>= 1).
            offset: the first position (>= 0; the length of a key/value cache).

        Raises:
            ValueError: ``offset + T`` exceeds ``context_length`` (the last row of the table).
        """
        check_int("T", T)
        check_int("offset", offset, minimum=0)
        if offset + T > self.context_length:
            raise ValueError(f"T, offset: positions {offset}..{offset + T - 1} (offset={offset}, "
                             f"T={T}) exceed the table's context_length={self.context_length}")
        return self.cos[offset:offset + T], self.sin[offset:offset + T]

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, context_length={self.context_length}, base={self.base}"

