"""Byte pairs: the primitives of byte-pair encoding (BPE), as in minbpe's ``base.py``.

A byte-level tokenizer starts from the 256 bytes and learns *merges*: "the pair (a, b) becomes
the new token idx". Training counts adjacent pairs (:func:`get_stats`) and merges the most
frequent one (:func:`merge`), breaking ties between equally frequent pairs by :func:`tie_key`
(a trainer updates the counts merge by merge with :func:`merge_counting`); encoding applies the
learned merges in the order they were learned (:func:`merge_ranked`, in time near-linear in the
chunk's length). Byte tokens are *shown* with GPT-2's printable
characters (:func:`bytes_to_unicode`: a space is ``Ġ``). Both byte-level tokenizers,
:class:`lmlab.bpe.BPETokenizer` and :class:`lmlab.gguf_tokenizer.GGUFTokenizer`, build on these
functions::

    >>> get_stats([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]
    >>> merge_ranked([1, 2, 3, 1, 2], {(1, 2): 0, (4, 3): 1}, {(1, 2): 4, (4, 3): 5})
    [5, 4]

The functions check their arguments, except in the inner loops of the tokenizers:
:func:`merge_counting` never does, and ``merge_ranked(..., check=False)`` skips it for a
tokenizer's own tables (the checks cost more than merging a short word).
"""

from __future__ import annotations

import functools
import heapq
from collections import defaultdict
from collections.abc import Sequence

from lmlab._checks import check_int

__all__ = ["bytes_to_unicode", "tie_key", "get_stats", "merge", "merge_counting",
           "merge_ranked"]

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
        ids = list(ids)
    a, b = pair
    out: list[int] = []
    i, last = 0, len(ids) - 1
    index = ids.index  # finds the next ``a`` in C; the rest of the list is copied in slices
    try:
        while True:
            j = index(a, i)
            if j < last and ids[j + 1] == b:
                out += ids[i:j]
                out.append(idx)
                i = j + 2
            else:
                out += ids[i:j + 1]
                i = j + 1
    except ValueError:  # no ``a`` left
        out += ids[i:]
    return out


def merge_counting(word: list[int], pair: tuple[int, int], new: int, freq: int,
                    delta: defaultdict[tuple[int, int], int],
                    where: defaultdict[tuple[int, int], set[int]], wi: int) -> list[int] | None:
    """Merge ``pair`` into ``new`` in ``word`` and record how the pair counts change.

    The merge is :func:`merge`'s (left to right). The change in counts goes into ``delta``,
    ``freq`` per occurrence: the pair itself and its two neighbours' pairs, as Hugging Face
    ``tokenizers`` (``Word::merge``) does, instead of recounting the whole word. The new pairs
    get ``wi`` (the word's index) in ``where``. :meth:`lmlab.bpe.BPETokenizer.train` calls it
    once per word that may hold the pair, so it does not check its arguments.

    Args:
        word: the word's current token ids.
        pair: the pair being merged.
        new: the merged token's id.
        freq: how often the word occurs in the training text.
        delta: pair -> change in count, added to.
        where: pair -> indices of the words that may hold it, added to.
        wi: this word's index.

    Returns:
        The merged word, or None if ``pair`` is not in it.

    Example:
        >>> from collections import defaultdict
        >>> delta, where = defaultdict(int), defaultdict(set)
        >>> merge_counting([1, 2, 1, 2], (1, 2), 9, 3, delta, where, 0)
        [9, 9]
        >>> dict(delta), dict(where)
        ({(1, 2): -6, (2, 1): -3, (9, 1): 0, (9, 9): 3}, {(9, 1): {0}, (9, 9): {0}})
    """
    a, b = pair
    out: list[int] = []
    i, last = 0, len(word) - 1
    try:
        while True:
            j = word.index(a, i)
            if j < last and word[j + 1] == b:
                out += word[i:j]
                delta[pair] -= freq
                if out:  # the left neighbour as merged so far: the merges go left to right
                    left = out[-1]
                    delta[left, a] -= freq
                    delta[left, new] += freq
                    where[left, new].add(wi)
                if j + 2 <= last:
                    right = word[j + 2]
                    delta[b, right] -= freq
                    delta[new, right] += freq
                    where[new, right].add(wi)
                out.append(new)
                i = j + 2
            else:
                out += word[i:j + 1]
                i = j + 1
    except ValueError:  # no ``a`` after position i
        pass
    if len(out) == i:  # nothing merged: the pair left this word in an earlier merge
        return None
    out += word[i:]
    return out


def _merge_short(ids: list[int], ranks: dict[tuple[int, int], int],
                 merges: dict[tuple[int, int], int]) -> list[int]:
    """Apply merges by rank: merge the leftmost lowest-ranked pair, update its two neighbours'
    ranks, repeat. Finding the pair is ``min`` and ``index`` on a list of ranks (C loops), so a
    merge costs a few dictionary look-ups instead of a rescan of every pair."""
    if len(ids) < 2:
        return list(ids)
    ids, get, none = list(ids), ranks.get, len(ranks)  # `none`: above every rank
    rank = [get(pair, none) for pair in zip(ids, ids[1:])]  # rank[i]: ids[i] with ids[i + 1]
    while (best := min(rank, default=none)) < none:
        i = rank.index(best)
        new = ids[i] = merges[ids[i], ids[i + 1]]
        del ids[i + 1], rank[i]
        if i < len(rank):
            rank[i] = get((new, ids[i + 1]), none)
        if i:
            rank[i - 1] = get((ids[i - 1], new), none)
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
                 merges: dict[tuple[int, int], int], *, check: bool = True) -> list[int]:
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
        check: validate ``ids`` and the tables first. ``False`` skips that, for a caller that
            built them itself and calls once per chunk (a tokenizer's hot loop): ``ids`` must
            then be a list.

    Returns:
        A new list of ids.

    Raises:
        TypeError: ``ids`` is not a sequence of ints, or ``ranks``/``merges`` not dicts.
        ValueError: a negative id, or a pair of ``ranks`` that ``merges`` lacks.

    Example:
        >>> merge_ranked([1, 2, 3, 1, 2], {(1, 2): 0, (4, 3): 1}, {(1, 2): 4, (4, 3): 5})
        [5, 4]
    """
    if check is False:
        if len(ids) <= _SHORT_CHUNK:
            return _merge_short(ids, ranks, merges)  # type: ignore[arg-type]
        return _merge_long(ids, ranks, merges)  # type: ignore[arg-type]
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
