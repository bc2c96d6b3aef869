"""lmlab.sample_stats: the words of a text, and repetition measures checked against naive
references on arbitrary inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmlab.sample_stats import distinct_share, repeated_ngram_share, word_share, words


def test_words_by_hand() -> None:
    known = set(words("To be, or not to be: O'er the HILL, step-dame!"))
    assert known == {"to", "be", "or", "not", "o'er", "the", "hill", "step", "dame"}
    # 9 words: to, bee, or, not, tis, the, question, o'er, dame (digits and the quotes around
    # 'tis are not letters); found: to, or, not, the, o'er, dame
    assert word_share("To bee or NOT 'tis the Question' 42 O'ER-dame", known) == (6, 9)
    assert word_share("", known) == (0, 0)
    assert words("Ça, naïve élève") == ["ça", "naïve", "élève"]  # letters beyond ASCII


ids_lists = st.lists(st.integers(0, 5), max_size=40)


@given(ids_lists, st.integers(1, 4))
def test_repeated_ngram_share_matches_a_naive_count(ids: list[int], n: int) -> None:
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    repeats = sum(any(grams[j] == grams[i] for j in range(i)) for i in range(len(grams)))
    expected = repeats / len(grams) if grams else 0.0
    assert repeated_ngram_share(ids, n) == pytest.approx(expected)


@given(ids_lists)
def test_distinct_share_matches_numpy(ids: list[int]) -> None:
    expected = len(np.unique(ids)) / len(ids) if ids else 0.0
    assert distinct_share(ids) == pytest.approx(expected)


def test_a_loop_repeats_and_a_fresh_text_does_not() -> None:
    assert repeated_ngram_share(list(range(20)), 4) == 0.0
    assert repeated_ngram_share([1, 2, 3] * 10, 4) == pytest.approx(24 / 27)


@pytest.mark.parametrize("bad, error, match", [
    ("abc", TypeError, "ids: expected a list"),
    ([1, 2.0], TypeError, "ids: expected a list of int"),
    ([1, True], TypeError, "ids: expected a list of int"),
])
def test_bad_ids(bad: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        repeated_ngram_share(bad, 2)  # type: ignore[arg-type]
    with pytest.raises(error, match=match):
        distinct_share(bad)  # type: ignore[arg-type]


def test_bad_n_text_and_known() -> None:
    with pytest.raises(ValueError, match="n"):
        repeated_ngram_share([1, 2], 0)
    with pytest.raises(TypeError, match="text"):
        words(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="known"):
        word_share("a b", ["a"])  # type: ignore[arg-type]
