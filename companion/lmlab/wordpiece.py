"""WordPiece, the BERT family's tokenizer, through Hugging Face ``tokenizers``.

:func:`train_wordpiece` trains one on any text, :func:`load_bert_tokenizer` builds
bert-base-uncased's from its ``vocab.txt`` and :func:`load_minilm_tokenizer` reads
all-MiniLM-L6-v2's ``tokenizer.json``. Word-internal pieces start with ``##`` and the
post-processor wraps every input in ``[CLS] ... [SEP]``. A WordPiece tokenizer is one
``tokenizer.json`` file: :func:`lmlab.hf_tokenizers.save_tokenizer_file` and
:func:`lmlab.hf_tokenizers.load_tokenizer_file` (or ``tokenizers.Tokenizer.from_file``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lmlab._checks import check_bool, check_file, check_int, check_texts
from lmlab.bpe import MAX_VOCAB_SIZE
from lmlab.hf_tokenizers import load_tokenizer_file

if TYPE_CHECKING:
    import tokenizers

__all__ = ["BERT_SPECIAL_TOKENS", "train_wordpiece", "load_bert_tokenizer",
           "load_minilm_tokenizer"]


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
    texts = check_texts("text", text)
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
