"""Right and wrong answers to chapter 2's exercises (tests/test_exercises.py runs the checkers on
them): the wrong ones are the slips a reader makes (counts used as frequencies, the cap at 1
forgotten, ``log(sigmoid(x))`` that underflows, the negatives' sign flipped, K log 2 instead of
(1 + K) log 2, an analogy that returns a question word or ranks by dot product)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _keep(as_frequency: bool = True, cap: bool = True):
    def keep(counts, sample):
        counts = counts.double()
        if sample == 0:
            return torch.ones(counts.shape)
        f = counts / counts.sum() if as_frequency else counts
        p = ((f / sample).sqrt() + 1) * sample / f
        return (p.clamp(max=1) if cap else p).float()
    return keep


def _loss(stable: bool = True, negative_sign: float = -1.0):
    log_s = F.logsigmoid if stable else (lambda x: torch.log(torch.sigmoid(x)))

    def loss(v, u_t, u_neg):
        positive = (v * u_t).sum(-1)  # (B,)
        negative = (u_neg @ v.unsqueeze(-1)).squeeze(-1)  # (B, K)
        return -(log_s(positive) + log_s(negative_sign * negative).sum(-1))
    return loss


def _analogy(exclude: bool = True, unit: bool = True):
    def analogy(vectors, a, b, c):
        rows = vectors / vectors.norm(dim=1, keepdim=True) if unit else vectors
        query = rows[b] - rows[a] + rows[c]
        scores = rows @ query / (rows.norm(dim=1) * query.norm())
        if not unit:
            scores = rows @ query
        if exclude:
            scores[[a, b, c]] = -math.inf
        return int(scores.argmax())
    return analogy


ANSWERS = {
    "2.1": (lambda: _keep(),
            [lambda: _keep(as_frequency=False), lambda: _keep(cap=False),
             lambda: (lambda counts, sample: torch.ones(counts.shape))]),
    "2.2": (lambda: _loss(),
            [lambda: _loss(stable=False), lambda: _loss(negative_sign=1.0),
             lambda: (lambda v, u_t, u_neg: -F.logsigmoid((v * u_t).sum(-1)))]),
    "2.3": (lambda: (lambda K: (1 + K) * math.log(2)),
            [lambda: (lambda K: K * math.log(2)), lambda: (lambda K: math.log(2)),
             lambda: (lambda K: (1 + K) * math.log(2) / 4)]),
    "2.4": (lambda: _analogy(),
            [lambda: _analogy(exclude=False), lambda: _analogy(unit=False)]),
}
