"""Tests for lmlab.word2vec: against gensim, scipy, autograd and plain-Python references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab import data
from lmlab.device import seed_everything
from lmlab.skipgram import keep_probabilities
from lmlab.vectors import WordVectors
from lmlab.word2vec import (
    SkipGramNegativeSampling, TrainingHistory, Word2VecConfig, sgns_loss, train_word2vec,
)

gensim = pytest.importorskip("gensim")
from gensim.models import Word2Vec  # noqa: E402


def _sotu_sentences(n: int) -> list[str]:
    return data.load_sentences("sotu")[:n]


@pytest.fixture(scope="module")
def small_corpus() -> list[str]:
    return _sotu_sentences(3000)


# --------------------------------------------------------------------------- the model


@pytest.mark.parametrize("B, K, C", [(1, 1, 3), (7, 5, 16), (32, 15, 100)])
def test_sgns_loss_is_binary_cross_entropy(B: int, K: int, C: int) -> None:
    g = seed_everything(B)
    v, u, n = (torch.randn(B, C, generator=g), torch.randn(B, C, generator=g),
               torch.randn(B, K, C, generator=g))
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


@pytest.mark.parametrize("V, B, M, K, C", [(5, 3, 2, 1, 4), (50, 16, 6, 5, 8), (200, 64, 10, 15, 32)])
def test_model_forward_is_sgns_loss_over_pairs(V: int, B: int, M: int, K: int, C: int) -> None:
    model = SkipGramNegativeSampling(V, C, generator=torch.Generator().manual_seed(0))
    torch.nn.init.normal_(model.output.weight)
    center, context, negatives = _batch(V, B, M, K, seed=1)
    pairs = [(b, int(o)) for b in range(B) for o in context[b] if o >= 0]
    rows = torch.tensor([b for b, _ in pairs])
    contexts = torch.tensor([o for _, o in pairs])
    torch.nn.init.normal_(model.input.weight)
    expected = sgns_loss(model.input.weight[contexts], model.output.weight[center[rows]],
                         model.output.weight[negatives[rows]]).mean()
    torch.testing.assert_close(model(center, context, negatives), expected)


@pytest.mark.parametrize("V, B, M, K, C", [(5, 3, 2, 1, 4), (50, 16, 6, 5, 8), (200, 64, 10, 15, 32)])
def test_sgd_step_equals_autograd_step(V: int, B: int, M: int, K: int, C: int) -> None:
    model = SkipGramNegativeSampling(V, C, generator=torch.Generator().manual_seed(0))
    torch.nn.init.normal_(model.output.weight, std=0.3)
    reference = SkipGramNegativeSampling(V, C)
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


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 8), min_size=1, max_size=40), st.integers(1, 4),
       st.integers(1, 20), st.integers(0, 2**16))
def test_batches_by_width_train_every_window_once_without_cutting_a_context(
        sentence_lengths: list[int], window: int, size: int, seed: int) -> None:
    from lmlab.skipgram import skipgram_windows
    from lmlab.word2vec import _batches_by_width
    sents = torch.repeat_interleave(torch.arange(len(sentence_lengths)),
                                    torch.tensor(sentence_lengths))
    ids = torch.arange(sents.shape[0])  # each id is its position: windows are distinct
    gen = torch.Generator().manual_seed(seed)
    center, context = skipgram_windows(ids, sents, window, generator=gen)
    before = {(int(c), tuple(o.tolist())) for c, o in zip(center, context)}
    c2, o2, batches = _batches_by_width(center, context, size, gen)
    seen = []
    for b, e, width in batches:
        assert 0 < e - b <= size and 1 <= width <= 2 * window
        assert (o2[b:e, width:] == -1).all()  # no real context beyond the batch's width
        assert (o2[b:e, :width] >= 0).any(dim=0).all()  # and no column that is pads only
        seen.extend(range(b, e))
    assert sorted(seen) == list(range(center.shape[0]))
    assert {(int(c), tuple(o.tolist())) for c, o in zip(c2, o2)} == before


def test_initialisation_is_word2vec_s() -> None:
    model = SkipGramNegativeSampling(100, 10, generator=torch.Generator().manual_seed(0))
    assert model.input.weight.abs().max() <= 0.5 / 10
    assert torch.count_nonzero(model.output.weight) == 0


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained(small_corpus: list[str]) -> tuple[WordVectors, object]:
    config = Word2VecConfig(d_model=32, min_count=3, epochs=3, batch_size=256, chunk_words=8192, seed=0)
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
    config = Word2VecConfig(d_model=8, min_count=5, epochs=1, seed=3)
    a, _ = train_word2vec(small_corpus[:500], config, device="cpu", show_progress=False)
    b, _ = train_word2vec(small_corpus[:500], config, device="cpu", show_progress=False)
    assert torch.equal(a.vectors, b.vectors)


def test_two_workers_train_and_restore_threads(small_corpus: list[str]) -> None:
    before = torch.get_num_threads()
    config = Word2VecConfig(d_model=8, min_count=5, epochs=2, workers=2, chunk_words=2048)
    vectors, history = train_word2vec(small_corpus[:1000], config, device="cpu", show_progress=False)
    assert torch.get_num_threads() == before
    assert torch.isfinite(vectors.vectors).all() and history.effective_words > 0


# --------------------------------------------------------------------------- GPU


@pytest.mark.gpu
def test_training_on_gpu_gives_finite_loss_and_vectors(gpu_device: torch.device, small_corpus: list[str]) -> None:
    config = Word2VecConfig(d_model=16, min_count=3, epochs=1, batch_size=256, chunk_words=4096)
    vectors, history = train_word2vec(small_corpus[:1500], config, device=gpu_device,
                                      show_progress=False, record_every=2)
    assert history.loss and all(math.isfinite(x) for x in history.loss)
    assert vectors.vectors.device.type == "cpu" and torch.isfinite(vectors.vectors).all()
    model = SkipGramNegativeSampling(50, 8).to(gpu_device)
    center, context, negatives = (t.to(gpu_device) for t in _batch(50, 16, 6, 5, seed=0))
    loss = model.sgd_step(center, context, negatives, 0.025)
    assert loss.device.type == gpu_device.type and math.isfinite(loss.item())
    assert model.input.weight.device.type == gpu_device.type


# --------------------------------------------------------------------------- process-wide settings


def test_one_worker_leaves_the_thread_count_alone(monkeypatch, small_corpus: list[str]) -> None:
    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    train_word2vec(small_corpus[:300], Word2VecConfig.tiny(), device="cpu", show_progress=False)
    assert calls == []


def test_thread_count_is_restored_when_workers_fail(monkeypatch, small_corpus: list[str]) -> None:
    before = torch.get_num_threads()

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a worker failed")

    monkeypatch.setattr(SkipGramNegativeSampling, "_step", broken)
    config = Word2VecConfig(d_model=8, min_count=1, workers=2, chunk_words=512)
    with pytest.raises(RuntimeError, match="a worker failed"):
        train_word2vec(small_corpus[:300], config, device="cpu", show_progress=False)
    assert torch.get_num_threads() == before


# --------------------------------------------------------------------------- presets


def test_presets_are_valid_and_ordered_by_size() -> None:
    tiny, small, base = Word2VecConfig.tiny(), Word2VecConfig.small(), Word2VecConfig.base()
    assert tiny.d_model < small.d_model < base.d_model
    assert base.epochs == 3 and small.epochs == 1
    gensim_defaults = Word2Vec(sg=1)  # base() is gensim's skip-gram with three epochs
    assert (base.d_model, base.window, base.negatives, base.min_count, base.sample, base.lr,
            base.min_lr, base.ns_exponent) == (
        gensim_defaults.vector_size, gensim_defaults.window, gensim_defaults.negative,
        gensim_defaults.min_count, gensim_defaults.sample, gensim_defaults.alpha,
        gensim_defaults.min_alpha, gensim_defaults.ns_exponent)


# --------------------------------------------------------------------------- the training script




def test_training_script_is_deterministic_and_trains(tmp_path, monkeypatch,
                                                    load_script) -> None:
    import json
    from lmlab.progress import set_progress
    threads = torch.get_num_threads()
    set_progress(False)
    try:
        script = load_script("scripts/train_word2vec.py")
        argv = ["--sentences", "1500", "--epochs", "2", "--d-model", "16", "--record-every", "4"]
        first = script.main([*argv, "--out", str(tmp_path / "a")])
        second = script.main([*argv, "--out", str(tmp_path / "b")])
    finally:
        set_progress(None)
        torch.set_num_threads(threads)  # the script sets one thread for its process
    assert [p.name for p in first] == [p.name for p in second] == [
        "word2vec_sotu.safetensors", "word2vec_pieces.safetensors", "word2vec_gensim.safetensors"]
    for a, b in zip(first, second):
        va, vb = WordVectors.load(a), WordVectors.load(b)
        assert va.words == vb.words and torch.equal(va.counts, vb.counts)
        assert torch.equal(va.vectors, vb.vectors), f"{a.name} differs between identical runs"
        assert va.metadata == vb.metadata
        assert va.d_model == 16 and json.loads(va.metadata["config"])
    words, pieces, gensim_vectors = (WordVectors.load(p) for p in first)
    assert set(words.words) == set(gensim_vectors.words)  # one vocabulary for both trainers
    assert any(w.startswith("##") for w in pieces.words)
    for trained in (words, pieces):
        history = TrainingHistory(**json.loads(trained.metadata["history"]))
        assert len(history.loss) >= 4
        first_loss, last_loss = np.mean(history.loss[:2]), np.mean(history.loss[-2:])
        assert last_loss < 0.9 * first_loss  # it trains
    assert json.loads(gensim_vectors.metadata["history"])["effective_words"] > 0


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("field, value, error", [
    ("d_model", 0, ValueError), ("d_model", 10**9, ValueError), ("d_model", 2.0, TypeError),
    ("window", 0, ValueError), ("window", 10**6, ValueError), ("window", "5", TypeError),
    ("negatives", 0, ValueError), ("negatives", 10**6, ValueError), ("negatives", None, TypeError),
    ("min_count", 0, ValueError), ("min_count", True, TypeError),
    ("epochs", 0, ValueError), ("epochs", 1.5, TypeError),
    ("batch_size", -1, ValueError), ("chunk_words", 0, ValueError),
    ("workers", 0, ValueError), ("workers", 10**6, ValueError),
    ("seed", -1, ValueError), ("seed", 0.5, TypeError),
    ("sample", -0.1, ValueError), ("sample", math.nan, ValueError), ("sample", math.inf, ValueError),
    ("sample", "1e-3", TypeError),
    ("ns_exponent", math.nan, ValueError), ("ns_exponent", -math.inf, ValueError),
    ("lr", 0.0, ValueError), ("lr", -0.1, ValueError), ("lr", math.nan, ValueError),
    ("lr", math.inf, ValueError), ("lr", None, TypeError),
    ("min_lr", -1e-4, ValueError), ("min_lr", 0.5, ValueError), ("min_lr", math.nan, ValueError),
])
def test_config_rejects_bad_values(field: str, value: object, error: type) -> None:
    with pytest.raises(error, match=f"^{field}"):
        Word2VecConfig(**{field: value})


def test_nan_sample_no_longer_trains_on_no_words() -> None:
    with pytest.raises(ValueError, match="sample: expected a finite number"):
        Word2VecConfig(sample=math.nan)
    with pytest.raises(ValueError, match="sample"):
        keep_probabilities(torch.tensor([5, 3]), math.nan)


def test_training_rejects_bad_input_before_any_work(monkeypatch) -> None:
    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("training started")

    monkeypatch.setattr(SkipGramNegativeSampling, "_step", no_training)
    tiny = Word2VecConfig.tiny()
    cases = [
        (lambda: train_word2vec([], tiny, device="cpu"), ValueError, "sentences"),
        (lambda: train_word2vec(["", "  ..."], tiny, device="cpu"), ValueError, "sentences"),
        (lambda: train_word2vec("one two three", tiny, device="cpu"), TypeError, "sentences"),
        (lambda: train_word2vec(42, tiny, device="cpu"), TypeError, "sentences"),
        (lambda: train_word2vec([["a", 1]], tiny, device="cpu"), TypeError, r"sentences\[0\]"),
        (lambda: train_word2vec([None], tiny, device="cpu"), TypeError, r"sentences\[0\]"),
        (lambda: train_word2vec([["a", ""]], tiny, device="cpu"), ValueError, "sentences"),
        (lambda: train_word2vec(["one two three"], Word2VecConfig(min_count=2), device="cpu"),
         ValueError, "min_count"),
        (lambda: train_word2vec(["a b"], {"d_model": 8}, device="cpu"), TypeError, "config"),
        (lambda: train_word2vec(["a b"], tiny, device="cpu", record_every=0), ValueError,
         "record_every"),
        (lambda: train_word2vec(["a b"], tiny, device="cpu", show_progress="yes"), TypeError,
         "show_progress"),
        (lambda: train_word2vec(["a b"], tiny, device="tpu"), ValueError, "^device: expected"),
        (lambda: train_word2vec(["a b"], tiny, device="meta"), ValueError,
         "^device: expected 'cpu', 'cuda' or 'mps'"),
        (lambda: train_word2vec(["a b"], tiny, device=3), TypeError, "^device: expected a str"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


def test_model_rejects_bad_input() -> None:
    model = SkipGramNegativeSampling(10, 4, generator=torch.Generator().manual_seed(0))
    center, context, negatives = _batch(10, 3, 2, 2, seed=0)
    v = torch.zeros(3, 4)
    cases = [
        (lambda: SkipGramNegativeSampling(0, 4), ValueError, "vocab_size"),
        (lambda: SkipGramNegativeSampling(10, 0), ValueError, "d_model"),
        (lambda: SkipGramNegativeSampling(10, 10**9), ValueError, "d_model"),
        (lambda: SkipGramNegativeSampling(10.0, 4), TypeError, "vocab_size"),
        (lambda: SkipGramNegativeSampling(10, 4, generator=0), TypeError, "generator"),
        (lambda: model(center.float(), context, negatives), TypeError, "center"),
        (lambda: model(center, context[0], negatives), ValueError, "context"),
        (lambda: model(center[:2], context, negatives), ValueError, "center, context"),
        (lambda: model(center + 10, context, negatives), ValueError, "center"),
        (lambda: model(center, context - 5, negatives), ValueError, "context"),
        (lambda: model(center, context, -negatives - 1), ValueError, "negatives"),
        (lambda: model(center.to("meta"), context, negatives), ValueError, "center"),
        (lambda: model.sgd_step(center, context, negatives, lr=0.0), ValueError, "lr"),
        (lambda: model.sgd_step(center, context, negatives, lr=math.nan), ValueError, "lr"),
        (lambda: model.sgd_step(center, context, negatives, lr="0.1"), TypeError, "lr"),
        (lambda: model.sgd_step(center, context + 10, negatives, lr=0.1), ValueError, "context"),
        (lambda: sgns_loss(v, v, torch.zeros(3, 2, 5)), ValueError, "negative_vecs"),
        (lambda: sgns_loss(v, v[:2], torch.zeros(3, 2, 4)), ValueError, "target_vecs"),
        (lambda: sgns_loss(v.long(), v, torch.zeros(3, 2, 4)), TypeError, "input_vecs"),
        (lambda: sgns_loss(v, v, torch.zeros(3, 4)), ValueError, "negative_vecs"),
        (lambda: sgns_loss(v, v.to("meta"), torch.zeros(3, 2, 4)), ValueError, "device"),
        # mixed dtypes: a raw "expected scalar type Float but found Double" before
        (lambda: sgns_loss(v.double(), v, torch.zeros(3, 2, 4)), TypeError,
         "^input_vecs, target_vecs, negative_vecs: expected one dtype"),
        (lambda: sgns_loss(v, v.half(), torch.zeros(3, 2, 4)), TypeError, "expected one dtype"),
        (lambda: model(center, context, negatives + 10), ValueError,
         r"^negatives: expected ids in \[0, 10\), got values from"),
        (lambda: model(center, context - 5, negatives), ValueError,
         r"^context: expected ids in \[-1, 10\)"),
        (lambda: SkipGramNegativeSampling(10, 4).to("meta")(center.to("meta"),
                                                            context.to("meta"),
                                                            negatives.to("meta")),
         ValueError, "^center: expected a tensor with values, got a meta tensor"),
    ]
    before = model.input.weight.detach().clone()
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
    assert torch.equal(model.input.weight, before)  # no step was taken


def test_training_history_checks_its_fields() -> None:
    assert TrainingHistory([10], [0.5], [0.02], 10, 8, 30).pairs == 30
    assert math.isnan(TrainingHistory([1], [math.nan], [0.1]).loss[0])  # a diverged run
    cases = [
        (dict(words="abc"), TypeError, "^words: expected a list"),
        (dict(words=3), TypeError, "^words: expected a list"),
        (dict(words=[1], loss=[0.5]), ValueError, "^words, loss, lr: expected one entry each"),
        (dict(words=[-1], loss=[0.5], lr=[0.1]), ValueError, r"^words\[0\]"),
        (dict(words=[1], loss=["x"], lr=[0.1]), TypeError, r"^loss\[0\]"),
        (dict(words=[1], loss=[0.5], lr=[-0.1]), ValueError, r"^lr\[0\]"),
        (dict(raw_words=-1), ValueError, "^raw_words"),
        (dict(raw_words=2.0), TypeError, "^raw_words"),
        (dict(pairs=True), TypeError, "^pairs"),
        (dict(effective_words=None), TypeError, "^effective_words"),
    ]
    for fields, error, message in cases:
        with pytest.raises(error, match=message):
            TrainingHistory(**fields)


def test_model_forward_compiles_without_graph_break() -> None:
    model = SkipGramNegativeSampling(10, 4, generator=torch.Generator().manual_seed(0))
    center = torch.tensor([1, 2])
    negatives = torch.tensor([[3, 4], [5, 6]])
    # the checks compile without a graph break (forward itself selects the pairs with a
    # boolean mask, whose size depends on the data)
    compiled = torch.compile(model._check_batch, backend="eager", fullgraph=True)
    compiled(center, torch.tensor([[2, -1], [1, 3]]), negatives)
    with pytest.raises(RuntimeError, match=r"context: expected ids in \[-1, 10\)"):
        compiled(center, torch.tensor([[2, -2], [1, 3]]), negatives)
    torch._dynamo.reset()
