"""Tokenizers: from text to token ids.

Two families, side by side:

* **Byte-level BPE**, written from scratch in :class:`BPETokenizer` (the GPT family). Text is
  split into chunks by a regular expression (GPT-2's :data:`GPT2_PATTERN`), each chunk becomes
  its UTF-8 bytes (ids 0-255), and learned merges glue frequent neighbours into longer tokens.
  Every string can be encoded, nothing is ever unknown, and ``decode(encode(s)) == s``.
  :meth:`BPETokenizer.from_gpt2` loads GPT-2's real merges and reproduces its ids exactly.
* **WordPiece** through Hugging Face ``tokenizers`` (the BERT family): :func:`train_wordpiece`
  trains one, :func:`load_bert_tokenizer` loads bert-base-uncased. Word-internal pieces start
  with ``##`` and the post-processor wraps every input in ``[CLS] ... [SEP]``.

The method names follow minbpe for the core (``train``, ``encode``, ``decode``, ``save``,
``load``) and Hugging Face ``tokenizers`` for the extras (``encode_batch``, ``token_to_id``,
``id_to_token``, ``from_file``)::

    tok = BPETokenizer()
    tok.train(text, vocab_size=1000)
    ids = tok.encode("Tokenizers split text.")     # list[int]
    assert tok.decode(ids) == "Tokenizers split text."

Training keeps the pair counts up to date incrementally: a merge only revisits the distinct
chunks ("words") that contain the merged pair, never the whole corpus.
"""

from __future__ import annotations

import functools
import heapq
import json
import logging
import operator
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import regex

from lmlab.io import atomic_write

if TYPE_CHECKING:
    import tokenizers

__all__ = [
    "GPT2_PATTERN", "bytes_to_unicode", "get_stats", "merge", "BPETokenizer", "train_hf_bpe",
    "load_gpt2_reference", "BERT_SPECIAL_TOKENS", "train_wordpiece", "load_bert_tokenizer",
    "load_minilm_tokenizer", "tokens_html",
]

logger = logging.getLogger(__name__)

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
"""The pre-tokenization regex of GPT-2. Contractions, letters, digits, punctuation and spaces
each form their own chunk, and a single space sticks to the front of the word after it."""

