"""scripts/train_gpt.py at a tiny size: it trains, writes loadable files, is deterministic, and
its --evaluate figures are what their definitions say (checked by hand on tiny inputs)."""

from __future__ import annotations

import doctest
import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmlab.generation import generate
from lmlab.model_files import load, read_model_file
from lmlab.bpe import BPETokenizer
from lmlab.transformer import GPT, EncoderDecoder
from lmlab.transformer_config import TransformerConfig

TINY = ["--steps", "30", "--d-model", "32", "--num-layers", "1", "--num-heads", "2",
        "--context-length", "32", "--vocab-size", "300", "--batch-size", "8", "--log-every", "10",
        "--eval-windows", "4", "--threads", "1"]


@pytest.fixture
def load_script_module(load_script):
    return load_script("scripts/train_gpt.py")


@pytest.fixture
def tiny_tok() -> BPETokenizer:
    tok = BPETokenizer(special_tokens=["<|endoftext|>"])
    tok.train("To be, or not to be, that is the question:\n" * 20
              + "Whether 'tis nobler in the mind to suffer\n" * 20, 300)
    return tok


def tiny_gpt(vocab_size: int, context_length: int = 8) -> GPT:
    torch.manual_seed(0)
    return GPT(TransformerConfig(vocab_size=vocab_size, context_length=context_length,
                                 d_model=16, num_layers=1, num_heads=2)).eval()


def test_train_gpt_script_trains_and_is_deterministic(tmp_path: Path, load_script_module,
                                                      capsys) -> None:
    script = load_script_module
    threads = torch.get_num_threads()
    try:
        paths = script.main(["--out", str(tmp_path / "a"), *TINY])
        again = script.main(["--out", str(tmp_path / "b"), *TINY])
        capsys.readouterr()
        script.main(["--evaluate", "--out", str(tmp_path / "a"), "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert [p.name for p in paths] == ["gpt_shakespeare.safetensors", "encdec_g2p.safetensors"]
    for first, second in zip(paths, again):
        a, b = load(first), load(second)
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), name
    gpt, encdec = load(paths[0]), load(paths[1])
    assert isinstance(gpt, GPT) and isinstance(encdec, EncoderDecoder)
    meta = read_model_file(paths[0], tensors=False).metadata
    curve = json.loads(meta["loss_curve"])
    assert len(curve) == 3 and curve[-1] < curve[0] - 0.3  # it learns
    assert len(json.loads(meta["validation_plays"])) == 3
    assert len(json.loads(meta["train_plays"])) == 35
    assert 0 < float(meta["validation_loss"]) < curve[0]
    assert json.loads(meta["validation_curve"])[-1][0] == 30
    assert json.loads(meta["recipe"])["steps"] == 30
    tok = BPETokenizer.from_file(tmp_path / "a" / "gpt_shakespeare.bpe.json")
    assert tok.vocab_size == gpt.config.vocab_size == 300
    assert tok.decode(tok.encode("To be, or not to be")) == "To be, or not to be"
    g2p_curve = json.loads(read_model_file(paths[1], tensors=False).metadata["loss_curve"])
    assert g2p_curve[-1] < g2p_curve[0]

    # --evaluate ends with exactly its two lines, the figures stored at training time
    lines = capsys.readouterr().out.rstrip("\n").splitlines()
    bpc = re.fullmatch(r"validation bits per character: (\d+\.\d\d)", lines[-2])
    share = re.fullmatch(r"words found in the training text: (\d+\.\d)%", lines[-1])
    assert bpc and share, lines[-2:]
    assert bpc.group(1) == f"{float(meta['validation_bits_per_char']):.2f}"
    found, total = map(int, meta["words_found"].split("/"))
    assert 0 < found <= total and share.group(1) == f"{100 * found / total:.1f}"
    # bits per character from the stored nats per token: nats * tokens / ln 2 / characters
    tokens, chars = int(meta["validation_tokens"]) - 3, int(meta["validation_chars"])  # - EOTs
    assert float(meta["validation_loss"]) * tokens / math.log(2) / chars == pytest.approx(
        float(meta["validation_bits_per_char"]), rel=1e-3)


def test_evaluate_names_a_missing_checkpoint(tmp_path: Path, load_script_module) -> None:
    with pytest.raises(FileNotFoundError, match="gpt_shakespeare.safetensors"):
        load_script_module.main(["--evaluate", "--out", str(tmp_path)])


@pytest.mark.parametrize("args, match", [
    (["--dropout", "1.5"], "dropout"), (["--warmup-steps", "900", "--steps", "10"], "warmup"),
    (["--vocab-size", "100"], "vocab_size"), (["--d-model", "30", "--num-heads", "4"],
                                                "d_model")])
def test_bad_recipe_is_refused_before_any_work(tmp_path: Path, load_script_module, args,
                                                match) -> None:
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=match):
        load_script_module.main(["--model", "gpt", "--out", str(out), *args])
    assert not out.exists()


