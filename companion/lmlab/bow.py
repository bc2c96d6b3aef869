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

from lmlab._checks import (check_bool, check_device, check_finite, check_int, check_not_meta,
                           check_same_device, check_str, check_tensor)

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
    check_bool("lowercase", lowercase)
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
    if not isinstance(documents, Iterable) or isinstance(documents, torch.Tensor):
        raise TypeError(f"documents: expected a list of strings or of word lists, got "
                        f"{type(documents).__name__}")
    docs = [_as_tokens(d) for d in documents]
    if not docs:
        raise ValueError("documents: expected at least one document, got none")
    return docs


_SPECIALS = ("unk_token", "pad_token", "bos_token", "eos_token")


@dataclass(frozen=True, repr=False)
class Vocabulary:
    """A fixed mapping between tokens and ids, with optional special tokens.

    The one vocabulary class of the package: words for a bag of words (build it with
    :meth:`from_documents`), letters and phonemes for :mod:`lmlab.g2p`. The method names are those
    of Hugging Face ``tokenizers`` (``token_to_id``, ``id_to_token``, ``encode``, ``decode``).

    Args:
        tokens: id -> token, every token unique.
        counts: id -> corpus count (set by :meth:`from_documents`), or ``None``.
        unk_token: the token every out-of-vocabulary token maps to; ``None``: an
            out-of-vocabulary token is an error.
        pad_token: the padding token, or ``None``.
        bos_token: the start-of-sequence token, or ``None``.
        eos_token: the end-of-sequence token, or ``None``.

    Example:
        >>> v = Vocabulary(("<pad>", "</s>", "a", "b"), unk_token=None, pad_token="<pad>",
        ...                eos_token="</s>")
        >>> v.encode(list("abba"), add_special_tokens=True)
        [2, 3, 3, 2, 1]
        >>> v.decode([2, 3, 1, 0])
        ['a', 'b']
    """

    tokens: tuple[str, ...]  # id -> token
    counts: tuple[int, ...] | None = None  # id -> corpus count; unk counts the dropped words
    unk_token: str | None = None  # out-of-vocabulary tokens map to it; None: they are errors
    pad_token: str | None = None  # fills the end of shorter sequences in a batch
    bos_token: str | None = None  # starts a sequence (a decoder's first input)
    eos_token: str | None = None  # ends a sequence
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.tokens, str) or not isinstance(self.tokens, Sequence):
            raise TypeError(f"tokens: expected a tuple of str, got {type(self.tokens).__name__}")
        object.__setattr__(self, "tokens", tuple(self.tokens))
        if not self.tokens:
            raise ValueError("tokens: expected at least one token, got none")
        for i, t in enumerate(self.tokens):
            if not isinstance(t, str):
                raise TypeError(f"tokens[{i}]: expected a non-empty str, got {t!r}")
            if not t:
                raise ValueError(f"tokens[{i}]: expected a non-empty str, got ''")
        index = {t: i for i, t in enumerate(self.tokens)}
        if len(index) != len(self.tokens):
            dup = sorted({t for t in self.tokens if self.tokens.count(t) > 1})
            raise ValueError(f"tokens: every token must be unique, repeated: {dup[:5]}")
        if self.counts is not None:
            if isinstance(self.counts, (str, bytes)) or not isinstance(self.counts, Sequence):
                raise TypeError(f"counts: expected a tuple of ints or None, got "
                                f"{type(self.counts).__name__}")
            object.__setattr__(self, "counts", tuple(self.counts))
            if len(self.counts) != len(self.tokens):
                raise ValueError(f"counts: expected {len(self.tokens)} counts, got {len(self.counts)}")
            for i, c in enumerate(self.counts):
                check_int(f"counts[{i}]", c, minimum=0)
        for name in _SPECIALS:
            value = getattr(self, name)
            if value is not None and value not in index:
                raise ValueError(f"{name}: {value!r} is not one of the tokens")
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_documents(cls, documents: Iterable[str | Sequence[str]], min_count: int = 1,
                       max_size: int | None = None, unk_token: str = "<unk>") -> Vocabulary:
        """Count the words of a corpus and keep the frequent ones.

        Args:
            documents: strings (tokenized with :func:`tokenize`) or lists of words.
            min_count: keep words seen at least this often (>= 1).
            max_size: keep at most this many words besides the unknown token (None: all).
            unk_token: the token for every word left out; it gets id 0.

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
        check_str("unk_token", unk_token, allow_empty=False)
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

    def __repr__(self) -> str:
        specials = ", ".join(f"{name}={getattr(self, name)!r}" for name in _SPECIALS
                             if getattr(self, name) is not None)
        return f"Vocabulary(size={len(self.tokens)}{', ' if specials else ''}{specials})"

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def _special_id(self, name: str) -> int | None:
        token = getattr(self, name)
        return None if token is None else self._index[token]

    @property
    def unk_id(self) -> int | None:
        """Id of ``unk_token`` (``None`` if there is none)."""
        return self._special_id("unk_token")

    @property
    def pad_id(self) -> int | None:
        """Id of ``pad_token`` (``None`` if there is none)."""
        return self._special_id("pad_token")

    @property
    def bos_id(self) -> int | None:
        """Id of ``bos_token`` (``None`` if there is none)."""
        return self._special_id("bos_token")

    @property
    def eos_id(self) -> int | None:
        """Id of ``eos_token`` (``None`` if there is none)."""
        return self._special_id("eos_token")

    def token_to_id(self, token: str) -> int | None:
        """The id of ``token``, or ``None`` when it is not in the vocabulary (as in ``tokenizers``).

        Example:
            >>> v = Vocabulary.from_documents(["dog bites man"])
            >>> v.token_to_id("dog"), v.token_to_id("zebra")
            (2, None)
        """
        check_str("token", token)
        return self._index.get(token)

    def id_to_token(self, id: int) -> str:  # noqa: A002 (the tokenizers name)
        """The token with id ``id``.

        Raises:
            ValueError: ``id`` is outside ``0 .. len(self) - 1``.
        """
        check_int("id", id, minimum=0)
        if id >= len(self.tokens):
            raise ValueError(f"id: expected 0 <= id < {len(self.tokens)}, got {id}")
        return self.tokens[id]

    def encode(self, tokens: str | Sequence[str], add_special_tokens: bool = False) -> list[int]:
        """Ids of a sequence of tokens.

        Tokens outside the vocabulary get ``unk_id``; without an ``unk_token`` they raise.

        Args:
            tokens: a list of tokens, or a string, which is split into words with
                :func:`tokenize` first (use ``list(word)`` for a word's letters).
            add_special_tokens: frame the ids with ``bos_token`` and ``eos_token`` (those set).

        Returns:
            One id per token (plus the frame).

        Raises:
            ValueError: a token is out of the vocabulary and there is no ``unk_token``.

        Example:
            >>> Vocabulary.from_documents(["dog bites man"]).encode("the dog")
            [0, 2]
        """
        words = tokenize(tokens) if isinstance(tokens, str) else tokens
        if not isinstance(words, Sequence):
            raise TypeError(f"tokens: expected a str or a list of str, got {type(tokens).__name__}")
        unk = self.unk_id
        ids = []
        for i, w in enumerate(words):
            if not isinstance(w, str):
                raise TypeError(f"tokens[{i}]: expected a str, got {type(w).__name__}")
            idx = self._index.get(w, unk)
            if idx is None:
                unknown = sorted({x for x in words if x not in self._index})
                raise ValueError(f"tokens: {unknown} not in the vocabulary (and it has no "
                                 f"unk_token); known: {list(self.tokens)[:40]}")
            ids.append(idx)
        check_bool("add_special_tokens", add_special_tokens)
        if add_special_tokens:
            ids = ([self.bos_id] if self.bos_id is not None else []) + ids + (
                [self.eos_id] if self.eos_id is not None else [])
        return ids

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True,
               ) -> list[str]:
        """The tokens of ``ids`` (a list, not a joined string: tokens may be words or letters).

        Args:
            ids: token ids (a list or a 1-d integer tensor).
            skip_special_tokens: leave out the pad, bos and eos tokens (the unknown token stays:
                it stands for a real token).

        Returns:
            One token per kept id.
        """
        if isinstance(ids, torch.Tensor):
            check_tensor("ids", ids, ndim=1, dtype="int")
            ids = check_not_meta("ids", ids).tolist()
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
            raise TypeError(f"ids: expected a list of int, got {type(ids).__name__}")
        check_bool("skip_special_tokens", skip_special_tokens)
        skip = {self.pad_id, self.bos_id, self.eos_id} - {None} if skip_special_tokens else set()
        out = []
        for i, idx in enumerate(ids):
            check_int(f"ids[{i}]", idx, minimum=0, maximum=len(self.tokens) - 1)
            if idx not in skip:
                out.append(self.tokens[idx])
        return out

    def to_dict(self) -> dict[str, object]:
        """The vocabulary as JSON-able data (tokens, counts and special tokens)."""
        return {"tokens": list(self.tokens),
                "counts": None if self.counts is None else list(self.counts),
                **{name: getattr(self, name) for name in _SPECIALS}}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Vocabulary:
        """The inverse of :meth:`to_dict`."""
        if not isinstance(data, dict) or "tokens" not in data:
            raise ValueError("data: expected a dict with 'tokens', as written by to_dict()")
        unexpected = set(data) - {"tokens", "counts", *_SPECIALS}
        if unexpected:
            raise ValueError(f"data: unexpected keys {sorted(unexpected)}")
        return cls(data["tokens"], data.get("counts"),  # type: ignore[arg-type]
                   **{name: data.get(name) for name in _SPECIALS})  # type: ignore[arg-type]


def count_vectors(documents: Iterable[str | Sequence[str]], vocab: Vocabulary,
                  sparse: bool = False, device: str | torch.device | None = None,
                  count_unknown: bool = False) -> torch.Tensor:
    """The Bag of Words matrix: how often each vocabulary word occurs in each document.

    Words outside the vocabulary are dropped, as scikit-learn's ``CountVectorizer`` does, so the
    unknown token's column stays 0 and two documents of unknown words share nothing (cosine 0,
    not 1). ``count_unknown=True`` counts them in that column instead, to see how much of a
    text the vocabulary misses; do not compare such vectors with cosine similarity.

    Args:
        documents: strings or lists of words.
        vocab: the vocabulary giving the columns.
        sparse: return a sparse COO tensor (for large corpora) instead of a dense one.
        device: where to build the tensor (default CPU).
        count_unknown: count out-of-vocabulary words in the unknown token's column (needs a
            vocabulary with an ``unk_token``).

    Returns:
        Counts as float32.

    Shape:
        ``(N, V)`` for N documents and a vocabulary of V words (column 0: unknown words).

    Example:
        >>> v = Vocabulary.from_documents(["dog bites man"])  # ties sort alphabetically
        >>> v.tokens
        ('<unk>', 'bites', 'dog', 'man')
        >>> count_vectors(["man bites dog", "dog dog cat"], v)
        tensor([[0., 1., 1., 1.],
                [0., 0., 2., 0.]])
        >>> count_vectors(["dog dog cat"], v, count_unknown=True)
        tensor([[1., 0., 2., 0.]])
    """
    if not isinstance(vocab, Vocabulary):
        raise TypeError(f"vocab: expected a Vocabulary, got {type(vocab).__name__}")
    check_bool("sparse", sparse)
    check_bool("count_unknown", count_unknown)
    check_device("device", device)
    if count_unknown and vocab.unk_id is None:
        raise ValueError("count_unknown: the vocabulary has no unk_token to count unknown words in")
    docs = _check_documents(documents)
    rows, cols = [], []
    for i, d in enumerate(docs):
        ids = [vocab._index[w] for w in d if w in vocab._index] if not count_unknown \
            else vocab.encode(list(d))
        rows.extend([i] * len(ids))
        cols.extend(ids)
    N, V = len(docs), len(vocab)
    index = torch.tensor([rows, cols], dtype=torch.long, device=device).reshape(2, -1)
    values = torch.ones(index.shape[1], dtype=torch.float32, device=device)
    counts = torch.sparse_coo_tensor(index, values, (N, V),
                                     check_invariants=False).coalesce()  # (N, V), sums duplicates
    return counts if sparse else counts.to_dense()


def _check_counts(counts: object) -> None:
    check_tensor("counts", counts, ndim=2, dtype="float")
    assert isinstance(counts, torch.Tensor)
    values = counts.coalesce().values() if counts.is_sparse else counts
    check_finite("counts", values)
    if values.numel() and bool((values < 0).any()):
        raise ValueError("counts: expected non-negative counts")


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
    _check_counts(counts)
    check_bool("smooth", smooth)
    N = counts.shape[0]
    if N == 0:
        raise ValueError("counts: expected at least one document (row) to count in, got shape "
                         f"{tuple(counts.shape)}")
    present = counts.coalesce() if counts.is_sparse else counts
    if present.is_sparse:
        df = torch.zeros(counts.shape[1], dtype=counts.dtype, device=counts.device)
        cols = present.indices()[1][present.values() > 0]
        df.index_add_(0, cols, torch.ones_like(cols, dtype=df.dtype))
    else:
        df = (present > 0).sum(dim=0).to(counts.dtype)  # (V,)
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
    _check_counts(counts)
    check_tensor("idf", idf, ndim=1, dtype="float")
    if idf.shape[0] != counts.shape[1]:
        raise ValueError(f"idf: expected shape ({counts.shape[-1]},) to match counts "
                         f"{tuple(counts.shape)}, got {tuple(idf.shape)}")
    check_finite("idf", idf)
    check_same_device(counts=counts, idf=idf)
    check_bool("sublinear_tf", sublinear_tf)
    check_bool("normalize", normalize)
    if counts.is_sparse:
        c = counts.coalesce()
        cols = c.indices()[1]
        tf = c.values()
        if sublinear_tf:
            tf = 1 + torch.log(tf)
        values = tf * idf[cols]
        if normalize:
            rows = c.indices()[0]
            sq = torch.zeros(counts.shape[0], dtype=values.dtype,
                             device=counts.device).index_add_(0, rows, values**2)
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
        A dense matrix of similarities, in the inputs' floating dtype (float64 stays float64;
        float16 and bfloat16 are computed and returned as float32).

    Shape:
        ``a``: ``(T, C)``, ``b``: ``(S, C)`` -> ``(T, S)`` (rows of ``a`` against rows of ``b``,
        like queries against keys; C is the vectors' width)

    Example:
        >>> cosine_similarity(torch.tensor([[1., 0.], [1., 1.]]))
        tensor([[1.0000, 0.7071],
                [0.7071, 1.0000]])
    """
    check_tensor("a", a, ndim=(1, 2), dtype="float")
    if b is not None:
        check_tensor("b", b, ndim=(1, 2), dtype="float")
        check_same_device(a=a, b=b)
    b = a if b is None else b
    a2 = a.unsqueeze(0) if a.dim() == 1 else a
    b2 = b.unsqueeze(0) if b.dim() == 1 else b
    if a2.shape[1] != b2.shape[1]:
        raise ValueError(f"b: expected (M, {a2.shape[1]}) to match a {tuple(a.shape)}, "
                         f"got {tuple(b.shape)}")
    for name, x in (("a", a2), ("b", b2)):
        check_finite(name, x.coalesce().values() if x.is_sparse else x)
    dtype = torch.promote_types(a.dtype, b.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32  # too few digits for sums of many products
    a2, b2 = _unit_rows(a2.to(dtype)), _unit_rows(b2.to(dtype))
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
        ``query``: ``(C,)`` or ``(T, C)``, ``vectors``: ``(N, C)`` -> ``(k,)`` or ``(T, k)`` each.
    """
    check_tensor("vectors", vectors, ndim=2, dtype="float")
    check_tensor("query", query, ndim=(1, 2), dtype="float")
    check_bool("exclude_self", exclude_self)
    check_same_device(query=query, vectors=vectors)
    if query.shape[-1] != vectors.shape[1]:
        raise ValueError(f"query: expected vectors of width {vectors.shape[1]} (as vectors "
                         f"{tuple(vectors.shape)}), got shape {tuple(query.shape)}")
    if vectors.shape[0] == 0:
        raise ValueError("vectors: expected at least one vector to search, got none")
    for name, x in (("query", query), ("vectors", vectors)):
        check_finite(name, x.coalesce().values() if x.is_sparse else x)
    n = vectors.shape[0]
    available = n - 1 if exclude_self else n
    check_int("k", k)
    if k > available:
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
