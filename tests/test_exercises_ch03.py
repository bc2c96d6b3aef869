"""Right and wrong answers to chapter 3's exercises (tests/test_exercises.py runs the checkers on
them): the wrong ones are the slips a reader makes (gates swapped, the reset gate left out, the
shift forgotten, a distance that counts only substitutions, an LSTM's four gates)."""

from __future__ import annotations

import torch


def _gru(swap_update: bool = False, no_reset: bool = False):
    def step(x, h, w_ih, w_hh, b_ih, b_hh):
        i_r, i_z, i_n = (x @ w_ih.T + b_ih).chunk(3, dim=-1)
        h_r, h_z, h_n = (h @ w_hh.T + b_hh).chunk(3, dim=-1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + (h_n if no_reset else r * h_n))
        return z * n + (1 - z) * h if swap_update else (1 - z) * n + z * h
    return step


def _shift(ids, bos_id, eos_id):
    return [bos_id, *ids], [*ids, eos_id]


def _levenshtein(a, b):
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


ANSWERS = {
    "3.1": (lambda: _gru(),
            [lambda: _gru(swap_update=True), lambda: _gru(no_reset=True),
             lambda: (lambda x, h, *w: h)]),
    "3.2": (lambda: _shift,
            [lambda: (lambda ids, b, e: (list(ids), list(ids))),
             lambda: (lambda ids, b, e: ([b, *ids[:-1]], list(ids))),
             lambda: (lambda ids, b, e: [b, *ids])]),
    "3.3": (lambda: _levenshtein,
            [lambda: (lambda a, b: sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))),
             lambda: (lambda a, b: abs(len(a) - len(b)))]),
    "3.4": (lambda: (lambda C, R: 3 * (C * R + R * R + 2 * R)),
            [lambda: (lambda C, R: 4 * (C * R + R * R + 2 * R)),
             lambda: (lambda C, R: 3 * (C * R + R * R + R)),
             lambda: (lambda C, R: 3 * (C * R + R * R))]),
}
