"""Argument checks shared by every module, so that bad input fails early with one kind of message.

The rule: a value of the wrong *type* raises :class:`TypeError`, a value of the right type but
outside what is allowed raises :class:`ValueError`. Every message starts with the parameter's
name and says what is allowed. Checks run before any work is done.

A private module, and the one exception to the package's rule that no module imports another
module's private names: every module imports its checks from here (``tests/test_imports.py``
holds the rule).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch


def _type_name(value: object) -> str:
    return type(value).__name__


def check_int(name: str, value: object, minimum: int | None = 1,
              maximum: int | None = None) -> int:
    """Check that ``value`` is an int (not a bool) in ``[minimum, maximum]`` and return it.

    NumPy integers are accepted and returned as ``int``.

    Raises:
        TypeError: ``value`` is not an int (floats such as ``2.0`` included).
        ValueError: ``value`` is outside the allowed range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {_type_name(value)} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: expected an int <= {maximum}, got {value!r}")
    return value


def check_float(name: str, value: object, minimum: float | None = None,
                maximum: float | None = None, *, min_inclusive: bool = True,
                max_inclusive: bool = True) -> float:
    """Check that ``value`` is a finite real number inside the given bounds and return it as float.

    Ints and NumPy scalars are accepted (``1`` for ``1.0``); bools, NaN and infinities are not.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is NaN, infinite or outside the bounds.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
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


def check_texts(name: str, value: object) -> list[str]:
    """Check that ``value`` is a string or an iterable of strings holding some text, all of
    valid Unicode (no lone surrogates), and return it as a list (a training corpus).

    Example:
        >>> check_texts("text", ["a", ""])
        ['a', '']
        >>> check_texts("text", ["", ""])
        Traceback (most recent call last):
        ...
        ValueError: text: cannot train on empty text
    """
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, bytes) or not isinstance(value, Iterable):
        raise TypeError(f"{name}: expected a str or an iterable of str, got {_type_name(value)}")
    else:
        texts = check_strings(name, list(value), allow_empty=True)
    if not any(texts):
        raise ValueError(f"{name}: cannot train on empty text")
    for i, t in enumerate(texts):
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"{name}: document {i} holds a lone surrogate ({err.reason}); text "
                             "must be valid Unicode") from err
    return texts


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
        article = "an" if dtype == "int" else "a"
        raise TypeError(f"{name}: expected {article} {dtype} tensor, got dtype {value.dtype}")
    return value


def check_shape(name: str, value: torch.Tensor,
                shape: Sequence[int | tuple[str, int] | str | None]) -> torch.Tensor:
    """Check a tensor's shape against a pattern and return it.

    Each entry of ``shape`` is an int (that size), a ``(letter, size)`` pair (that size, named
    in the message), a letter alone or ``None`` (any size).

    Example:
        >>> check_shape("x", torch.zeros(2, 5, 8), ("B", "T", ("C", 8))).shape
        torch.Size([2, 5, 8])
        >>> check_shape("x", torch.zeros(2, 5, 6), ("B", "T", ("C", 8)))
        Traceback (most recent call last):
        ...
        ValueError: x: expected shape (B, T, C=8), got (2, 5, 6)
    """
    check_tensor(name, value)

    def describe(entry: object) -> str:
        if isinstance(entry, tuple):
            return f"{entry[0]}={entry[1]}"
        return "?" if entry is None else str(entry)

    want = [e[1] if isinstance(e, tuple) else e if isinstance(e, int) else None for e in shape]
    if value.dim() != len(want) or any(w is not None and w != got
                                       for w, got in zip(want, value.shape)):
        raise ValueError(f"{name}: expected shape ({', '.join(map(describe, shape))}), "
                         f"got {tuple(value.shape)}")
    return value


def values_checked_on_device(value: torch.Tensor) -> bool:
    """Whether a value check of ``value`` must be queued on the device instead of run now.

    True for a tensor off the CPU (a GPU: reading a value back would stop it) and while
    ``torch.compile`` traces (reading a value would break the graph). Such checks go through
    :func:`torch._assert_async`, which raises later, at the next synchronisation, without a
    host sync of its own.
    """
    return bool(torch.compiler.is_compiling()) or value.device.type not in ("cpu", "meta")


def check_values(name: str, value: torch.Tensor, ok: torch.Tensor, message: str,
                 detail: Callable[[], str] | None = None) -> torch.Tensor:
    """Raise ``ValueError(message)`` unless the bool tensor ``ok`` (computed from ``value``) is all
    True; without a host sync on accelerators and under ``torch.compile``.

    On the CPU the check runs at once and the message gets ``detail()`` (what was found, e.g.
    the smallest and largest id) appended. Off the CPU, or while compiling, it is queued with
    :func:`torch._assert_async` (see :func:`values_checked_on_device`). A meta tensor has no
    values to check and raises ``ValueError``.

    Args:
        name: the parameter's name (used for the meta-tensor message).
        value: the tensor checked.
        ok: a bool tensor on ``value``'s device, True where the values are allowed.
        message: the error, starting with the parameter's name and saying what is allowed.
        detail: a function giving what was found, called only when the CPU check fails.

    Returns:
        ``value``, unchanged.
    """
    if values_checked_on_device(value):
        torch._assert_async(ok.all(), message)
        return value
    check_not_meta(name, value)
    if not bool(ok.all()):
        raise ValueError(message + (f", {detail()}" if detail is not None else ""))
    return value


def check_ids(name: str, value: object, vocab_size: int, *,
              ndim: int | Sequence[int] | None = None) -> torch.Tensor:
    """Check that ``value`` is an integer tensor of token ids in ``[0, vocab_size)``.

    The range check never stops an accelerator: on a CPU tensor it runs at once and raises
    :class:`ValueError`; on a GPU (any non-CPU device), and while ``torch.compile`` traces,
    it is queued on the device with :func:`torch._assert_async`, which reports a bad id
    (as a ``RuntimeError`` naming ``name``) without a host sync or a graph break. A meta
    tensor holds no values to check and is refused.

    Args:
        name: the parameter's name, for the message.
        value: what the caller passed.
        vocab_size: ids must lie in ``[0, vocab_size)``.
        ndim: the allowed number(s) of dimensions, or ``None`` for any.

    Returns:
        ``value``, unchanged.

    Raises:
        TypeError: ``value`` is not an integer tensor.
        ValueError: wrong number of dimensions, a meta tensor, or (on CPU) an id out of range.

    Example:
        >>> check_ids("ids", torch.tensor([[3, 9]]), vocab_size=10, ndim=2).tolist()
        [[3, 9]]
        >>> check_ids("ids", torch.tensor([3, 10]), vocab_size=10)
        Traceback (most recent call last):
        ...
        ValueError: ids: expected ids in [0, 10), got values from 3 to 10
    """
    return check_int_values(name, value, 0, vocab_size, ndim=ndim, what="ids")


def check_int_values(name: str, value: object, low: int | None, high: int | None, *,
                     ndim: int | Sequence[int] | None = None,
                     what: str = "values") -> torch.Tensor:
    """Check that ``value`` is an integer tensor with every entry in ``[low, high)``.

    ``None`` leaves that end open. Sync-free on accelerators and under ``torch.compile``, as
    :func:`check_ids` (which is this check with ``low=0``, ``high=vocab_size``).

    Example:
        >>> check_int_values("context", torch.tensor([-2, 3]), -1, 10)
        Traceback (most recent call last):
        ...
        ValueError: context: expected values in [-1, 10), got values from -2 to 3
    """
    check_tensor(name, value, ndim=ndim, dtype="int")
    assert isinstance(value, torch.Tensor)
    if low is None and high is None:
        return value
    ok = torch.ones((), dtype=torch.bool, device=value.device)
    if low is not None:
        ok = ok & (value >= low).all()
    if high is not None:
        ok = ok & (value < high).all()
    allowed = (f"[{low}, {high})" if low is not None and high is not None
               else f">= {low}" if low is not None else f"< {high}")
    where = f"in {allowed}" if allowed.startswith("[") else allowed
    return check_values(name, value, ok, f"{name}: expected {what} {where}",
                        lambda: f"got values from {int(value.min())} to {int(value.max())}")


def check_not_meta(name: str, value: torch.Tensor) -> torch.Tensor:
    """Raise ``ValueError`` for a tensor on the meta device, where a value must be read.

    Example:
        >>> check_not_meta("x", torch.zeros(2, device="meta"))
        Traceback (most recent call last):
        ...
        ValueError: x: expected a tensor with values, got a meta tensor (shape (2,), no data)
    """
    if value.is_meta:
        raise ValueError(f"{name}: expected a tensor with values, got a meta tensor "
                         f"(shape {tuple(value.shape)}, no data)")
    return value


def check_divisible(name: str, value: int, divisor_name: str, divisor: int) -> int:
    """Check that ``value`` is a multiple of ``divisor`` (both already checked as ints).

    Example:
        >>> check_divisible("d_model", 64, "num_heads", 6)
        Traceback (most recent call last):
        ...
        ValueError: d_model: expected a multiple of num_heads=6, got 64
    """
    if value % divisor:
        raise ValueError(f"{name}: expected a multiple of {divisor_name}={divisor}, got {value}")
    return value


def check_instance(name: str, value: object, types: type | tuple[type, ...]) -> Any:
    """Check that ``value`` is an instance of ``types`` (e.g. ``torch.nn.Module``) and return it.

    Example:
        >>> check_instance("model", "gpt", torch.nn.Module)
        Traceback (most recent call last):
        ...
        TypeError: model: expected Module, got str
    """
    if not isinstance(value, types):
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise TypeError(f"{name}: expected {names}, got {_type_name(value)}")
    return value


def check_callable(name: str, value: object, *,
                   allow_none: bool = False) -> Callable[..., Any] | None:
    """Check that ``value`` is callable (or ``None`` where ``allow_none``) and return it."""
    if value is None and allow_none:
        return None
    if not callable(value):
        allowed = "a callable or None" if allow_none else "a callable"
        raise TypeError(f"{name}: expected {allowed}, got {_type_name(value)}")
    return value


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Raise ``ValueError`` if a floating-point tensor holds NaN or infinity (or is on meta)."""
    check_not_meta(name, value)
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return value


