"""Checkers for the exercises of chapter 5, Tokenizers.

* :func:`exercise_5_1`: BPE's ``merge(ids, pair, idx)``, written by hand.
* :func:`exercise_5_2`: the pair that BPE training merges next (counts weighted by how often
  each chunk occurs, ties broken by :func:`lmlab.byte_pairs.tie_key`).
* :func:`exercise_5_3`: the number of tokens of a sentence under the toy 10-merge tokenizer,
  predicted.
* :func:`exercise_5_4`: the share of a GPT-2-shaped model's parameters held by its (tied)
  token embedding.
* :func:`exercise_5_5`: WordPiece's greedy longest-match-first split of one word.

The references are :func:`lmlab.byte_pairs.merge`, :class:`lmlab.bpe.BPETokenizer` (whose
training the unit tests compare with Hugging Face ``tokenizers``), :class:`lmlab.transformer.GPT`
and Hugging Face ``tokenizers``' ``WordPiece`` model on bert-base-uncased's vocabulary.

Example:
    >>> from lmlab.exercises.ch05 import exercise_5_3
    >>> exercise_5_3(3)
    Exercise 5.3: not yet. the number of tokens of ' the rat sat on the mat': expected 10, got 3
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import regex
import torch

from lmlab.bpe import GPT2_PATTERN, BPETokenizer
from lmlab.byte_pairs import merge
from lmlab.exercises import Verdict, call, compare, first_failure, mismatch, verdict
from lmlab.transformer import GPT
from lmlab.transformer_config import TransformerConfig

__all__ = ["exercise_5_1", "exercise_5_2", "exercise_5_3", "exercise_5_4", "exercise_5_5",
           "TOY_TEXT", "SENTENCE_5_3"]

# The toy text of the chapter's "Byte-pair encoding, step by step"
TOY_TEXT = ("the cat sat on the mat. the rat sat on the cat. "
            "that cat? that rat! the fat cat and the fat rat sat on that mat.")
# Exercise 5.3's sentence
SENTENCE_5_3 = " the rat sat on the mat"


@functools.cache
def _toy_tokenizer(merges: int) -> BPETokenizer:
    """The toy text's BPE tokenizer after ``merges`` merges."""
    tok = BPETokenizer()
    tok.train(TOY_TEXT, vocab_size=256 + merges)
    return tok


def _chunk_counts(text: str) -> dict[str, int]:
    """How often each chunk of GPT-2's regular expression occurs in ``text``."""
    counts: dict[str, int] = {}
    for chunk in regex.findall(GPT2_PATTERN, text):
        counts[chunk] = counts.get(chunk, 0) + 1
    return counts


def exercise_5_1(my_merge: Callable[..., Any]) -> Verdict:
    """Check ``my_merge(ids, pair, idx) -> list``: every ``pair`` in ``ids`` replaced by ``idx``.

    Tried on the docstring's example, a run of one id that overlaps itself (``7 7 7 7 7``), a
    pair at the very end, ids without the pair, an empty list and the bytes of ``" that cat"``;
    the reference is :func:`lmlab.byte_pairs.merge`. The input list must come back unchanged.

    Args:
        my_merge: the reader's function of a list of ints, a pair of ints and the new id.
    """
    cases = [("[1, 2, 3, 1, 2] with (1, 2) -> 4", [1, 2, 3, 1, 2], (1, 2), 4),
             ("the overlapping run [7, 7, 7, 7, 7] with (7, 7) -> 300", [7] * 5, (7, 7), 300),
             ("[5, 1, 2] with (1, 2) -> 9 (the pair at the end)", [5, 1, 2], (1, 2), 9),
             ("[2, 1, 3] with (1, 2) -> 9 (the pair reversed, not present)", [2, 1, 3], (1, 2), 9),
             ("[] with (1, 2) -> 9", [], (1, 2), 9),
             ("the bytes of ' that cat' with (97, 116) -> 256", list(b" that cat"), (97, 116),
              256)]
    checks = []
    for label, ids, pair, idx in cases:
        expected = merge(ids, pair, idx)

        def check(ids=ids, pair=pair, idx=idx, expected=expected) -> str | None:
            given = list(ids)
            got = call(my_merge, given, pair, idx, what="your merge")
            if given != ids:
                return f"your merge changed its input: expected {ids} to stay, got {given}"
            if not isinstance(got, (list, tuple)):
                return f"expected a list of ids, got {type(got).__name__}"
            return mismatch(list(got), expected, what="the merged ids")

        checks.append((f"on {label}", check))
    return verdict("5.1", first_failure(checks),
                   "Left to right: 7 7 7 7 7 becomes 300 300 7, not 7 300 300.")


