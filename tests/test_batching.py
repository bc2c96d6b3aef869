"""Tests of lmlab.batching: targets framed for teacher forcing, epoch-wise shuffled batches as
a function of the step, and bad input."""

from __future__ import annotations

import pytest
import torch

from lmlab import batching, g2p
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
