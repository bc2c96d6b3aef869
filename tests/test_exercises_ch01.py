"""Right and wrong answers to chapter 1's exercises (tests/test_exercises.py runs the checkers on
them): the wrong ones are the slips a reader makes (a dot product left unnormalised, the idf
without its smoothing or its +1, ln(0) left in the sublinear counts, rows not scaled to length
1, a zero row divided by zero, shared distinct words counted instead of counts)."""

from __future__ import annotations

import math

import torch


def _cosine(x, y):
    return float(x @ y / (x.norm() * y.norm()))


def _idf(smooth: bool = True, plus_one: bool = True, log=torch.log):
    def idf(counts):
        n, df = counts.shape[0], (counts > 0).sum(0).float()
        ratio = (1 + n) / (1 + df) if smooth else n / df
        return log(ratio) + (1 if plus_one else 0)
    return idf


def _tfidf(keep_zeros: bool = True, normalize: bool = True, guard_zero_rows: bool = True):
    def tfidf(counts, idf):
        damped = 1 + torch.log(counts)
        if keep_zeros:
            damped = torch.where(counts > 0, damped, torch.zeros_like(counts))
        weights = damped * idf
        if normalize:
            norms = weights.norm(dim=1, keepdim=True)
            weights = weights / (norms.clamp(min=1e-12) if guard_zero_rows else norms)
        return weights
    return tfidf


ANSWERS = {
    "1.1": (lambda: _cosine,
            [lambda: (lambda x, y: float(x @ y)),
             lambda: (lambda x, y: float(x @ y / x.norm() ** 2)),
             lambda: (lambda x, y: float((x > 0).float() @ (y > 0).float()
                                         / math.sqrt((x > 0).sum() * (y > 0).sum())))]),
    "1.2": (lambda: _idf(),
            [lambda: _idf(plus_one=False), lambda: _idf(smooth=False), lambda: _idf(log=torch.log10),
             lambda: (lambda counts: torch.ones(counts.shape[1]))]),
    "1.3": (lambda: _tfidf(),
            [lambda: _tfidf(keep_zeros=False), lambda: _tfidf(normalize=False),
             lambda: _tfidf(guard_zero_rows=False),
             lambda: (lambda counts, idf: counts * idf)]),
    "1.4": (lambda: 0.75,
            [lambda: 0.6, lambda: 1.0, lambda: "0.75"]),
}
