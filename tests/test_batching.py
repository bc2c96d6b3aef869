"""Tests of lmlab.batching: targets framed for teacher forcing, epoch-wise shuffled batches as
a function of the step, the (input, target) windows of a token stream, and bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab import batching, g2p
from lmlab.batching import random_windows, token_windows
from lmlab.vocab import Vocabulary

SRC, TGT = g2p.GRAPHEME_VOCAB, g2p.PHONEME_VOCAB
PAIRS = [("a", ("EY1",))]


def test_make_batch_frames_targets() -> None:
    batch = batching.make_batch([("ab", ["EY1", "B"]), ("b", ["B"])], SRC, TGT)
    assert batch.src.tolist() == [[3, 4, 2], [4, 2, 0]]
    assert batch.src_lengths.tolist() == [3, 2]
    assert batch.tgt_in[:, 0].tolist() == [2, 2]  # <s>
    assert batch.tgt_out.tolist() == [[33, 22, 3], [22, 3, 0]]
    assert batch.tgt_in[0, 1:].tolist() == batch.tgt_out[0, :-1].tolist()  # shifted by one


def test_pair_batches_visit_every_pair_once_per_epoch() -> None:
    pairs = g2p.cmudict_splits()["train"][:40]
    batches = batching.pair_batches(pairs, SRC, TGT, batch_size=8, seed=3)
    seen = ["".join(SRC.decode(row)) for step in range(5)  # 40 pairs: one epoch
            for row in batches(step, None).src.tolist()]
    assert sorted(seen) == sorted(w for w, _ in pairs)
    second = ["".join(SRC.decode(row)) for step in range(5, 10)
              for row in batches(step, None).src.tolist()]
    assert sorted(second) == sorted(seen) and second != seen  # reshuffled
    again = batching.pair_batches(pairs, SRC, TGT, batch_size=8, seed=3)
    assert torch.equal(again(7, None).tgt_out, batches(7, None).tgt_out)  # a function of step
    other = batching.pair_batches(pairs, SRC, TGT, batch_size=8, seed=4)
    assert not torch.equal(other(0, None).src, batches(0, None).src)


# --------------------------------------------------------------------------- bad input


def _vocab(pad: str = "<pad>", bos: str | None = None, eos: str = "</s>",
           letters: str = "") -> Vocabulary:
    """A target vocabulary whose special tokens may coincide (B, EY1 and ``letters`` besides)."""
    return Vocabulary(("<pad>", "<s>", "</s>", "B", "EY1", *letters), pad_token=pad,
                               bos_token=bos, eos_token=eos)


def test_pair_batches_of_a_bad_step_draw_nothing() -> None:
    """Before: step -1 silently served the last pairs of epoch -1 (seed - 1)."""
    batches = batching.pair_batches(PAIRS * 4, SRC, TGT, batch_size=2)
    with pytest.raises(ValueError, match="^step: expected an int >= 0, got -1"):
        batches(-1, None)
    assert batches(0, None).src.shape == (2, 2)


@pytest.mark.parametrize("call, error, match", [
    (lambda: batching.make_batch([], SRC, TGT), ValueError, "pairs"),
    (lambda: batching.make_batch("ab", SRC, TGT), TypeError, "pairs"),
    (lambda: batching.make_batch([("ab",)], SRC, TGT), TypeError, r"pairs\[0\]"),
    (lambda: batching.make_batch([("ab", "EY1 B")], SRC, TGT), ValueError, r"pairs\[0\]\[1\]"),
    (lambda: batching.make_batch([("ab", [])], SRC, TGT), ValueError, r"pairs\[0\]\[1\]"),
    (lambda: batching.make_batch([("a1", ["B"])], SRC, TGT), ValueError, r"pairs\[0\]\[0\]"),
    (lambda: batching.make_batch([("ab", ["B", "</s>"])], SRC, TGT), ValueError,
     r"pairs\[0\]\[1\]"),
    (lambda: batching.make_batch([(3, ["B"])], SRC, TGT), TypeError, r"pairs\[0\]\[0\]"),
    (lambda: batching.make_batch([("ab", ["B"])], SRC, SRC), ValueError, "tgt_vocab"),
    (lambda: batching.make_batch([("ab", ["B"])], "abc", TGT), TypeError, "src_vocab"),
    (lambda: batching.encode_sources([], SRC), ValueError, "sources"),
    (lambda: batching.encode_sources("ab", SRC), TypeError, "sources"),
    (lambda: batching.encode_sources([""], SRC), ValueError, r"sources\[0\]"),
    (lambda: batching.pair_batches(PAIRS, SRC, TGT, batch_size=0), ValueError, "batch_size"),
    (lambda: batching.pair_batches("ab", SRC, TGT, batch_size=2), TypeError, "pairs"),
    (lambda: batching.pair_batches(PAIRS, SRC, SRC, batch_size=2), ValueError, "tgt_vocab"),
    (lambda: batching.pair_batches(PAIRS, SRC, TGT, batch_size=2)(-1), ValueError, "step"),
    (lambda: batching.pair_batches(PAIRS, SRC, TGT, batch_size=2)(True), TypeError, "step"),
    (lambda: batching.pair_batches(PAIRS, SRC, TGT, batch_size=2)(1.0), TypeError, "step"),
    (lambda: batching.pair_batches(PAIRS, SRC, TGT, batch_size=2)(0, 3), TypeError,
     "generator"),
    (lambda: batching.encode_sources(["a1"], SRC, name="words"), ValueError, r"words\[0\]"),
    (lambda: batching.make_batch([("ab", ["B"])], SRC, _vocab(bos="<s>", eos="<s>")),
     ValueError, "tgt_vocab: bos_token and eos_token are both '<s>'"),
    (lambda: batching.make_batch([("ab", ["B"])], SRC, _vocab(pad="<s>", bos="<s>")),
     ValueError, "tgt_vocab: pad_token and bos_token are both '<s>'"),
    (lambda: batching.encode_sources(["ab"], _vocab(pad="</s>", eos="</s>", letters="ab")),
     ValueError, "src_vocab: pad_token and eos_token are both '</s>'"),
    (lambda: batching.make_batch([("ab", ["B"])], SRC, TGT).to("tpu"), ValueError, "device"),
    (lambda: batching.make_batch([("ab", ["B"])], SRC, TGT).to(0), TypeError, "device"),
])
def test_bad_input_names_the_parameter(call, error, match) -> None:
    with pytest.raises(error, match=f"^{match}"):
        call()


# --------------------------------------------------------------------------- token streams


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 60), st.integers(1, 8), st.data())
def test_token_windows_are_the_stream_sliced_and_shifted(n, T, data):
    if n < T + 1:
        n = T + 1
    stream = torch.tensor(data.draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n)))
    starts = data.draw(st.lists(st.integers(0, n - T - 1), min_size=1, max_size=6))
    x, y = token_windows(stream, starts, T)
    assert x.tolist() == [stream.tolist()[s:s + T] for s in starts]
    assert y.tolist() == [stream.tolist()[s + 1:s + T + 1] for s in starts]
    x2, y2 = token_windows(stream, torch.tensor(starts), T)
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_random_windows_reach_every_start_and_follow_the_generator():
    stream = torch.arange(12)
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(200):
        x, y = random_windows(stream, 4, 3, g)
        assert x.shape == y.shape == (4, 3) and torch.equal(y, x + 1)
        seen |= set(x[:, 0].tolist())
    assert seen == set(range(12 - 3))  # 0 .. N - T - 1: the last window ends the stream
    a = random_windows(stream, 5, 3, torch.Generator().manual_seed(7))
    b = random_windows(stream, 5, 3, torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0])


def test_windows_train_a_gpt_with_its_own_loss():
    from lmlab.transformer import GPT
    from lmlab.transformer_config import TransformerConfig

    torch.manual_seed(0)
    model = GPT(TransformerConfig.tiny(vocab_size=8, context_length=8, d_model=32))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    stream = torch.arange(400) % 7  # 0 1 ... 6 0 1 ...
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        _, loss = model(*random_windows(stream, 8, 8, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.1 * losses[0]


@pytest.mark.parametrize("call, error, match", [
    (lambda: token_windows([1, 2, 3], [0], 1), TypeError, "^stream"),
    (lambda: token_windows(torch.zeros(5), [0], 1), TypeError, "^stream"),
    (lambda: token_windows(torch.zeros(2, 5, dtype=torch.long), [0], 1), ValueError, "^stream"),
    (lambda: token_windows(torch.arange(3), [0], 3), ValueError,
     "^stream: a window of context_length=3 needs 4 tokens"),
    (lambda: token_windows(torch.arange(10), [0], 0), ValueError, "^context_length"),
    (lambda: token_windows(torch.arange(10), [0], 2.0), TypeError, "^context_length"),
    (lambda: token_windows(torch.arange(10), [7], 3), ValueError,
     r"^starts: expected window starts in \[0, 7\)"),
    (lambda: token_windows(torch.arange(10), [-1], 3), ValueError, r"^starts\[0\]"),
    (lambda: token_windows(torch.arange(10), "0", 3), TypeError, "^starts"),
    (lambda: token_windows(torch.arange(10), torch.tensor([0.0]), 3), TypeError, "^starts"),
    (lambda: random_windows(torch.arange(10), 0, 3), ValueError, "^batch_size"),
    (lambda: random_windows(torch.arange(10), 2, 3, generator=0), TypeError, "^generator"),
    (lambda: random_windows(torch.arange(3), 2, 3), ValueError, "^stream"),
])
def test_window_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
