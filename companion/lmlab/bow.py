"""Bag of Words: a document as a vector of word counts.

The pipeline of chapter 1, one pure function a step (words and the vocabulary come from
:mod:`lmlab.vocab`)::

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
from collections.abc import Iterable, Sequence

import torch

from lmlab._checks import (check_bool, check_device, check_finite, check_int, check_same_device,
                           check_tensor)
from lmlab.vocab import Vocabulary, as_documents

__all__ = [
    "count_vectors", "inverse_document_frequency", "tfidf_vectors",
    "cosine_similarity", "top_k_similar",
]


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
    docs = as_documents(documents)
    rows, cols = [], []
    index = {t: i for i, t in enumerate(vocab.tokens)}
    for i, d in enumerate(docs):
        ids = [index[w] for w in d if w in index] if not count_unknown else vocab.encode(list(d))
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
