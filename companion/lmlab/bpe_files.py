"""Reading BPE files for :mod:`lmlab.bpe`: lmlab's own JSON and GPT-2's released pair of files.

:class:`lmlab.bpe.BPETokenizer` reads its files through :func:`read_state` (``load`` and
``from_file``) and :func:`read_gpt2` (``from_pretrained("gpt2")``). Every check runs before
anything is built; a truncated or corrupted file raises ``ValueError``
whose message starts with the parameter's name and names the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import regex

from lmlab._checks import check_file, check_int

FORMAT = "lmlab-bpe"
"""The ``"format"`` entry of a file written by ``BPETokenizer.save``."""
FORMAT_VERSION = 1
"""The ``"version"`` entry of such a file."""


def _file_error(name: str, path: str | os.PathLike[str], what: str) -> ValueError:
    return ValueError(f"{name}: {str(path)!r} {what}")


def _read_json(name: str, path: str | os.PathLike[str]) -> object:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _file_error(name, path, f"is not valid UTF-8 JSON (truncated or corrupted?): "
                         f"{err}") from err


def read_state(path: str | os.PathLike[str], max_id: int) -> tuple[
        str, regex.Pattern, list[int], list[tuple[int, int, int]], dict[str, int]]:
    """Read and check a file written by ``BPETokenizer.save``.

    Args:
        path: the JSON file.
        max_id: ids must lie in ``range(max_id)``.

    Returns:
        The pattern, its compiled regex, the byte -> id table, the merges ``(a, b, new)`` in
        rank order and the special tokens.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not such a file, or an inconsistent one; the message names it.
    """
    path = check_file("path", path)
    check_int("max_id", max_id, minimum=256)
    state = _read_json("path", path)

    def bad(what: str) -> ValueError:
        return _file_error("path", path, what)

    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise bad("is not an lmlab BPE tokenizer file")
    if state.get("version") != FORMAT_VERSION:
        raise bad(f"has unsupported version {state.get('version')!r}; expected "
                  f"{FORMAT_VERSION}")
    pattern, byte_ids = state.get("pattern"), state.get("byte_ids")
    merges, specials = state.get("merges"), state.get("special_tokens")
    if not isinstance(pattern, str) or not pattern:
        raise bad("has no pattern")
    try:
        compiled = regex.compile(pattern)
    except regex.error as err:
        raise bad(f"has an invalid pattern ({err})") from err
    if compiled.groups:
        raise bad("has a pattern with capturing groups")

    def is_id(x: object) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < max_id

    if (not isinstance(byte_ids, list) or len(byte_ids) != 256
            or not all(map(is_id, byte_ids)) or len(set(byte_ids)) != 256):
        raise bad("has no valid byte_ids (256 distinct ids)")
    known = set(byte_ids)
    if not isinstance(merges, list):
        raise bad("has no list of merges")
    for n, m in enumerate(merges):
        if (not isinstance(m, list) or len(m) != 3 or not all(map(is_id, m))
                or m[0] not in known or m[1] not in known or m[2] in known):
            raise bad(f"has an invalid merge #{n}: {m!r}")
        known.add(m[2])
    if (not isinstance(specials, dict) or not all(isinstance(s, str) and s and is_id(i)
                                                  for s, i in specials.items())
            or set(specials.values()) & known
            or len(set(specials.values())) != len(specials)):
        raise bad("has invalid special_tokens")
    return pattern, compiled, byte_ids, [tuple(m) for m in merges], specials


def read_gpt2(encoder_json: str | os.PathLike[str], vocab_bpe: str | os.PathLike[str],
              display: dict[int, str]
              ) -> tuple[list[int], list[tuple[int, int, int]], dict[str, int]]:
    """Read and cross-check GPT-2's ``encoder.json`` and ``vocab.bpe``.

    Args:
        encoder_json: GPT-2's token -> id file.
        vocab_bpe: GPT-2's merges, one ``"a b"`` per line in rank order.
        display: byte -> the character GPT-2 shows for it
            (:func:`lmlab.byte_pairs.bytes_to_unicode`).

    Returns:
        The byte -> id table, the merges ``(a, b, new)`` in rank order and the special tokens.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a file is not what it should be, or the two do not belong together; the
            message names the file.
    """
    if not isinstance(display, dict) or sorted(display) != list(range(256)):
        raise TypeError("display: expected a dict of the 256 bytes to str "
                        "(lmlab.byte_pairs.bytes_to_unicode())")
    encoder_json = check_file("encoder_json", encoder_json)
    vocab_bpe = check_file("vocab_bpe", vocab_bpe)
    encoder = _read_json("encoder_json", encoder_json)
    if not isinstance(encoder, dict) or not all(
            isinstance(t, str) and isinstance(i, int) and not isinstance(i, bool)
            for t, i in encoder.items()):
        raise _file_error("encoder_json", encoder_json, "is not a JSON object of token -> id")
    if sorted(encoder.values()) != list(range(len(encoder))):
        raise _file_error("encoder_json", encoder_json,
                         f"does not number its {len(encoder)} tokens 0..{len(encoder) - 1}")
    missing = [display[b] for b in range(256) if display[b] not in encoder]
    if missing:
        raise _file_error("encoder_json", encoder_json,
                         f"lacks {len(missing)} byte tokens (e.g. {missing[0]!r})")
    byte_ids = [encoder[display[b]] for b in range(256)]
    merges = []
    produced = set(display.values())
    try:
        lines = Path(vocab_bpe).read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as err:
        raise _file_error("vocab_bpe", vocab_bpe, f"is not UTF-8 text: {err}") from err
    for number, line in enumerate(lines, start=1):
        if (number == 1 and line.startswith("#version")) or not line:
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise _file_error("vocab_bpe", vocab_bpe,
                             f"line {number}: expected two tokens separated by one space, "
                             f"got {line!r}")
        a, b = parts
        for token in (a, b, a + b):
            if token not in encoder:
                raise _file_error("vocab_bpe", vocab_bpe,
                                 f"line {number}: {token!r} is not in encoder.json "
                                 "(the files do not belong together, or one is corrupted)")
        if a + b in produced:
            raise _file_error("vocab_bpe", vocab_bpe,
                             f"line {number}: {a + b!r} is produced twice")
        produced.add(a + b)
        merges.append((encoder[a], encoder[b], encoder[a + b]))
    leftover = [t for t in encoder if t not in produced]
    specials = {t: encoder[t] for t in leftover if t.startswith("<|") and t.endswith("|>")}
    orphans = [t for t in leftover if t not in specials]
    if orphans:
        raise _file_error("vocab_bpe", vocab_bpe,
                         f"has {len(merges):,} merges, but {len(orphans):,} tokens of "
                         f"encoder.json (e.g. {orphans[0]!r}) come from no merge: the file "
                         "is cut short or belongs to another vocabulary")
    return byte_ids, merges, specials
