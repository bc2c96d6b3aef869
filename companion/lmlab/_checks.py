"""Argument checks shared by every module, so that bad input fails early with one kind of message.

The rule: a value of the wrong *type* raises :class:`TypeError`, a value of the right type but
outside what is allowed raises :class:`ValueError`. Every message starts with the parameter's
name and says what is allowed. Checks run before any work is done.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch


def _type_name(value: object) -> str:
    return type(value).__name__


def check_int(name: str, value: object, minimum: int | None = 1,
              maximum: int | None = None) -> int:
    """Check that ``value`` is an int (not a bool) in ``[minimum, maximum]`` and return it.

    Raises:
        TypeError: ``value`` is not an int (floats such as ``2.0`` included).
        ValueError: ``value`` is outside the allowed range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {_type_name(value)} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: expected an int <= {maximum}, got {value!r}")
    return value


def check_float(name: str, value: object, minimum: float | None = None,
                maximum: float | None = None, *, min_inclusive: bool = True,
                max_inclusive: bool = True) -> float:
    """Check that ``value`` is a finite real number inside the given bounds and return it as float.

    Ints are accepted (``1`` for ``1.0``); bools, NaN and infinities are not.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is NaN, infinite or outside the bounds.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {_type_name(value)} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    low = "" if minimum is None else f"{minimum} {'<=' if min_inclusive else '<'} "
    high = "" if maximum is None else f" {'<=' if max_inclusive else '<'} {maximum}"
    if minimum is not None and (value < minimum or (not min_inclusive and value == minimum)):
        raise ValueError(f"{name}: expected {low}{name}{high}, got {value!r}")
    if maximum is not None and (value > maximum or (not max_inclusive and value == maximum)):
        raise ValueError(f"{name}: expected {low}{name}{high}, got {value!r}")
    return value


def check_bool(name: str, value: object) -> bool:
    """Check that ``value`` is a bool and return it."""
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected True or False, got {_type_name(value)} {value!r}")
    return value


def check_choice(name: str, value: object, choices: Iterable[Any]) -> Any:
    """Check that ``value`` is one of ``choices`` and return it."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")
    return value


def check_str(name: str, value: object, *, allow_empty: bool = True) -> str:
    """Check that ``value`` is a str (non-empty unless ``allow_empty``) and return it."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a str, got {_type_name(value)}")
    if not allow_empty and not value:
        raise ValueError(f"{name}: expected a non-empty str")
    return value


def check_strings(name: str, value: object, *, allow_empty: bool = False) -> list[str]:
    """Check that ``value`` is a list or tuple of str (a bare str is refused) and return a list."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name}: expected a list of str, got {_type_name(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{i}]: expected a str, got {_type_name(item)} {item!r}")
    if not allow_empty and len(value) == 0:
        raise ValueError(f"{name}: expected at least one string, got an empty list")
    return list(value)


def check_tensor(name: str, value: object, *, ndim: int | Sequence[int] | None = None,
                 dtype: str | None = None) -> torch.Tensor:
    """Check that ``value`` is a tensor with the given number of dimensions and dtype kind.

    Args:
        name: the parameter's name, for the message.
        value: what the caller passed.
        ndim: the allowed number(s) of dimensions, or ``None`` for any.
        dtype: ``"float"`` (floating point), ``"int"`` (integer, not bool), ``"bool"`` or ``None``.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {_type_name(value)}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.dim() not in allowed:
            raise ValueError(f"{name}: expected {' or '.join(map(str, allowed))} dimensions, "
                             f"got shape {tuple(value.shape)}")
    kinds = {
        "float": value.is_floating_point(),
        "int": not value.is_floating_point() and not value.is_complex()
        and value.dtype != torch.bool,
        "bool": value.dtype == torch.bool,
    }
    if dtype is not None and not kinds[dtype]:
        raise TypeError(f"{name}: expected a {dtype} tensor, got dtype {value.dtype}")
    return value


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Raise ``ValueError`` if a floating-point tensor holds NaN or infinity."""
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return value


def check_same_device(**tensors: torch.Tensor) -> None:
    """Raise ``ValueError`` unless every tensor given by keyword is on one device."""
    devices = {k: v.device for k, v in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{k} on {d}" for k, d in devices.items())
        raise ValueError(f"tensors must be on one device, got {listed}")


def check_file(name: str, value: object) -> Path:
    """Check that ``value`` is a path (str or PathLike) to an existing file and return it."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a path (str or os.PathLike), got {_type_name(value)}")
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no file at {str(path)!r}")
    return path
