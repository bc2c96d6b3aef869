"""Measuring generated text: real words, repeated n-grams, distinct tokens.

Chapter 7 compares decoding strategies by what their samples are made of, not by reading
them: the share of a sample's words that occur in the training text (invented words lower
it), the share of its token n-grams that repeat an earlier one (loops raise it), and the share
of distinct tokens (a narrow vocabulary lowers it). ``scripts/train_gpt.py --evaluate`` uses the
same word definition for its "words found in the training text" figure.

Example:
    >>> known = set(words("To be, or not to be"))
    >>> word_share("To bee or not", known)
    (3, 4)
    >>> repeated_ngram_share([1, 2, 3, 1, 2, 3], 2)  # (1, 2), (2, 3) come back; (3, 1) is new
    0.4
    >>> distinct_share([1, 2, 2, 2])
    0.5
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lmlab._checks import check_int, check_str

__all__ = ["WORD", "words", "word_share", "repeated_ngram_share", "distinct_share"]

#: What counts as a word, letters with apostrophes allowed between letters ("o'er", "bewitch'd");
#: hyphens, digits and everything else split words. Matched on case-folded text.
WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")


def words(text: str) -> list[str]:
    """The words of a text, case-folded, in order (see :data:`WORD`).

    Args:
        text: any text.

    Returns:
        The words, repeats included.

    Example:
        >>> words("O'er the step-dame's 'house', 2 Henries!")
        ["o'er", 'the', 'step', "dame's", 'house', 'henries']
    """
    return WORD.findall(check_str("text", text).casefold())


def word_share(text: str, known: set[str] | frozenset[str]) -> tuple[int, int]:
    """``(found, total)``: how many of the text's words (repeats included) are in ``known``.

    Args:
        text: the text to measure, e.g. a sample.
        known: the words of a reference text, as :func:`words` gives them (case-folded).

    Returns:
        ``(found, total)``; ``(0, 0)`` for a text without words.

    Example:
        >>> word_share("Fair is foul, and fuol is fair", {"fair", "is", "foul", "and"})
        (6, 7)
    """
    if not isinstance(known, (set, frozenset)):
        raise TypeError(f"known: expected a set of words, got {type(known).__name__}")
    found = words(text)
    return sum(w in known for w in found), len(found)


def _check_ids(ids: object) -> list[int]:
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise TypeError(f"ids: expected a list of token ids, got {type(ids).__name__}")
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise TypeError("ids: expected a list of int token ids")
    return list(ids)


def repeated_ngram_share(ids: Sequence[int], n: int) -> float:
    """The share of the n-grams of ``ids`` that already occurred earlier in ``ids``.

    A text that loops (greedy decoding often does) repeats most of its n-grams; a text with no
    repetition has share 0. Counts overlapping n-grams: ``len(ids) - n + 1`` of them.

    Args:
        ids: token ids (or any ints), in order.
        n: the n-gram length, >= 1.

    Returns:
        A share in ``[0, 1]``; 0.0 when ``ids`` is shorter than ``n``.

    Example:
        >>> repeated_ngram_share([5, 6, 5, 6, 5, 6], 2)  # (5, 6), (6, 5), then 3 repeats
        0.6
    """
    ids = _check_ids(ids)
    n = check_int("n", n)
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    if not grams:
        return 0.0
    return (len(grams) - len(set(grams))) / len(grams)


def distinct_share(ids: Sequence[int]) -> float:
    """Distinct ids over all ids: 1.0 when no id repeats; 0.0 for an empty list.

    Example:
        >>> distinct_share([7, 7, 7, 8])
        0.5
    """
    ids = _check_ids(ids)
    return len(set(ids)) / len(ids) if ids else 0.0
