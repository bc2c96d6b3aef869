"""Bag of Words: a document as a vector of word counts.

The pipeline of chapter 1, one pure function a step::

    tokens  = tokenize("The dog bites the man.")        # ['the', 'dog', 'bites', 'the', 'man']
    vocab   = Vocabulary.from_documents(docs, min_count=2)
    counts  = count_vectors(docs, vocab)                 # (N, V) word counts
    weights = tfidf_vectors(counts, inverse_document_frequency(counts))
    scores, index = top_k_similar(query, weights, k=5)   # cosine similarity

Column 0 of every vector belongs to the unknown token, which collects the words outside the
vocabulary. Counts can be dense or sparse (``sparse=True``) for large corpora.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from lmlab._checks import check_int

__all__ = [
    "tokenize", "Vocabulary", "count_vectors", "inverse_document_frequency", "tfidf_vectors",
    "cosine_similarity", "top_k_similar",
]

_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Split text into words: runs of letters and digits, keeping inner apostrophes.

    Args:
        text: any string.
        lowercase: lower-case the words (so "The" and "the" are one word).

    Returns:
        The words in order.

    Example:
        >>> tokenize("The dog doesn't bite; the man-bites-dog story is 100% news.")
        ['the', 'dog', "doesn't", 'bite', 'the', 'man', 'bites', 'dog', 'story', 'is', '100', 'news']
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    words = _WORD.findall(text)
    return [w.lower() for w in words] if lowercase else words


def _as_tokens(doc: str | Sequence[str]) -> Sequence[str]:
    if isinstance(doc, str):
        return tokenize(doc)
    if isinstance(doc, Sequence) and all(isinstance(w, str) for w in doc):
        return doc
    raise TypeError("documents: each document must be a string or a sequence of word strings, "
                    f"got {type(doc).__name__}")


def _check_documents(documents: Iterable[str | Sequence[str]]) -> list[Sequence[str]]:
    if isinstance(documents, str):
        raise TypeError("documents: expected a list of documents, got a single string "
                        "(wrap it in a list)")
    docs = [_as_tokens(d) for d in documents]
    if not docs:
        raise ValueError("documents: expected at least one document, got none")
    return docs


@dataclass(frozen=True)
class Vocabulary:
    """A fixed mapping between words and ids, most frequent words first.

    Build one with :meth:`from_documents`. Id 0 is the unknown token.
    """

    tokens: tuple[str, ...]  # id -> word; tokens[0] is the unknown token
    counts: tuple[int, ...]  # id -> corpus count (the unknown token counts the dropped words)
    unk_token: str = "<unk>"  # the word every out-of-vocabulary word maps to
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.tokens or self.tokens[0] != self.unk_token:
            raise ValueError(f"tokens: the first token must be the unknown token {self.unk_token!r}")
        if len(self.counts) != len(self.tokens):
            raise ValueError(f"counts: expected {len(self.tokens)} counts, got {len(self.counts)}")
        index = {t: i for i, t in enumerate(self.tokens)}
        if len(index) != len(self.tokens):
            raise ValueError("tokens: every token must be unique")
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_documents(cls, documents: Iterable[str | Sequence[str]], min_count: int = 1,
                       max_size: int | None = None, unk_token: str = "<unk>") -> Vocabulary:
        """Count the words of a corpus and keep the frequent ones.

        Args:
            documents: strings (tokenized with :func:`tokenize`) or lists of words.
            min_count: keep words seen at least this often (>= 1).
            max_size: keep at most this many words besides the unknown token (None: all).
            unk_token: the token for every word left out.

        Returns:
            A vocabulary ordered by count (descending), ties alphabetically.

        Raises:
            ValueError: no documents, ``min_count < 1``, ``max_size < 1``, or no word survives.

        Example:
            >>> v = Vocabulary.from_documents(["dog bites man", "man bites dog", "dog"])
            >>> v.tokens
            ('<unk>', 'dog', 'bites', 'man')
        """
        check_int("min_count", min_count)
        if max_size is not None:
            check_int("max_size", max_size)
        docs = _check_documents(documents)
        counter = Counter(w for d in docs for w in d)
        if not counter:
            raise ValueError("documents: the corpus contains no words to build a vocabulary from")
        counter.pop(unk_token, None)
        kept = sorted(((w, c) for w, c in counter.items() if c >= min_count),
                      key=lambda wc: (-wc[1], wc[0]))
        if max_size is not None:
            kept = kept[:max_size]
        if not kept:
            raise ValueError(f"min_count: no word occurs at least {min_count} times "
                             f"(the most frequent occurs {max(counter.values())} times)")
        dropped = sum(counter.values()) - sum(c for _, c in kept)
        return cls((unk_token, *(w for w, _ in kept)), (dropped, *(c for _, c in kept)), unk_token)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def token_to_id(self, word: str) -> int:
        """The id of ``word``; 0 (the unknown token) when it is not in the vocabulary."""
        return self._index.get(word, 0)

    def id_to_token(self, idx: int) -> str:
        """The word with id ``idx``."""
        if not 0 <= idx < len(self.tokens):
            raise ValueError(f"idx: expected 0 <= idx < {len(self.tokens)}, got {idx}")
        return self.tokens[idx]

    def encode(self, document: str | Sequence[str]) -> list[int]:
        """Word ids of a document (a string is tokenized first)."""
        return [self._index.get(w, 0) for w in _as_tokens(document)]


def count_vectors(documents: Iterable[str | Sequence[str]], vocab: Vocabulary,
                  sparse: bool = False, device: str | torch.device | None = None) -> torch.Tensor:
    """The Bag of Words matrix: how often each vocabulary word occurs in each document.

    Args:
        documents: strings or lists of words.
        vocab: the vocabulary giving the columns.
        sparse: return a sparse COO tensor (for large corpora) instead of a dense one.
        device: where to build the tensor (default CPU).

    Returns:
        Counts as float32.

    Shape:
        ``(N, V)`` for N documents and a vocabulary of V words (column 0: unknown words).

    Example:
        >>> v = Vocabulary.from_documents(["dog bites man"])  # ties sort alphabetically
        >>> v.tokens
        ('<unk>', 'bites', 'dog', 'man')
        >>> count_vectors(["man bites dog", "dog dog"], v)
        tensor([[0., 1., 1., 1.],
                [0., 0., 2., 0.]])
    """
    if not isinstance(vocab, Vocabulary):
        raise TypeError(f"vocab: expected a Vocabulary, got {type(vocab).__name__}")
    docs = _check_documents(documents)
    rows, cols = [], []
    for i, d in enumerate(docs):
        ids = vocab.encode(d)
        rows.extend([i] * len(ids))
        cols.extend(ids)
    N, V = len(docs), len(vocab)
    index = torch.tensor([rows, cols], dtype=torch.long, device=device).reshape(2, -1)
    values = torch.ones(index.shape[1], dtype=torch.float32, device=device)
    counts = torch.sparse_coo_tensor(index, values, (N, V), check_invariants=False).coalesce()  # (N, V), sums duplicates
    return counts if sparse else counts.to_dense()


def inverse_document_frequency(counts: torch.Tensor, smooth: bool = True) -> torch.Tensor:
    """How rare each word is across documents: ``idf = ln((1 + N) / (1 + df)) + 1``.

    With ``smooth=False`` it is ``ln(N / df) + 1``. Both match scikit-learn's
    ``TfidfTransformer``. ``df`` is the number of documents containing the word.

    Args:
        counts: a count matrix from :func:`count_vectors` (dense or sparse).
        smooth: add one to N and df, as if one extra document contained every word once.

    Shape:
        ``counts``: ``(N, V)`` -> ``(V,)``
    """
    if counts.dim() != 2:
        raise ValueError(f"counts: expected a 2-D (N, V) matrix, got shape {tuple(counts.shape)}")
    N = counts.shape[0]
    present = counts.coalesce() if counts.is_sparse else counts
    if present.is_sparse:
        df = torch.zeros(counts.shape[1], device=counts.device)
        cols = present.indices()[1][present.values() > 0]
        df.index_add_(0, cols, torch.ones_like(cols, dtype=df.dtype))
    else:
        df = (present > 0).sum(dim=0).to(torch.float32)  # (V,)
    if smooth:
        return torch.log((1 + N) / (1 + df)) + 1
    return torch.log(N / df.clamp(min=1)) + 1  # words in no document get the largest idf


def tfidf_vectors(counts: torch.Tensor, idf: torch.Tensor, sublinear_tf: bool = False,
                  normalize: bool = True) -> torch.Tensor:
    """TF-IDF: counts reweighted by rarity, each row scaled to unit length.

    Args:
        counts: count matrix (dense or sparse).
        idf: per-word weights from :func:`inverse_document_frequency` (fit on a corpus, reused
            for queries).
        sublinear_tf: use ``1 + ln(tf)`` instead of the raw count.
        normalize: divide each row by its Euclidean norm.

    Shape:
        ``counts``: ``(N, V)``, ``idf``: ``(V,)`` -> ``(N, V)``, sparse if ``counts`` is.
    """
    if counts.dim() != 2 or idf.dim() != 1 or idf.shape[0] != counts.shape[1]:
        raise ValueError(f"idf: expected shape ({counts.shape[-1]},) to match counts "
                         f"{tuple(counts.shape)}, got {tuple(idf.shape)}")
    if counts.is_sparse:
        c = counts.coalesce()
        cols = c.indices()[1]
        tf = c.values()
        if sublinear_tf:
            tf = 1 + torch.log(tf)
        values = tf * idf[cols]
        if normalize:
            rows = c.indices()[0]
            sq = torch.zeros(counts.shape[0], device=counts.device).index_add_(0, rows, values**2)
            values = values / sq.sqrt().clamp(min=1e-12)[rows]
        return torch.sparse_coo_tensor(c.indices(), values, counts.shape, check_invariants=False).coalesce()
    tf = torch.where(counts > 0, 1 + torch.log(counts.clamp(min=1)), counts) if sublinear_tf else counts
    weights = tf * idf  # (N, V)
    if normalize:
        weights = weights / weights.norm(dim=1, keepdim=True).clamp(min=1e-12)
    return weights


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    if x.is_sparse:
        x = x.coalesce()
        rows = x.indices()[0]
        sq = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device).index_add_(0, rows, x.values() ** 2)
        values = x.values() / sq.sqrt().clamp(min=1e-12)[rows]
        return torch.sparse_coo_tensor(x.indices(), values, x.shape, check_invariants=False).coalesce()
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def cosine_similarity(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarity between every row of ``a`` and every row of ``b``.

    ``cos(x, y) = x . y / (|x| |y|)``: 1 for vectors pointing the same way, 0 for vectors with no
    word in common. A zero vector has similarity 0 with everything.

    Args:
        a: vectors, dense or sparse (a 1-D tensor is one vector).
        b: vectors, dense or sparse; ``None`` compares ``a`` with itself.

    Returns:
        A dense matrix of similarities.

    Shape:
        ``a``: ``(N, E)``, ``b``: ``(M, E)`` -> ``(N, M)``

    Example:
        >>> cosine_similarity(torch.tensor([[1., 0.], [1., 1.]]))
        tensor([[1.0000, 0.7071],
                [0.7071, 1.0000]])
    """
    b = a if b is None else b
    a2 = a.unsqueeze(0) if a.dim() == 1 else a
    b2 = b.unsqueeze(0) if b.dim() == 1 else b
    if a2.dim() != 2 or b2.dim() != 2 or a2.shape[1] != b2.shape[1]:
        raise ValueError(f"a, b: expected (N, E) and (M, E) with the same E, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    a2, b2 = _unit_rows(a2.float()), _unit_rows(b2.float())
    if a2.is_sparse and b2.is_sparse:
        return torch.sparse.mm(a2, b2.t().to_dense())
    if a2.is_sparse:
        return torch.sparse.mm(a2, b2.t())
    if b2.is_sparse:
        return torch.sparse.mm(b2, a2.t()).t()
    return a2 @ b2.t()


def top_k_similar(query: torch.Tensor, vectors: torch.Tensor, k: int = 5,
                  exclude_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` rows of ``vectors`` most similar (cosine) to each query.

    Args:
        query: one vector or a batch of vectors.
        vectors: the collection to search (dense or sparse).
        k: how many results per query (1 <= k <= number of vectors).
        exclude_self: drop each query's own index (for a collection searched with its own rows:
            query ``i`` is row ``i``).

    Returns:
        ``(scores, indices)``, best first.

    Shape:
        ``query``: ``(E,)`` or ``(M, E)``, ``vectors``: ``(N, E)`` -> ``(k,)`` or ``(M, k)`` each.
    """
    n = vectors.shape[0]
    available = n - 1 if exclude_self else n
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= available:
        raise ValueError(f"k: expected an int with 1 <= k <= {available}, got {k!r}")
    sims = cosine_similarity(query, vectors)  # (M, N)
    if exclude_self:
        if sims.shape[0] > n:
            raise ValueError("exclude_self: needs at most one query per vector")
        idx = torch.arange(sims.shape[0], device=sims.device)
        sims[idx, idx] = -math.inf
    scores, indices = sims.topk(k, dim=1)
    if query.dim() == 1:
        return scores[0], indices[0]
    return scores, indices
