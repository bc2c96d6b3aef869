"""The byte-level BPE tokenizer of a GGUF file (llama.cpp's ``tokenizer.ggml.*`` metadata).

A GGUF file (:class:`lmlab.gguf_file.GGUFFile`) lists every token, the merges in rank order, a
type per token and the name of its pre-tokenizer regex; :class:`GGUFTokenizer` encodes with
them as :class:`lmlab.bpe.BPETokenizer` does (:func:`lmlab.byte_pairs.merge_ranked`).
:data:`PRE_TOKENIZER_PATTERNS` maps the pre-tokenizer names it reads to their regex.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence

import regex

from lmlab._checks import check_instance, check_int, check_str, check_strings
from lmlab.bpe import GPT2_PATTERN, collector_paused
from lmlab.byte_pairs import bytes_to_unicode, merge_ranked
from lmlab.gguf_file import GGUFFile

__all__ = ["SMOLLM_PATTERN", "PRE_TOKENIZER_PATTERNS", "GGUFTokenizer"]

SMOLLM_PATTERN = (r"\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+"
                  r"|\s+(?![^\s\p{N}])|\s+")
"""llama.cpp's ``smollm`` pre-tokenizer as one regex: every digit alone, then GPT-2's rules.

llama.cpp (and SmolLM2's own ``tokenizer.json``) first cut the text before and after every digit
and then apply :data:`lmlab.bpe.GPT2_PATTERN` to the pieces between digits. In one regex
that means: a digit is a chunk; and GPT-2's "spaces not followed by a non-space" becomes "spaces
not followed by a non-space non-digit", since a digit ended the piece."""

PRE_TOKENIZER_PATTERNS = {"gpt2": GPT2_PATTERN, "smollm": SMOLLM_PATTERN}
"""The GGUF ``tokenizer.ggml.pre`` names this module reads, and their pre-tokenization regex."""

_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp's token types that are matched whole in text


class GGUFTokenizer:
    """A byte-level BPE tokenizer read from a GGUF file's metadata (GPT-2's algorithm).

    The file lists every token as GPT-2 displays it (``"Ġthe"``, see
    :func:`lmlab.byte_pairs.bytes_to_unicode`), the merges in rank order, a type per token
    (control tokens such as ``<|im_start|>`` are matched whole in text) and the name of the
    pre-tokenizer regex (:data:`PRE_TOKENIZER_PATTERNS`). Encoding is
    :class:`lmlab.bpe.BPETokenizer`'s: cut the text into chunks, each chunk into bytes,
    then apply the lowest-ranked merge until none applies.

    No beginning-of-sequence token is added: SmolLM2's chat template writes ``<|im_start|>``
    itself, and ``transformers`` adds none either.

    Encoding a chunk is :func:`lmlab.byte_pairs.merge_ranked`, the same merge loop as
    :class:`lmlab.bpe.BPETokenizer`'s: near-linear in the chunk's length, so long runs without
    spaces (one chunk) cost no more per byte than short words.

    Args:
        tokens: every token, indexed by id.
        merges: ``"a b"`` strings in rank order.
        token_types: llama.cpp's type per token (1 normal, 3 control, 4 user-defined ...).
        pattern: the pre-tokenization regex.
        bos_token_id, eos_token_id: ids the file declares (``None`` if it declares none), each
            in ``range(len(tokens))``.

    Raises:
        TypeError: an argument of the wrong type (``tokens`` or ``merges`` not a list of str,
            ``token_types`` not a list of ints, ``pattern`` not a str, an id not an int).
        ValueError: inconsistent values: a token listed twice, a merge that is not two tokens
            whose join is a token, ``token_types`` of another length, a pattern that does not
            compile, an id outside the vocabulary.

    Example:
        >>> from lmlab.gguf_file import smollm2_gguf_file
        >>> tok = GGUFTokenizer.from_gguf(GGUFFile(smollm2_gguf_file()))
        >>> tok.encode("Hello world 42")  # every digit is a token of its own
        [19556, 905, 216, 36, 34]
        >>> tok.decode([19556, 905, 216, 36, 34])
        'Hello world 42'
    """

    def __init__(self, tokens: Sequence[str], merges: Sequence[str], token_types: Sequence[int],
                 pattern: str, bos_token_id: int | None = None,
                 eos_token_id: int | None = None) -> None:
        tokens = check_strings("tokens", tokens)
        merges = check_strings("merges", merges, allow_empty=True)
        if isinstance(token_types, (str, bytes)) or not isinstance(token_types, Sequence):
            raise TypeError(f"token_types: expected a list of ints, got "
                            f"{type(token_types).__name__}")
        for i, kind in enumerate(token_types):
            check_int(f"token_types[{i}]", kind, minimum=None)
        if len(token_types) != len(tokens):
            raise ValueError(f"token_types: expected one per token ({len(tokens)}), got "
                             f"{len(token_types)}")
        check_str("pattern", pattern, allow_empty=False)
        for name, value in (("bos_token_id", bos_token_id), ("eos_token_id", eos_token_id)):
            if value is not None:
                check_int(name, value, minimum=0, maximum=len(tokens) - 1)
        self.pattern = pattern
        try:
            self._compiled = regex.compile(pattern)
        except regex.error as err:
            raise ValueError(f"pattern: not a valid regular expression ({err})") from err
        self.tokens = list(tokens)
        self._token_to_id = {t: i for i, t in enumerate(self.tokens)}
        if len(self._token_to_id) != len(self.tokens):
            raise ValueError("tokens: the vocabulary lists a token twice")
        self.special_tokens = {t: i for i, (t, kind) in enumerate(zip(self.tokens, token_types))
                               if kind in (_CONTROL, _USER_DEFINED)}
        display = bytes_to_unicode()
        undisplay = {c: b for b, c in display.items()}
        # A byte the vocabulary lacks has no id: text that needs it is refused in encode.
        self._byte_ids = [self._token_to_id.get(display[b]) for b in range(256)]
        self._ranks: dict[tuple[int, int], int] = {}
        self._merges: dict[tuple[int, int], int] = {}
        for rank, line in enumerate(merges):
            parts = line.split(" ")
            ids = [self._token_to_id.get(p) for p in (*parts, "".join(parts))]
            if len(parts) != 2 or None in ids:
                raise ValueError(f"merges[{rank}]: {line!r} is not two tokens whose join is a "
                                 "token")
            a, b, new = ids
            self._ranks[(a, b)] = rank
            self._merges[(a, b)] = new
        self._bytes: list[bytes] = []
        for i, t in enumerate(self.tokens):
            if i in self.special_tokens.values() or not set(t) <= undisplay.keys():
                self._bytes.append(t.encode("utf-8"))
            else:
                self._bytes.append(bytes(undisplay[c] for c in t))
        self._special_re = (regex.compile("(" + "|".join(
            regex.escape(s) for s in sorted(self.special_tokens, key=len, reverse=True)) + ")")
            if self.special_tokens else None)
        self.bos_token_id = None if bos_token_id is None else int(bos_token_id)
        self.eos_token_id = None if eos_token_id is None else int(eos_token_id)
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_gguf(cls, file: GGUFFile) -> GGUFTokenizer:
        """The tokenizer described by ``file``'s ``tokenizer.ggml.*`` metadata.

        Raises:
            TypeError: ``file`` is not a :class:`GGUFFile`.
            ValueError: the file's tokenizer is not byte-level BPE (``tokenizer.ggml.model`` is
                not ``"gpt2"``), uses a pre-tokenizer not in :data:`PRE_TOKENIZER_PATTERNS`, or
                is inconsistent (metadata of the wrong type, an id outside the vocabulary ...);
                the message names the file.
        """
        check_instance("file", file, GGUFFile)
        name = file.path.name
        model = file.require("tokenizer.ggml.model")
        if model != "gpt2":
            raise ValueError(f"path: {name!r} has a {model!r} tokenizer; only byte-level BPE "
                             "('gpt2') is supported")
        pre = file.get("tokenizer.ggml.pre", "gpt2")
        if pre not in PRE_TOKENIZER_PATTERNS:
            raise ValueError(f"path: {name!r} uses the pre-tokenizer {pre!r}; supported: "
                             f"{sorted(PRE_TOKENIZER_PATTERNS)}")
        tokens = file.require("tokenizer.ggml.tokens")
        types = file.get("tokenizer.ggml.token_type") or [1] * len(tokens)
        try:
            return cls(tokens, file.require("tokenizer.ggml.merges"), types,
                       PRE_TOKENIZER_PATTERNS[pre], file.get("tokenizer.ggml.bos_token_id"),
                       file.get("tokenizer.ggml.eos_token_id"))
        except (TypeError, ValueError) as err:
            raise ValueError(f"path: {name!r} has an inconsistent tokenizer: {err}") from err

    @property
    def vocab_size(self) -> int:
        """The number of ids."""
        return len(self.tokens)

    def token_to_id(self, token: str) -> int | None:
        """The id of a token as the file spells it (``"Ġthe"``, ``"<|im_end|>"``), or ``None``.

        Raises:
            TypeError: ``token`` is not a str.
        """
        check_str("token", token)
        return self._token_to_id.get(token)

    def id_to_token(self, id: int) -> str | None:  # noqa: A002 (Hugging Face's name)
        """The token of an id as the file spells it, or ``None`` outside the vocabulary.

        Raises:
            TypeError: ``id`` is not an int.
        """
        check_int("id", id, minimum=None)
        return self.tokens[id] if 0 <= id < len(self.tokens) else None

    def _encode_chunk(self, chunk: str) -> list[int]:
        ids = []
        for b in chunk.encode("utf-8"):
            i = self._byte_ids[b]
            if i is None:
                raise ValueError(f"text: {chunk[:40]!r}{'...' if len(chunk) > 40 else ''} "
                                 f"needs the byte {b:#04x}, which this vocabulary has no "
                                 "token for")
            ids.append(i)
        return merge_ranked(ids, self._ranks, self._merges)

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` treating special-token strings as ordinary text."""
        check_str("text", text)
        out: list[int] = []
        try:
            for chunk in self._compiled.findall(text):
                ids = self._cache.get(chunk)
                if ids is None:
                    ids = self._encode_chunk(chunk)
                    if len(self._cache) >= 100_000:
                        self._cache.clear()
                    self._cache[chunk] = ids
                out.extend(ids)
        except UnicodeEncodeError as err:
            raise ValueError(f"text: cannot encode a lone surrogate ({err.reason})") from err
        return out

    def encode(self, text: str, allowed_special: str = "all") -> list[int]:
        """Encode a string into token ids (no beginning-of-sequence token is added).

        Args:
            text: a valid Unicode string.
            allowed_special: ``"all"`` maps special-token strings in ``text`` to their ids;
                ``"none"`` encodes them as ordinary text.

        Raises:
            TypeError: ``text`` is not a string.
            ValueError: ``allowed_special`` is neither ``"all"`` nor ``"none"``, or ``text``
                needs a byte the vocabulary lacks (SmolLM2 has no token for 21 bytes, among
                them the control characters U+0004 and U+0006), or holds a lone surrogate.
        """
        check_str("text", text)
        check_str("allowed_special", allowed_special)
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
        """Encode each string of ``texts`` (see :meth:`encode`); every item is checked first."""
        if isinstance(texts, str):
            raise TypeError("texts: expected a list of strings, got a single string")
        if not isinstance(texts, Iterable):
            raise TypeError(f"texts: expected a list of strings, got {type(texts).__name__}")
        texts = check_strings("texts", list(texts), allow_empty=True)
        with collector_paused():  # many small lists, no cycles
            return [self.encode(t, allowed_special) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """Turn ids back into text (special tokens included, as written); bytes that do not form
        valid UTF-8 become U+FFFD.

        Raises:
            TypeError: ``ids`` is not an iterable of ints (a str, a number ...).
            ValueError: an id is not in ``range(vocab_size)``.
        """
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise TypeError(f"ids: expected a list of ints, got {type(ids).__name__}")
        parts = []
        for i in ids:
            try:
                key = None if isinstance(i, bool) else operator.index(i)
            except TypeError:
                key = None
            if key is None or not 0 <= key < len(self._bytes):
                raise ValueError(f"ids: {i!r} is not a token id; expected ints in "
                                 f"range(0, {len(self._bytes)})")
            parts.append(self._bytes[key])
        return b"".join(parts).decode("utf-8", errors="replace")
