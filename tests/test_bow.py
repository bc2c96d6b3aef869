"""lmlab.bow against scikit-learn's CountVectorizer and TfidfVectorizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from lmlab import data
from lmlab.bow import (cosine_similarity, count_vectors, inverse_document_frequency, tfidf_vectors,
                       top_k_similar)
from lmlab.vocab import Vocabulary, tokenize

DOCS = [
    "The dog bites the man.",
    "The man bites the dog!",
    "A cat sat on the mat; the cat purred.",
    "Dogs and cats: friends or foes? Nobody knows.",
    "The man doesn't own a dog.",
]


@pytest.fixture(scope="module")
def speeches() -> list[str]:
    return data.load_documents("sotu")[-40:]


def sklearn_columns(vectorizer, vocab: Vocabulary) -> np.ndarray:
    """Column order of sklearn's matrix re-arranged to the vocabulary's ids 1..V-1."""
    return np.array([vectorizer.vocabulary_[w] for w in vocab.tokens[1:]])


@pytest.mark.parametrize("sparse", [False, True])
def test_counts_match_sklearn(speeches, sparse):
    vocab = Vocabulary.from_documents(speeches)
    ours = count_vectors(speeches, vocab, sparse=sparse)
    ours = ours.to_dense() if sparse else ours
    ref = CountVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None)
    theirs = ref.fit_transform(speeches).toarray()[:, sklearn_columns(ref, vocab)]
    np.testing.assert_array_equal(ours[:, 1:].numpy(), theirs)
    assert ours[:, 0].sum() == 0  # every word is in a vocabulary built from the same corpus


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("smooth, sublinear", [(True, False), (False, False), (True, True)])
def test_tfidf_matches_sklearn(speeches, sparse, smooth, sublinear):
    vocab = Vocabulary.from_documents(speeches)
    counts = count_vectors(speeches, vocab, sparse=sparse)
    idf = inverse_document_frequency(counts, smooth=smooth)
    ours = tfidf_vectors(counts, idf, sublinear_tf=sublinear)
    ours = ours.to_dense() if sparse else ours
    ref = TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None,
                          smooth_idf=smooth, sublinear_tf=sublinear)
    theirs = ref.fit_transform(speeches).toarray()
    cols = sklearn_columns(ref, vocab)
    np.testing.assert_allclose(idf[1:].numpy(), ref.idf_[cols], rtol=1e-5)
    np.testing.assert_allclose(ours[:, 1:].numpy(), theirs[:, cols], rtol=1e-4, atol=1e-6)


def test_tfidf_for_unseen_queries_uses_the_corpus_idf():
    vocab = Vocabulary.from_documents(DOCS)
    idf = inverse_document_frequency(count_vectors(DOCS, vocab))
    ref = TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None).fit(DOCS)
    query = ["the cat bites the dog"]
    ours = tfidf_vectors(count_vectors(query, vocab), idf)
    theirs = ref.transform(query).toarray()[:, sklearn_columns(ref, vocab)]
    np.testing.assert_allclose(ours[:, 1:].numpy(), theirs, rtol=1e-5, atol=1e-7)


def test_tfidf_rejects_mismatched_idf():
    counts = count_vectors(DOCS, Vocabulary.from_documents(DOCS))
    with pytest.raises(ValueError, match="idf"):
        tfidf_vectors(counts, torch.ones(3))
    with pytest.raises(ValueError, match="counts"):
        inverse_document_frequency(torch.ones(3))


def test_cosine_similarity_matches_torch_and_sklearn():
    from sklearn.metrics.pairwise import cosine_similarity as sk_cosine

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 5, generator=g), torch.randn(4, 5, generator=g)
    ours = cosine_similarity(a, b)
    torch.testing.assert_close(ours, torch.nn.functional.cosine_similarity(
        a[:, None, :], b[None, :, :], dim=-1))
    np.testing.assert_allclose(ours.numpy(), sk_cosine(a.numpy(), b.numpy()), rtol=1e-5, atol=1e-6)
    for sa, sb in [(True, False), (False, True), (True, True)]:
        x = a.to_sparse() if sa else a
        y = b.to_sparse() if sb else b
        torch.testing.assert_close(cosine_similarity(x, y), ours, rtol=1e-5, atol=1e-6)
    assert cosine_similarity(torch.zeros(1, 5), a).abs().max() == 0  # zero vector: similarity 0
    with pytest.raises(ValueError, match="b: expected"):
        cosine_similarity(a, torch.randn(2, 6))


def test_word_order_is_lost():
    vocab = Vocabulary.from_documents(DOCS)
    x = count_vectors(["dog bites man", "man bites dog"], vocab)
    assert torch.equal(x[0], x[1])
    assert cosine_similarity(x)[0, 1].item() == pytest.approx(1.0)


def test_top_k_similar():
    vocab = Vocabulary.from_documents(DOCS)
    x = tfidf_vectors(count_vectors(DOCS, vocab), inverse_document_frequency(count_vectors(DOCS, vocab)))
    scores, idx = top_k_similar(x[0], x, k=2)
    assert sorted(idx.tolist()) == [0, 1]  # itself, and the same words in another order
    assert scores.tolist() == pytest.approx([1.0, 1.0])
    scores, idx = top_k_similar(x, x, k=1, exclude_self=True)
    assert idx[0].item() == 1 and idx[1].item() == 0
    assert (idx[:, 0] != torch.arange(len(DOCS))).all()
    with pytest.raises(ValueError, match="k"):
        top_k_similar(x, x, k=len(DOCS), exclude_self=True)
    with pytest.raises(ValueError, match="k"):
        top_k_similar(x, x, k=0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=8))
def test_counts_sum_to_number_of_words(docs):
    words = [tokenize(d) for d in docs]
    if not any(words):
        with pytest.raises(ValueError):
            Vocabulary.from_documents(docs)
        return
    vocab = Vocabulary.from_documents(docs, max_size=5)
    counts = count_vectors(docs, vocab, count_unknown=True)
    assert counts.sum(dim=1).tolist() == [float(len(w)) for w in words]
    torch.testing.assert_close(count_vectors(docs, vocab, sparse=True, count_unknown=True)
                               .to_dense(), counts)
    known = count_vectors(docs, vocab)
    assert known.sum(dim=1).tolist() == [float(sum(x in vocab for x in w)) for w in words]
    assert known[:, 0].sum() == 0


# --------------------------------------------------------------------------- issue 8: silent results


@pytest.mark.parametrize("sparse", [False, True])
def test_documents_of_unknown_words_share_nothing(sparse):
    vocab = Vocabulary.from_documents(DOCS)
    x = count_vectors(["zebra yak", "quokka", "the zebra"], vocab, sparse=sparse)
    sims = cosine_similarity(x)
    assert sims[0, 1].item() == 0.0  # two texts of unknown words: no shared word, cosine 0
    assert sims[0, 2].item() == 0.0
    ref = CountVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None).fit(DOCS)
    theirs = ref.transform(["zebra yak", "quokka", "the zebra"]).toarray()
    dense = x.to_dense() if sparse else x
    np.testing.assert_array_equal(dense[:, 1:].numpy(), theirs[:, sklearn_columns(ref, vocab)])
    counted = count_vectors(["zebra yak"], vocab, count_unknown=True)
    assert counted[0, 0].item() == 2.0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("sparse", [False, True])
def test_cosine_similarity_keeps_the_dtype(dtype, sparse):
    from sklearn.metrics.pairwise import cosine_similarity as sk_cosine

    g = torch.Generator().manual_seed(1)
    a = torch.randn(6, 9, generator=g, dtype=torch.float64)
    b = torch.randn(3, 9, generator=g, dtype=torch.float64)
    x, y = a.to(dtype), b.to(dtype)
    ours = cosine_similarity(x.to_sparse() if sparse else x, y)
    assert ours.dtype == dtype
    if dtype == torch.float64:
        np.testing.assert_allclose(ours.numpy(), sk_cosine(a.numpy(), b.numpy()), rtol=1e-12)
    assert cosine_similarity(a.half()).dtype == torch.float32


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, error, match", [
    (lambda c: count_vectors(DOCS, "vocab"), TypeError, "vocab"),
    (lambda c: count_vectors([], VOCAB), ValueError, "documents"),
    (lambda c: count_vectors("one doc", VOCAB), TypeError, "documents"),
    (lambda c: count_vectors(DOCS, VOCAB, sparse=1), TypeError, "sparse"),
    (lambda c: count_vectors(DOCS, Vocabulary(("a",)), count_unknown=True), ValueError,
     "count_unknown"),
    (lambda c: inverse_document_frequency(c.long()), TypeError, "counts"),
    (lambda c: inverse_document_frequency([[1.0]]), TypeError, "counts"),
    (lambda c: inverse_document_frequency(c.clone().fill_(float("nan"))), ValueError, "counts"),
    (lambda c: inverse_document_frequency(-c), ValueError, "counts"),
    (lambda c: inverse_document_frequency(c[0]), ValueError, "counts"),
    (lambda c: inverse_document_frequency(c, smooth="yes"), TypeError, "smooth"),
    (lambda c: tfidf_vectors(c, torch.ones(c.shape[1], dtype=torch.long)), TypeError, "idf"),
    (lambda c: tfidf_vectors(c, torch.full((c.shape[1],), float("inf"))), ValueError, "idf"),
    (lambda c: tfidf_vectors(c, torch.ones(c.shape[1]), sublinear_tf=None), TypeError,
     "sublinear_tf"),
    (lambda c: cosine_similarity("a"), TypeError, "a"),
    (lambda c: cosine_similarity(c, c.long()), TypeError, "b"),
    (lambda c: cosine_similarity(torch.zeros(2, 2, 2)), ValueError, "a"),
    (lambda c: cosine_similarity(torch.tensor([[float("nan"), 1.0]])), ValueError, "a"),
    (lambda c: top_k_similar(c[0], c, k=2.0), TypeError, "k"),
    (lambda c: top_k_similar(c[0], c, k=10**9), ValueError, "k"),
    (lambda c: top_k_similar(c[0], c[0], k=1), ValueError, "vectors"),
    (lambda c: top_k_similar(c[0], c, exclude_self=1), TypeError, "exclude_self"),
    # the parameter's own name, not cosine_similarity's a/b
    (lambda c: top_k_similar(c[0].clone().fill_(float("nan")), c), ValueError,
     "query: contains NaN"),
    (lambda c: top_k_similar(c[0], c.clone().fill_(float("inf"))), ValueError,
     "vectors: contains NaN"),
    (lambda c: top_k_similar(c[0].to("meta"), c), ValueError,
     "query, vectors: expected tensors on one device"),
    (lambda c: top_k_similar(c[0, :2], c), ValueError, "query: expected vectors of width"),
    (lambda c: top_k_similar(c[0], c[:0]), ValueError, "vectors: expected at least one vector"),
    (lambda c: inverse_document_frequency(c[:0]), ValueError, "counts: expected at least one"),
    (lambda c: count_vectors(DOCS, VOCAB, device="tpu"), ValueError, "device: expected a device"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=f"^{match}"):
        call(count_vectors(DOCS, VOCAB))


VOCAB = Vocabulary.from_documents(DOCS)