_FORMAT = "lmlab-bpe"
_FORMAT_VERSION = 1


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character, used to *display* byte tokens.

    Printable Latin-1 bytes map to themselves; the others (space, newline, control bytes) map to
    characters from 256 upwards, so a space shows as ``Ġ`` and a newline as ``Ċ``.

    Returns:
        A dict of all 256 bytes to distinct one-character strings.

    Example:
        >>> m = bytes_to_unicode()
        >>> m[ord("a")], m[ord(" ")], m[ord("\\n")]
        ('a', 'Ġ', 'Ċ')
    """
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    chars = list(keep)
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


def get_stats(ids: Sequence[int], counts: dict[tuple[int, int], int] | None = None
              ) -> dict[tuple[int, int], int]:
    """Count adjacent pairs of ids.

    Args:
        ids: a sequence of token ids.
        counts: a dict to add the counts to (updated in place); a new one when ``None``.

    Returns:
        ``counts``, mapping each adjacent pair to how often it occurs.

    Example:
        >>> get_stats([1, 2, 3, 1, 2])
        {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: Sequence[int], pair: tuple[int, int], idx: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` with the new id ``idx``, left to right.

    Args:
        ids: a sequence of token ids.
        pair: the two adjacent ids to merge.
        idx: the id of the merged token.

    Returns:
        A new list, shorter by the number of (non-overlapping) occurrences.

    Example:
        >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
        [4, 3, 4]
    """
    a, b = pair
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(idx)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _check_text(text: object, name: str = "text") -> str:
    if not isinstance(text, str):
        raise TypeError(f"{name}: expected str, got {type(text).__name__}")
    return text


class BPETokenizer:
    """A byte-level BPE tokenizer: GPT-2's algorithm, trainable and loadable.

    A fresh tokenizer knows only the 256 bytes (plus its special tokens); :meth:`train` learns
    merges from text and :meth:`from_gpt2` loads GPT-2's. Token ids are laid out as bytes, then
    merges in the order they were learned, then special tokens.

    Args:
        pattern: the pre-tokenization regex (the ``regex`` package syntax); merges never cross
            the boundary between two chunks.
        special_tokens: strings such as ``"<|endoftext|>"`` that get their own id and are never
            split when they appear in text.
        cache_size: how many encoded chunks to remember; repeated words are then looked up
            instead of re-merged (0 turns the cache off).

    Example:
        >>> tok = BPETokenizer()
        >>> tok.train("low lower lowest " * 20, vocab_size=260)
        >>> tok.encode("lowest")
        [257, 101, 115, 116]
        >>> tok.decode(tok.encode("lowest"))
        'lowest'
    """

    def __init__(self, pattern: str = GPT2_PATTERN, special_tokens: Sequence[str] = (),
                 cache_size: int = 100_000) -> None:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"pattern: expected a non-empty regex string, got {pattern!r}")
        if isinstance(special_tokens, str) or not all(
                isinstance(s, str) and s for s in special_tokens):
            raise TypeError("special_tokens: expected a sequence of non-empty strings, got "
                            f"{special_tokens!r}")
        if len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"special_tokens: duplicates in {list(special_tokens)}")
        if not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size: expected an int >= 0, got {cache_size!r}")
        self.pattern = pattern
        self.cache_size = cache_size
        self._compiled = regex.compile(pattern)
        self._set_model(list(range(256)), [], {s: 256 + i for i, s in enumerate(special_tokens)})

    # ------------------------------------------------------------------ state

    def _set_model(self, byte_ids: list[int], merges: list[tuple[int, int, int]],
                   special_tokens: dict[str, int]) -> None:
        """Install a model: byte -> id, merges as ``(a, b, new_id)`` in rank order, specials."""
        self._byte_ids = list(byte_ids)
        self.vocab: dict[int, bytes] = {i: bytes([b]) for b, i in enumerate(byte_ids)}
        self.merges: dict[tuple[int, int], int] = {}
        self._ranks: dict[tuple[int, int], int] = {}
        for rank, (a, b, new) in enumerate(merges):
            self.merges[(a, b)] = new
            self._ranks[(a, b)] = rank
            self.vocab[new] = self.vocab[a] + self.vocab[b]
        self.special_tokens: dict[str, int] = dict(special_tokens)
        self._inverse_special = {i: s.encode("utf-8") for s, i in self.special_tokens.items()}
        taken = set(self.vocab) & set(self._inverse_special)
        if taken:
            raise ValueError(f"special_tokens: ids {sorted(taken)} are already used by tokens")
        self._special_re = (regex.compile("(" + "|".join(
            regex.escape(s) for s in sorted(self.special_tokens, key=len, reverse=True)) + ")")
            if self.special_tokens else None)
        display = bytes_to_unicode()
        self._id_to_token = {i: "".join(display[c] for c in bs) for i, bs in self.vocab.items()}
        self._id_to_token.update({i: s for s, i in self.special_tokens.items()})
        self._token_to_id = {t: i for i, t in self._id_to_token.items()}
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        """The number of ids (bytes, then merges, then special tokens)."""
        return len(self.vocab) + len(self.special_tokens)

    # ------------------------------------------------------------------ training

    def train(self, text: str, vocab_size: int) -> None:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        The text is cut into chunks by the ``pattern`` regex and the distinct chunks are counted
        once. Each merge takes the most frequent adjacent pair (ties: the smallest pair of ids),
        and updates only the counts of the chunks that contain it, using an index from pair to
        chunks and a heap of candidate pairs. Training stops early, with a log message, if no
        pair is left to merge.

        Args:
            text: the training text (non-empty).
            vocab_size: the size of the final vocabulary, at least 256 plus the number of special
                tokens.

        Raises:
            TypeError: ``text`` is not a string or ``vocab_size`` not an int.
            ValueError: ``text`` is empty, or ``vocab_size`` is too small.
        """
        _check_text(text)
        specials = sorted(self.special_tokens, key=self.special_tokens.__getitem__)
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
            raise TypeError(f"vocab_size: expected an int, got {type(vocab_size).__name__}")
        if vocab_size < 256 + len(specials):
            raise ValueError(f"vocab_size: must be at least 256 bytes + {len(specials)} special "
                             f"tokens = {256 + len(specials)}, got {vocab_size}")
        if not text:
            raise ValueError("text: cannot train on an empty string")
        num_merges = vocab_size - 256 - len(specials)

        chunk_counts = Counter(m.group() for m in self._compiled.finditer(text))
        try:
            words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
        except UnicodeEncodeError as err:
            raise ValueError(f"text: cannot train on a lone surrogate ({err.reason}); "
                             "text must be valid Unicode") from err
        freqs = list(chunk_counts.values())
        counts: dict[tuple[int, int], int] = defaultdict(int)  # pair -> weighted count
        where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> words (superset)
        for wi, (word, freq) in enumerate(zip(words, freqs)):
            for pair in zip(word, word[1:]):
                counts[pair] += freq
                where[pair].add(wi)
        heap = [(-c, pair) for pair, c in counts.items()]
        heapq.heapify(heap)

        merges: list[tuple[int, int, int]] = []
        for step in range(num_merges):
            while heap:  # pop until an entry is current (stale ones carry old counts)
                neg, pair = heapq.heappop(heap)
                if counts.get(pair, 0) == -neg:
                    break
            else:
                logger.info("BPE training stopped after %d merges: no pairs left", step)
                break
            new = 256 + step
            merges.append((pair[0], pair[1], new))
            delta: dict[tuple[int, int], int] = defaultdict(int)
            for wi in where.pop(pair):
                word = words[wi]
                merged = merge(word, pair, new)
                if len(merged) == len(word):
                    continue  # the pair left this word in an earlier merge
                freq = freqs[wi]
                for p in zip(word, word[1:]):
                    delta[p] -= freq
                for p in zip(merged, merged[1:]):
                    delta[p] += freq
                    if new in p:
                        where[p].add(wi)
                words[wi] = merged
            for p, d in delta.items():
                if d:
                    c = counts[p] + d
                    if c > 0:
                        counts[p] = c
                        heapq.heappush(heap, (-c, p))
                    else:
                        del counts[p]
            logger.debug("merge %d: %r -> %d (%d)", step, pair, new, -neg)
        first = 256 + len(merges)
        self._set_model(list(range(256)), merges, {s: first + i for i, s in enumerate(specials)})

    def truncate(self, vocab_size: int) -> BPETokenizer:
        """A new tokenizer that keeps only the first merges (the special tokens move down).

        Training is greedy, so the first ``k`` merges of a long run are exactly what training
        with ``256 + k`` ids would give: one run yields a whole vocabulary-size sweep.

        Args:
            vocab_size: the new size, from 256 plus the special tokens up to :attr:`vocab_size`.

        Returns:
            A new :class:`BPETokenizer`; this one is unchanged.
        """
        low = len(self._byte_ids) + len(self.special_tokens)
        if not isinstance(vocab_size, int) or not low <= vocab_size <= self.vocab_size:
            raise ValueError(f"vocab_size: expected an int in [{low}, {self.vocab_size}], got "
                             f"{vocab_size!r}")
        keep = vocab_size - low
        merges = [(a, b, new) for (a, b), new in list(self.merges.items())[:keep]]
        specials = sorted(self.special_tokens, key=self.special_tokens.__getitem__)
        first = max([*self._byte_ids, *(new for _a, _b, new in merges)]) + 1
        tok = BPETokenizer(self.pattern, cache_size=self.cache_size)
        tok._set_model(self._byte_ids, merges, {s: first + i for i, s in enumerate(specials)})
        return tok

    # ------------------------------------------------------------------ encoding

    def _encode_chunk(self, data: bytes) -> list[int]:
        ids = [self._byte_ids[b] for b in data]
        ranks, merges = self._ranks, self.merges
        while len(ids) >= 2:
            best, best_rank = None, len(ranks)
            for pair in zip(ids, ids[1:]):
                rank = ranks.get(pair)
                if rank is not None and rank < best_rank:
                    best, best_rank = pair, rank
            if best is None:
                break
            ids = merge(ids, best, merges[best])
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` ignoring special tokens (they are split like any other text)."""
        _check_text(text)
        out: list[int] = []
        cache = self._cache
        try:
            for chunk in self._compiled.findall(text):
                ids = cache.get(chunk)
                if ids is None:
                    ids = self._encode_chunk(chunk.encode("utf-8"))
                    if self.cache_size:
                        if len(cache) >= self.cache_size:
                            cache.clear()
                        cache[chunk] = ids
                out.extend(ids)
        except UnicodeEncodeError as err:
            raise ValueError(f"text: cannot encode a lone surrogate ({err.reason}); "
                             "text must be valid Unicode") from err
        return out

    def encode(self, text: str, allowed_special: str = "all") -> list[int]:
        """Encode a string into token ids.

        Args:
            text: any valid Unicode string.
            allowed_special: ``"all"`` maps special-token strings in ``text`` to their ids;
                ``"none"`` encodes them as ordinary text.

        Returns:
            The token ids.

        Raises:
            TypeError: ``text`` is not a string.
            ValueError: ``allowed_special`` is not ``"all"`` or ``"none"``, or ``text`` holds a
                lone surrogate.

        Example:
            >>> BPETokenizer().encode("hi!")
            [104, 105, 33]
        """
        _check_text(text)
        if allowed_special not in ("all", "none"):
            raise ValueError(f"allowed_special: expected 'all' or 'none', got {allowed_special!r}")
        if allowed_special == "none" or self._special_re is None:
            return self.encode_ordinary(text)
        out: list[int] = []
        for i, part in enumerate(self._special_re.split(text)):
            if i % 2:
                out.append(self.special_tokens[part])
            elif part:
                out.extend(self.encode_ordinary(part))
        return out

    def encode_batch(self, texts: Iterable[str], allowed_special: str = "all") -> list[list[int]]:
        """Encode each string of ``texts`` (see :meth:`encode`); the word cache is shared."""
        if isinstance(texts, str):
            raise TypeError("texts: expected a list of strings, got a single string")
        return [self.encode(t, allowed_special) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """Turn token ids back into text.

        Bytes that do not form valid UTF-8 on their own (a partial character) become U+FFFD.

        Args:
            ids: token ids, each in ``range(vocab_size)`` (Python or NumPy ints, or a 1-D integer
                tensor).

        Returns:
            The text; ``decode(encode(s)) == s`` for every valid string ``s``.

        Raises:
            ValueError: an id is not in the vocabulary.

        Example:
            >>> BPETokenizer().decode([104, 105, 33])
            'hi!'
        """
        parts = []
        vocab, special = self.vocab, self._inverse_special
        for i in ids:
            try:  # ints, NumPy integers and 0-d integer tensors; not floats, strings or bools
                key = None if isinstance(i, bool) else operator.index(i)
            except TypeError:
                key = None
            piece = vocab.get(key, special.get(key)) if key is not None else None
            if piece is None:
                raise ValueError(f"ids: {i!r} is not a token id; expected ints in "
                                 f"range(0, {self.vocab_size})")
            parts.append(piece)
        return b"".join(parts).decode("utf-8", errors="replace")

    def token_to_id(self, token: str) -> int | None:
        """The id of a token written as GPT-2 displays it (``"Ġthe"``), or ``None``."""
        return self._token_to_id.get(token)

    def id_to_token(self, id: int) -> str | None:  # noqa: A002 (Hugging Face's name)
        """The token of an id, written with :func:`bytes_to_unicode` (``"Ġthe"``), or ``None``."""
        return self._id_to_token.get(id)

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the tokenizer to a JSON file, atomically (pattern, byte ids, merges, specials)."""
        merges = [[a, b, new] for (a, b), new in self.merges.items()]
        state = {"format": _FORMAT, "version": _FORMAT_VERSION, "pattern": self.pattern,
                 "byte_ids": self._byte_ids, "merges": merges,
                 "special_tokens": self.special_tokens}
        with atomic_write(path, "w") as f:
            json.dump(state, f, ensure_ascii=False)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Replace this tokenizer's model with the one saved at ``path`` by :meth:`save`."""
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"path: {Path(path).name!r} is not an lmlab BPE tokenizer file")
        if state.get("version") != _FORMAT_VERSION:
            raise ValueError(f"path: unsupported version {state.get('version')!r}; "
                             f"expected {_FORMAT_VERSION}")
        self.pattern = state["pattern"]
        self._compiled = regex.compile(self.pattern)
        self._set_model(state["byte_ids"], [tuple(m) for m in state["merges"]],
                        state["special_tokens"])

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> BPETokenizer:
        """A new tokenizer read from a file written by :meth:`save`."""
        tok = cls()
        tok.load(path)
        return tok

    @classmethod
    def from_gpt2(cls, encoder_json: str | os.PathLike[str] | None = None,
                  vocab_bpe: str | os.PathLike[str] | None = None) -> BPETokenizer:
        """GPT-2's tokenizer from its released ``encoder.json`` and ``vocab.bpe``.

        GPT-2 numbers its 256 byte tokens in its own order (printable bytes first), so the byte
        -> id table is read from ``encoder.json`` too; merge ranks are the line order of
        ``vocab.bpe``. ``<|endoftext|>`` (id 50256) is the one special token.

        Args:
            encoder_json: token string -> id; defaults to :func:`lmlab.data.gpt2_files`.
            vocab_bpe: the merges, one ``"a b"`` per line after a ``#version`` header.

        Returns:
            A tokenizer with ``vocab_size == 50257`` that gives GPT-2's ids.
        """
        if encoder_json is None or vocab_bpe is None:
            from lmlab.data import gpt2_files

            default_encoder, default_merges = gpt2_files()
            encoder_json = encoder_json or default_encoder
            vocab_bpe = vocab_bpe or default_merges
        with open(encoder_json, encoding="utf-8") as f:
            encoder: dict[str, int] = json.load(f)
        display = bytes_to_unicode()
        byte_ids = [encoder[display[b]] for b in range(256)]
        merges = []
        with open(vocab_bpe, encoding="utf-8") as f:
            for line in f:
                if line.startswith("#version") or not line.strip():
                    continue
                a, b = line.rstrip("\n").split(" ")
                merges.append((encoder[a], encoder[b], encoder[a + b]))
        specials = {t: i for t, i in encoder.items() if t.startswith("<|") and t.endswith("|>")}
        tok = cls()
        tok._set_model(byte_ids, merges, specials)
        return tok


