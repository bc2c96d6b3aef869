"""Right and wrong answers to chapter 4's exercises (tests/test_exercises.py runs the checkers on
them): the wrong ones are the slips a reader makes (no sqrt(D), the softmax over the queries, the
mask ignored, an off-by-one mask, a count of W_c without its bias, tanh left out)."""

from __future__ import annotations

import math

import torch


def _attend(scale: bool = True, dim: int = -1, use_mask: bool = True):
    def attend(q, k, v, mask):
        scores = q @ k.transpose(-2, -1)
        if scale:
            scores = scores / math.sqrt(q.shape[-1])
        if mask is not None and use_mask:
            scores = scores.masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=dim) @ v
    return attend


def _additive(use_tanh: bool = True):
    def scores(q, k, w_q, w_k, w_v):
        hidden = (q @ w_q.T).unsqueeze(-2) + (k @ w_k.T).unsqueeze(-3)  # (B, T, S, A)
        return (torch.tanh(hidden) if use_tanh else hidden) @ w_v
    return scores


ANSWERS = {
    "4.1": (lambda: _attend(),
            [lambda: _attend(scale=False), lambda: _attend(use_mask=False),
             lambda: _attend(dim=-2)]),
    "4.2": (lambda: (lambda lengths, S: torch.arange(S) < lengths[:, None]),
            [lambda: (lambda lengths, S: torch.arange(S) <= lengths[:, None]),
             lambda: (lambda lengths, S: (torch.arange(S) < lengths[:, None]).int()),
             lambda: (lambda lengths, S: torch.arange(S) >= lengths[:, None])]),
    "4.3": (lambda: (lambda R: 2 * R * R + R),
            [lambda: (lambda R: 2 * R * R), lambda: (lambda R: R * R + R),
             lambda: (lambda R: 0)]),
    "4.4": (lambda: _additive(), [lambda: _additive(use_tanh=False),
                                  lambda: (lambda q, k, w_q, w_k, w_v: q @ k.transpose(-2, -1))]),
}
