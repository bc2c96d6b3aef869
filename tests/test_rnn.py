"""Tests of lmlab.rnn against torch.nn.GRU/LSTM, g2p_en's own NumPy code and exhaustive search."""

from __future__ import annotations

import ast
import importlib.util
import itertools
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lmlab import rnn
from lmlab.device import seed_everything
from lmlab.progress import set_progress

set_progress(False)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: one thread is as fast, and does not fight other processes for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

WORDS = ["attention", "spelling", "pronunciation", "onomatopoeia", "xylophone", "a", "qwrtzp",
         "internationalization", "mississippi", "zzz", "through", "antidisestablishmentarianism"]


# --------------------------------------------------------------------------- cells vs torch


@pytest.mark.parametrize("kind", ["gru", "lstm"])
@pytest.mark.parametrize("B,T,E,C", [(1, 1, 3, 2), (4, 7, 5, 8), (2, 12, 16, 32)])
@pytest.mark.parametrize("with_state", [False, True])
def test_unroll_matches_torch(kind: str, B: int, T: int, E: int, C: int, with_state: bool) -> None:
    seed_everything(0)
    layer = (nn.GRU if kind == "gru" else nn.LSTM)(E, C, batch_first=True)
    x = torch.randn(B, T, E)
    state = None
    if with_state:
        state = torch.randn(1, B, C) if kind == "gru" else (torch.randn(1, B, C), torch.randn(1, B, C))
    ref_out, ref_state = layer(x, state)
    out, final = rnn.unroll(layer, x, state)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    if kind == "gru":
        torch.testing.assert_close(final, ref_state, rtol=1e-5, atol=1e-5)
    else:
        for a, b in zip(final, ref_state):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_gru_cell_matches_torch_grucell() -> None:
    seed_everything(1)
    cell = nn.GRUCell(6, 4)
    x, h = torch.randn(3, 6), torch.randn(3, 4)
    ours = rnn.gru_cell(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    torch.testing.assert_close(ours, cell(x, h))


def test_lstm_cell_matches_torch_lstmcell() -> None:
    seed_everything(2)
    cell = nn.LSTMCell(6, 4)
    x, h, c = torch.randn(3, 6), torch.randn(3, 4), torch.randn(3, 4)
    ours = rnn.lstm_cell(x, (h, c), cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    for a, b in zip(ours, cell(x, (h, c))):
        torch.testing.assert_close(a, b)


def test_unroll_rejects_bad_layers() -> None:
    with pytest.raises(ValueError, match="rnn:"):
        rnn.unroll(nn.GRU(3, 4, num_layers=2, batch_first=True), torch.zeros(1, 2, 3))
    with pytest.raises(TypeError, match="rnn:"):
        rnn.unroll(nn.Linear(3, 4), torch.zeros(1, 2, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x:"):
        rnn.unroll(nn.GRU(3, 4, batch_first=True), torch.zeros(1, 2, 5))


# --------------------------------------------------------------------------- data


def test_vocab_encode_decode() -> None:
    src, tgt = rnn.Vocab(rnn.GRAPHEMES), rnn.Vocab(rnn.PHONEMES)
    assert src.encode("cab", eos=True) == [5, 3, 4, 2]
    ids = tgt.encode(["K", "AE1", "B"], bos=True, eos=True)
    assert ids[0] == tgt.bos_id and ids[-1] == tgt.eos_id
    assert tgt.decode(ids + [0, 0]) == ("K", "AE1", "B")
    with pytest.raises(ValueError, match="empty"):
        src.encode("")
    with pytest.raises(ValueError, match=r"unknown symbol\(s\) \['1', '\?'\]"):
        src.encode("a1?")
    with pytest.raises(ValueError, match="bos"):
        src.encode("a", bos=True)


def test_cmudict_splits_deterministic_and_disjoint() -> None:
    a, b = rnn.cmudict_splits(), rnn.cmudict_splits()
    assert a == b
    words = {k: {w for w, _ in v} for k, v in a.items()}
    assert not (words["train"] & words["test"]) and not (words["train"] & words["validation"])
    assert not (words["validation"] & words["test"])
    total = sum(len(v) for v in a.values())
    assert total > 110_000
    assert abs(len(a["test"]) / total - 0.1) < 0.001
    assert all(w.isalpha() and w.islower() for w in words["test"])
    assert rnn.cmudict_splits(seed=1)["test"] != a["test"]
    with pytest.raises(ValueError, match="test_fraction"):
        rnn.cmudict_splits(test_fraction=0.7)


def test_make_batch_frames_targets() -> None:
    batch = rnn.make_batch([("ab", ["EY1", "B"]), ("b", ["B"])])
    assert batch.src.tolist() == [[3, 4, 2], [4, 2, 0]]
    assert batch.src_lengths.tolist() == [3, 2]
    assert batch.tgt_in[:, 0].tolist() == [2, 2]  # <s>
    assert batch.tgt_out.tolist() == [[33, 22, 3], [22, 3, 0]]
    assert batch.tgt_in[0, 1:].tolist() == batch.tgt_out[0, :-1].tolist()  # shifted by one


# --------------------------------------------------------------------------- models


def _models() -> list[rnn.Seq2Seq]:
    out = []
    for cell, attention in [("gru", None), ("lstm", None), ("gru", "dot"), ("gru", "scaled_dot"),
                            ("lstm", "additive"), ("gru", "additive")]:
        seed_everything(0)
        out.append(rnn.Seq2Seq(rnn.Seq2SeqConfig(embedding_dim=16, hidden_size=24, cell=cell,
                                                 attention=attention)).eval())
    return out


MODEL_IDS = ["gru", "lstm", "gru-dot", "gru-scaled_dot", "lstm-additive", "gru-additive"]


@pytest.mark.parametrize("index", range(6), ids=MODEL_IDS)
def test_padding_does_not_change_outputs(index: int) -> None:
    model = _models()[index]
    batch = rnn.make_batch([("internationalization", ["IH2", "N"]), ("ox", ["AA1", "K", "S"])])
    logits, weights = model(batch.src, batch.src_lengths, batch.tgt_in)
    alone = rnn.make_batch([("ox", ["AA1", "K", "S"])])
    logits1, weights1 = model(alone.src, alone.src_lengths, alone.tgt_in)
    torch.testing.assert_close(logits[1, :4], logits1[0], rtol=1e-5, atol=1e-5)
    if weights is not None:
        assert weights.shape == (2, 4, 21)
        assert torch.all(weights[1, :, 3:] == 0)  # padding gets zero weight
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4))
        torch.testing.assert_close(weights[1, :, :3], weights1[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("index", range(6), ids=MODEL_IDS)
def test_teacher_forced_loss_decreases(index: int) -> None:
    model = _models()[index]
    pairs = rnn.cmudict_splits()["train"][:32]
    batch = rnn.make_batch(pairs)
    before = model.loss(batch).item()
    losses = rnn.train_seq2seq(model, pairs, steps=30, batch_size=32, lr=1e-2, device="cpu")
    after = model.loss(batch).item()
    assert after < 0.75 * before
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("index", range(6), ids=MODEL_IDS)
def test_beam_one_equals_greedy(index: int) -> None:
    model = _models()[index]
    src, lengths = rnn.encode_words(WORDS)
    greedy, _ = model.greedy_decode(src, lengths, max_len=12)
    assert model.beam_search(src, lengths, beam_size=1, max_len=12) == greedy


def test_beam_one_equals_greedy_on_trained_g2p() -> None:
    model = rnn.load_g2p_en()
    assert rnn.transcribe(model, WORDS, beam_size=1) == [
        tuple(rnn.Vocab(rnn.PHONEMES).decode(s))
        for s in model.beam_search(*rnn.encode_words(WORDS), beam_size=1)]


def _sequence_logprob(model: rnn.Seq2Seq, src: torch.Tensor, lengths: torch.Tensor,
                      seq: list[int], finished: bool) -> float:
    cfg = model.config
    tgt_in = torch.tensor([[cfg.bos_id, *seq]])
    target = seq + [cfg.eos_id]
    logits, _ = model(src, lengths, tgt_in)
    logp = torch.log_softmax(logits[0], -1)
    steps = len(target) if finished else len(seq)
    return float(sum(logp[t, target[t]] for t in range(steps)))


@pytest.mark.parametrize("attention", [None, "additive"])
def test_wide_beam_is_exhaustive_search(attention: str | None) -> None:
    seed_everything(3)
    V, max_len = 5, 3
    model = rnn.Seq2Seq(rnn.Seq2SeqConfig(src_vocab_size=7, tgt_vocab_size=V, embedding_dim=4,
                                          hidden_size=6, attention=attention, bos_id=1,
                                          eos_id=2)).eval()
    with torch.no_grad():
        model.decoder.out.bias.copy_(torch.tensor([0.0, 0.0, 0.5, 0.3, -0.2]))
    src, lengths = torch.tensor([[3, 4, 5, 6]]), torch.tensor([4])
    candidates = []
    symbols = [i for i in range(V) if i != 2]
    with torch.no_grad():
        for n in range(max_len + 1):
            for seq in itertools.product(symbols, repeat=n):
                finished = n < max_len
                candidates.append((_sequence_logprob(model, src, lengths, list(seq), finished), list(seq)))
    best = max(candidates)[1]
    assert model.beam_search(src, lengths, beam_size=V ** max_len, max_len=max_len) == [best]


def test_decoding_stops_at_eos_and_max_len() -> None:
    seed_everything(0)
    model = rnn.Seq2Seq(rnn.Seq2SeqConfig(embedding_dim=8, hidden_size=8, attention="dot")).eval()
    src, lengths = rnn.encode_words(["abc", "de"])
    with torch.no_grad():
        model.decoder.out.bias.zero_()
        model.decoder.out.bias[model.config.eos_id] = 100.0  # always </s>
    ids, weights = model.greedy_decode(src, lengths, max_len=5)
    assert ids == [[], []]
    assert [w.shape for w in weights] == [(1, 4), (1, 3)]
    assert model.beam_search(src, lengths, beam_size=3, max_len=5) == [[], []]
    with torch.no_grad():
        model.decoder.out.bias[model.config.eos_id] = -100.0  # never </s>
        model.decoder.out.bias[10] = 100.0  # always phoneme 10
    ids, _ = model.greedy_decode(src, lengths, max_len=5)
    assert ids == [[10] * 5, [10] * 5]
    assert model.beam_search(src, lengths, beam_size=3, max_len=5) == [[10] * 5, [10] * 5]


def test_bad_input_raises_clear_errors() -> None:
    model = _models()[2]
    src, lengths = rnn.encode_words(["abc", "de"])
    with pytest.raises(ValueError, match="max_len"):
        model.greedy_decode(src, lengths, max_len=0)
    with pytest.raises(ValueError, match="beam_size"):
        model.beam_search(src, lengths, beam_size=0)
    with pytest.raises(ValueError, match="max_len"):
        model.beam_search(src, lengths, max_len=0)
    with pytest.raises(ValueError, match="src_lengths: length 7 exceeds"):
        model.greedy_decode(src, torch.tensor([7, 3]))
    with pytest.raises(ValueError, match="src_lengths: expected one length per sequence"):
        model.greedy_decode(src, torch.tensor([4, 3, 2]))
    with pytest.raises(ValueError, match="src_lengths: every sequence"):
        model.greedy_decode(src, torch.tensor([4, 0]))
    with pytest.raises(ValueError, match="empty"):
        rnn.transcribe(model, [""])
    with pytest.raises(ValueError, match="unknown symbol"):
        rnn.transcribe(model, ["héllo"])
    with pytest.raises(ValueError, match="words"):
        rnn.encode_words([])
    with pytest.raises(TypeError, match="words"):
        rnn.transcribe(model, "hello")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cell"):
        rnn.Seq2SeqConfig(cell="rnn")
    with pytest.raises(ValueError, match="attention"):
        rnn.Seq2SeqConfig(attention="cosine")
    with pytest.raises(ValueError, match="hidden_size"):
        rnn.Seq2SeqConfig(hidden_size=0)
    with pytest.raises(ValueError, match="steps"):
        rnn.train_seq2seq(model, [("a", ("EY1",))], steps=0)


# --------------------------------------------------------------------------- metrics


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("ABCD"), max_size=8), st.lists(st.sampled_from("ABCD"), max_size=8))
def test_edit_distance_matches_nltk(a: list[str], b: list[str]) -> None:
    from nltk.metrics.distance import edit_distance as nltk_edit_distance

    assert rnn.edit_distance(a, b) == nltk_edit_distance(a, b)


def test_evaluate_counts_exact_words_and_errors() -> None:
    model = rnn.load_g2p_en()
    pairs = [("cat", ("K", "AE1", "T")), ("internationalization", ("X",))]
    scores = rnn.evaluate(model, pairs)
    hyp = scores["predictions"][1]
    assert scores["predictions"][0] == ("K", "AE1", "T")
    assert scores["word_accuracy"] == 0.5 and scores["long_word_accuracy"] == 0.0
    assert scores["per"] == pytest.approx(len(hyp) / 4)  # 'X' is never right: len(hyp) edits
    assert scores["by_length"][3] == {"n": 1, "word_accuracy": 1.0, "per": 0.0}


# --------------------------------------------------------------------------- g2p_en reference


def _g2p_reference() -> object:
    """g2p_en's own G2p class, built from its source without the NLTK imports and downloads.

    Only the NumPy parts are kept: the symbol tables of ``__init__``, ``load_variables``,
    ``sigmoid``, ``grucell``, ``gru``, ``encode`` and ``predict``, executed as written there.
    """
    spec = importlib.util.find_spec("g2p_en")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    with warnings.catch_warnings():  # g2p.py has an invalid escape sequence in a regex
        warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
        tree = ast.parse((folder / "g2p.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "G2p")
    keep = {"load_variables", "sigmoid", "grucell", "gru", "encode", "predict"}
    body = []
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            node.body = [s for s in node.body if "cmudict" not in ast.unparse(s)
                         and "homograph" not in ast.unparse(s)]
            body.append(node)
        elif isinstance(node, ast.FunctionDef) and node.name in keep:
            body.append(node)
    cls.body = body
    module = ast.Module(body=[cls], type_ignores=[])
    namespace = {"np": np, "os": os, "dirname": str(folder)}
    exec(compile(ast.fix_missing_locations(module), str(folder / "g2p.py"), "exec"), namespace)
    return namespace["G2p"]()


def test_g2p_en_checkpoint_reproduces_its_own_predictions() -> None:
    reference = _g2p_reference()
    words = WORDS + [w for w, _ in rnn.cmudict_splits()["test"][::400]]
    expected = [tuple(reference.predict(w)) for w in words]  # type: ignore[attr-defined]
    model = rnn.load_g2p_en()
    assert rnn.transcribe(model, words, max_len=20) == expected
    assert "g2p_en.g2p" not in sys.modules


def test_g2p_en_logits_match_numpy() -> None:
    reference = _g2p_reference()
    word = "pronunciation"
    enc = reference.encode(word)  # type: ignore[attr-defined]
    states = reference.gru(enc, len(word) + 1, reference.enc_w_ih, reference.enc_w_hh,  # type: ignore[attr-defined]
                           reference.enc_b_ih, reference.enc_b_hh)  # type: ignore[attr-defined]
    model = rnn.load_g2p_en()
    src, lengths = rnn.encode_words([word])
    memory, state, _ = model.encode(src, lengths)
    np.testing.assert_allclose(memory[0].detach().numpy(), states[0], rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- devices


@pytest.mark.gpu
def test_seq2seq_on_gpu_matches_cpu(gpu_device: torch.device) -> None:
    model = _models()[5]
    batch = rnn.make_batch(rnn.cmudict_splits()["test"][:16])
    cpu_logits, cpu_w = model(batch.src, batch.src_lengths, batch.tgt_in)
    model.to(gpu_device)
    gpu_batch = batch.to(gpu_device)
    logits, w = model(gpu_batch.src, gpu_batch.src_lengths, gpu_batch.tgt_in)
    torch.testing.assert_close(logits.cpu(), cpu_logits, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(w.cpu(), cpu_w, rtol=1e-3, atol=1e-3)
    src, lengths = rnn.encode_words(WORDS)
    model.cpu()
    cpu_ids, _ = model.greedy_decode(src, lengths)
    model.to(gpu_device)
    gpu_ids, _ = model.greedy_decode(src.to(gpu_device), lengths.to(gpu_device))
    assert gpu_ids == cpu_ids


# --------------------------------------------------------------------------- checkpoints, script


@pytest.mark.parametrize("attention", [None, "additive"])
def test_checkpoint_round_trip(tmp_path: Path, attention: str | None) -> None:
    seed_everything(0)
    model = rnn.Seq2Seq(rnn.Seq2SeqConfig(embedding_dim=8, hidden_size=16, attention=attention)).eval()
    rnn.save_checkpoint(model, tmp_path / "m.safetensors", {"steps": 3}, half=False)
    loaded, meta = rnn.load_checkpoint(tmp_path / "m.safetensors")
    assert loaded.config == model.config and meta == {"steps": 3}
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    rnn.save_checkpoint(model, tmp_path / "h.safetensors")  # float16 on disk, float32 in memory
    half, _ = rnn.load_checkpoint(tmp_path / "h.safetensors")
    src, lengths = rnn.encode_words(WORDS)
    assert half.encoder.embedding.weight.dtype == torch.float32
    torch.testing.assert_close(half(src, lengths, src[:, :3])[0], model(src, lengths, src[:, :3])[0],
                               rtol=0, atol=2e-2)


def test_training_script_writes_loadable_checkpoints(tmp_path: Path) -> None:
    path = Path(__file__).resolve().parent.parent / "scripts" / "train_rnn_attention.py"
    spec = importlib.util.spec_from_file_location("train_rnn_attention", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    paths = script.main(["--steps", "4", "--batch-size", "8", "--hidden-size", "16",
                         "--log-every", "2", "--device", "cpu", "--out", str(tmp_path)])
    assert [p.name for p in paths] == ["g2p_rnn.safetensors", "g2p_attention.safetensors"]
    budgets = []
    for p in paths:
        model, meta = rnn.load_checkpoint(p)
        assert model.config.hidden_size == 16 and len(meta["loss_curve"]) == 2
        budgets.append({k: meta[k] for k in ("steps", "batch_size", "lr", "seed")})
        assert rnn.transcribe(model, ["cat"], max_len=3)[0] is not None
    assert budgets[0] == budgets[1] == {"steps": 4, "batch_size": 8, "lr": 3e-3, "seed": 0}
    assert rnn.load_checkpoint(paths[1])[0].config.attention == "scaled_dot"
    again = script.main(["--model", "attention", "--steps", "4", "--batch-size", "8",
                         "--hidden-size", "16", "--log-every", "2", "--device", "cpu",
                         "--threads", "1", "--out", str(tmp_path / "again")])
    first, second = rnn.load_checkpoint(paths[1])[0], rnn.load_checkpoint(again[0])[0]
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name  # the same command gives the same checkpoint
    with pytest.raises(ValueError, match="path"):
        from lmlab.io import save_tensors

        save_tensors({"x": torch.zeros(1)}, tmp_path / "bare.safetensors")
        rnn.load_checkpoint(tmp_path / "bare.safetensors")
