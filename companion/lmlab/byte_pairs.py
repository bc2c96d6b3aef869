"""Byte pairs: the primitives of byte-pair encoding (BPE), as in minbpe's ``base.py``.

A byte-level tokenizer starts from the 256 bytes and learns *merges*: "the pair (a, b) becomes
the new token idx". Training counts adjacent pairs (:func:`get_stats`) and merges the most
frequent one (:func:`merge`), breaking ties between equally frequent pairs by :func:`tie_key`;
encoding applies the learned merges in the order they were learned (:func:`merge_ranked`, in
time near-linear in the chunk's length). Byte tokens are *shown* with GPT-2's printable
characters (:func:`bytes_to_unicode`: a space is ``Ġ``). Both byte-level tokenizers,
:class:`lmlab.bpe.BPETokenizer` and :class:`lmlab.gguf_tokenizer.GGUFTokenizer`, build on these
functions::

    >>> get_stats([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]
    >>> merge_ranked([1, 2, 3, 1, 2], {(1, 2): 0, (4, 3): 1}, {(1, 2): 4, (4, 3): 5})
    [5, 4]

The functions check their arguments; on the types the tokenizers pass (lists, tuples and
dicts of ints) the checks take a few hundred nanoseconds, so training and encoding call the
public functions in their inner loops.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Sequence

from lmlab._checks import check_int

__all__ = ["bytes_to_unicode", "tie_key", "get_stats", "merge", "merge_ranked"]

_SHORT_CHUNK = 48  # chunks up to this many bytes are merged by the simple quadratic loop


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character, used to *display* byte tokens.

    Printable Latin-1 bytes map to themselves; the others (space, newline, control bytes) map to
    characters from 256 upwards, so a space shows as ``Ġ`` and a newline as ``Ċ``.

    Returns:
        A dict of all 256 bytes to distinct one-character strings.

    Example:
        >>> m = bytes_to_unicode()
        >>> m[ord("a")], m[ord(" ")], m[ord("\\n")]
        ('a', 'Ġ', 'Ċ')
    """
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    chars = list(keep)
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


@functools.cache
def _byte_ranks() -> tuple[int, ...]:
    """Each byte's position when the 256 display characters of GPT-2 are sorted."""
    display = bytes_to_unicode()
    order = sorted(range(256), key=lambda b: display[b])
    ranks = [0] * 256
    for rank, b in enumerate(order):
        ranks[b] = rank
    return tuple(ranks)


def tie_key(pair: tuple[int, int]) -> tuple[int, int]:
    """The order in which training breaks ties between equally frequent pairs: smallest first.

    Merged tokens (ids from 256 on) keep their id. A byte is ranked by its display character
    (:func:`bytes_to_unicode`), i.e. printable bytes in byte order, then the others (space,
    control bytes, ...) in byte order. That is the order in which Hugging Face's ``BpeTrainer``
    numbers its sorted byte-level alphabet, so both trainers learn the same merges.

    Args:
        pair: two token ids of a byte-level tokenizer trained by
            :meth:`lmlab.bpe.BPETokenizer.train`.

    Returns:
        The pair's sort key for tie-breaking.

    Example:
        >>> tie_key((ord("a"), ord("t"))), tie_key((ord(" "), ord("t"))), tie_key((256, 300))
        ((64, 83), (220, 83), (256, 300))
    """
    if not _is_pair(pair):
        _check_pair(pair)
    ranks = _byte_ranks()
    a, b = pair
    return (ranks[a] if a < 256 else a, ranks[b] if b < 256 else b)


def get_stats(ids: Sequence[int], counts: dict[tuple[int, int], int] | None = None
              ) -> dict[tuple[int, int], int]:
    """Count adjacent pairs of ids.

    Args:
        ids: a sequence of token ids.
        counts: a dict to add the counts to (updated in place); a new one when ``None``.

    Returns:
        ``counts``, mapping each adjacent pair to how often it occurs.

    Example:
        >>> get_stats([1, 2, 3, 1, 2])
        {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    _check_ids("ids", ids)
    if counts is not None and not isinstance(counts, dict):
        raise TypeError(f"counts: expected a dict or None, got {type(counts).__name__}")
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def _check_ids(name: str, ids: object) -> None:
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise TypeError(f"{name}: expected a sequence of ints, got {type(ids).__name__}")


def _is_pair(pair: object) -> bool:
    """The fast check: a tuple of two non-negative ints (exactly ``int``; the slow check,
    :func:`_check_pair`, also accepts NumPy integers and says what is wrong)."""
    return (type(pair) is tuple and len(pair) == 2 and type(pair[0]) is int
            and type(pair[1]) is int and pair[0] >= 0 and pair[1] >= 0)


def _check_pair(pair: object) -> tuple[int, int]:
    if not isinstance(pair, tuple) or len(pair) != 2:
        raise TypeError(f"pair: expected a tuple of two ints, got {pair!r}")
    for i, x in enumerate(pair):
        check_int(f"pair[{i}]", x, minimum=0)
    return pair


def merge(ids: Sequence[int], pair: tuple[int, int], idx: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` with the new id ``idx``, left to right.

    Args:
        ids: a sequence of token ids.
        pair: the two adjacent ids to merge.
        idx: the id of the merged token.

    Returns:
        A new list, shorter by the number of (non-overlapping) occurrences.

    Example:
        >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
        [4, 3, 4]
    """
    if not (type(ids) is list and _is_pair(pair) and type(idx) is int and idx >= 0):
        _check_ids("ids", ids)
        _check_pair(pair)
        check_int("idx", idx, minimum=0)
    return _merge(ids, pair, idx)