# ---------------------------------------------------------------------- Hugging Face tokenizers


_LINE_ENDS = regex.compile(r"(?<=\S)(?=\n)")


def train_hf_bpe(text: str | Iterable[str], vocab_size: int,
                 special_tokens: Sequence[str] = ()) -> tokenizers.Tokenizer:
    """Train Hugging Face's byte-level BPE, set up like :class:`BPETokenizer` for comparison.

    Same GPT-2 pre-tokenization regex, same 256-byte alphabet, no prefix space.

    Args:
        text: a string or an iterable of strings (documents).
        vocab_size: the final vocabulary size, including bytes and special tokens.
        special_tokens: extra tokens that get ids first.

    Returns:
        A trained ``tokenizers.Tokenizer``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    # One long string costs tokenizers about 80 bytes of memory per character; cut it before
    # each newline that follows a non-space, where GPT-2's regex always ends a chunk anyway.
    texts = _LINE_ENDS.split(text) if isinstance(text, str) else list(text)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError("text: expected a string or an iterable of strings")
    if not any(texts):
        raise ValueError("text: cannot train on empty text")
    if not isinstance(vocab_size, int) or vocab_size < 256 + len(special_tokens):
        raise ValueError(f"vocab_size: must be an int >= {256 + len(special_tokens)}, got "
                         f"{vocab_size!r}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  special_tokens=list(special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def load_gpt2_reference() -> tokenizers.implementations.ByteLevelBPETokenizer:
    """Hugging Face's GPT-2 tokenizer from the same files as :meth:`BPETokenizer.from_gpt2`.

    ``ByteLevelBPETokenizer``'s defaults (``add_prefix_space=False``, ``trim_offsets=False``, no
    lower-casing or normalisation) are exactly GPT-2's behaviour.
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
    if cls_id is None or sep_id is None:
        raise ValueError("vocabulary: [CLS] and [SEP] must be in the vocabulary")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def train_wordpiece(text: str | Iterable[str], vocab_size: int = 8000, lowercase: bool = True,
                    min_frequency: int = 2) -> tokenizers.Tokenizer:
    """Train a BERT-style WordPiece tokenizer with Hugging Face ``tokenizers``.

    The special tokens :data:`BERT_SPECIAL_TOKENS` get ids 0-4; word-internal pieces start with
    ``##``; every encoding is wrapped as ``[CLS] A [SEP]`` (pairs: ``[CLS] A [SEP] B [SEP]`` with
    type ids 0 then 1).

    Args:
        text: a string or an iterable of strings (documents).
        vocab_size: the vocabulary size including the special tokens (at least 6).
        lowercase: lower-case and clean text first, as bert-base-uncased does.
        min_frequency: a merge needs at least this many occurrences.

    Returns:
        A trained ``tokenizers.Tokenizer``.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    texts = [text] if isinstance(text, str) else list(text)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError("text: expected a string or an iterable of strings")
    if not any(texts):
        raise ValueError("text: cannot train on empty text")
    if not isinstance(vocab_size, int) or vocab_size <= len(BERT_SPECIAL_TOKENS):
        raise ValueError(f"vocab_size: must be an int > {len(BERT_SPECIAL_TOKENS)}, got "
                         f"{vocab_size!r}")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(BERT_SPECIAL_TOKENS),
                                        show_progress=False, continuing_subword_prefix="##")
    tok.train_from_iterator(texts, trainer=trainer)
    return _bert_pipeline(tok, lowercase)


def load_bert_tokenizer(vocab_file: str | os.PathLike[str] | None = None,
                        lowercase: bool = True) -> tokenizers.Tokenizer:
    """bert-base-uncased's WordPiece tokenizer, built from its ``vocab.txt``.

    Args:
        vocab_file: one token per line; defaults to :func:`lmlab.data.bert_vocab_file`
            (30,522 tokens).
        lowercase: lower-case and strip nothing else, as the uncased model expects.

    Returns:
        A ``tokenizers.Tokenizer`` with the ``[CLS] $A [SEP]`` post-processor.
    """
    from tokenizers import Tokenizer, models

    if vocab_file is None:
        from lmlab.data import bert_vocab_file

        vocab_file = bert_vocab_file()
    model = models.WordPiece.from_file(str(vocab_file), unk_token="[UNK]",
                                       max_input_chars_per_word=100)
    return _bert_pipeline(Tokenizer(model), lowercase)


def load_minilm_tokenizer() -> tokenizers.Tokenizer:
    """all-MiniLM-L6-v2's ``tokenizer.json`` (bert-base-uncased), without its padding to 128.

    Its truncation to 128 tokens is kept: that is the model's context length.
    """
    from tokenizers import Tokenizer

    from lmlab.data import minilm_dir

    tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
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

    spans = [f'<span style="background:{_COLOURS[i % len(_COLOURS)]};padding:2px 3px;'
             f'margin:1px;border-radius:3px;white-space:pre">{html.escape(t)}</span>'
             for i, t in enumerate(tokens)]
    return '<div style="font-family:monospace;line-height:2.2">' + "".join(spans) + "</div>"