def test_shakespeare_split_is_disjoint_and_fixed(load_script_module) -> None:
    script = load_script_module
    train, val = script.shakespeare_split()
    assert len(train) + len(val) == 38 and len(val) == 3
    assert not {t for t, _ in train} & {t for t, _ in val}
    assert [t for t, _ in val] == [t for t, _ in script.shakespeare_split()[1]]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # a stateless loader
@given(length=st.integers(2, 200), context_length=st.integers(1, 40), data=st.data())
def test_sliding_windows_predict_every_token_once_with_the_promised_context(
        load_script_module, length, context_length, data) -> None:
    script = load_script_module
    stride = data.draw(st.integers(1, context_length))
    scored = []
    for start, width, skip in script.sliding_windows(length, context_length, stride):
        assert 1 <= width <= context_length and 0 <= skip < width
        assert start + width <= length - 1  # the window's targets exist
        for j in range(start + skip + 1, start + width + 1):  # the targets it scores
            scored.append(j)
            # j sees tokens start .. j - 1: all there are, or at least T - stride + 1 of them
            assert j - start >= min(j, context_length - stride + 1)
    assert scored == list(range(1, length))


def test_bits_per_character_by_hand(load_script_module, tiny_tok) -> None:
    """Against the definition: each token's log-probability given every token before it that
    fits the context (stride 1), summed over the texts, / ln 2 / characters."""
    script = load_script_module
    texts = ["To be, or not to be, that is the question: whether 'tis nobler in the mind",
             "Whether"]  # 20+ tokens (several windows of 8) and 2 tokens (one short window)
    model = tiny_gpt(tiny_tok.vocab_size)
    T, eot = model.config.context_length, tiny_tok.special_tokens["<|endoftext|>"]
    nats, tokens = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = [eot] + tiny_tok.encode_ordinary(text)
            for j in range(1, len(ids)):
                context = torch.tensor([ids[max(0, j - T):j]])
                logp = F.log_softmax(model(context)[0, -1], dim=-1)[ids[j]]
                nats -= float(logp)
                tokens += 1
    assert tokens > 2 * T
    chars = sum(map(len, texts))
    got = script.bits_per_character(model, tiny_tok, texts, stride=1)
    assert got["tokens"] == tokens and got["chars"] == chars
    assert got["bits_per_char"] == pytest.approx(nats / math.log(2) / chars, rel=1e-5)
    assert got["nats_per_token"] == pytest.approx(nats / tokens, rel=1e-5)
    # a larger stride gives less context to some tokens: a different but nearby figure
    half = script.bits_per_character(model, tiny_tok, texts)
    assert half["stride"] == T // 2 and half["tokens"] == tokens
    assert half["bits_per_char"] == pytest.approx(got["bits_per_char"], rel=0.05)
    # a text within one window: every stride gives the one-pass figure
    short = [texts[0][:20]]
    ids = torch.tensor([[eot] + tiny_tok.encode_ordinary(short[0])])
    assert ids.shape[1] - 1 <= T  # its targets fit one window
    with torch.no_grad():
        one_pass = F.cross_entropy(model(ids[:, :-1])[0], ids[0, 1:], reduction="sum")
    for stride in (1, 3, T):
        assert script.bits_per_character(model, tiny_tok, short, stride)["bits_per_char"] == \
            pytest.approx(float(one_pass) / math.log(2) / 20, rel=1e-5)


def test_words_and_word_share_by_hand(load_script_module) -> None:
    script = load_script_module
    known = set(script.words("To be, or not to be: O'er the HILL, step-dame!"))
    assert known == {"to", "be", "or", "not", "o'er", "the", "hill", "step", "dame"}
    # 9 words: to, bee, or, not, tis, the, question, o'er, dame (the digits and the quotes
    # around 'tis are not letters); found: to, or, not, the, o'er, dame
    assert script.word_share("To bee or NOT 'tis the Question' 42 O'ER-dame", known) == (6, 9)
    assert script.word_share("", known) == (0, 0)


def test_sample_tokens_continues_past_the_context(load_script_module, tiny_tok) -> None:
    script = load_script_module
    model = tiny_gpt(tiny_tok.vocab_size, context_length=8)
    eot = tiny_tok.special_tokens["<|endoftext|>"]
    # within the context: exactly lmlab's generate with the same seeded generator
    short = script.sample_tokens(model, [eot], 7, seed=3)
    reference = generate(model, torch.tensor([[eot]]), 7, temperature=0.8, top_p=0.95,
                         generator=torch.Generator().manual_seed(3))
    assert short == reference[0, 1:].tolist()
    long = script.sample_tokens(model, [eot], 50, seed=3)
    assert len(long) == 50 and long[:7] == short
    assert long == script.sample_tokens(model, [eot], 50, seed=3)  # seeded
    with pytest.raises(ValueError, match="prompt"):
        script.sample_tokens(model, [], 5)


def test_script_examples(load_script_module) -> None:
    result = doctest.testmod(load_script_module)  # sliding_windows' (words': lmlab.sample_stats)
    assert result.attempted >= 1 and result.failed == 0
