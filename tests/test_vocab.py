"""lmlab.vocab: words out of text and the one vocabulary class (ids, special tokens, files)."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab.vocab import Vocabulary, as_documents, tokenize

DOCS = [
    "The dog bites the man.",
    "The man bites the dog!",
    "A cat sat on the mat; the cat purred.",
    "Dogs and cats: friends or foes? Nobody knows.",
    "The man doesn't own a dog.",
]


def test_tokenize():
    assert tokenize("The dog doesn't bite, 3 times.") == ["the", "dog", "doesn't", "bite", "3", "times"]
    assert tokenize("Hello World", lowercase=False) == ["Hello", "World"]
    assert tokenize("naïve café—déjà vu") == ["naïve", "café", "déjà", "vu"]
    assert tokenize("  ... !!! ") == []
    with pytest.raises(TypeError, match="text"):
        tokenize(42)  # type: ignore[arg-type]


def test_vocabulary_order_min_count_and_max_size():
    v = Vocabulary.from_documents(DOCS)
    assert v.tokens[0] == "<unk>" and v.tokens[1] == "the"
    counts = dict(zip(v.tokens, v.counts))
    assert counts["the"] == 7 and counts["dog"] == 3
    v2 = Vocabulary.from_documents(DOCS, min_count=2)
    assert set(v2.tokens[1:]) == {"the", "dog", "man", "bites", "a", "cat"}
    assert v2.counts[0] == sum(v.counts) - sum(v2.counts[1:])  # unknown collects the rest
    v3 = Vocabulary.from_documents(DOCS, max_size=3)
    assert v3.tokens == ("<unk>", "the", "dog", "man")
    assert v3.token_to_id("zebra") is None and v3.encode("the zebra") == [1, 0]
    assert v3.unk_id == 0 and v3.decode([1, 0, 2]) == ["the", "<unk>", "dog"]
    assert v3.id_to_token(2) == "dog" and "dog" in v3 and "zebra" not in v3


@pytest.mark.parametrize("kwargs, match, error", [
    ({"min_count": 0}, "min_count", ValueError),
    ({"min_count": 1.5}, "min_count", TypeError),
    ({"max_size": 0}, "max_size", ValueError),
    ({"min_count": 100}, "min_count", ValueError),
])
def test_vocabulary_bad_parameters(kwargs, match, error):
    with pytest.raises(error, match=match):
        Vocabulary.from_documents(DOCS, **kwargs)


def test_vocabulary_needs_words():
    with pytest.raises(ValueError, match="documents"):
        Vocabulary.from_documents([])
    with pytest.raises(ValueError, match="no words"):
        Vocabulary.from_documents(["...", "!!"])
    with pytest.raises(TypeError, match="documents"):
        Vocabulary.from_documents("a single string")
    with pytest.raises(ValueError, match="id"):
        Vocabulary.from_documents(DOCS).id_to_token(10_000)



def test_vocabulary_constructor_bad_input():
    with pytest.raises(TypeError, match="tokens"):
        Vocabulary("abc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tokens"):
        Vocabulary(())
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(("a", "b", "a"))
    with pytest.raises(TypeError, match=r"tokens\[1\]"):
        Vocabulary(("a", 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"tokens\[0\]"):  # a str, but empty: a bad value
        Vocabulary(("", "a"))
    with pytest.raises(ValueError, match="counts"):
        Vocabulary(("a", "b"), counts=(1,))
    with pytest.raises(ValueError, match=r"counts\[1\]"):
        Vocabulary(("a", "b"), counts=(1, -1))
    for name in ("unk_token", "pad_token", "bos_token", "eos_token"):
        with pytest.raises(ValueError, match=name):
            Vocabulary(("a", "b"), **{name: "<x>"})
    with pytest.raises(TypeError, match="min_count"):
        Vocabulary.from_documents(DOCS, min_count=2.0)
    with pytest.raises(TypeError, match="documents"):
        Vocabulary.from_documents(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="documents"):
        Vocabulary.from_documents([["dog", 3]])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="unk_token"):
        Vocabulary.from_documents(DOCS, unk_token="")


def test_vocabulary_methods_bad_input():
    v = Vocabulary(("<pad>", "</s>", "a", "b"), pad_token="<pad>", eos_token="</s>")
    with pytest.raises(ValueError, match=r"tokens: \['c'\] not in the vocabulary"):
        v.encode(["a", "c"])  # no unk_token: an unknown symbol is an error, not a silent id
    with pytest.raises(TypeError, match=r"tokens\[1\]"):
        v.encode(["a", 1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="tokens"):
        v.encode(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="add_special_tokens"):
        v.encode(["a"], add_special_tokens=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="token"):
        v.token_to_id(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="id"):
        v.id_to_token(1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="id"):
        v.id_to_token(-1)
    with pytest.raises(ValueError, match=r"ids\[1\]"):
        v.decode([2, 4])
    with pytest.raises(TypeError, match=r"ids\[0\]"):
        v.decode([2.0])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="ids"):
        v.decode("ab")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ids"):
        v.decode(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="data"):
        Vocabulary.from_dict({"words": []})
    assert Vocabulary.from_dict(v.to_dict()) == v
    assert v.decode(torch.tensor([2, 3, 1, 0])) == ["a", "b"]
    assert v.decode([2, 1], skip_special_tokens=False) == ["a", "</s>"]
    assert v.encode(["b"], add_special_tokens=True) == [3, 1]
    assert v.token_to_id("b") == 3 and "b" in v and "c" not in v and len(v) == 4


@pytest.mark.parametrize("call, error, match", [
    (lambda: tokenize("The Dog", lowercase=None), TypeError, "lowercase: expected True or False"),
    (lambda: tokenize("The Dog", lowercase=1), TypeError, "lowercase"),
    (lambda: Vocabulary(("a", "b"), counts=3), TypeError, "counts: expected a tuple of ints"),
    (lambda: Vocabulary(("a", "")), ValueError, r"tokens\[1\]: expected a non-empty str"),
    (lambda: Vocabulary.from_dict({"tokens": 3}), TypeError, "tokens: expected a tuple of str"),
    (lambda: Vocabulary.from_dict({"tokens": ["a"], "counts": "1"}), TypeError, "counts"),
    (lambda: Vocabulary.from_documents(DOCS).decode(torch.tensor([1], device="meta")),
     ValueError,
     "ids: expected a tensor with values, got a meta tensor"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=f"^{match}"):
        call()


def test_as_documents_splits_strings_and_keeps_word_lists():
    assert as_documents(["The Dog.", ("a", "cat"), []]) == [["the", "dog"], ("a", "cat"), []]
    with pytest.raises(TypeError, match=r"^sentences: expected a list of documents"):
        as_documents("one string", "sentences")
    with pytest.raises(TypeError, match=r"^documents\[1\]: expected a string"):
        as_documents(["ok", 3])
    with pytest.raises(TypeError, match=r"^documents: expected a list"):
        as_documents(torch.zeros(2))
    with pytest.raises(ValueError, match=r"^documents: expected at least one document"):
        as_documents(iter([]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=12, unique=True),
       st.data())
def test_vocabulary_file_round_trip(tmp_path_factory, tokens, data):
    specials = {name: data.draw(st.sampled_from([None, *tokens]))
                for name in ("unk_token", "pad_token", "bos_token", "eos_token")}
    counts = data.draw(st.one_of(st.none(), st.lists(st.integers(0, 10**6),
                                                     min_size=len(tokens), max_size=len(tokens))))
    v = Vocabulary(tuple(tokens), None if counts is None else tuple(counts), **specials)
    path = tmp_path_factory.mktemp("vocab") / "v.json"
    v.save(path)
    loaded = Vocabulary.load(path)
    assert loaded == v and loaded.tokens == v.tokens and loaded.counts == v.counts
    assert [loaded.token_to_id(t) for t in tokens] == list(range(len(tokens)))
    assert json.loads(path.read_text(encoding="utf-8"))["format"] == "lmlab.Vocabulary"


def test_vocabulary_file_errors_name_the_file(tmp_path):
    v = Vocabulary.from_documents(DOCS)
    good = tmp_path / "v.json"
    v.save(good)
    with pytest.raises(FileNotFoundError, match="path"):
        Vocabulary.load(tmp_path / "missing.json")
    cut = tmp_path / "cut.json"
    cut.write_bytes(good.read_bytes()[:40])
    with pytest.raises(ValueError, match="cut.json"):
        Vocabulary.load(cut)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "lmlab-bpe", "tokens": ["a"]}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"other.json.*'lmlab-bpe'.*'lmlab.Vocabulary'"):
        Vocabulary.load(other)
    bad = tmp_path / "bad.json"
    data = json.loads(good.read_text(encoding="utf-8"))
    data["tokens"][2] = data["tokens"][1]  # a token twice
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.json.*unique"):
        Vocabulary.load(bad)
    with pytest.raises(FileNotFoundError, match="folder"):
        v.save(tmp_path / "no-folder" / "v.json")
