"""Tests for lmlab.byte_pairs: the worked examples, the tie order against Hugging Face
``tokenizers``' byte-level alphabet, GPT-2's byte table, merging by rank, and bad input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab import byte_pairs
from lmlab.byte_pairs import bytes_to_unicode, get_stats, merge, merge_ranked, tie_key


def test_pair_helpers_worked_example():
    assert get_stats([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge([1, 1, 1], (1, 1), 9) == [9, 1]  # left to right, no overlap


def test_tie_key_orders_bytes_like_tokenizers_alphabet():
    from tokenizers import pre_tokenizers

    display = bytes_to_unicode()
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    by_key = sorted(range(256), key=lambda b: tie_key((b, 0)))
    assert [display[b] for b in by_key] == alphabet
    assert tie_key((256, 7)) == (256, tie_key((7, 0))[0])


def test_bytes_to_unicode_is_gpt2s_table():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[32] == "Ġ" and table[10] == "Ċ" and table[ord("A")] == "A"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=80),
       st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), unique=True, max_size=12))
def test_merging_by_rank_agrees_with_merging_pair_by_pair(ids, pairs):
    """The heap and the simple loop both equal applying ``merge`` once per rank, in order
    (each merge's new id is above every id used before, as in a trained tokenizer). A chunk
    has at least one byte."""
    merges, ranks, known = {}, {}, set(range(6))
    for rank, pair in enumerate(pairs):
        if pair[0] in known and pair[1] in known:
            merges[pair], ranks[pair] = 6 + rank, rank
            known.add(6 + rank)
    expected = list(ids)
    for pair in sorted(ranks, key=ranks.__getitem__):
        expected = merge(expected, pair, merges[pair])
    assert byte_pairs._merge_short(list(ids), ranks, merges) == expected
    assert byte_pairs._merge_long(list(ids), ranks, merges) == expected
    assert merge_ranked(list(ids), ranks, merges) == expected
    assert merge_ranked(tuple(ids), ranks, merges) == expected  # any sequence of ints


# ---------------------------------------------------------------------- bad input


def test_bad_pair_helper_input():
    with pytest.raises(TypeError, match="^ids"):
        get_stats("abc")
    with pytest.raises(TypeError, match="^counts"):
        get_stats([1, 2], counts=[])
    with pytest.raises(TypeError, match="^ids"):
        merge(None, (1, 2), 3)
    with pytest.raises(TypeError, match="^pair"):
        merge([1, 2], [1, 2], 3)
    with pytest.raises(TypeError, match="^pair"):
        merge([1, 2], (1, 2, 3), 4)
    with pytest.raises(ValueError, match=r"^pair\[0\]"):
        merge([1, 2], (-1, 2), 3)
    with pytest.raises(TypeError, match="^idx"):
        merge([1, 2], (1, 2), 3.0)
    with pytest.raises(TypeError, match=r"^pair\[1\]"):
        tie_key((1, "a"))
    assert get_stats([]) == {} and merge([], (1, 2), 3) == []


def test_merge_ranked_bad_input():
    ranks, merges = {(1, 2): 0}, {(1, 2): 3}
    with pytest.raises(TypeError, match="^ids"):
        merge_ranked("12", ranks, merges)
    with pytest.raises(TypeError, match=r"^ids\[\.\.\.\]"):
        merge_ranked([1, 2.0], ranks, merges)
    with pytest.raises(TypeError, match=r"^ids\[\.\.\.\]"):
        merge_ranked([1, True], ranks, merges)
    with pytest.raises(ValueError, match=r"^ids\[\.\.\.\]"):
        merge_ranked([1, -2], ranks, merges)
    with pytest.raises(TypeError, match="^ranks"):
        merge_ranked([1, 2], [((1, 2), 0)], merges)
    with pytest.raises(TypeError, match="^merges"):
        merge_ranked([1, 2], ranks, None)
    for n in (2, 200):  # the short loop and the heap both name the missing pair
        with pytest.raises(ValueError, match=r"^merges: no new id for the pair \(1, 2\)"):
            merge_ranked([1, 2] * (n // 2), ranks, {})
    assert merge_ranked([], ranks, merges) == [] and merge_ranked([7], ranks, merges) == [7]


def test_fast_checks_accept_what_the_full_checks_accept():
    """Tuples and lists of plain ints take the fast path; NumPy ints and other sequences the
    full checks, with the same result."""
    import numpy as np

    assert merge((1, 2, 1, 2), (np.int64(1), 2), np.int32(9)) == merge([1, 2, 1, 2], (1, 2), 9)
    assert tie_key((np.int64(97), 300)) == tie_key((97, 300))