def check_same_device(**tensors: torch.Tensor) -> None:
    """Raise ``ValueError`` unless every tensor given by keyword is on one device.

    Example:
        >>> check_same_device(x=torch.zeros(1), weight=torch.zeros(1, device="meta"))
        Traceback (most recent call last):
        ...
        ValueError: x, weight: expected tensors on one device, got x on cpu, weight on meta
    """
    devices = {k: v.device for k, v in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{k} on {d}" for k, d in devices.items())
        raise ValueError(f"{', '.join(devices)}: expected tensors on one device, got {listed}")


def check_same_dtype(**tensors: torch.Tensor) -> None:
    """Raise ``TypeError`` unless every tensor given by keyword has one dtype.

    Example:
        >>> check_same_dtype(x=torch.zeros(1), weight=torch.zeros(1, dtype=torch.float64))
        Traceback (most recent call last):
        ...
        TypeError: x, weight: expected one dtype, got x torch.float32, weight torch.float64
    """
    dtypes = {k: v.dtype for k, v in tensors.items()}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{k} {d}" for k, d in dtypes.items())
        raise TypeError(f"{', '.join(dtypes)}: expected one dtype, got {listed}")


def check_generator(name: str, value: object,
                    device: torch.device | None = None) -> torch.Generator | None:
    """Check that ``value`` is ``None`` or a :class:`torch.Generator` (on ``device``, if given).

    Example:
        >>> check_generator("generator", 0)
        Traceback (most recent call last):
        ...
        TypeError: generator: expected a torch.Generator or None, got int
    """
    if value is None:
        return None
    if not isinstance(value, torch.Generator):
        raise TypeError(f"{name}: expected a torch.Generator or None, got {_type_name(value)}")
    if device is not None and torch.device(value.device).type != torch.device(device).type:
        raise ValueError(f"{name}: expected a generator on {device} (where the draws happen), "
                         f"got one on {value.device}")
    return value


def check_device(name: str, value: object, *, allow_none: bool = True) -> torch.device | None:
    """Check that ``value`` names a device (a str such as ``"cuda:0"`` or a ``torch.device``).

    Returns the :class:`torch.device` (``None`` stays ``None`` where ``allow_none``). Whether
    the device is present on this machine is left to PyTorch.

    Example:
        >>> check_device("device", "tpu")
        Traceback (most recent call last):
        ...
        ValueError: device: expected a device such as 'cpu', 'cuda', 'cuda:1' or 'mps', got 'tpu'
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, (str, torch.device)):
        allowed = "a str, torch.device or None" if allow_none else "a str or torch.device"
        raise TypeError(f"{name}: expected {allowed}, got {_type_name(value)}")
    try:
        return torch.device(value)
    except RuntimeError:
        raise ValueError(f"{name}: expected a device such as 'cpu', 'cuda', 'cuda:1' or 'mps', "
                         f"got {value!r}") from None


def check_path(name: str, value: object, *, folder_must_exist: bool = False) -> Path:
    """Check that ``value`` is a path (str or PathLike, not empty) and return it as a Path.

    Args:
        name: the parameter's name, for the message.
        value: what the caller passed.
        folder_must_exist: also require the folder the path lies in to exist (for outputs).
    """
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a path (str or os.PathLike), got {_type_name(value)}")
    if not os.fspath(value):
        raise ValueError(f"{name}: expected a path, got an empty string")
    path = Path(value)
    if folder_must_exist and not path.parent.is_dir():
        raise FileNotFoundError(f"{name}: folder {str(path.parent)!r} does not exist")
    return path


def check_file(name: str, value: object) -> Path:
    """Check that ``value`` is a path (str or PathLike) to an existing file and return it."""
    path = check_path(name, value)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no file at {str(path)!r}")
    return path
