"""Checkers for the exercises of chapter 2, word2vec.

* :func:`exercise_2_1`: the subsampling probability of keeping each word.
* :func:`exercise_2_2`: the negative-sampling loss of a batch of pairs, finite for large scores.
* :func:`exercise_2_3`: the loss of an untrained model, predicted as a function of K.
* :func:`exercise_2_4`: an analogy answered by hand (3CosAdd on unit vectors).

The references are :func:`lmlab.skipgram.keep_probabilities`, :func:`lmlab.word2vec.sgns_loss`,
an untrained :class:`lmlab.word2vec.SkipGramNegativeSampling` and
:meth:`lmlab.vectors.WordVectors.analogy` (checked against gensim in the unit tests).

Example:
    >>> import math
    >>> from lmlab.exercises.ch02 import exercise_2_3
    >>> exercise_2_3(lambda K: (1 + K) * math.log(2))
    Exercise 2.3: correct. Every score is 0, so each of the 1 + K guesses costs log 2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lmlab.exercises import Verdict, call, first_failure, mismatch, verdict
from lmlab.skipgram import keep_probabilities
from lmlab.vectors import WordVectors
from lmlab.word2vec import SkipGramNegativeSampling, sgns_loss

__all__ = ["exercise_2_1", "exercise_2_2", "exercise_2_3", "exercise_2_4"]


def exercise_2_1(keep: Callable[..., Any]) -> Verdict:
    """Check ``keep(counts, sample) -> (V,)``: ``(sqrt(f / t) + 1) * t / f``, capped at 1.

    ``f`` is a word's frequency (its count over the total) and ``t = sample``; ``sample = 0``
    keeps every word. Tried on three words, on Zipf-like counts of 1,000 words, and with
    ``sample = 0``; the reference is :func:`lmlab.skipgram.keep_probabilities`.

    Args:
        keep: the reader's function of a ``(V,)`` count tensor and a float.

    Shape:
        ``(V,)``, a number -> ``(V,)``
    """
    zipf = (100_000 / torch.arange(1, 1001)).round().long()
    cases = [("counts [900, 90, 10], sample=0.01", torch.tensor([900, 90, 10]), 0.01),
             ("1,000 words with Zipf-like counts, sample=1e-3", zipf, 1e-3),
             ("counts [900, 90, 10], sample=0 (keep everything)",
              torch.tensor([900, 90, 10]), 0.0)]
    checks = []
    for label, counts, sample in cases:
        expected = keep_probabilities(counts, sample=sample)

        def check(counts=counts, sample=sample, expected=expected) -> str | None:
            got = call(keep, counts.clone(), sample, what="keep")
            if isinstance(got, torch.Tensor):
                got = got.float()
            return mismatch(got, expected, what="the probabilities", atol=1e-5, rtol=1e-4)

        checks.append((f"on {label}", check))
    return verdict("2.1", first_failure(checks),
                   "Only words more frequent than about 2.6 t are ever dropped.")


def exercise_2_2(loss: Callable[..., Any]) -> Verdict:
    """Check ``loss(v, u_t, u_neg) -> (B,)``: each pair's negative-sampling loss.

    ``-log s(v . u_t) - sum_k log s(-v . u_k)``, ``s`` the sigmoid. Tried on one pair, on a
    batch, and on a batch whose scores reach about 200 in size (where ``log(sigmoid(x))``
    underflows to ``-inf`` in float32 and ``torch.nn.functional.logsigmoid`` does not); the
    reference is :func:`lmlab.word2vec.sgns_loss`.

    Args:
        loss: the reader's function.

    Shape:
        ``(B, C)``, ``(B, C)``, ``(B, K, C)`` -> ``(B,)``
    """
    cases = []
    for label, B, K, C, scale, seed in [("one pair, K=1, C=2", 1, 1, 2, 1.0, 0),
                                        ("a batch of 4 pairs, K=5, C=8", 4, 5, 8, 1.0, 1),
                                        ("scores of about 200 in size, K=3, C=4", 3, 3, 4,
                                         10.0, 2)]:
        gen = torch.Generator().manual_seed(seed)
        v = torch.randn(B, C, generator=gen) * scale
        u_t = torch.randn(B, C, generator=gen) * scale
        u_neg = torch.randn(B, K, C, generator=gen) * scale
        cases.append((label, v, u_t, u_neg, sgns_loss(v, u_t, u_neg)))
    checks = []
    for label, v, u_t, u_neg, expected in cases:
        def check(v=v, u_t=u_t, u_neg=u_neg, expected=expected) -> str | None:
            got = call(loss, v.clone(), u_t.clone(), u_neg.clone(), what="loss")
            return mismatch(got, expected, what="the loss of each pair", atol=1e-4, rtol=1e-4)

        checks.append((f"on {label}", check))
    return verdict("2.2", first_failure(checks),
                   "logsigmoid keeps the loss finite however large the scores.")


def exercise_2_3(untrained_loss: Callable[..., Any]) -> Verdict:
    """Check ``untrained_loss(K) -> float``: the loss per pair of an untrained model.

    The reference is a fresh :class:`lmlab.word2vec.SkipGramNegativeSampling` (all-zero output
    vectors) run on random windows with ``K`` = 1, 5 and 15 negatives.

    Args:
        untrained_loss: the reader's function of the number of negatives.
    """
    gen = torch.Generator().manual_seed(0)
    model = SkipGramNegativeSampling(50, 8, generator=gen)
    center = torch.randint(50, (6,), generator=gen)
    context = torch.randint(50, (6, 4), generator=gen)
    checks = []
    for K in (1, 5, 15):
        negatives = torch.randint(50, (6, K), generator=gen)
        with torch.no_grad():
            expected = model(center, context, negatives).item()

        def check(K=K, expected=expected) -> str | None:
            got = call(untrained_loss, K, what="untrained_loss")
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = got.item()
            return mismatch(got, expected, what="the loss per pair", atol=1e-4)

        checks.append((f"with K={K} negatives", check))
    return verdict("2.3", first_failure(checks),
                   "Every score is 0, so each of the 1 + K guesses costs log 2.")


def exercise_2_4(analogy: Callable[..., Any]) -> Verdict:
    """Check ``analogy(vectors, a, b, c) -> int``: the row closest to ``b - a + c``.

    Rows are first scaled to length 1, the three question rows are never the answer, and
    "closest" is the largest cosine. Tried on random vectors of very different lengths (so that
    a dot product without unit vectors picks another row); the reference is
    :meth:`lmlab.vectors.WordVectors.analogy`.

    Args:
        analogy: the reader's function of a ``(V, C)`` tensor and three row indices.

    Shape:
        ``(V, C)``, three ints -> an int
    """
    checks = []
    for seed, (a, b, c) in enumerate([(0, 1, 2), (5, 3, 7), (10, 20, 30), (40, 2, 17)]):
        gen = torch.Generator().manual_seed(seed)
        V, C = 60, 8
        lengths = torch.exp(2 * torch.randn(V, 1, generator=gen))
        vectors = torch.randn(V, C, generator=gen) * lengths  # (V, C)
        words = [f"w{i}" for i in range(V)]
        best = WordVectors(words, vectors).analogy(words[a], words[b], words[c], k=1)[0][0]
        expected = words.index(best)

        def check(vectors=vectors, a=a, b=b, c=c, expected=expected) -> str | None:
            got = call(analogy, vectors.clone(), a, b, c, what="analogy")
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = int(got.item())
            return mismatch(got, expected, what="the answer's row")

        checks.append((f"on 60 random vectors, (a, b, c) = ({a}, {b}, {c})", check))
    return verdict("2.4", first_failure(checks),
                   "This is the method of the word2vec paper and of gensim.")
