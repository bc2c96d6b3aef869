"""Checkers for the exercises of chapter 4, attention.

* :func:`exercise_4_1`: scaled dot-product attention with a mask, against PyTorch's.
* :func:`exercise_4_2`: the padding mask of a batch from its lengths.
* :func:`exercise_4_3`: how many parameters attention adds to the encoder-decoder.
* :func:`exercise_4_4`: additive (Bahdanau) scores, against :mod:`lmlab.attention`.

Example:
    >>> import torch
    >>> from lmlab.exercises.ch04 import exercise_4_2
    >>> exercise_4_2(lambda lengths, S: torch.arange(S) < lengths[:, None])
    Exercise 4.2: correct. Padding gets weight zero; every real letter can be attended to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from lmlab.exercises import Verdict, call, first_failure, mismatch, verdict

__all__ = ["exercise_4_1", "exercise_4_2", "exercise_4_3", "exercise_4_4"]


def exercise_4_1(attend: Callable[..., Any]) -> Verdict:
    """Check ``attend(q, k, v, mask) -> out``: ``softmax(q k^T / sqrt(D))`` over the allowed
    keys, times ``v``.

    ``mask`` is boolean, ``True = may attend``, broadcastable to ``(B, T, S)``, or ``None``. The
    reference is :func:`torch.nn.functional.scaled_dot_product_attention`; the inputs are made
    here, with keys wide enough (D=16) that leaving out the ``sqrt(D)`` changes the result.

    Args:
        attend: the reader's function.

    Shape:
        q ``(B, T, D)``, k ``(B, S, D)``, v ``(B, S, E)``, mask ``(B, 1, S)`` -> ``(B, T, E)``
    """
    cases = []
    for label, B, T, S, D, E, lengths in [
            ("one query, no mask", 1, 1, 5, 16, 16, None),
            ("a batch with padding", 2, 3, 6, 16, 4, [6, 2]),
            ("values narrower than keys, padding", 3, 2, 4, 16, 3, [1, 4, 3])]:
        gen = torch.Generator().manual_seed(B * 100 + S)
        q = 2 * torch.randn(B, T, D, generator=gen)
        k = torch.randn(B, S, D, generator=gen)
        v = torch.randn(B, S, E, generator=gen)
        mask = None if lengths is None else \
            (torch.arange(S) < torch.tensor(lengths)[:, None])[:, None, :]  # (B, 1, S)
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

        def check(q=q, k=k, v=v, mask=mask, expected=expected) -> str | None:
            got = call(attend, q.clone(), k.clone(), v.clone(),
                       None if mask is None else mask.clone(), what="attend")
            if isinstance(got, tuple):  # (out, weights) is fine too
                got = got[0]
            return mismatch(got, expected, what="the output", atol=1e-5, rtol=1e-4)

        cases.append((f"on {label} (B={B}, T={T}, S={S}, D={D})", check))
    return verdict("4.1", first_failure(cases),
                   "Same output as torch.nn.functional.scaled_dot_product_attention.")


def exercise_4_2(padding_mask: Callable[..., Any]) -> Verdict:
    """Check ``padding_mask(lengths, S) -> mask``: ``True`` on the first ``lengths[b]`` positions
    of row ``b``, ``False`` on the padding after them.

    Args:
        padding_mask: the reader's function of a ``(B,)`` tensor of lengths and the padded
            length ``S``.

    Shape:
        lengths ``(B,)`` -> ``(B, S)``, boolean
    """
    cases = []
    for lengths, S in [([3, 1], 4), ([2, 11], 11), ([1], 1), ([5, 5, 2], 7)]:
        expected = torch.tensor([[s < n for s in range(S)] for n in lengths])

        def check(lengths=lengths, S=S, expected=expected) -> str | None:
            got = call(padding_mask, torch.tensor(lengths), S, what="padding_mask")
            if isinstance(got, torch.Tensor) and got.dtype != torch.bool:
                return f"the mask: expected a boolean tensor, got dtype {got.dtype}"
            return mismatch(got, expected, what="the mask")

        cases.append((f"on lengths={lengths}, S={S}", check))
    return verdict("4.2", first_failure(cases),
                   "Padding gets weight zero; every real letter can be attended to.")


def exercise_4_3(extra: Callable[..., Any]) -> Verdict:
    """Check ``extra(R) -> int``: how many more parameters the attention model has than the
    plain encoder-decoder with the same state width ``R``.

    The reference builds both :class:`lmlab.seq2seq.Seq2Seq` models (on the meta device, so
    nothing is allocated) for the chapter's R=256 and other widths, and counts.

    Args:
        extra: the reader's function of the state width.
    """
    from lmlab.g2p import GRAPHEME_VOCAB, PHONEME_VOCAB
    from lmlab.seq2seq import Seq2Seq, Seq2SeqConfig

    def count(R: int, attention: str | None) -> int:
        config = Seq2SeqConfig.base(GRAPHEME_VOCAB, PHONEME_VOCAB, hidden_size=R,
                                    attention=attention)
        with torch.device("meta"):
            return sum(p.numel() for p in Seq2Seq(config).parameters())

    cases = []
    for R in (256, 8, 100):
        expected = count(R, "scaled_dot") - count(R, None)
        cases.append((f"for R={R}",
                      lambda R=R, e=expected: mismatch(call(extra, R, what="extra"), e,
                                                       what="the extra parameters", atol=0,
                                                       rtol=0)))
    return verdict("4.3", first_failure(cases),
                   "All of it is W_c: [h; c] (2R numbers) to R, plus a bias.")


def exercise_4_4(scores: Callable[..., Any]) -> Verdict:
    """Check ``scores(q, k, w_q, w_k, w_v) -> e``, additive scores
    ``e[b, t, s] = w_v . tanh(w_q q[b, t] + w_k k[b, s])``, computed here one score at a time
    (the same as :func:`lmlab.attention.additive_scores`).

    Args:
        scores: the reader's function. ``w_q`` is ``(A, Dq)``, ``w_k`` is ``(A, Dk)`` and
            ``w_v`` is ``(A,)``, as in ``torch.nn.Linear`` weights (``A`` the attention width).

    Shape:
        q ``(B, T, Dq)``, k ``(B, S, Dk)`` -> ``(B, T, S)``
    """
    cases = []
    for label, B, T, S, Dq, Dk, A in [("one query", 1, 1, 4, 3, 3, 2),
                                      ("queries and keys of different widths", 2, 3, 5, 4, 6,
                                       7)]:
        gen = torch.Generator().manual_seed(T * 10 + S)
        q, k = torch.randn(B, T, Dq, generator=gen), torch.randn(B, S, Dk, generator=gen)
        w_q, w_k = torch.randn(A, Dq, generator=gen), torch.randn(A, Dk, generator=gen)
        w_v = torch.randn(A, generator=gen)
        expected = torch.tensor([[[float(w_v @ torch.tanh(w_q @ q[b, t] + w_k @ k[b, s]))
                                   for s in range(S)] for t in range(T)] for b in range(B)])

        def check(args=(q, k, w_q, w_k, w_v), expected=expected) -> str | None:
            got = call(scores, *(a.clone() for a in args), what="scores")
            return mismatch(got, expected, what="the scores", atol=1e-5, rtol=1e-4)

        cases.append((f"on {label} (B={B}, T={T}, S={S}, Dq={Dq}, Dk={Dk}, A={A})", check))
    return verdict("4.4", first_failure(cases),
                   "A small network scores each query-key pair (Bahdanau et al.).")
