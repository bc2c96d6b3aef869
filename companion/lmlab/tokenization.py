"""Tokenizers from Hugging Face ``tokenizers``: the references and the WordPiece family.

Two families, side by side:

* **Byte-level BPE** (the GPT family) is written from scratch in :mod:`lmlab.bpe`
  (:class:`~lmlab.bpe.BPETokenizer`). This module holds its references: :func:`train_hf_bpe`
  trains Hugging Face's BPE with the same settings, and :func:`load_gpt2_reference` loads
  GPT-2's tokenizer from the same files.
* **WordPiece** through Hugging Face ``tokenizers`` (the BERT family): :func:`train_wordpiece`
  trains one, :func:`load_bert_tokenizer` loads bert-base-uncased. Word-internal pieces start
  with ``##`` and the post-processor wraps every input in ``[CLS] ... [SEP]``.

The names of :mod:`lmlab.bpe` (``BPETokenizer``, ``GPT2_PATTERN``, ``MAX_VOCAB_SIZE``) and
:mod:`lmlab.byte_pairs` (``merge``, ``get_stats`` ...) can also be imported from here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import regex

from lmlab._checks import check_bool, check_file, check_int, check_strings
from lmlab.bpe import (  # noqa: F401 (re-exported for ``from lmlab.tokenization import ...``)
    GPT2_PATTERN,
    MAX_VOCAB_SIZE,
    BPETokenizer,
)
from lmlab.byte_pairs import bytes_to_unicode, get_stats, merge, tie_key  # noqa: F401 (the same)

if TYPE_CHECKING:
    import tokenizers

__all__ = [
    "train_hf_bpe", "load_gpt2_reference", "BERT_SPECIAL_TOKENS", "train_wordpiece",
    "load_bert_tokenizer", "load_tokenizer_file", "load_minilm_tokenizer", "tokens_html",
]


# ---------------------------------------------------------------------- Hugging Face tokenizers


_LINE_ENDS = regex.compile(r"(?<=\S)(?=\n)")


def _texts(text: object) -> list[str]:
    """A string or an iterable of strings (documents) as a non-empty list of strings."""
    if isinstance(text, str):
        texts = [text]
    elif isinstance(text, bytes) or not isinstance(text, Iterable):
        raise TypeError(f"text: expected a str or an iterable of str, got {type(text).__name__}")
    else:
        texts = check_strings("text", list(text), allow_empty=True)
    if not any(texts):
        raise ValueError("text: cannot train on empty text")
    for i, t in enumerate(texts):
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"text: document {i} holds a lone surrogate ({err.reason}); text "
                             "must be valid Unicode") from err
    return texts


def train_hf_bpe(text: str | Iterable[str], vocab_size: int,
                 special_tokens: Sequence[str] = ()) -> tokenizers.Tokenizer:
    """Train Hugging Face's byte-level BPE, set up like :class:`~lmlab.bpe.BPETokenizer`.

    Same GPT-2 pre-tokenization regex, same 256-byte alphabet, no prefix space, and the same
    tie rule (:func:`~lmlab.byte_pairs.tie_key`), so both learn the same merges; only the special
    tokens are numbered differently (first here, last in :class:`~lmlab.bpe.BPETokenizer`).

    Args:
        text: a string or an iterable of strings (documents).
        vocab_size: the final vocabulary size, including bytes and special tokens, at most
            :data:`~lmlab.bpe.MAX_VOCAB_SIZE` (``tokenizers`` kills the interpreter on sizes
            around a billion).
        special_tokens: extra tokens that get ids first.

    Returns:
        A trained ``tokenizers.Tokenizer``.

    Example:
        >>> train_hf_bpe("ab ab ab", 257).encode("ab ab").tokens
        ['ab', 'Ġ', 'ab']
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    special_tokens = check_strings("special_tokens", special_tokens, allow_empty=True)
    if any(not t for t in special_tokens) or len(set(special_tokens)) != len(special_tokens):
        raise ValueError(f"special_tokens: expected distinct non-empty strings, got "
                         f"{special_tokens}")
    check_int("vocab_size", vocab_size, minimum=256 + len(special_tokens),
              maximum=MAX_VOCAB_SIZE)
    texts = _texts(text)
    # One long string costs tokenizers about 80 bytes of memory per character; cut it before
    # each newline that follows a non-space, where GPT-2's regex always ends a chunk anyway.
    texts = [part for t in texts for part in _LINE_ENDS.split(t)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  special_tokens=list(special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def load_gpt2_reference() -> tokenizers.implementations.ByteLevelBPETokenizer:
    """Hugging Face's GPT-2 tokenizer from the same files as :meth:`~lmlab.bpe.BPETokenizer.from_gpt2`.

    ``ByteLevelBPETokenizer``'s defaults (``add_prefix_space=False``, ``trim_offsets=False``, no
    lower-casing or normalisation) are exactly GPT-2's behaviour. It has no special token:
    ``<|endoftext|>`` in text is split like any other text.
    """
    from tokenizers import ByteLevelBPETokenizer

    from lmlab.data import gpt2_files

    encoder_json, vocab_bpe = gpt2_files()
    return ByteLevelBPETokenizer(str(encoder_json), str(vocab_bpe), add_prefix_space=False,
                                 lowercase=False, trim_offsets=False)


BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
"""BERT's special tokens, in the order they get ids 0-4 when training a WordPiece vocabulary."""


def _bert_pipeline(tok: tokenizers.Tokenizer, lowercase: bool) -> tokenizers.Tokenizer:
    """Attach BERT's normaliser, pre-tokenizer, ``[CLS] $A [SEP]`` template and decoder."""
    from tokenizers import decoders, normalizers, pre_tokenizers, processors

    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.add_special_tokens([t for t in BERT_SPECIAL_TOKENS if tok.token_to_id(t) is not None])
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def train_wordpiece(text: str | Iterable[str], vocab_size: int = 8000, lowercase: bool = True,
                    min_frequency: int = 2) -> tokenizers.Tokenizer:
    """Train a BERT-style WordPiece tokenizer with Hugging Face ``tokenizers``.

    ``tokenizers``' ``WordPieceTrainer`` wraps its BPE trainer: merges are chosen by raw pair
    *count*, like BPE, not by the likelihood gain of the original WordPiece (Schuster &
    Nakajima, 2012); only the result is stored as a WordPiece vocabulary (``##`` continuations,
    encoded greedily longest-match-first). The special tokens :data:`BERT_SPECIAL_TOKENS` get
    ids 0-4; every encoding is wrapped as ``[CLS] A [SEP]`` (pairs: ``[CLS] A [SEP] B [SEP]``
    with type ids 0 then 1).

    Not deterministic: ``tokenizers`` numbers the ``##`` pieces of its initial alphabet in hash
    map order, which changes from process to process, and equally frequent pairs are then
    merged in a different order. Two identical calls can give vocabularies that differ in their
    last, rarest tokens (and in ids); print only what holds across runs.

    Args:
        text: a string or an iterable of strings (documents).
        vocab_size: the vocabulary size including the special tokens, from 6 up to
            :data:`~lmlab.bpe.MAX_VOCAB_SIZE`.
        lowercase: lower-case and clean text first, as bert-base-uncased does.
        min_frequency: a merge needs at least this many occurrences (>= 0).

    Returns:
        A trained ``tokenizers.Tokenizer``.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    check_int("vocab_size", vocab_size, minimum=len(BERT_SPECIAL_TOKENS) + 1,
              maximum=MAX_VOCAB_SIZE)
    check_bool("lowercase", lowercase)
    check_int("min_frequency", min_frequency, minimum=0)
    texts = _texts(text)
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(BERT_SPECIAL_TOKENS),
                                        show_progress=False, continuing_subword_prefix="##")
    tok.train_from_iterator(texts, trainer=trainer)
    return _bert_pipeline(tok, lowercase)


_BERT_VOCAB_SIZE = 30_522


def load_bert_tokenizer(vocab_file: str | os.PathLike[str] | None = None,
                        lowercase: bool = True) -> tokenizers.Tokenizer:
    """bert-base-uncased's WordPiece tokenizer, built from its ``vocab.txt``.

    The file is checked first: UTF-8, one distinct token per line, ``[UNK]``, ``[CLS]`` and
    ``[SEP]`` present, and for the default file all 30,522 lines; otherwise
    ``ValueError`` names the file.

    Args:
        vocab_file: one token per line; defaults to :func:`lmlab.data.bert_vocab_file`
            (30,522 tokens).
        lowercase: lower-case and strip nothing else, as the uncased model expects.

    Returns:
        A ``tokenizers.Tokenizer`` with the ``[CLS] $A [SEP]`` post-processor.
    """
    from tokenizers import Tokenizer, models

    check_bool("lowercase", lowercase)
    default = vocab_file is None
    if default:
        from lmlab.data import bert_vocab_file

        vocab_file = bert_vocab_file()
    path = check_file("vocab_file", vocab_file)
    try:
        tokens = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"vocab_file: {str(path)!r} is not UTF-8 text: {err}") from err
    while tokens and not tokens[-1]:
        tokens.pop()
    if default and len(tokens) != _BERT_VOCAB_SIZE:
        raise ValueError(f"vocab_file: {str(path)!r} has {len(tokens):,} tokens, expected "
                         f"{_BERT_VOCAB_SIZE:,}: truncated or corrupted; reinstall the package")
    seen: set[str] = set()
    for number, token in enumerate(tokens, start=1):
        if not token.strip() or token in seen:
            raise ValueError(f"vocab_file: {str(path)!r} line {number}: "
                             f"{'empty' if not token.strip() else 'duplicate'} token {token!r}")
        seen.add(token)
    for needed in ("[UNK]", "[CLS]", "[SEP]"):
        if needed not in seen:
            raise ValueError(f"vocab_file: {str(path)!r} lacks the token {needed}")
    model = models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]",
                             max_input_chars_per_word=100)
    return _bert_pipeline(Tokenizer(model), lowercase)


def load_tokenizer_file(path: str | os.PathLike[str]) -> tokenizers.Tokenizer:
    """A Hugging Face ``tokenizer.json``, read with ``tokenizers.Tokenizer``.

    Args:
        path: the ``tokenizer.json`` file.

    Raises:
        TypeError: ``path`` is not a path.
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not UTF-8 text or not a valid ``tokenizer.json`` (truncated or
            corrupted); the message names it.
    """
    from tokenizers import Tokenizer

    path = check_file("path", path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"path: {str(path)!r} is not UTF-8 text: {err}") from None
    try:
        return Tokenizer.from_str(text)
    except Exception as err:  # tokenizers raises a bare Exception on a bad file
        raise ValueError(f"path: {str(path)!r} is not a valid tokenizer.json (truncated or "
                         f"corrupted?): {err}") from None


def load_minilm_tokenizer() -> tokenizers.Tokenizer:
    """all-MiniLM-L6-v2's ``tokenizer.json`` (bert-base-uncased), without its padding to 128.

    Its truncation to 128 tokens is kept: that is the model's context length. A corrupted or
    truncated file raises ``ValueError`` naming it.
    """
    from lmlab.data import minilm_dir

    path = minilm_dir() / "tokenizer.json"
    tok = load_tokenizer_file(path)
    if tok.get_vocab_size() != _BERT_VOCAB_SIZE:
        raise ValueError(f"path: {str(path)!r} has {tok.get_vocab_size():,} tokens, expected "
                         f"{_BERT_VOCAB_SIZE:,}")
    tok.no_padding()
    return tok


_COLOURS = ("#fde2a7", "#c9e7f8", "#d5f0c8", "#f8d0dc", "#e2d6f5", "#fbd3b0")


def tokens_html(tokens: Sequence[str]) -> str:
    """Tokens as HTML, each on its own coloured background, for ``IPython.display.HTML``.

    Args:
        tokens: token strings (``"Ġthe"``, ``"##ing"``, ``"[CLS]"``), shown as they are.

    Returns:
        One HTML ``<div>``; neighbouring tokens get different colours.

    Example:
        >>> tokens_html(["a", "<b>"]).count("<span"), "&lt;b&gt;" in tokens_html(["<b>"])
        (2, True)
    """
    import html

    tokens = check_strings("tokens", tokens, allow_empty=True)
    spans = [f'<span style="background:{_COLOURS[i % len(_COLOURS)]};padding:2px 3px;'
             f'margin:1px;border-radius:3px;white-space:pre">{html.escape(t)}</span>'
             for i, t in enumerate(tokens)]
    return '<div style="font-family:monospace;line-height:2.2">' + "".join(spans) + "</div>"
