"""The skip-gram task of word2vec: counts, subsampling, the noise distribution, windows and pairs.

word2vec (:mod:`lmlab.word2vec`) learns from a guessing game played on the text: given a
*center* word, is this other word a real neighbour (label 1) or a random word drawn from the
vocabulary (label 0)? This module makes the game's data, one function a step::

    vocab_words, counts = word_counts(sentences, min_count=5)
    keep = keep_probabilities(counts, sample=1e-3)          # frequent-word subsampling
    center, context = skipgram_windows(ids, sentence_ids, window=5)  # (B,), (B, 2 * window)
    negatives = sample_negatives(noise_distribution(counts), (B, K))

Letters (the package's table): B windows, K negatives per window, V vocabulary size, N words of
a stretch of text (or pairs).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain

import torch

from lmlab._checks import (
    check_finite, check_float, check_generator, check_int, check_int_values, check_tensor,
)
from lmlab.vocab import as_documents

__all__ = [
    "MAX_GRID", "as_sentences", "word_counts", "keep_probabilities", "noise_distribution",
    "sample_negatives", "AliasTable", "skipgram_windows", "skipgram_pairs",
]

MAX_GRID = 2**26
"""The most cells of one ``(N, 2 * window)`` window grid: about 0.5 GB per int64 tensor."""


def as_sentences(sentences: object) -> list[Sequence[str]]:
    """A corpus as lists of words (:func:`lmlab.vocab.as_documents`), at least one word in all.

    Raises:
        TypeError: as :func:`lmlab.vocab.as_documents`, naming ``sentences``.
        ValueError: no sentence holds a word.
    """
    out = as_documents(sentences, "sentences")
    if not any(len(s) for s in out):
        raise ValueError("sentences: the corpus is empty (no sentence contains a word)")
    return out


def word_counts(sentences: Iterable[str | Sequence[str]], min_count: int = 5
                ) -> tuple[tuple[str, ...], torch.Tensor]:
    """The vocabulary of a corpus: words seen at least ``min_count`` times, most frequent first.

    Ties are sorted alphabetically, as in :class:`lmlab.vocab.Vocabulary`, but there is no unknown
    token: word2vec skips rare words instead of mapping them to one id.

    Args:
        sentences: strings (split with :func:`lmlab.vocab.tokenize`) or lists of words.
        min_count: keep words seen at least this often (>= 1).

    Returns:
        ``(words, counts)``: the words by descending count and their counts (int64).

    Shape:
        ``counts``: ``(V,)``

    Raises:
        ValueError: an empty corpus, no word seen ``min_count`` times, or an empty word (or one
            with a tab or line break) among those kept.

    Example:
        >>> words, counts = word_counts(["the dog saw the cat", "the cat ran"], min_count=2)
        >>> words, counts.tolist()
        (('the', 'cat'), [3, 2])
    """
    check_int("min_count", min_count)
    counter = Counter(chain.from_iterable(as_sentences(sentences)))  # a C loop over the words
    kept = sorted(((w, c) for w, c in counter.items() if c >= min_count),
                  key=lambda wc: (-wc[1], wc[0]))
    if not kept:
        raise ValueError(f"min_count: no word occurs at least {min_count} times (the most "
                         f"frequent occurs {max(counter.values())} times)")
    bad = [w for w, _ in kept if not w or "\t" in w or "\n" in w or "\r" in w]
    if bad:
        raise ValueError(f"sentences: words must be non-empty, without tabs or line breaks, got "
                         f"{bad[0]!r}")
    return tuple(w for w, _ in kept), torch.tensor([c for _, c in kept], dtype=torch.long)


def _check_counts(counts: object) -> torch.Tensor:
    check_tensor("counts", counts, ndim=1)
    if counts.dtype == torch.bool or counts.is_complex():
        raise TypeError(f"counts: expected an int or float tensor, got dtype {counts.dtype}")
    check_finite("counts", counts)
    if counts.numel() == 0 or bool((counts < 0).any()) or not bool(counts.sum() > 0):
        raise ValueError("counts: expected at least one count, none negative, not all zero")
    return counts


def keep_probabilities(counts: torch.Tensor, sample: float = 1e-3) -> torch.Tensor:
    """Probability of keeping each occurrence of a word under frequent-word subsampling.

    With ``f = count / total`` and threshold ``t = sample``, word2vec's C code and gensim keep a
    word with probability ``(sqrt(f / t) + 1) * t / f`` (capped at 1), so "the" is mostly dropped
    and rare words are always kept. ``sample = 0`` keeps everything.

    Args:
        counts: corpus count of each vocabulary word (non-negative, not all zero).
        sample: the threshold ``t`` (>= 0, finite).

    Returns:
        Probabilities in ``(0, 1]`` (float32).

    Shape:
        ``(V,)`` -> ``(V,)``

    Example:
        >>> keep_probabilities(torch.tensor([900, 90, 10]), sample=0.01)
        tensor([0.1165, 0.4444, 1.0000])
    """
    counts = _check_counts(counts).double()
    sample = check_float("sample", sample, minimum=0.0)
    if sample == 0:
        return torch.ones_like(counts, dtype=torch.float32)
    threshold = sample * counts.sum()
    keep = ((counts / threshold).sqrt() + 1) * threshold / counts  # inf for a zero count
    return keep.clamp(max=1.0).float()


def noise_distribution(counts: torch.Tensor, exponent: float = 0.75) -> torch.Tensor:
    """The distribution negatives are drawn from: unigram counts raised to ``exponent``, normalised.

    The 3/4 power flattens the distribution: frequent words are still drawn more often, rare
    words more often than their raw frequency.

    Args:
        counts: corpus count of each vocabulary word (non-negative, not all zero).
        exponent: the power (finite).

    Returns:
        Probabilities summing to 1 (float32); words with count 0 get 0.

    Shape:
        ``(V,)`` -> ``(V,)``

    Example:
        >>> noise_distribution(torch.tensor([16, 1]), exponent=0.75)
        tensor([0.8889, 0.1111])
    """
    counts = _check_counts(counts).double()
    exponent = check_float("exponent", exponent)
    weights = torch.where(counts > 0, counts.pow(exponent), 0.0)
    if not bool(torch.isfinite(weights).all()) or not bool(weights.sum() > 0):
        raise ValueError(f"exponent: counts ** {exponent} overflow or vanish; use a smaller power")
    return (weights / weights.sum()).float()


def _check_probs(probs: object) -> None:
    """A distribution over the vocabulary: a 1-D float tensor, finite, non-negative, not all 0."""
    check_tensor("probs", probs, ndim=1, dtype="float")
    check_finite("probs", probs)
    if probs.numel() == 0 or bool((probs < 0).any()) or not bool(probs.sum() > 0):
        raise ValueError("probs: expected non-negative probabilities, not all zero")


def sample_negatives(probs: torch.Tensor, shape: tuple[int, ...],
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw word ids from ``probs`` with replacement (on ``probs.device``).

    Args:
        probs: a distribution over the vocabulary (:func:`noise_distribution`): non-negative,
            finite, not all zero.
        shape: the shape of the result, e.g. ``(B, K)`` (non-negative sizes).
        generator: a generator on ``probs.device`` for reproducible draws.

    Returns:
        Word ids (int64).

    Shape:
        ``probs``: ``(V,)`` -> ``shape``

    Example:
        >>> sample_negatives(torch.tensor([0.0, 1.0]), (2, 3)).tolist()
        [[1, 1, 1], [1, 1, 1]]
    """
    _check_probs(probs)
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"shape: expected a tuple of ints, got {type(shape).__name__}")
    for i, n in enumerate(shape):
        check_int(f"shape[{i}]", n, minimum=0)
    check_generator("generator", generator, probs.device)
    n = math.prod(shape)
    if n > 2**31:
        raise ValueError(f"shape: expected at most 2**31 draws in all, got {tuple(shape)}")
    if n == 0:
        return torch.empty(tuple(shape), dtype=torch.long, device=probs.device)
    return torch.multinomial(probs, n, replacement=True, generator=generator).view(tuple(shape))


