"""Checkers for the exercises of chapter 3, recurrent encoder-decoders.

* :func:`exercise_3_1`: one GRU step written by hand, against :class:`torch.nn.GRUCell`.
* :func:`exercise_3_2`: the decoder's teacher-forcing input and target from a pronunciation.
* :func:`exercise_3_3`: the edit distance behind the phoneme error rate.
* :func:`exercise_3_4`: the parameter count of a GRU layer, predicted by a formula.

Example:
    >>> from lmlab.exercises.ch03 import exercise_3_4
    >>> exercise_3_4(lambda C, R: 3 * (C * R + R * R + 2 * R))
    Exercise 3.4: correct. Three gates, each with C*R + R*R weights and two biases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lmlab.exercises import Verdict, call, first_failure, mismatch, verdict

__all__ = ["exercise_3_1", "exercise_3_2", "exercise_3_3", "exercise_3_4"]


def exercise_3_1(gru_step: Callable[..., Any]) -> Verdict:
    """Check ``gru_step(x, h, weight_ih, weight_hh, bias_ih, bias_hh) -> h_new``.

    The weights follow :class:`torch.nn.GRU`'s layout (gates stacked as r, z, n); the reference
    is :class:`torch.nn.GRUCell` with the same weights, on inputs made here: one word, a batch,
    and a state far from zero (so that keeping and replacing the state differ).

    Args:
        gru_step: the reader's function.

    Shape:
        x ``(B, C)``, h ``(B, R)``, weight_ih ``(3R, C)``, weight_hh ``(3R, R)``, biases
        ``(3R,)`` -> ``(B, R)``
    """
    cases = []
    for label, B, C, R, seed in [("one input, C=3, R=2", 1, 3, 2, 0),
                                 ("a batch of 4, C=5, R=6", 4, 5, 6, 1),
                                 ("a batch of 2, C=1, R=3", 2, 1, 3, 2)]:
        gen = torch.Generator().manual_seed(seed)
        cell = torch.nn.GRUCell(C, R)
        with torch.no_grad():
            for p in cell.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
            x = torch.randn(B, C, generator=gen)
            h = 2 * torch.randn(B, R, generator=gen)
            expected = cell(x, h)
        args = (x, h, cell.weight_ih.detach(), cell.weight_hh.detach(),
                cell.bias_ih.detach(), cell.bias_hh.detach())

        def check(args=args, expected=expected) -> str | None:
            with torch.no_grad():
                got = call(gru_step, *args, what="gru_step")
            return mismatch(got, expected, what="the new state", atol=1e-5, rtol=1e-4)

        cases.append((f"on {label}", check))
    return verdict("3.1", first_failure(cases),
                   "Your step matches torch.nn.GRUCell, both gates included.")


def exercise_3_2(shift: Callable[..., Any]) -> Verdict:
    """Check ``shift(ids, bos_id, eos_id) -> (tgt_in, tgt_out)`` for one pronunciation.

    ``ids`` is a list of phoneme ids; ``tgt_in`` is what the decoder reads under teacher
    forcing (``<s>`` then the phonemes), ``tgt_out`` what it must predict at each position (the
    phonemes then ``</s>``), both lists of ints of the same length.

    Args:
        shift: the reader's function.
    """
    cases = []
    for ids, bos, eos in [([45, 8, 22], 2, 3), ([5], 2, 3), ([7, 7, 9, 11], 1, 0)]:
        expected = ([bos, *ids], [*ids, eos])

        def check(ids=ids, bos=bos, eos=eos, expected=expected) -> str | None:
            got = call(shift, list(ids), bos, eos, what="shift")
            if not isinstance(got, tuple) or len(got) != 2:
                return f"expected a pair (tgt_in, tgt_out), got {got!r:.60}"
            got = tuple(g.tolist() if isinstance(g, torch.Tensor) else list(g) for g in got)
            return (mismatch(got[0], expected[0], what="tgt_in")
                    or mismatch(got[1], expected[1], what="tgt_out"))

        cases.append((f"on ids={ids}, bos_id={bos}, eos_id={eos}", check))
    return verdict("3.2", first_failure(cases),
                   "Each position reads one true phoneme and predicts the next.")


def exercise_3_3(distance: Callable[..., Any]) -> Verdict:
    """Check ``distance(a, b) -> int``, the Levenshtein distance between two phoneme lists.

    Cases with known distances (an insertion, a deletion, a substitution, empty sequences) and
    pairs of random phoneme strings compared with :func:`lmlab.g2p.edit_distance`.

    Args:
        distance: the reader's function.
    """
    from lmlab.g2p import edit_distance

    known = [(["K", "AE1", "T"], ["K", "AE1", "T"], 0),
             (["K", "AE1", "T"], ["K", "AA1", "T", "S"], 2),
             (["F", "OW1", "T", "OW0"], ["F", "OW1", "T"], 1),
             ([], ["AH0", "B"], 2),
             (["N", "AY1", "T"], ["K", "N", "AY1", "T"], 1),
             (["AH0", "B", "C"], ["B", "C", "AH0"], 2)]
    gen = torch.Generator().manual_seed(0)
    symbols = ["AH0", "B", "K", "T", "IY1"]
    for _ in range(20):
        a, b = ([symbols[int(i)] for i in torch.randint(len(symbols), (int(n),), generator=gen)]
                for n in torch.randint(0, 7, (2,), generator=gen))
        known.append((a, b, edit_distance(a, b)))
    cases = [(f"on {a} and {b}",
              lambda a=a, b=b, d=d: mismatch(call(distance, list(a), list(b), what="distance"),
                                             d, what="the distance", atol=0, rtol=0))
             for a, b, d in known]
    return verdict("3.3", first_failure(cases),
                   "Divided by the reference's length: the phoneme error rate.")


def exercise_3_4(count: Callable[..., Any]) -> Verdict:
    """Check ``count(C, R) -> int``, the number of parameters of ``torch.nn.GRU(C, R)``.

    The reference counts the parameters of real one-layer GRUs of several sizes, the chapter's
    encoder (C=64, R=256) among them.

    Args:
        count: the reader's function of the input width ``C`` and the state width ``R``.
    """
    cases = []
    for C, R in [(64, 256), (1, 1), (3, 5), (64, 291)]:
        with torch.device("meta"):
            expected = sum(p.numel() for p in torch.nn.GRU(C, R).parameters())
        cases.append((f"for C={C}, R={R}",
                      lambda C=C, R=R, e=expected: mismatch(call(count, C, R, what="count"), e,
                                                            what="the parameters", atol=0,
                                                            rtol=0)))
    return verdict("3.4", first_failure(cases),
                   "Three gates, each with C*R + R*R weights and two biases.")
