"""Hugging Face ``tokenizers``: the references lmlab's byte-level BPE is checked against, and files.

:class:`lmlab.bpe.BPETokenizer` is written from scratch; this module holds what it is compared
with. :func:`train_hf_bpe` trains Hugging Face's byte-level BPE with the same settings (so both
learn the same merges) and :func:`load_gpt2_reference` loads GPT-2's tokenizer from the same
files as ``BPETokenizer.from_pretrained("gpt2")``. A ``tokenizers.Tokenizer`` is one JSON file
(``tokenizer.json``): :func:`load_tokenizer_file` reads one with its errors naming the file,
:func:`save_tokenizer_file` writes one atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import regex

from lmlab._checks import check_file, check_instance, check_int, check_strings, check_texts
from lmlab.bpe import MAX_VOCAB_SIZE

if TYPE_CHECKING:
    import tokenizers

__all__ = ["train_hf_bpe", "load_gpt2_reference", "load_tokenizer_file", "save_tokenizer_file"]

_LINE_ENDS = regex.compile(r"(?<=\S)(?=\n)")


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
    texts = check_texts("text", text)
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
    """Hugging Face's GPT-2 tokenizer from the same files as ``BPETokenizer.from_pretrained("gpt2")``.

    ``ByteLevelBPETokenizer``'s defaults (``add_prefix_space=False``, ``trim_offsets=False``, no
    lower-casing or normalisation) are exactly GPT-2's behaviour. It has no special token:
    ``<|endoftext|>`` in text is split like any other text.
    """
    from tokenizers import ByteLevelBPETokenizer

    from lmlab.data import gpt2_files

    encoder_json, vocab_bpe = gpt2_files()
    return ByteLevelBPETokenizer(str(encoder_json), str(vocab_bpe), add_prefix_space=False,
                                 lowercase=False, trim_offsets=False)


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


def save_tokenizer_file(tokenizer: tokenizers.Tokenizer, path: str | os.PathLike[str]) -> None:
    """Write a ``tokenizers.Tokenizer`` to one JSON file (``tokenizer.json``), atomically.

    The file is ``tokenizer.to_str()``: read it back with :func:`load_tokenizer_file` or
    ``tokenizers.Tokenizer.from_file``.

    Args:
        tokenizer: any Hugging Face tokenizer (a WordPiece from
            :func:`lmlab.wordpiece.train_wordpiece`, a BPE from :func:`train_hf_bpe` ...).
        path: the file to write; its folder must exist.

    Raises:
        TypeError: ``tokenizer`` is not a ``tokenizers.Tokenizer``, or ``path`` not a path.
        FileNotFoundError: the folder does not exist.
    """
    from tokenizers import Tokenizer

    from lmlab.io import atomic_write

    check_instance("tokenizer", tokenizer, Tokenizer)
    text = tokenizer.to_str(pretty=True)
    with atomic_write(path, "w") as f:
        f.write(text + "\n")
