"""Checkers for the exercises of chapter 1, Bag of Words.

* :func:`exercise_1_1`: the cosine similarity of two count vectors, written by hand.
* :func:`exercise_1_2`: the inverse document frequency, scikit-learn's smoothed formula.
* :func:`exercise_1_3`: sublinear TF-IDF vectors, scaled to length 1.
* :func:`exercise_1_4`: the cosine of two short sentences' count vectors, predicted.

The references are :mod:`lmlab.bow`'s functions, which the unit tests check against
scikit-learn's ``TfidfVectorizer``.

Example:
    >>> import torch
    >>> from lmlab.exercises.ch01 import exercise_1_1
    >>> exercise_1_1(lambda x, y: float(x @ y / (x.norm() * y.norm())))
    Exercise 1.1: correct. Length does not matter: a text and the same text twice score 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lmlab.bow import cosine_similarity, count_vectors, inverse_document_frequency, tfidf_vectors
from lmlab.exercises import Verdict, call, compare, first_failure, mismatch, verdict
from lmlab.vocab import Vocabulary

__all__ = ["exercise_1_1", "exercise_1_2", "exercise_1_3", "exercise_1_4", "SENTENCES_1_4"]

# Exercise 1.4's two sentences
SENTENCES_1_4 = ("The cat sat on the mat.", "The dog sat on the log.")


def _number(value: Any) -> Any:
    """A one-element tensor as a Python float (so ``x @ y / ...`` answers count as numbers)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value


def _random_counts(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Counts as a corpus has them: mostly zeros, a few large (float32, like count_vectors)."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.poisson(torch.rand(shape, generator=gen) ** 3 * 6, generator=gen)
    return counts.float()


def exercise_1_1(cosine: Callable[..., Any]) -> Verdict:
    """Check ``cosine(x, y) -> float``: the cosine similarity of two count vectors.

    Tried on two toy sentences' counts, a vector and twice itself, two vectors with no word in
    common, and random counts over 50 words; the reference is
    :func:`lmlab.bow.cosine_similarity`.

    Args:
        cosine: the reader's function of two 1-D tensors (a float or a one-element tensor back).

    Shape:
        ``(V,)``, ``(V,)`` -> a number
    """
    toy = torch.tensor([[2., 1., 1., 1., 0., 0.], [1., 0., 0., 0., 1., 1.]])
    shared = torch.tensor([[0., 3., 1., 0.], [2., 0., 0., 5.]])
    rand = _random_counts((2, 50), seed=0)
    cases = [("two sentences sharing only 'the'", toy[0], toy[1]),
             ("a text and the same text twice", toy[0], 2 * toy[0]),
             ("two texts with no word in common", shared[0], shared[1]),
             ("random counts over 50 words", rand[0], rand[1])]
    checks = []
    for label, x, y in cases:
        expected = cosine_similarity(x, y)[0, 0].item()

        def check(x=x, y=y, expected=expected) -> str | None:
            got = _number(call(cosine, x.clone(), y.clone(), what="cosine"))
            return mismatch(got, expected, what="the cosine", atol=1e-5)

        checks.append((f"on {label}", check))
    return verdict("1.1", first_failure(checks),
                   "Length does not matter: a text and the same text twice score 1.")


def exercise_1_2(idf: Callable[..., Any]) -> Verdict:
    """Check ``idf(counts) -> (V,)``: ``ln((1 + N) / (1 + df)) + 1`` for every word.

    Tried on a toy corpus (a word in every document, a word in one, a word in none) and on
    random counts; the reference is :func:`lmlab.bow.inverse_document_frequency`.

    Args:
        idf: the reader's function of a ``(D, V)`` count matrix (D documents, V words).

    Shape:
        ``(D, V)`` -> ``(V,)``
    """
    toy = torch.tensor([[3., 1., 0., 0.], [1., 0., 0., 2.], [4., 0., 0., 1.]])
    cases = [("3 documents: 'the' in all, one word in one, one in none, one in two", toy),
             ("random counts, 8 documents x 20 words", _random_counts((8, 20), seed=1))]
    checks = []
    for label, counts in cases:
        expected = inverse_document_frequency(counts)

        def check(counts=counts, expected=expected) -> str | None:
            got = call(idf, counts.clone(), what="idf")
            return mismatch(got, expected, what="the idf", atol=1e-5)

        checks.append((f"on {label}", check))
    return verdict("1.2", first_failure(checks),
                   "A word found in every document gets the smallest weight, 1.")


def exercise_1_3(tfidf: Callable[..., Any]) -> Verdict:
    """Check ``tfidf(counts, idf) -> (D, V)``: sublinear TF-IDF, every row scaled to length 1.

    A count ``c > 0`` becomes ``(1 + ln c) * idf``, a count of 0 stays 0, and each row is divided
    by its length (a row of zeros stays zeros). The reference is
    ``lmlab.bow.tfidf_vectors(counts, idf, sublinear_tf=True)``.

    Args:
        tfidf: the reader's function of a ``(D, V)`` count matrix and a ``(V,)`` idf.

    Shape:
        ``(D, V)``, ``(V,)`` -> ``(D, V)``
    """
    toy = torch.tensor([[3., 1., 0., 0.], [1., 0., 0., 2.], [4., 0., 1., 1.]])
    rand = _random_counts((8, 20), seed=2)
    empty = torch.cat([toy, torch.zeros(1, 4)])
    cases = [("3 documents x 4 words", toy),
             ("random counts, 8 documents x 20 words", rand),
             ("a document with no vocabulary word (a row of zeros)", empty)]
    checks = []
    for label, counts in cases:
        weights = inverse_document_frequency(counts)
        expected = tfidf_vectors(counts, weights, sublinear_tf=True)

        def check(counts=counts, weights=weights, expected=expected) -> str | None:
            got = call(tfidf, counts.clone(), weights.clone(), what="tfidf")
            return mismatch(got, expected, what="the TF-IDF vectors", atol=1e-5)

        checks.append((f"on {label}", check))
    return verdict("1.3", first_failure(checks),
                   "Damped counts: 100 occurrences weigh 5.6, and 10 weigh 3.3.")


def exercise_1_4(answer: Any) -> Verdict:
    """Check a predicted number: the cosine of the count vectors of :data:`SENTENCES_1_4`.

    The reference counts the two sentences with :func:`lmlab.bow.count_vectors` over their own
    vocabulary and takes :func:`lmlab.bow.cosine_similarity`; two decimals are enough.

    Args:
        answer: the reader's number.
    """
    vocab = Vocabulary.from_documents(SENTENCES_1_4)
    expected = cosine_similarity(count_vectors(SENTENCES_1_4, vocab))[0, 1].item()
    return compare("1.4", _number(answer), expected, what="the cosine of the two count vectors",
                   atol=0.005, rtol=0.0,
                   remark="'the', twice in each sentence, gives 4 of the dot product's 6.")
