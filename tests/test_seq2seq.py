"""Tests of lmlab.seq2seq: padding, teacher forcing, greedy = beam 1, beam = exhaustive search,
checkpoints and the training script."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from lmlab import batching, g2p, seq2seq
from lmlab.vocab import Vocabulary
from lmlab.device import seed_everything
from lmlab.model_files import read_model_file, write_model_file
from lmlab.progress import set_progress
from lmlab.seq2seq import Seq2Seq, Seq2SeqConfig

set_progress(False)
pytestmark = pytest.mark.usefixtures("one_thread")

SRC, TGT = g2p.GRAPHEME_VOCAB, g2p.PHONEME_VOCAB
WORDS = ["attention", "spelling", "pronunciation", "onomatopoeia", "xylophone", "a", "qwrtzp",
         "internationalization", "mississippi", "zzz", "through", "antidisestablishmentarianism"]


def _models() -> list[Seq2Seq]:
    out = []
    for cell, attention in [("gru", None), ("lstm", None), ("gru", "dot"), ("gru", "scaled_dot"),
                            ("lstm", "additive"), ("gru", "additive")]:
        seed_everything(0)
        out.append(Seq2Seq(Seq2SeqConfig.tiny(SRC, TGT, cell=cell, attention=attention)).eval())
    return out


MODEL_IDS = ["gru", "lstm", "gru-dot", "gru-scaled_dot", "lstm-additive", "gru-additive"]


# --------------------------------------------------------------------------- config


def test_presets_and_special_ids_come_from_the_vocabularies() -> None:
    tgt = Vocabulary(("</s>", "<pad>", "x", "<s>"), pad_token="<pad>", bos_token="<s>",
                     eos_token="</s>")
    config = Seq2SeqConfig.small(SRC, tgt, attention="dot")
    assert (config.pad_id, config.bos_id, config.eos_id) == (1, 3, 0)
    assert (config.d_model, config.hidden_size, config.attention) == (64, 128, "dot")
    assert Seq2SeqConfig.base(SRC, TGT).hidden_size == 256
    assert Seq2SeqConfig.tiny(SRC, TGT).hidden_size == 24
    assert Seq2SeqConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    model = Seq2Seq(config)
    assert model.decoder.embedding.padding_idx == 1
    ids, _ = model.greedy_decode(*batching.encode_sources(["ab"], SRC), max_len=3)
    assert all(0 <= i < 4 for i in ids[0])


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize("index", range(6), ids=MODEL_IDS)
def test_padding_does_not_change_outputs(index: int) -> None:
    model = _models()[index]
    batch = batching.make_batch([("internationalization", ["IH2", "N"]), ("ox", ["AA1", "K", "S"])],
                               SRC, TGT)
    logits, weights = model(batch.src, batch.src_lengths, batch.tgt_in)
    alone = batching.make_batch([("ox", ["AA1", "K", "S"])], SRC, TGT)
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
    pairs = g2p.cmudict_splits()["train"][:32]
    batch = batching.make_batch(pairs, SRC, TGT)
    before = model.loss(batch).item()
    losses = seq2seq.train_seq2seq(model, pairs, steps=30, batch_size=32, lr=1e-2, device="cpu")
    after = model.loss(batch).item()
    assert after < 0.75 * before
    assert losses[-1] < losses[0]


def test_training_is_deterministic() -> None:
    pairs = g2p.cmudict_splits()["train"][:64]
    runs = []
    for _ in range(2):
        seed_everything(0)
        model = Seq2Seq(Seq2SeqConfig.tiny(SRC, TGT, attention="dot"))
        runs.append(seq2seq.train_seq2seq(model, pairs, steps=6, batch_size=16, device="cpu"))
    assert runs[0] == runs[1]


def test_loss_matches_torch_cross_entropy_by_hand() -> None:
    model = _models()[0]
    batch = batching.make_batch([("ab", ["EY1", "B"]), ("b", ["B"])], SRC, TGT)
    logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
    logp = torch.log_softmax(logits, -1)
    terms = [-logp[b, t, batch.tgt_out[b, t]] for b in range(2) for t in range(3)
             if batch.tgt_out[b, t] != 0]
    torch.testing.assert_close(model.loss(batch), torch.stack(terms).mean())


def test_negative_clip_is_refused_and_clipping_can_be_off() -> None:
    """Issue 8: clip=-1.0 used to flip the gradient (clip_grad_norm_ with a negative norm)."""
    model = _models()[0]
    pairs = g2p.cmudict_splits()["train"][:16]
    for clip in (-1.0, 0.0, float("nan")):
        with pytest.raises(ValueError, match="^clip"):
            seq2seq.train_seq2seq(model, pairs, steps=1, clip=clip, device="cpu")
    batch = batching.make_batch(pairs, SRC, TGT)
    before = model.loss(batch).item()
    seq2seq.train_seq2seq(model, pairs, steps=10, batch_size=16, lr=1e-2, clip=None, device="cpu")
    assert model.loss(batch).item() < before


@pytest.mark.parametrize("index", range(6), ids=MODEL_IDS)
def test_beam_one_equals_greedy(index: int) -> None:
    model = _models()[index]
    src, lengths = g2p.encode_words(WORDS)
    greedy, _ = model.greedy_decode(src, lengths, max_len=12)
    assert model.beam_search(src, lengths, beam_size=1, max_len=12) == greedy


def _sequence_logprob(model: Seq2Seq, src: torch.Tensor, lengths: torch.Tensor,
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
    src_vocab = Vocabulary(("<pad>", "</s>", "a", "b", "c", "d", "e"), pad_token="<pad>",
                           eos_token="</s>")
    tgt_vocab = Vocabulary(("<pad>", "<s>", "</s>", "X", "Y"), pad_token="<pad>",
                           bos_token="<s>", eos_token="</s>")
    model = Seq2Seq(Seq2SeqConfig(src_vocab, tgt_vocab, d_model=4, hidden_size=6,
                                  attention=attention)).eval()
    with torch.no_grad():
        model.decoder.out.bias.copy_(torch.tensor([0.0, 0.0, 0.5, 0.3, -0.2]))
    src, lengths = torch.tensor([[3, 4, 5, 6]]), torch.tensor([4])
    candidates = []
    symbols = [i for i in range(V) if i != 2]
    with torch.no_grad():
        for n in range(max_len + 1):
            for seq in itertools.product(symbols, repeat=n):
                finished = n < max_len
                candidates.append((_sequence_logprob(model, src, lengths, list(seq), finished),
                                   list(seq)))
    best = max(candidates)[1]
    assert model.beam_search(src, lengths, beam_size=V ** max_len, max_len=max_len) == [best]


def test_decoding_stops_at_eos_and_max_len() -> None:
    seed_everything(0)
    model = Seq2Seq(Seq2SeqConfig(SRC, TGT, d_model=8, hidden_size=8, attention="dot")).eval()
    src, lengths = g2p.encode_words(["abc", "de"])
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


# --------------------------------------------------------------------------- bad input


MODEL = _models()[2]
SRC_IDS, LENGTHS = g2p.encode_words(["abc", "de"])
PAIRS = [("a", ("EY1",))]


@pytest.mark.parametrize("call, error, match", [
    (lambda: Seq2SeqConfig(SRC, TGT, cell="rnn"), ValueError, "cell"),
    (lambda: Seq2SeqConfig(SRC, TGT, attention="cosine"), ValueError, "attention"),
    (lambda: Seq2SeqConfig(SRC, TGT, hidden_size=0), ValueError, "hidden_size"),
    (lambda: Seq2SeqConfig(SRC, TGT, d_model=2.5), TypeError, "d_model"),
    (lambda: Seq2SeqConfig(SRC.tokens, TGT), TypeError, "src_vocab"),
    (lambda: Seq2SeqConfig(SRC, SRC), ValueError, "tgt_vocab: the vocabulary needs bos_token"),
    (lambda: Seq2SeqConfig(SRC, Vocabulary(TGT.tokens, pad_token="<pad>", bos_token="</s>",
                                           eos_token="</s>")),
     ValueError, "tgt_vocab: bos_token and eos_token are both '</s>'"),
    (lambda: MODEL(SRC_IDS.to("meta"), LENGTHS, torch.ones(2, 2, dtype=torch.long)), ValueError,
     "src: a meta tensor"),
    (lambda: MODEL(SRC_IDS, LENGTHS, torch.ones(2, 2, dtype=torch.long, device="meta")),
     ValueError, "tgt_in: a meta tensor"),
    (lambda: MODEL.greedy_decode(SRC_IDS, LENGTHS.to("meta")), ValueError,
     "src_lengths: a meta tensor"),
    (lambda: seq2seq.train_seq2seq(MODEL, PAIRS, steps=1, device="tpu"), ValueError, "device"),
    (lambda: Seq2SeqConfig(Vocabulary(("a",)), TGT), ValueError, "src_vocab"),
    (lambda: Seq2SeqConfig.small(SRC, TGT, heads=2), TypeError, "changes"),
    (lambda: Seq2SeqConfig.from_dict({"src_vocab": SRC.to_dict()}), ValueError, "data"),
    (lambda: Seq2SeqConfig.from_dict({"x": 1}), ValueError, "data"),
    (lambda: Seq2Seq({"hidden_size": 8}), TypeError, "config"),
    (lambda: MODEL.greedy_decode(SRC_IDS, LENGTHS, max_len=0), ValueError, "max_len"),
    (lambda: MODEL.greedy_decode(SRC_IDS, LENGTHS, max_len=2.0), TypeError, "max_len"),
    (lambda: MODEL.beam_search(SRC_IDS, LENGTHS, beam_size=0), ValueError, "beam_size"),
    (lambda: MODEL.beam_search(SRC_IDS, LENGTHS, max_len=0), ValueError, "max_len"),
    (lambda: MODEL.greedy_decode(SRC_IDS, torch.tensor([7, 3])), ValueError,
     "src_lengths: length 7 exceeds"),
    (lambda: MODEL.greedy_decode(SRC_IDS, torch.tensor([4, 3, 2])), ValueError,
     "src_lengths: expected one length per sequence"),
    (lambda: MODEL.greedy_decode(SRC_IDS, torch.tensor([4, 0])), ValueError,
     "src_lengths: every sequence"),
    (lambda: MODEL.greedy_decode(SRC_IDS + 100, LENGTHS), ValueError, "src"),
    (lambda: MODEL(SRC_IDS, LENGTHS, torch.ones(3, 2, dtype=torch.long)), ValueError, "tgt_in"),
    (lambda: MODEL.loss((SRC_IDS, LENGTHS)), TypeError, "batch"),
    (lambda: seq2seq.train_seq2seq(MODEL, PAIRS, steps=0), ValueError, "steps"),
    (lambda: seq2seq.train_seq2seq(MODEL, PAIRS, steps=1, batch_size=-1), ValueError,
     "batch_size"),
    (lambda: seq2seq.train_seq2seq(MODEL, PAIRS, steps=1, lr=0.0), ValueError, "lr"),
    (lambda: seq2seq.train_seq2seq(MODEL, PAIRS, steps=1, lr=float("inf")), ValueError, "lr"),
    (lambda: seq2seq.train_seq2seq(MODEL, PAIRS, steps=1, seed=-1), ValueError, "seed"),
    (lambda: seq2seq.train_seq2seq(MODEL, [], steps=1), ValueError, "pairs"),
    (lambda: seq2seq.train_seq2seq(MODEL, [("a", "EY1")], steps=1), ValueError, r"pairs\[0\]"),
    (lambda: seq2seq.train_seq2seq("model", PAIRS, steps=1), TypeError, "model"),
    (lambda: seq2seq.train_seq2seq(MODEL, PAIRS, steps=1, warmup_steps=2), ValueError,
     "warmup_steps"),
])
def test_bad_input_names_the_parameter(call, error, match) -> None:
    with pytest.raises(error, match=f"^{match}"):
        call()


# --------------------------------------------------------------------------- checkpoints, script


@pytest.mark.parametrize("attention", [None, "additive"])
def test_model_file_round_trip(tmp_path: Path, attention: str | None) -> None:
    seed_everything(0)
    model = Seq2Seq(Seq2SeqConfig(SRC, TGT, d_model=8, hidden_size=16, attention=attention)).eval()
    model.save(tmp_path / "m.safetensors", {"steps": 3, "loss_curve": [2.5, 1.25]})
    loaded = Seq2Seq.load(tmp_path / "m.safetensors")
    assert loaded.config == model.config and not loaded.training
    assert read_model_file(tmp_path / "m.safetensors").metadata == {
        "steps": 3, "loss_curve": [2.5, 1.25]}
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    model.save(tmp_path / "h.safetensors", dtype=torch.float16)  # float16 on disk
    half = Seq2Seq.load(tmp_path / "h.safetensors")  # float32 in memory
    src, lengths = g2p.encode_words(WORDS)
    assert half.encoder.embedding.weight.dtype == torch.float32
    torch.testing.assert_close(half(src, lengths, src[:, :3])[0],
                               model(src, lengths, src[:, :3])[0], rtol=0, atol=2e-2)


def test_model_file_bad_input(tmp_path: Path) -> None:
    """Before: NaN was written as the bare word NaN, which is not JSON."""
    with pytest.raises(ValueError, match="^metadata: not JSON data"):
        MODEL.save(tmp_path / "m.safetensors", {"loss": float("nan")})
    with pytest.raises(ValueError, match="^path: .* is a folder"):
        MODEL.save(tmp_path)
    with pytest.raises(ValueError, match="^device"):
        Seq2Seq.load(tmp_path / "x.safetensors", device="tpu")
    assert list(tmp_path.iterdir()) == []
    other = Seq2Seq(Seq2SeqConfig.tiny(SRC, TGT, hidden_size=8))
    write_model_file(tmp_path / "mix.safetensors", "Seq2Seq", MODEL.file_config(),
                     other.state_dict())
    with pytest.raises(ValueError, match="mix.safetensors: the weights do not fit the config"):
        Seq2Seq.load(tmp_path / "mix.safetensors")


def test_training_script_writes_loadable_checkpoints(tmp_path: Path,
                                                     load_script) -> None:
    script = load_script("scripts/train_rnn_attention.py")
    args = ["--steps", "4", "--batch-size", "8", "--hidden-size", "16", "--log-every", "2",
            "--device", "cpu"]
    paths = script.main([*args, "--out", str(tmp_path)])
    assert [p.name for p in paths] == ["g2p_rnn.safetensors", "g2p_attention.safetensors",
                                       "g2p_rnn_matched.safetensors"]
    budgets, sizes = [], []
    for p in paths:
        model, meta = Seq2Seq.load(p), read_model_file(p, tensors=False).metadata
        assert all(t.dtype == torch.float16 for t in read_model_file(p).tensors.values()
                   if t.is_floating_point())  # stored as float16, loaded as float32
        assert len(meta["loss_curve"]) == 2
        budgets.append({k: meta[k] for k in ("steps", "batch_size", "lr", "seed")})
        sizes.append(sum(t.numel() for t in model.parameters()))
        assert meta["parameters"] == sizes[-1]
        assert g2p.transcribe(model, ["cat"], max_len=3)[0] is not None
    assert budgets[0] == budgets[1] == budgets[2] == {"steps": 4, "batch_size": 8, "lr": 3e-3,
                                                      "seed": 0}
    rnn_model, attn_model, matched = (Seq2Seq.load(p) for p in paths)
    assert rnn_model.config.hidden_size == attn_model.config.hidden_size == 16
    assert attn_model.config.attention == "scaled_dot" and matched.config.attention is None
    assert matched.config.hidden_size > 16
    assert abs(sizes[2] - sizes[1]) <= abs(sizes[0] - sizes[1])  # the control is closer in size
    assert abs(sizes[2] - sizes[1]) / sizes[1] < 0.02
    again = script.main(["--model", "attention", *args, "--threads", "1",
                         "--out", str(tmp_path / "again")])
    first, second = Seq2Seq.load(paths[1]), Seq2Seq.load(again[0])
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name  # the same command gives the same checkpoint


def test_matched_hidden_size_is_the_closest_count(load_script) -> None:
    script = load_script("scripts/train_rnn_attention.py")
    target = Seq2Seq(Seq2SeqConfig.base(SRC, TGT, attention="scaled_dot"))
    n_target = sum(p.numel() for p in target.parameters())
    R = script.matched_hidden_size(target.config)

    def count(r: int) -> int:
        return sum(p.numel() for p in Seq2Seq(Seq2SeqConfig.base(SRC, TGT, hidden_size=r))
                   .parameters())

    assert abs(count(R) - n_target) <= min(abs(count(R - 1) - n_target),
                                          abs(count(R + 1) - n_target))
    assert math.isclose(count(R), n_target, rel_tol=1e-3)


@pytest.mark.gpu
def test_seq2seq_on_gpu_matches_cpu(gpu_device: torch.device) -> None:
    model = _models()[5]
    batch = batching.make_batch(g2p.cmudict_splits()["test"][:16], SRC, TGT)
    cpu_logits, cpu_w = model(batch.src, batch.src_lengths, batch.tgt_in)
    model.to(gpu_device)
    gpu_batch = batch.to(gpu_device)
    logits, w = model(gpu_batch.src, gpu_batch.src_lengths, gpu_batch.tgt_in)
    torch.testing.assert_close(logits.cpu(), cpu_logits, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(w.cpu(), cpu_w, rtol=1e-3, atol=1e-3)
    src, lengths = g2p.encode_words(WORDS)
    model.cpu()
    cpu_ids, _ = model.greedy_decode(src, lengths)
    model.to(gpu_device)
    gpu_ids, _ = model.greedy_decode(src.to(gpu_device), lengths.to(gpu_device))
    assert gpu_ids == cpu_ids
    losses = seq2seq.train_seq2seq(model, g2p.cmudict_splits()["train"][:64], steps=5,
                                   batch_size=16, device=gpu_device)
    assert next(model.parameters()).device.type == gpu_device.type and len(losses) == 5
