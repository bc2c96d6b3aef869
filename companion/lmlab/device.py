"""Devices, seeds and mixed precision.

Library code never picks a device on its own: models follow their inputs (``x.device``) and
trainers take ``device=``. Notebooks, scripts and tests call :func:`get_device` once.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

from lmlab._checks import check_bool, check_int, check_str

__all__ = ["get_device", "seed_everything", "autocast"]

_ALLOWED = ("cuda", "mps", "cpu")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def get_device(prefer: str | torch.device | None = None, *, name: str = "prefer",
               ) -> torch.device:
    """Return the best available device: cuda, then mps, then cpu.

    Trainers call ``get_device(device)`` on their ``device=`` argument, so ``None`` there means
    the same as here.

    Args:
        prefer: force a device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``). When ``None``,
            the environment variable ``LMLAB_DEVICE`` is used if set, else the best available.
        name: how error messages name ``prefer`` (a trainer passes ``"device"``).

    Returns:
        The chosen :class:`torch.device`.

    Raises:
        ValueError: ``prefer`` names an unknown device type.
        RuntimeError: the preferred device type is not available on this machine.

    Example:
        >>> get_device("cpu")
        device(type='cpu')
    """
    check_str("name", name, allow_empty=False)
    if prefer is None:
        prefer = os.environ.get("LMLAB_DEVICE") or None
        name = "LMLAB_DEVICE"
    if prefer is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not isinstance(prefer, (str, torch.device)):
        raise TypeError(f"{name}: expected a str, torch.device or None, "
                        f"got {type(prefer).__name__}")
    try:
        device = torch.device(prefer)
    except RuntimeError:
        raise ValueError(f"{name}: unknown device {prefer!r}; allowed types are "
                         f"{_ALLOWED}") from None
    if device.type not in _ALLOWED:
        raise ValueError(f"{name}: unknown device type {device.type!r}; allowed: {_ALLOWED}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{name}={str(prefer)!r} but no CUDA device is available here")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"{name}={str(prefer)!r} but this machine has "
                           f"{torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not _mps_available():
        raise RuntimeError(f"{name}={str(prefer)!r} but no MPS device is available here")
    return device


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices) for reproducible runs.

    This sets process-wide state on purpose: call it from notebooks, scripts and tests, never
    from library code (which takes a :class:`torch.Generator` instead).

    Args:
        seed: an integer in ``[0, 2**64)``.

    Returns:
        A CPU :class:`torch.Generator` seeded with ``seed``, for code that takes a generator.

    Example:
        >>> _ = seed_everything(0); a = torch.rand(3)
        >>> _ = seed_everything(0); b = torch.rand(3)
        >>> torch.equal(a, b)
        True
    """
    check_int("seed", seed, minimum=0, maximum=2**64 - 1)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds every CUDA/MPS device too
    return torch.Generator().manual_seed(seed)


def _autocast_dtype(device: torch.device, dtype: torch.dtype | None) -> torch.dtype | None:
    if device.type == "cpu":
        return None  # bf16 matmul on CPU is far slower than fp32: never autocast here
    if dtype is not None:
        return dtype
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16


@contextlib.contextmanager
def autocast(device: str | torch.device, enabled: bool = True,
             dtype: torch.dtype | None = None) -> Iterator[torch.dtype | None]:
    """Mixed precision where it helps, a no-op elsewhere.

    On CUDA this is :func:`torch.autocast` with bf16 (fp16 on GPUs without bf16); on MPS fp16; on
    CPU nothing changes, because low-precision matrix products are slower than fp32 there.

    Args:
        device: the device the computation runs on (a tensor's ``.device``).
        enabled: ``False`` turns it off everywhere.
        dtype: the low-precision dtype to use on accelerators (default: picked per device).

    Yields:
        The dtype in use, or ``None`` when running in full precision.

    Example:
        >>> with autocast("cpu") as dtype:
        ...     dtype is None
        True
    """
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device: expected a str or torch.device, got {type(device).__name__}")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device: unknown device {device!r}") from None
    check_bool("enabled", enabled)
    if dtype is not None and dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"dtype: expected torch.bfloat16, torch.float16 or None, got {dtype!r}")
    chosen = _autocast_dtype(device, dtype) if enabled else None
    if chosen is None:
        yield None
        return
    with torch.autocast(device_type=device.type, dtype=chosen):
        yield chosen