class AliasTable:
    """Draws from a fixed distribution in constant time per draw: Walker's alias method.

    :func:`sample_negatives` searches the cumulative distribution for every draw and checks
    ``probs`` on every call. A trainer that draws negatives at every step builds this table once
    instead: each of the V slots keeps its own word with probability ``keep[i]`` and otherwise
    gives its ``alias[i]``, so one draw is a uniform slot and a uniform number, with no search
    and no host sync. The draws have exactly the distribution of ``probs`` (up to the rounding
    of ``keep`` to ``probs``' dtype); a word of probability 0 is never drawn.

    Args:
        probs: a distribution over the vocabulary (:func:`noise_distribution`): non-negative,
            finite, not all zero. The table lives on its device.

    Shape:
        ``probs``: ``(V,)``; ``keep``, ``alias``: ``(V,)``

    Example:
        >>> table = AliasTable(torch.tensor([0.0, 0.2, 0.8]))
        >>> draws = table.sample((10000,), generator=torch.Generator().manual_seed(0))
        >>> [round(n / 10000, 1) for n in torch.bincount(draws, minlength=3).tolist()]
        [0.0, 0.2, 0.8]
    """

    def __init__(self, probs: torch.Tensor) -> None:
        _check_probs(probs)
        p = probs.detach().double().cpu()
        V = p.shape[0]
        scaled = (p * (V / p.sum())).tolist()  # mean 1: a slot holds exactly one unit
        keep, alias = [1.0] * V, list(range(V))
        small = [i for i, x in enumerate(scaled) if x < 1.0]
        large = [i for i, x in enumerate(scaled) if x >= 1.0]
        while small and large:  # Vose: fill each short slot from a tall one
            i, j = small.pop(), large.pop()
            keep[i], alias[i] = scaled[i], j
            scaled[j] -= 1.0 - scaled[i]
            (small if scaled[j] < 1.0 else large).append(j)
        # what is left is 1 up to rounding: those slots keep their own word
        self.keep = torch.tensor(keep, dtype=probs.dtype, device=probs.device)
        self.alias = torch.tensor(alias, dtype=torch.long, device=probs.device)

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """Word ids drawn with replacement, on the table's device (``shape``: non-negative sizes).

        No checks beyond what building the shape needs: a trainer's hot path calls this.
        """
        slot = torch.randint(0, self.keep.shape[0], shape, generator=generator,
                             device=self.keep.device)
        u = torch.rand(shape, generator=generator, device=self.keep.device,
                       dtype=self.keep.dtype)
        flat = slot.view(-1)  # index_select: several times faster than keep[slot] on a CPU
        keep = self.keep.index_select(0, flat).view(slot.shape)
        return torch.where(u < keep, slot, self.alias.index_select(0, flat).view(slot.shape))


