"""Checkers for the book's exercises: the reader's answer, run on inputs of the checker's own.

Every chapter ends with exercises headed ``Exercise N.M``. Chapter ``N`` has a module
``lmlab.exercises.chNN`` with one checker per exercise, named after its heading
(``exercise_4_2`` checks "Exercise 4.2"). A checker takes the reader's answer (a function, a
tensor, a number ...), tries it on inputs it makes itself and returns a :class:`Verdict`: either
"correct" or a specific hint -- which input failed, what was expected and what came back. It
never raises for a wrong answer, and an answer that raises is reported as such::

    >>> from lmlab.exercises import Verdict, compare
    >>> compare("0.1", got=0.5, expected=0.25, what="the cosine of a and b")
    Exercise 0.1: not yet. the cosine of a and b: expected 0.25, got 0.5
    >>> compare("0.1", got=0.25, expected=0.25, what="the cosine of a and b")
    Exercise 0.1: correct.

The helpers here (:func:`compare`, :func:`call`, :func:`verdict`) give every checker the same
wording.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Verdict", "verdict", "call", "compare", "mismatch", "first_failure", "AnswerError"]


@dataclass(frozen=True)
class Verdict:
    """What a checker found: ``correct`` and the message shown to the reader.

    A ``Verdict`` is true when the answer is correct, so ``assert exercise_1_1(f)`` works in a
    solution cell. In a notebook it shows as one line.
    """

    exercise: str  # "4.2"
    correct: bool  # the answer passed every input
    message: str  # "correct." plus a remark, or the hint: which input, expected vs got

    def __bool__(self) -> bool:
        return self.correct

    def __str__(self) -> str:
        return f"Exercise {self.exercise}: {self.message}"

    def __repr__(self) -> str:
        return str(self)


def verdict(exercise: str, hint: str | None, remark: str = "") -> Verdict:
    """A correct verdict when ``hint`` is ``None``, else "not yet." with the hint.

    Args:
        exercise: the exercise's number, ``"N.M"``.
        hint: what went wrong (which input, expected vs got), or ``None`` when nothing did.
        remark: a sentence added to a correct verdict (what the answer shows).
    """
    if hint is None:
        return Verdict(exercise, True, "correct." + (f" {remark}" if remark else ""))
    return Verdict(exercise, False, f"not yet. {hint}")


class AnswerError(Exception):
    """The reader's answer raised or returned the wrong kind of thing; the message says which."""


def call(answer: Any, *args: Any, what: str = "your function", **kwargs: Any) -> Any:
    """Call the reader's function, turning its failure into an :class:`AnswerError` hint.

    Raises:
        AnswerError: ``answer`` is not callable, or raised; the message names the inputs.
    """
    if not callable(answer):
        raise AnswerError(f"expected a function, got {type(answer).__name__}")
    try:
        return answer(*args, **kwargs)
    except Exception as err:  # the reader's code: any failure becomes a hint
        shown = ", ".join([*(_short(a) for a in args),
                           *(f"{k}={_short(v)}" for k, v in kwargs.items())])
        raise AnswerError(f"{what} raised {type(err).__name__}: {err} (called with {shown})"
                          ) from None


def first_failure(cases: Sequence[tuple[str, Callable[[], str | None]]]) -> str | None:
    """Run ``(label, check)`` pairs in order; return the first hint, prefixed by its label.

    Each ``check`` returns ``None`` when its case passes, or the hint. An
    :class:`AnswerError` raised inside a check becomes that case's hint.
    """
    for label, check in cases:
        try:
            hint = check()
        except AnswerError as err:
            hint = str(err)
        if hint is not None:
            return f"{label}: {hint}" if label else hint
    return None


def compare(exercise: str, got: Any, expected: Any, *, what: str, atol: float = 1e-6,
            rtol: float = 1e-5, remark: str = "") -> Verdict:
    """The verdict of one value against the expected one (numbers, sequences or tensors).

    Numbers and tensors are compared within ``atol + rtol * |expected|``; other values exactly.
    """
    hint = mismatch(got, expected, what=what, atol=atol, rtol=rtol)
    return verdict(exercise, hint, remark)


def mismatch(got: Any, expected: Any, *, what: str, atol: float = 1e-6,
             rtol: float = 1e-5) -> str | None:
    """``None`` when ``got`` matches ``expected``, else "what: expected X, got Y"."""
    import torch

    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"{what}: expected a tensor of shape {tuple(expected.shape)}, got " \
                   f"{type(got).__name__}"
        if got.shape != expected.shape:
            return f"{what}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
        g, e = got.detach().double().cpu(), expected.detach().double().cpu()
        bad = ~torch.isclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
        if bool(bad.any()):
            index = tuple(int(i) for i in bad.nonzero()[0])
            return (f"{what}: at index {index} expected {e[index].item():.6g}, got "
                    f"{g[index].item():.6g} ({int(bad.sum())} of {bad.numel()} entries differ)")
        return None
    if isinstance(expected, numbers.Real) and not isinstance(expected, bool):
        if isinstance(got, bool) or not isinstance(got, numbers.Real):
            return f"{what}: expected a number, got {type(got).__name__} {_short(got)}"
        if not math.isclose(float(got), float(expected), rel_tol=rtol, abs_tol=atol):
            return f"{what}: expected {float(expected):.6g}, got {float(got):.6g}"
        return None
    if got != expected:
        return f"{what}: expected {_short(expected)}, got {_short(got)}"
    return None


def _short(value: Any, width: int = 60) -> str:
    """A one-line description of a value for a hint (tensors by shape and dtype)."""
    import torch

    if isinstance(value, torch.Tensor):
        if value.numel() <= 6:
            return f"tensor({value.tolist()})"
        return f"tensor of shape {tuple(value.shape)} ({value.dtype})"
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."
