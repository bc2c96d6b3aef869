"""Right and wrong answers to chapter 6's exercises (tests/test_exercises.py runs them)."""

from __future__ import annotations

import math

import torch

from lmlab.exercises.ch06 import exercise_6_2


def _attention(scale: bool = True, mask_value: float = float("-inf"), transpose: bool = False):
    def attention(q, k, v, mask=None):
        scores = q @ k.T
        if scale:
            scores = scores / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, mask_value)
        weights = torch.softmax(scores, dim=0 if transpose else -1)
        return weights @ v
    return attention


def _ignores_mask(q, k, v, mask=None):
    return _attention()(q, k, v, None)


def _rotate(pairs: str = "halves", sign: float = 1.0):
    def rotate(x, t):
        D = x.shape[0]
        freqs = 10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float32) / D)  # (D/2,)
        angle = t * freqs
        cos, sin = torch.cos(angle), torch.sin(angle)
        if pairs == "halves":
            a, b = x[: D // 2], x[D // 2:]
            return torch.cat([a * cos - sign * b * sin, sign * a * sin + b * cos])
        a, b = x[0::2], x[1::2]  # neighbours paired: another valid layout, not lmlab's
        out = torch.empty_like(x)
        out[0::2], out[1::2] = a * cos - b * sin, a * sin + b * cos
        return out
    return rotate


def _raises(*args):
    raise RuntimeError("not written yet")


ANSWERS = {
    "6.1": (_attention, [lambda: _attention(scale=False), lambda: _ignores_mask,
                         lambda: _attention(transpose=True), lambda: 3, lambda: _raises]),
    "6.2": (lambda: 45, [lambda: 55, lambda: 50, lambda: "45"]),
    "6.3": (lambda: 16640, [lambda: 16640 * 8, lambda: 2080, lambda: 16384]),
    "6.4": (_rotate, [lambda: _rotate("neighbours"), lambda: _rotate(sign=-1.0),
                      lambda: (lambda x, t: x), lambda: _raises]),
}


def test_the_diagonal_hint_of_6_2() -> None:
    assert "a token does see itself" in exercise_6_2(55).message