def skipgram_windows(ids: torch.Tensor, sentence_ids: torch.Tensor, window: int,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each center word with its context words, using word2vec's dynamic window.

    Each center position draws its own window ``b`` uniformly from ``1..window`` (so near
    neighbours are used more often than far ones); its contexts are the words at most ``b``
    positions away in the same sentence. Built with tensor operations on one
    ``(N, 2 * window)`` grid of candidate positions. Each row lists the contexts in text order
    and is padded with ``-1`` at the end. Centers without any context (one-word sentences) are
    dropped.

    Args:
        ids: word ids of consecutive words (already subsampled).
        sentence_ids: the sentence each word belongs to (windows never cross sentences).
        window: the largest window (>= 1, with ``N * 2 * window`` at most 2**26).
        generator: for reproducible windows (on ``ids.device``).

    Returns:
        ``(center, context)``: center ids in text order and their context ids, ``-1`` = none.

    Shape:
        ``ids``, ``sentence_ids``: ``(N,)`` -> ``(B,)`` and ``(B, 2 * window)``

    Example:
        >>> c, o = skipgram_windows(torch.tensor([7, 8, 9]), torch.tensor([0, 0, 1]), window=1)
        >>> c.tolist(), o.tolist()
        ([7, 8], [[8, -1], [7, -1]])
    """
    check_int("window", window)
    check_tensor("ids", ids, ndim=1, dtype="int")
    check_tensor("sentence_ids", sentence_ids, ndim=1, dtype="int")
    if ids.shape != sentence_ids.shape:
        raise ValueError(f"ids, sentence_ids: expected two (N,) tensors of one length, got "
                         f"{tuple(ids.shape)} and {tuple(sentence_ids.shape)}")
    if ids.device != sentence_ids.device:
        raise ValueError(f"ids, sentence_ids: expected one device, got {ids.device} and "
                         f"{sentence_ids.device}")
    check_generator("generator", generator, ids.device)
    # -1 marks "no context word" in the result: a negative id would pass for one
    check_int_values("ids", ids, 0, None, what="word ids")
    N, device = ids.shape[0], ids.device
    if N * 2 * window > MAX_GRID:
        raise ValueError(f"window: N * 2 * window must be at most {MAX_GRID:,}, got N={N}, "
                         f"window={window}; pass the text in shorter stretches")
    offsets = torch.cat([torch.arange(-window, 0, device=device),
                         torch.arange(1, window + 1, device=device)])  # (2W,)
    spans = torch.randint(1, window + 1, (N, 1), generator=generator, device=device)  # (N, 1)
    positions = torch.arange(N, device=device).unsqueeze(1)  # (N, 1)
    target = positions + offsets  # (N, 2W)
    inside = (target >= 0) & (target < N) & (offsets.abs() <= spans)  # (N, 2W)
    target = target.clamp(0, max(N - 1, 0))
    inside &= sentence_ids[target] == sentence_ids.unsqueeze(1)
    context = torch.where(inside, ids[target], -1)  # (N, 2W)
    first = torch.sort((~inside).to(torch.uint8), dim=1, stable=True).indices  # (N, 2W)
    context = context.gather(1, first)  # real contexts first, in text order, then the -1 pads
    has_context = inside.any(dim=1)  # (N,)
    return ids[has_context], context[has_context]


def skipgram_pairs(ids: torch.Tensor, sentence_ids: torch.Tensor, window: int,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (center, context) pair of a stretch of text: :func:`skipgram_windows`, flattened.

    Args:
        ids: word ids of consecutive words.
        sentence_ids: the sentence each word belongs to.
        window: the largest window (>= 1).
        generator: for reproducible windows (on ``ids.device``).

    Returns:
        ``(center, context)`` of every pair, in text order.

    Shape:
        ``ids``, ``sentence_ids``: ``(N,)`` words -> two ``(N',)`` tensors, one entry per pair.

    Example:
        >>> c, o = skipgram_pairs(torch.tensor([7, 8, 9]), torch.tensor([0, 0, 1]), window=1)
        >>> c.tolist(), o.tolist()
        ([7, 8], [8, 7])
    """
    center, context = skipgram_windows(ids, sentence_ids, window, generator)
    mask = context >= 0  # (B, 2W)
    return center.unsqueeze(1).expand_as(context)[mask], context[mask]
