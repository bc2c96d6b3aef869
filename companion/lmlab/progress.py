"""One progress bar for the whole package.

Bars show counts and a postfix (the loss) but never elapsed time or rates, and they redraw at
fixed steps (every 5% of a known total) rather than on a clock, so a notebook's stored output is
the same on every run and stays small. Silence them with :func:`set_progress` or
``LMLAB_PROGRESS=0``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

from lmlab._checks import check_bool, check_int, check_str

__all__ = ["progress", "set_progress", "progress_enabled"]

_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt}{postfix}"
_REDRAWS = 20  # redraws per bar with a known total
_enabled: bool | None = None


class _StepBar(tqdm):
    """tqdm that redraws on progress steps only: ``set_postfix`` just records the numbers."""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = False, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=refresh, **kwargs)


def set_progress(enabled: bool | None) -> None:
    """Turn every lmlab progress bar on or off; ``None`` goes back to ``LMLAB_PROGRESS``."""
    global _enabled
    _enabled = None if enabled is None else check_bool("enabled", enabled)


def progress_enabled() -> bool:
    """Whether progress bars are shown (``set_progress`` wins over ``LMLAB_PROGRESS``)."""
    if _enabled is not None:
        return _enabled
    return os.environ.get("LMLAB_PROGRESS", "1") not in ("0", "false", "False", "")


def progress(iterable: Iterable[Any] | None = None, total: int | None = None, desc: str = "",
             enabled: bool | None = None, initial: int = 0) -> tqdm:
    """A tqdm bar without timing fields. Use ``bar.set_postfix(loss=...)`` for live numbers.

    With a known length (``total`` or ``len(iterable)``) the bar redraws every 5% of it and once
    more when closed, whatever the speed of the machine; ``set_postfix`` values appear at the next
    redraw.

    Args:
        iterable: what to iterate over (or ``None`` and call ``bar.update()`` by hand).
        total: number of steps, when ``iterable`` has no length.
        desc: a label in front of the bar.
        enabled: override the global switch for this bar.
        initial: steps already done (a resumed run starts its bar there).

    Example:
        >>> with progress(range(3), desc="demo", enabled=False) as bar:
        ...     [i for i in bar]
        [0, 1, 2]
    """
    if iterable is not None and not isinstance(iterable, Iterable):
        raise TypeError(f"iterable: expected an iterable or None, got {type(iterable).__name__}")
    if total is not None:
        check_int("total", total, minimum=0)
    check_str("desc", desc)
    if enabled is not None:
        check_bool("enabled", enabled)
    check_int("initial", initial, minimum=0, maximum=total)
    show = progress_enabled() if enabled is None else enabled
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    schedule: dict[str, Any] = {}
    if total:
        schedule = {"miniters": max(1, total // _REDRAWS), "mininterval": 0.0,
                    "maxinterval": float("inf")}
    return _StepBar(iterable, total=total, desc=desc or "progress", bar_format=_BAR_FORMAT,
                    disable=not show, file=sys.stderr, ascii=True, dynamic_ncols=False, ncols=80,
                    initial=initial, **schedule)