def _merge(ids: Sequence[int], pair: tuple[int, int], idx: int) -> list[int]:
    a, b = pair
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(idx)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _merge_short(ids: list[int], ranks: dict[tuple[int, int], int],
                 merges: dict[tuple[int, int], int]) -> list[int]:
    """Apply merges by rank: find the lowest-ranked pair, merge it everywhere, repeat."""
    while len(ids) >= 2:
        best, best_rank = None, len(ranks)
        for pair in zip(ids, ids[1:]):
            rank = ranks.get(pair)
            if rank is not None and rank < best_rank:
                best, best_rank = pair, rank
        if best is None:
            break
        ids = _merge(ids, best, merges[best])
    return ids


def _merge_long(ids: list[int], ranks: dict[tuple[int, int], int],
                merges: dict[tuple[int, int], int]) -> list[int]:
    """The same merges in O(n log n): a heap of ``(rank, position)`` over a linked list.

    Hugging Face ``tokenizers`` does the same (``Word::merge_all``): the lowest rank first, and
    for equal ranks the leftmost position, so overlapping runs (``aaa``) merge left to right.
    """
    n = len(ids)
    sym = list(ids)  # token at each node; -1 once the node has been merged into its left one
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    prv = list(range(-1, n - 1))
    heap = [(r, i) for i, pair in enumerate(zip(ids, ids[1:]))
            if (r := ranks.get(pair)) is not None]
    heapq.heapify(heap)
    while heap:
        rank, i = heapq.heappop(heap)
        j = nxt[i]
        if sym[i] < 0 or j < 0 or ranks.get((sym[i], sym[j])) != rank:
            continue  # stale: a neighbour changed since this entry was pushed
        new = merges[(sym[i], sym[j])]
        sym[i], sym[j] = new, -1
        k = nxt[j]
        nxt[i] = k
        if k >= 0:
            prv[k] = i
            r = ranks.get((new, sym[k]))
            if r is not None:
                heapq.heappush(heap, (r, i))
        p = prv[i]
        if p >= 0:
            r = ranks.get((sym[p], new))
            if r is not None:
                heapq.heappush(heap, (r, p))
    out, i = [], 0
    while i >= 0:
        out.append(sym[i])
        i = nxt[i]
    return out


def merge_ranked(ids: Sequence[int], ranks: dict[tuple[int, int], int],
                 merges: dict[tuple[int, int], int]) -> list[int]:
    """Encode one chunk: apply learned merges by rank until none applies (BPE's encoding).

    Repeatedly merge the adjacent pair with the lowest rank; among equal pairs the leftmost
    first, so overlapping runs (``aaa``) merge left to right. That is GPT-2's rule and Hugging
    Face ``tokenizers``' (``Word::merge_all``), and the result equals applying :func:`merge`
    once per learned merge, in rank order. Short chunks take the simple loop; longer ones a heap
    of candidate merges over a linked list of tokens, in ``O(n log n)`` for ``n`` ids (the simple
    loop rescans every pair after each merge: quadratic on long runs without spaces).

    Args:
        ids: the chunk's token ids (its bytes' ids), ints >= 0.
        ranks: each mergeable pair's rank (lower merges first).
        merges: each mergeable pair's new id; the same pairs as ``ranks``.

    Returns:
        A new list of ids.

    Raises:
        TypeError: ``ids`` is not a sequence of ints, or ``ranks``/``merges`` not dicts.
        ValueError: a negative id, or a pair of ``ranks`` that ``merges`` lacks.

    Example:
        >>> merge_ranked([1, 2, 3, 1, 2], {(1, 2): 0, (4, 3): 1}, {(1, 2): 4, (4, 3): 5})
        [5, 4]
    """
    if type(ids) is not list:
        _check_ids("ids", ids)
        ids = list(ids)
    for i in ids:
        if type(i) is not int or i < 0:
            check_int("ids[...]", i, minimum=0)
    for name, table in (("ranks", ranks), ("merges", merges)):
        if not isinstance(table, dict):
            raise TypeError(f"{name}: expected a dict from pairs of ids to ints, got "
                            f"{type(table).__name__}")
    try:
        if len(ids) <= _SHORT_CHUNK:
            return _merge_short(ids, ranks, merges)
        return _merge_long(ids, ranks, merges)
    except KeyError as err:
        raise ValueError(f"merges: no new id for the pair {err.args[0]!r}, which ranks "
                         "lists; expected the same pairs in both") from None
