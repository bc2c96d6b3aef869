"""Tests for lmlab.tokenization against HF tokenizers and the real GPT-2 and BERT files."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmlab import data
from lmlab.device import seed_everything
from lmlab.tokenization import (
    BERT_SPECIAL_TOKENS,
    GPT2_PATTERN,
    BPETokenizer,
    bytes_to_unicode,
    get_stats,
    load_bert_tokenizer,
    load_gpt2_reference,
    load_minilm_tokenizer,
    merge,
    train_hf_bpe,
    tokens_html,
    train_wordpiece,
)

EDGE_CASES = Path(__file__).parent / "data" / "tokenization" / "edge_cases.txt"

# Control characters and line endings that do not survive a text file in git unharmed.
_CONTROL_CASES = [
    "windows\r\nline\r\nendings\r\n", "old mac\rline end", "form\x0cfeed", "vertical\x0btab",
    "nul\x00byte", "bell\x07", "\n\n\n", "  \n  \n", " ", "", "a", "\t\t", "x \n", "'s", " 's",
    "''", "'", "ends with a space ", "  two leading", "l'école d'été", "123456789012345",
]


def heldout_lines() -> list[str]:
    """The exact-match text: every 7th line of three corpora plus the hand-written edge cases.

    Built offline from the installed corpora, never used for training anything in the book.
    """
    lines: list[str] = []
    for name, limit in (("wikipedia", 4000), ("shakespeare", 4000), ("sotu", 4000)):
        corpus = data.load_text(name).split("\n")
        lines.extend(corpus[3::7][:limit])
    lines.extend(EDGE_CASES.read_text(encoding="utf-8").split("\n"))
    lines.extend(_CONTROL_CASES)
    return lines


@functools.cache
def gpt2() -> BPETokenizer:
    return BPETokenizer.from_gpt2()


@functools.cache
def gpt2_reference():
    return load_gpt2_reference()


# ---------------------------------------------------------------------- GPT-2 exact match


def test_gpt2_matches_tokenizers_on_large_heldout_text():
    lines = heldout_lines()
    assert len(lines) > 10_000
    ours = gpt2().encode_batch(lines)
    theirs = [e.ids for e in gpt2_reference().encode_batch(lines)]
    mismatches = [(line, a, b) for line, a, b in zip(lines, ours, theirs) if a != b]
    assert not mismatches[:3]
    whole = "\n".join(lines)  # the lines joined: newlines and runs of blank lines included
    assert gpt2().encode(whole) == gpt2_reference().encode(whole).ids
    assert gpt2().decode(gpt2().encode(whole)) == whole


@pytest.mark.parametrize("line", EDGE_CASES.read_text(encoding="utf-8").split("\n")
                         + _CONTROL_CASES)
def test_gpt2_matches_tokenizers_on_edge_cases(line):
    ours = gpt2().encode(line)
    assert ours == gpt2_reference().encode(line).ids
    assert gpt2().decode(ours) == line


def test_gpt2_vocabulary_matches_encoder_json():
    encoder_json, _ = data.gpt2_files()
    encoder = json.loads(encoder_json.read_text(encoding="utf-8"))
    tok = gpt2()
    assert tok.vocab_size == len(encoder) == 50257
    assert all(tok.id_to_token(i) == t and tok.token_to_id(t) == i for t, i in encoder.items())
    assert tok.special_tokens == {"<|endoftext|>": 50256}
    assert tok.encode("Hello world") == [15496, 995]  # the ids in OpenAI's GPT-2 examples
    assert tok.id_to_token(50257) is None and tok.token_to_id("no such token") is None


def test_gpt2_special_token():
    tok = gpt2()
    text = "end.<|endoftext|>Start"
    ids = tok.encode(text)
    assert 50256 in ids and tok.decode(ids) == text
    ordinary = tok.encode(text, allowed_special="none")
    assert 50256 not in ordinary
    assert ordinary == gpt2_reference().encode(text).ids  # the reference has no special token


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_gpt2_matches_tokenizers_on_arbitrary_unicode(text):
    assert gpt2().encode(text) == gpt2_reference().encode(text).ids


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_gpt2_round_trip(text):
    assert gpt2().decode(gpt2().encode(text)) == text


# ---------------------------------------------------------------------- training


def test_pair_helpers_worked_example():
    assert get_stats([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge([1, 1, 1], (1, 1), 9) == [9, 1]  # left to right, no overlap


def test_first_merges_on_hand_worked_text():
    # Wikipedia's BPE example: aa -> Z, then ab -> Y (tie with Za, broken by the smaller ids),
    # then ZY -> X.
    tok = BPETokenizer()
    tok.train("aaabdaaabac", vocab_size=259)
    a, b = ord("a"), ord("b")
    assert tok.merges == {(a, a): 256, (a, b): 257, (256, 257): 258}
    assert tok.vocab[258] == b"aaab"
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, a, ord("c")]


def test_merges_never_cross_chunks():
    tok = BPETokenizer()
    tok.train("ab ab ab ab", vocab_size=258)
    # " ab" is a chunk; "b a" spans two chunks and is never counted.
    assert tok.vocab[256] in (b"ab", b" a")
    assert all(b"b " not in piece for piece in tok.vocab.values())


@pytest.mark.parametrize("vocab_size", [300, 1000])
def test_training_learns_the_same_vocabulary_as_tokenizers(vocab_size):
    text = data.load_text("shakespeare")[:300_000]
    ours = BPETokenizer()
    ours.train(text, vocab_size)
    theirs = train_hf_bpe(text, vocab_size)
    our_tokens = {ours.id_to_token(i) for i in range(ours.vocab_size)}
    assert ours.vocab_size == theirs.get_vocab_size() == vocab_size
    # Ties at the lowest counts may be broken differently; all but a few tokens must agree.
    assert len(our_tokens & set(theirs.get_vocab())) >= vocab_size - 5


def test_incremental_counts_equal_a_full_recount():
    # Replay the learned merges on the chunks and check that each merged pair was, at its
    # step, a most frequent pair of a brute-force recount (what the naive trainer would pick).
    seed_everything(0)
    text = data.load_text("sotu")[:20_000]
    tok = BPETokenizer()
    tok.train(text, 256 + 60)
    import regex

    words: dict[tuple[int, ...], int] = {}
    for chunk in regex.findall(GPT2_PATTERN, text):
        key = tuple(chunk.encode("utf-8"))
        words[key] = words.get(key, 0) + 1
    seqs = {k: list(k) for k in words}
    for pair, new in tok.merges.items():
        counts: dict[tuple[int, int], int] = {}
        for key, ids in seqs.items():
            for p in zip(ids, ids[1:]):
                counts[p] = counts.get(p, 0) + words[key]
        best = max(counts.values())
        assert counts[pair] == best
        assert pair == min(p for p, c in counts.items() if c == best)
        seqs = {k: merge(ids, pair, new) for k, ids in seqs.items()}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_trained_round_trip(text):
    tok = trained_small()
    assert tok.decode(tok.encode(text)) == text


@functools.cache
def trained_small() -> BPETokenizer:
    tok = BPETokenizer(special_tokens=["<|endoftext|>", "<pad>"])
    tok.train(data.load_text("shakespeare")[:100_000], vocab_size=600)
    return tok


def test_special_tokens_get_the_last_ids():
    tok = trained_small()
    assert tok.vocab_size == 600
    assert tok.special_tokens == {"<|endoftext|>": 598, "<pad>": 599}
    ids = tok.encode("to be<pad><|endoftext|>")
    assert ids[-2:] == [599, 598]
    assert tok.decode(ids) == "to be<pad><|endoftext|>"
    assert 599 not in tok.encode("<pad>", allowed_special="none")


def test_encode_batch_and_cache_agree_with_encode():
    tok = BPETokenizer(cache_size=0)
    tok.train(data.load_text("sotu")[:50_000], 400)
    texts = ["the people of the United States", "", "the the the", "Congress\n\nshall"]
    batch = tok.encode_batch(texts)
    assert batch == [tok.encode(t) for t in texts]
    with_cache = BPETokenizer(cache_size=2)
    with_cache.train(data.load_text("sotu")[:50_000], 400)
    assert with_cache.encode_batch(texts * 3) == batch * 3


@pytest.mark.parametrize("small", [256, 300, 555])
def test_truncate_equals_training_a_smaller_vocabulary(small):
    text = data.load_text("sotu")[:60_000]
    big = BPETokenizer(special_tokens=["<s>"])
    big.train(text, 700)
    direct = BPETokenizer(special_tokens=["<s>"])
    direct.train(text, small + 1)
    cut = big.truncate(small + 1)
    assert cut.merges == direct.merges and cut.special_tokens == direct.special_tokens
    assert cut.encode(text[:2000] + "<s>") == direct.encode(text[:2000] + "<s>")
    assert big.vocab_size == 700  # unchanged
    with pytest.raises(ValueError, match="vocab_size"):
        big.truncate(701)


def test_tokens_html_escapes_and_colours():
    out = tokens_html(["[CLS]", "<b>", "Ġthe"])
    assert out.count("<span") == 3 and "&lt;b&gt;" in out and "<b>" not in out


# ---------------------------------------------------------------------- files


def test_save_load_round_trip(tmp_path):
    tok = trained_small()
    path = tmp_path / "tok.json"
    tok.save(path)
    loaded = BPETokenizer.from_file(path)
    assert loaded.merges == tok.merges and loaded.vocab == tok.vocab
    assert loaded.special_tokens == tok.special_tokens and loaded.pattern == tok.pattern
    text = "Shall I compare thee to a summer's day?<|endoftext|> 😀"
    assert loaded.encode(text) == tok.encode(text)
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]  # no temporary file left


def test_save_load_gpt2(tmp_path):
    path = tmp_path / "gpt2.json"
    gpt2().save(path)
    loaded = BPETokenizer()
    loaded.load(path)
    text = EDGE_CASES.read_text(encoding="utf-8")
    assert loaded.encode(text) == gpt2_reference().encode(text).ids


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"format": "something else"}), encoding="utf-8")
    with pytest.raises(ValueError, match="path"):
        BPETokenizer.from_file(path)


# ---------------------------------------------------------------------- bad input


def test_bad_training_input():
    tok = BPETokenizer(special_tokens=["<s>"])
    with pytest.raises(ValueError, match="vocab_size.*257"):
        tok.train("some text", 256)
    with pytest.raises(ValueError, match="text: cannot train on an empty string"):
        tok.train("", 300)
    with pytest.raises(TypeError, match="text: expected str"):
        tok.train(b"bytes", 300)
    with pytest.raises(TypeError, match="vocab_size"):
        tok.train("text", 300.0)
    with pytest.raises(ValueError, match="surrogate"):
        tok.train("a\ud800b", 300)


def test_bad_encode_decode_input():
    tok = gpt2()
    with pytest.raises(TypeError, match="text: expected str, got int"):
        tok.encode(123)
    with pytest.raises(TypeError, match="text: expected str, got NoneType"):
        tok.encode(None)
    with pytest.raises(TypeError, match="texts"):
        tok.encode_batch("a single string")
    with pytest.raises(ValueError, match="allowed_special"):
        tok.encode("x", allowed_special="some")
    with pytest.raises(ValueError, match="surrogate"):
        tok.encode("lone \ud800 surrogate")
    assert tok.decode(torch.tensor([15496, 995])) == "Hello world"
    assert tok.decode(np.array([15496, 995])) == "Hello world"
    for bad in (-1, 50257, 10**9, "1", 1.0, True, None):
        with pytest.raises(ValueError, match="ids:.*range\\(0, 50257\\)"):
            tok.decode([15496, bad])


def test_bad_constructor_input():
    with pytest.raises(TypeError, match="special_tokens"):
        BPETokenizer(special_tokens="<s>")
    with pytest.raises(ValueError, match="special_tokens: duplicates"):
        BPETokenizer(special_tokens=["<s>", "<s>"])
    with pytest.raises(ValueError, match="cache_size"):
        BPETokenizer(cache_size=-1)
    with pytest.raises(ValueError, match="vocab_size"):
        train_hf_bpe("text", 10)


def test_bytes_to_unicode_is_gpt2s_table():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[32] == "Ġ" and table[10] == "Ċ" and table[ord("A")] == "A"


# ---------------------------------------------------------------------- WordPiece


@functools.cache
def wordpiece():
    return train_wordpiece(data.load_documents("sotu")[-40:], vocab_size=2000)


def test_trained_wordpiece_specials_and_template():
    tok = wordpiece()
    assert [tok.token_to_id(t) for t in BERT_SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    enc = tok.encode("The Congress shall assemble.")
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
    assert "[CLS]" not in enc.tokens[1:-1]
    pair = tok.encode("First sentence.", "Second one.")
    assert pair.tokens.count("[SEP]") == 2
    sep = pair.tokens.index("[SEP]")
    assert set(pair.type_ids[: sep + 1]) == {0} and set(pair.type_ids[sep + 1:]) == {1}
    assert tok.encode("The Congress", add_special_tokens=False).tokens[0] == "the"


def test_trained_wordpiece_splits_unseen_words_into_pieces():
    tok = wordpiece()
    enc = tok.encode("Hyperconstitutionalization", add_special_tokens=False)
    assert len(enc.tokens) > 1
    assert not enc.tokens[0].startswith("##")
    assert all(t.startswith("##") for t in enc.tokens[1:])
    assert "".join(t.removeprefix("##") for t in enc.tokens) == "hyperconstitutionalization"
    assert tok.token_to_id("[UNK]") not in enc.ids


def test_bert_vocab_matches_minilm_tokenizer_json():
    ours, reference = load_bert_tokenizer(), load_minilm_tokenizer()
    assert ours.get_vocab_size() == reference.get_vocab_size() == 30522
    lines = [ln for ln in data.load_text("wikipedia").split("\n") if ln][:1500]
    lines += EDGE_CASES.read_text(encoding="utf-8").split("\n")
    lines = [ln[:200] for ln in lines]  # stay below MiniLM's truncation at 128 tokens
    ours_ids = [e.ids for e in ours.encode_batch(lines)]
    theirs = [e.ids for e in reference.encode_batch(lines)]
    assert ours_ids == theirs


def test_bert_known_pieces():
    tok = load_bert_tokenizer()
    enc = tok.encode("Tokenization is fun")
    assert enc.tokens == ["[CLS]", "token", "##ization", "is", "fun", "[SEP]"]
    assert enc.ids[0] == 101 and enc.ids[-1] == 102
    assert tok.decode(enc.ids) == "tokenization is fun"
    masked = "The [MASK] sat on the mat."
    assert tok.encode(masked).ids == load_minilm_tokenizer().encode(masked).ids
    assert tok.token_to_id("[MASK]") in tok.encode(masked).ids


def test_bad_wordpiece_input():
    with pytest.raises(ValueError, match="vocab_size"):
        train_wordpiece("some text", vocab_size=5)
    with pytest.raises(ValueError, match="text"):
        train_wordpiece(["", ""])
    with pytest.raises(TypeError, match="text"):
        train_wordpiece([1, 2])