def exercise_5_2(best_pair: Callable[..., Any]) -> Verdict:
    """Check ``best_pair(words, chunk_counts) -> (a, b)``: the pair BPE training merges next.

    ``words`` maps each chunk to its current ids and ``chunk_counts`` to how often it occurs;
    a pair's count is the sum over chunks of (pairs in the chunk) x (the chunk's count), and
    among equally frequent pairs the one with the smallest
    :func:`lmlab.byte_pairs.tie_key` wins. Tried on the toy text before each of its first 12
    merges, and on two small texts whose pairs tie; the reference is the merge that
    :meth:`lmlab.bpe.BPETokenizer.train` learns at that step.

    Args:
        best_pair: the reader's function of two dicts keyed by chunk.
    """
    states = []
    for text, steps in ((TOY_TEXT, 12), ("ab ab z z", 1), ("cd cd ab ab", 1)):
        counts = _chunk_counts(text)
        words = {chunk: list(chunk.encode("utf-8")) for chunk in counts}
        tok = BPETokenizer()
        tok.train(text, vocab_size=256 + steps)
        for step, (pair, new) in enumerate(tok.merges.items()):
            label = f"on {text[:24]!r}... before merge {step + 1}" if len(text) > 24 else \
                f"on {text!r} before merge {step + 1}"
            states.append((label, dict(words), counts, pair))
            words = {chunk: merge(ids, pair, new) for chunk, ids in words.items()}
    checks = []
    for label, words, counts, expected in states:

        def check(words=words, counts=counts, expected=expected) -> str | None:
            got = call(best_pair, {c: list(ids) for c, ids in words.items()}, dict(counts),
                       what="best_pair")
            if isinstance(got, list):
                got = tuple(got)
            return mismatch(got, expected, what="the pair to merge")

        checks.append((label, check))
    return verdict("5.2", first_failure(checks),
                   "In small texts ties are common, and the rule decides them.")


def exercise_5_3(answer: Any) -> Verdict:
    """Check a predicted number: how many tokens the toy tokenizer's 10 merges give for
    :data:`SENTENCE_5_3`.

    The reference trains :class:`lmlab.bpe.BPETokenizer` on :data:`TOY_TEXT` with
    ``vocab_size=266`` and encodes the sentence.

    Args:
        answer: the reader's number (an int).
    """
    tok = _toy_tokenizer(10)
    ids = tok.encode(SENTENCE_5_3)
    pieces = " ".join(tok.id_to_token(i) for i in ids)
    return compare("5.3", answer, len(ids), what=f"the number of tokens of {SENTENCE_5_3!r}",
                   atol=0, rtol=0, remark=f"The pieces, spaces shown as Ġ: {pieces}")


def _gpt2_shaped(vocab_size: int, d_model: int, num_layers: int) -> TransformerConfig:
    return TransformerConfig.gpt2_small(vocab_size=vocab_size, d_model=d_model,
                                        num_layers=num_layers, num_heads=4)


def exercise_5_4(vocab_share: Callable[..., Any]) -> Verdict:
    """Check ``vocab_share(vocab_size, d_model, num_layers) -> float``: the share of a
    GPT-2-shaped model's parameters that its token embedding (tied to the LM head) holds.

    GPT-2's shape: learned positions for 1,024 tokens, pre-norm blocks with LayerNorms (a
    weight and a bias each), attention with biased q, k, v and output projections, a
    ``4 * d_model`` FFN with biases, a final LayerNorm, and the LM head tied to the
    embedding. The reference counts the parameters of :class:`lmlab.transformer.GPT` with
    ``TransformerConfig.gpt2_small(vocab_size=..., d_model=..., num_layers=...)``.

    Args:
        vocab_share: the reader's function of three ints (a float back).
    """
    cases = [(1000, 64, 2), (50257, 32, 6), (256, 128, 1), (8192, 96, 3)]
    checks = []
    for vocab_size, d_model, num_layers in cases:
        model = GPT(_gpt2_shaped(vocab_size, d_model, num_layers))
        expected = vocab_size * d_model / model.num_parameters()

        def check(args=(vocab_size, d_model, num_layers), expected=expected) -> str | None:
            got = call(vocab_share, *args, what="vocab_share")
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = got.item()
            return mismatch(got, expected, what="the embedding's share", atol=1e-6,
                            rtol=1e-6)

        label = f"V={vocab_size}, C={d_model}, {num_layers} layer(s)"
        checks.append((f"on {label}", check))
    return verdict("5.4", first_failure(checks),
                   "Blocks grow with layers x C^2, the vocabulary with V x C.")


@functools.cache
def _bert_vocab() -> tuple[str, ...]:
    from lmlab.data import bert_vocab_file

    return tuple(bert_vocab_file().read_text(encoding="utf-8").splitlines())


@functools.cache
def _reference_wordpiece() -> Any:
    from tokenizers import models

    tokens = _bert_vocab()
    return models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]",
                            max_input_chars_per_word=100)


def exercise_5_5(wordpiece: Callable[..., Any]) -> Verdict:
    """Check ``wordpiece(word, vocab) -> list[str]``: WordPiece's split of one word.

    From the start of the word take the longest piece in ``vocab``; every later piece is
    looked up with ``##`` in front; if at some position no piece matches, the whole word is
    ``["[UNK]"]``. ``vocab`` is bert-base-uncased's set of 30,522 tokens; the reference is
    Hugging Face ``tokenizers``' ``WordPiece`` model on the same vocabulary.

    Args:
        wordpiece: the reader's function of a lower-case word (no spaces) and a set of tokens.
    """
    vocab = frozenset(_bert_vocab())
    model = _reference_wordpiece()
    words = ["tokenizers", "unbelievable", "hyperparameterization", "detokenizing", "xyzzy",
             "zzzzzzzzq", "snow☃man", "a"]
    checks = []
    for word in words:
        expected = [t.value for t in model.tokenize(word)]

        def check(word=word, expected=expected) -> str | None:
            got = call(wordpiece, word, vocab, what="wordpiece")
            if isinstance(got, tuple):
                got = list(got)
            return mismatch(got, expected, what="the pieces")

        checks.append((f"on {word!r}", check))
    return verdict("5.5", first_failure(checks),
                   "One unknown character makes the whole word [UNK].")
