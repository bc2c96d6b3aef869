"""Word vectors: look-up, nearest neighbours, analogies, evaluation, sentence vectors and files.

:class:`WordVectors` holds one vector per word of a vocabulary (most frequent word first), from
any source: :func:`lmlab.word2vec.train_word2vec`, gensim's ``KeyedVectors`` or a file written by
:meth:`WordVectors.save` (one model file, :mod:`lmlab.model_files`). Its evaluations follow
gensim's ``evaluate_word_analogies`` and ``evaluate_word_pairs`` (same questions skipped, same answers graded right, same correlations;
the tests check this on the same vectors), so lmlab's and gensim's vectors can be compared with
one set of functions. :func:`pearson` and :func:`spearman` are the correlations behind the
word-similarity scores.

Letters: V vocabulary size, C width of a vector (``d_model``), N pairs of a correlation.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lmlab._checks import (check_finite, check_int, check_path, check_str, check_strings,
                           check_tensor)
from lmlab.model_files import check_metadata, placement, read_model_file, write_model_file
from lmlab.vocab import tokenize

__all__ = ["WordVectors", "AnalogyResult", "SimilarityResult", "pearson", "spearman"]

_SIMILARITY_SETS = ("wordsim353", "simlex999")  # the sets lmlab.data.load_word_similarity has
_ANALOGY_TOPN = 5  # gensim looks at the 5 best answers for the first one that is not an input


# --------------------------------------------------------------------------- correlations


def _check_pair(x: object, y: object) -> tuple[torch.Tensor, torch.Tensor]:
    check_tensor("x", x, ndim=1)
    check_tensor("y", y, ndim=1)
    if x.shape != y.shape or x.shape[0] < 2:
        raise ValueError(f"x, y: expected two 1-D tensors of the same length >= 2, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if x.dtype == torch.bool or y.dtype == torch.bool or x.is_complex() or y.is_complex():
        raise TypeError(f"x, y: expected real numbers, got dtypes {x.dtype} and {y.dtype}")
    check_finite("x", x)
    check_finite("y", y)
    return x.double().cpu(), y.double().cpu()


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson's correlation coefficient of two samples, computed in float64.

    ``r = sum((x - mean x) (y - mean y)) / (|x - mean x| |y - mean y|)``. Matches
    ``scipy.stats.pearsonr`` (NaN when either sample is constant).

    Args:
        x: the first sample (any real dtype).
        y: the second sample, paired with ``x``.

    Returns:
        ``r`` in [-1, 1], or NaN for a constant sample.

    Shape:
        ``(N,)``, ``(N,)`` -> float

    Example:
        >>> round(pearson(torch.tensor([1., 2., 3.]), torch.tensor([2., 4., 7.])), 6)
        0.993399
    """
    x, y = _check_pair(x, y)
    if bool((x == x[0]).all()) or bool((y == y[0]).all()):
        return math.nan  # a constant sample (checked exactly: its mean may round off it)
    xc, yc = x - x.mean(), y - y.mean()
    # scaled by the largest deviation first, as scipy does, so that the squares in the norms
    # neither underflow (deviations of 1e-200) nor overflow (1e200)
    xc, yc = xc / xc.abs().max(), yc / yc.abs().max()
    return float(((xc * yc).sum() / (xc.norm() * yc.norm())).clamp(-1.0, 1.0))


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks, ties sharing their mean rank (scipy's ``rankdata(method="average")``)."""
    sorted_x, order = torch.sort(x, stable=True)
    _, inverse, tie_counts = torch.unique_consecutive(sorted_x, return_inverse=True,
                                                      return_counts=True)
    ends = tie_counts.cumsum(0).double()  # rank of the last member of each tie group
    mean_rank = ends - (tie_counts.double() - 1) / 2
    ranks = torch.empty_like(x)
    ranks[order] = mean_rank[inverse]
    return ranks


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rank correlation: :func:`pearson` of the ranks, ties given their mean rank.

    Matches ``scipy.stats.spearmanr`` (NaN when either sample is constant).

    Args:
        x: the first sample (any real dtype).
        y: the second sample, paired with ``x``.

    Returns:
        ``rho`` in [-1, 1], or NaN for a constant sample.

    Shape:
        ``(N,)``, ``(N,)`` -> float

    Example:
        >>> round(spearman(torch.tensor([1., 2., 3., 4.]), torch.tensor([10., 20., 20., 40.])), 6)
        0.948683
    """
    x, y = _check_pair(x, y)
    return pearson(_ranks(x), _ranks(y))


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class AnalogyResult:
    """Accuracy on "a is to b as c is to d" questions (:meth:`WordVectors.evaluate_analogies`)."""

    accuracy: float  # correct / evaluated (0 when nothing could be evaluated)
    correct: int  # questions whose answer was d
    evaluated: int  # questions with all four words in the restricted vocabulary
    skipped: int  # questions with a word outside it
    sections: dict[str, tuple[int, int]]  # section -> (correct, evaluated)


@dataclass(frozen=True)
class SimilarityResult:
    """Cosines against human judgements (:meth:`WordVectors.evaluate_word_similarity`)."""

    spearman: float  # Spearman's rho between human scores and cosine similarities
    pearson: float  # Pearson's r between the same
    evaluated: int  # pairs with both words in the restricted vocabulary
    oov_ratio: float  # percentage of pairs skipped (gensim's oov_ratio)


# --------------------------------------------------------------------------- word vectors


class WordVectors:
    """Word vectors with their vocabulary, most frequent word first.

    Args:
        words: the vocabulary, in row order (unique, non-empty, no tabs or line breaks).
        vectors: one row per word (floating point, finite); kept as float32 on its device.
        counts: corpus counts (non-negative), kept for reference; zeros when ``None``.
        metadata: JSON entries kept with the vectors and written by :meth:`save` (how they
            were made, a loss curve ...).

    Shape:
        ``vectors``: ``(V, C)``, ``counts``: ``(V,)``

    Example:
        >>> wv = WordVectors(["king", "queen", "apple"],
        ...                  torch.tensor([[1., 1.], [1., 0.9], [-1., 0.2]]))
        >>> wv.most_similar("king", k=1)
        [('queen', 0.9986178278923035)]
    """

    kind = "WordVectors"  # its kind of model file (lmlab.model_files)

    def __init__(self, words: Sequence[str], vectors: torch.Tensor,
                 counts: torch.Tensor | Sequence[int] | None = None,
                 metadata: Mapping[str, Any] | None = None) -> None:
        words = tuple(check_strings("words", words))
        check_tensor("vectors", vectors, ndim=2, dtype="float")
        if vectors.shape[0] != len(words) or vectors.shape[1] < 1:
            raise ValueError(f"vectors: expected shape ({len(words)}, C) with C >= 1 (one row per "
                             f"word), got {tuple(vectors.shape)}")
        check_finite("vectors", vectors)
        if any(not w or "\t" in w or "\n" in w or "\r" in w for w in words):
            raise ValueError("words: every word must be non-empty, without tabs or line breaks")
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}
        if len(self.index) != len(words):
            raise ValueError("words: every word must be unique")
        self.vectors = vectors.detach().float()
        if counts is None:
            counts = torch.zeros(len(words), dtype=torch.long)
        elif not isinstance(counts, torch.Tensor):
            if isinstance(counts, (str, bytes)) or not isinstance(counts, Sequence):
                raise TypeError(f"counts: expected a tensor or a list of ints, got "
                                f"{type(counts).__name__}")
            for i, c in enumerate(counts):
                check_int(f"counts[{i}]", c, minimum=0)
            counts = torch.tensor(list(counts), dtype=torch.long)
        check_tensor("counts", counts, ndim=1, dtype="int")
        if counts.shape != (len(words),) or bool((counts < 0).any()):
            raise ValueError(f"counts: expected {len(words)} non-negative ints, got shape "
                             f"{tuple(counts.shape)}")
        self.counts = counts.detach().long().cpu()
        self.metadata = check_metadata("metadata", metadata)
        self._unit = self.vectors / self.vectors.norm(dim=1, keepdim=True).clamp(min=1e-12)
        # case-insensitive index for the evaluations, built once: gensim's upper-cased keys, each
        # standing for its most frequent spelling (the first row, as rows go by frequency)
        self._first: dict[str, int] = {}
        for i in reversed(range(len(words))):
            self._first[words[i].upper()] = i
        self._key_row = torch.tensor([self._first[w.upper()] for w in words],
                                     device=self.vectors.device)  # (V,) row -> its key's row

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __repr__(self) -> str:
        return f"WordVectors({len(self)} words, d_model={self.d_model})"

    @property
    def d_model(self) -> int:
        """C, the width of a vector."""
        return self.vectors.shape[1]

    def id(self, word: str) -> int:
        """The row of ``word``; ``KeyError`` naming the word when it is not in the vocabulary."""
        return self._row("word", word)

    def _row(self, name: str, word: object) -> int:
        check_str(name, word)
        assert isinstance(word, str)
        try:
            return self.index[word]
        except KeyError:
            hint = (f"; try {word.lower()!r}" if word.lower() in self.index else
                    "; it was below min_count or never seen (check `word in vectors`, or embed it "
                    "from sub-word pieces with embed_pieces)")
            where = "" if name == "word" else f"{name}: "
            raise KeyError(f"{where}word {word!r} is not in the vocabulary of {len(self)} words"
                           f"{hint}") from None

    def __getitem__(self, word: str) -> torch.Tensor:
        """The vector of ``word``. Shape: ``(C,)``."""
        return self.vectors[self.id(word)]

    def similarity(self, w1: str, w2: str) -> float:
        """Cosine similarity of two words' vectors, in [-1, 1].

        Example:
            >>> WordVectors(["a", "b"], torch.tensor([[1., 0.], [1., 1.]])).similarity("a", "b")
            0.7071067690849304
        """
        return float(self._unit[self._row("w1", w1)] @ self._unit[self._row("w2", w2)])

    def _nearest(self, query: torch.Tensor, k: int, exclude: Sequence[int]
                 ) -> list[tuple[str, float]]:
        sims = self._unit @ (query / query.norm().clamp(min=1e-12))  # (V,)
        sims[list(exclude)] = -math.inf
        scores, rows = sims.topk(min(k, sims.shape[0]))
        return [(self.words[r], float(s)) for s, r in zip(scores.tolist(), rows.tolist())
                if s != -math.inf]

    def most_similar(self, word: str | torch.Tensor, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` words with the highest cosine similarity to ``word`` (itself left out).

        Args:
            word: a word, or a vector (on the vectors' device).
            k: how many neighbours (>= 1; fewer come back when the vocabulary is smaller).

        Returns:
            ``(word, cosine)`` pairs, best first.

        Shape:
            ``word``: a str or ``(C,)``
        """
        check_int("k", k)
        if isinstance(word, str):
            return self._nearest(self._unit[self.id(word)], k, [self.id(word)])
        check_tensor("word", word, ndim=1, dtype="float")
        if word.shape != (self.d_model,):
            raise ValueError(f"word: expected a word or a vector of shape ({self.d_model},), "
                             f"got {tuple(word.shape)}")
        check_finite("word", word)
        if word.device != self.vectors.device:
            raise ValueError(f"word: expected a vector on {self.vectors.device}, got {word.device}")
        return self._nearest(word.float(), k, [])

    def analogy(self, a: str, b: str, c: str, k: int = 1) -> list[tuple[str, float]]:
        """a is to b as c is to ?: the words closest to ``b - a + c`` (3CosAdd on unit vectors).

        ``a``, ``b`` and ``c`` are never answers, as in gensim's
        ``most_similar(positive=[b, c], negative=[a])``.

        Args:
            a: the first word of the known pair.
            b: the second word of the known pair.
            c: the first word of the question.
            k: how many answers (>= 1).

        Returns:
            ``(word, cosine with b - a + c)`` pairs, best first.
        """
        check_int("k", k)
        ia, ib, ic = self._row("a", a), self._row("b", b), self._row("c", c)
        query = self._unit[ib] - self._unit[ia] + self._unit[ic]
        return self._nearest(query, k, [ia, ib, ic])

    def _restricted(self, key: str, R: int) -> int | None:
        row = self._first.get(key)
        return row if row is not None and row < R else None

    def evaluate_analogies(self, questions: Sequence[tuple[str, str, str, str, str]] | None = None,
                           restrict_vocab: int = 30000) -> AnalogyResult:
        """Accuracy on analogy questions, graded exactly as gensim's ``evaluate_word_analogies``.

        Words are compared case-insensitively (upper-cased, as gensim does), each standing for
        its most frequent spelling among the ``restrict_vocab`` most frequent rows. A question
        with a word outside them is skipped. The answer is searched among those rows with
        ``b - a + c`` (3CosAdd): of the 5 best rows other than a, b and c, the first whose word
        is not a spelling of a, b or c (say "Baghdad" when c is "baghdad") is the prediction,
        and it is right when it is a spelling of d.

        Args:
            questions: ``(section, a, b, c, d)`` tuples of str (default:
                :func:`lmlab.data.load_analogies`, Google's 19,544 questions).
            restrict_vocab: how many of the most frequent rows take part (>= 1).

        Returns:
            The accuracy, with counts per section (sections in order of first appearance).
        """
        check_int("restrict_vocab", restrict_vocab)
        if questions is None:
            from lmlab.data import load_analogies
            questions = load_analogies()
        if isinstance(questions, (str, bytes)) or not isinstance(questions, Sequence):
            raise TypeError(f"questions: expected a list of (section, a, b, c, d) tuples, got "
                            f"{type(questions).__name__}")
        for i, q in enumerate(questions):
            if (not isinstance(q, (tuple, list)) or len(q) != 5
                    or not all(isinstance(w, str) for w in q)):
                raise TypeError(f"questions[{i}]: expected a (section, a, b, c, d) tuple of str, "
                                f"got {q!r}")
        R = min(restrict_vocab, len(self))
        sections: dict[str, list[int]] = {}
        rows, names = [], []
        for section, *quad in questions:
            sections.setdefault(section, [0, 0])
            ids = [self._restricted(w.upper(), R) for w in quad]
            if None not in ids:
                rows.append(ids)
                names.append(section)
        correct_flags: list[bool] = []
        if rows:
            q = torch.tensor(rows, device=self.vectors.device)  # (N, 4): rows of a, b, c, d
            unit, key_row = self._unit[:R], self._key_row[:R]
            topn = min(_ANALOGY_TOPN, R)
            for s in range(0, q.shape[0], 2048):
                part = q[s:s + 2048]
                query = unit[part[:, 1]] + unit[part[:, 2]] - unit[part[:, 0]]  # (N', C)
                query = query / query.norm(dim=1, keepdim=True).clamp(min=1e-12)
                sims = query @ unit.T  # (N', R)
                sims.scatter_(1, part[:, :3], -math.inf)  # a, b and c are never answers
                scores, best = sims.topk(topn, dim=1)  # (N', topn)
                keys = key_row[best]  # each candidate's most frequent spelling
                valid = scores != -math.inf
                usable = (valid & (keys != part[:, :1]) & (keys != part[:, 1:2])
                          & (keys != part[:, 2:3]))  # not a spelling of a, b or c
                # gensim takes the first usable candidate, else the last one it looked at
                last = (valid.long().cumsum(1) == valid.sum(1, keepdim=True)) & valid
                pick = torch.where(usable.any(1), usable.long().argmax(1), last.long().argmax(1))
                predicted = keys.gather(1, pick[:, None])[:, 0]
                hit = (predicted == part[:, 3]) & valid.any(1)
                correct_flags += hit.tolist()
        for section, hit in zip(names, correct_flags):
            sections[section][0] += int(hit)
            sections[section][1] += 1
        correct, evaluated = sum(correct_flags), len(correct_flags)
        return AnalogyResult(correct / evaluated if evaluated else 0.0, correct, evaluated,
                             len(questions) - evaluated,
                             {k: (v[0], v[1]) for k, v in sections.items()})

    def evaluate_word_similarity(self, pairs: str | Sequence[tuple[str, str, float]] = "wordsim353",
                                 restrict_vocab: int = 300000) -> SimilarityResult:
        """Correlation of cosines with human scores, as gensim's ``evaluate_word_pairs``.

        Pairs with a word outside the ``restrict_vocab`` most frequent rows (compared
        case-insensitively, as in :meth:`evaluate_analogies`) are skipped and counted in
        ``oov_ratio``.

        Args:
            pairs: ``"wordsim353"``, ``"simlex999"`` (see :func:`lmlab.data.load_word_similarity`)
                or ``(word1, word2, score)`` tuples with finite scores.
            restrict_vocab: how many of the most frequent rows take part (>= 1).

        Returns:
            Spearman's rho and Pearson's r (NaN when fewer than 2 pairs are known), the number of
            pairs used and the percentage skipped.
        """
        check_int("restrict_vocab", restrict_vocab)
        if isinstance(pairs, str):
            if pairs not in _SIMILARITY_SETS:
                raise ValueError(f"pairs: expected one of {_SIMILARITY_SETS} or a list of (word1, "
                                 f"word2, score) tuples, got {pairs!r}")
            from lmlab.data import load_word_similarity
            pairs = load_word_similarity(pairs)
        if isinstance(pairs, bytes) or not isinstance(pairs, Sequence):
            raise TypeError(f"pairs: expected 'wordsim353', 'simlex999' or a list of (word1, "
                            f"word2, score) tuples, got {type(pairs).__name__}")
        for i, p in enumerate(pairs):
            if (not isinstance(p, (tuple, list)) or len(p) != 3 or not isinstance(p[0], str)
                    or not isinstance(p[1], str) or isinstance(p[2], bool)
                    or not isinstance(p[2], (int, float))):
                raise TypeError(f"pairs[{i}]: expected a (word1, word2, score) tuple, got {p!r}")
            if not math.isfinite(p[2]):
                raise ValueError(f"pairs[{i}]: expected a finite score, got {p[2]!r}")
        R = min(restrict_vocab, len(self))
        gold, model = [], []
        for w1, w2, score in pairs:
            i, j = self._restricted(w1.upper(), R), self._restricted(w2.upper(), R)
            if i is None or j is None:
                continue
            gold.append(float(score))
            model.append(float(self._unit[i] @ self._unit[j]))
        n = len(gold)
        oov = 100.0 * (len(pairs) - n) / len(pairs) if len(pairs) else 0.0
        if n < 2:
            return SimilarityResult(math.nan, math.nan, n, oov)
        g, m = torch.tensor(gold, dtype=torch.float64), torch.tensor(model, dtype=torch.float64)
        return SimilarityResult(spearman(g, m), pearson(g, m), n, oov)

    def embed_pieces(self, word: str, split: Callable[[str], Sequence[str]]) -> torch.Tensor:
        """A word's vector as the mean of its pieces' vectors (for vectors trained on pieces).

        Args:
            word: any word, in the vocabulary or not.
            split: a tokenizer turning text into pieces, e.g. a WordPiece tokenizer's
                ``lambda w: tok.encode(w, add_special_tokens=False).tokens``.

        Returns:
            The mean of the vectors of the pieces in this vocabulary.

        Shape:
            ``(C,)``

        Raises:
            KeyError: none of the pieces is in the vocabulary.
        """
        check_str("word", word, allow_empty=False)
        if not callable(split):
            raise TypeError(f"split: expected a function from str to a list of str, got "
                            f"{type(split).__name__}")
        pieces = check_strings("split(word)", split(word), allow_empty=True)
        known = [self.index[p] for p in pieces if p in self.index]
        if not known:
            raise KeyError(f"word {word!r}: none of its pieces {pieces} is in the vocabulary")
        return self.vectors[known].mean(dim=0)

    def embed_sentence(self, text: str | Sequence[str],
                       split: Callable[[str], Sequence[str]] = tokenize) -> torch.Tensor:
        """A sentence's vector as the mean of its known words' vectors (word order is lost).

        Args:
            text: a string (split with ``split``) or a list of words.
            split: the tokenizer for strings (default :func:`lmlab.vocab.tokenize`).

        Returns:
            The mean vector; the zero vector when no word is known (its cosine similarity with
            anything is 0 in :func:`lmlab.bow.cosine_similarity`).

        Shape:
            ``(C,)``
        """
        if not callable(split):
            raise TypeError(f"split: expected a function from str to a list of str, got "
                            f"{type(split).__name__}")
        words = split(text) if isinstance(text, str) else text
        words = check_strings("text", words, allow_empty=True)
        known = [self.index[w] for w in words if w in self.index]
        if not known:
            return torch.zeros(self.d_model, device=self.vectors.device)
        return self.vectors[known].mean(dim=0)

    def save(self, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None, *,
             dtype: torch.dtype | None = None) -> None:
        """Write the words, vectors, counts and metadata to one model file, atomically.

        A model file of kind ``"WordVectors"`` (:mod:`lmlab.model_files`): the words in its
        config, ``self.metadata`` updated by ``metadata`` in its header, and a checksum of the
        tensors, which :meth:`load` verifies.

        Args:
            path: the file to write (its folder must exist).
            metadata: more JSON entries for the header (how the vectors were made ...).
            dtype: ``torch.float16`` for a file half the size (read back as float32); ``None``
                stores float32.

        Raises:
            TypeError: ``path`` is not a path, metadata not JSON data.
            ValueError: a ``dtype`` other than float32 or float16, or vectors too large for it.
            FileNotFoundError: the folder does not exist.
        """
        check_path("path", path)
        if dtype not in (None, torch.float32, torch.float16):
            raise ValueError(f"dtype: expected None, torch.float32 or torch.float16, got "
                             f"{dtype!r}")
        extra = {**self.metadata, **check_metadata("metadata", metadata)}
        write_model_file(path, self.kind, {"words": list(self.words)},
                         {"vectors": self.vectors, "counts": self.counts}, extra, dtype=dtype)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str | torch.device | None = None,
             dtype: torch.dtype | None = None) -> WordVectors:
        """Read vectors written by :meth:`save` (as float32).

        Args:
            path: a file written by :meth:`save`.
            device: where to put the vectors (default: the CPU).
            dtype: ``None`` or ``torch.float32``: word vectors are kept as float32.

        Returns:
            The vectors, with the metadata of the file.

        Raises:
            FileNotFoundError: there is no file at ``path``.
            ValueError: the file is not a complete, unchanged word-vector file (the message
                names the file).
        """
        if dtype not in (None, torch.float32):
            raise ValueError(f"dtype: word vectors are kept as float32; expected None or "
                             f"torch.float32, got {dtype!r}")
        device, _ = placement(device, None)
        file = read_model_file(path, cls.kind)
        words = file.field("words")
        if set(file.tensors) != {"vectors", "counts"}:
            raise ValueError(f"{file.path}: expected the tensors ['counts', 'vectors'], got "
                             f"{sorted(file.tensors)}")
        try:
            return cls(words, file.tensors["vectors"].float().to(device),
                       file.tensors["counts"], file.metadata)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{file.path}: {err}") from None
