"""``lmlab tokenizer train|encode|decode``: byte-level BPE (chapter 5) or WordPiece on your text."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmlab.cli.common import (RUN_FILE, CLIError, OutputFolder, check_inputs, echo,
                              read_documents, write_json)

__all__ = ["add_parser", "Tokenizer", "load_tokenizer", "TextStream", "EOT"]

EOT = "<|endoftext|>"  # the end-of-text token of lmlab's byte-level BPE tokenizers
KINDS = ("bpe", "wordpiece")

TRAIN_EXAMPLE = """example:
  lmlab tokenizer train my_texts/ --out tok --vocab-size 2000
  (my_texts/: every *.txt under it, sorted; writes tok/tokenizer.json and tok/run.json)"""
ENCODE_EXAMPLE = """example:
  lmlab tokenizer encode tok "Hello world"          # prints the ids
  lmlab tokenizer encode tok --tokens "Hello world" # prints the tokens
  lmlab tokenizer encode tok --file notes.txt"""
DECODE_EXAMPLE = """example:
  lmlab tokenizer decode tok 72 101 108 108 111"""


class Tokenizer:
    """A tokenizer file of ``lmlab tokenizer train``: byte-level BPE (lmlab's JSON) or
    WordPiece (a Hugging Face ``tokenizers`` JSON file), behind one small interface."""

    def __init__(self, path: Path, kind: str, backend: Any) -> None:
        self.path = path
        self.kind = kind  # "bpe" or "wordpiece"
        self.backend = backend

    @property
    def vocab_size(self) -> int:
        if self.kind == "bpe":
            return self.backend.vocab_size
        return self.backend.get_vocab_size()

    @property
    def eot_id(self) -> int | None:
        """The id of ``<|endoftext|>`` (BPE), or ``None``."""
        return self.backend.special_tokens.get(EOT) if self.kind == "bpe" else None

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``: BPE without special tokens; WordPiece with ``[CLS] ... [SEP]``."""
        if self.kind == "bpe":
            return self.backend.encode_ordinary(text)
        return self.backend.encode(text).ids

    def tokens(self, text: str) -> list[str]:
        if self.kind == "bpe":
            return [self.backend.id_to_token(i) for i in self.encode(text)]
        return self.backend.encode(text).tokens

    def decode(self, ids: Sequence[int]) -> str:
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise CLIError(f"id {bad[0]} is not in {self.path}'s vocabulary (0 to "
                           f"{self.vocab_size - 1})")
        return self.backend.decode(list(ids))


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """The tokenizer in ``path`` (a ``tokenizer.json`` file, or a folder holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
        if not p.is_file():
            raise CLIError(f"{path}: no tokenizer.json in this folder; expected the --out "
                           "folder of 'lmlab tokenizer train'")
    elif not p.is_file():
        raise CLIError(f"{path}: no such file or folder")
    try:
        state = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CLIError(f"{p}: not a tokenizer file (not UTF-8 JSON: {err})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        from lmlab.hf_tokenizers import load_tokenizer_file

        backend = load_tokenizer_file(p)
        kind = str(state["model"].get("type", "")).lower()
        if kind != "wordpiece":
            raise CLIError(f"{p}: a {state['model'].get('type')} tokenizer; lmlab reads its "
                           "own BPE files and WordPiece")
        return Tokenizer(p, "wordpiece", backend)
    from lmlab.bpe import BPETokenizer

    return Tokenizer(p, "bpe", BPETokenizer.from_file(p))


class TextStream:
    """Text of a growing list of ids, given out piece by piece as it becomes whole.

    A byte-level token can end inside a multi-byte character; its text is held back until the
    character is complete (while the decoded text ends in U+FFFD).
    """

    def __init__(self, decode: Any) -> None:
        self.decode = decode
        self.ids: list[int] = []
        self.shown = ""

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.decode(self.ids)
        if text.endswith("\ufffd") or not text.startswith(self.shown):
            return ""
        new, self.shown = text[len(self.shown):], text
        return new

    def flush(self) -> str:
        text = self.decode(self.ids)
        new = text[len(self.shown):] if text.startswith(self.shown) else ""
        self.shown = text
        return new


def add_parser(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    group = sub.add_parser("tokenizer", help="train, use and inspect a tokenizer",
                           description="Byte-level BPE (lmlab.bpe) or WordPiece tokenizers.",
                           epilog=TRAIN_EXAMPLE, formatter_class=fmt)
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    train = actions.add_parser("train", help="learn a vocabulary from text files",
                               description="Learn a tokenizer from UTF-8 text files or folders.",
                               epilog=TRAIN_EXAMPLE, formatter_class=fmt)
    train.add_argument("inputs", nargs="+", metavar="TEXT",
                       help="UTF-8 text files, or folders (every *.txt under them)")
    train.add_argument("--out", required=True, help="the folder to write (must not exist)")
    train.add_argument("--kind", choices=KINDS, default="bpe",
                       help="bpe: byte-level BPE as GPT-2 (default); wordpiece: as BERT")
    train.add_argument("--vocab-size", type=int, default=1024,
                       help="tokens in the vocabulary, special tokens included (default 1024; "
                            "BPE: at least 257)")
    train.add_argument("--cased", action="store_true",
                       help="wordpiece: keep upper case (default: lower-case the text)")
    train.add_argument("--force", action="store_true", help="replace --out if it exists")
    train.set_defaults(handler=run_train)

    encode = actions.add_parser("encode", help="text -> token ids",
                                description="Print the ids (or tokens) of a text.",
                                epilog=ENCODE_EXAMPLE, formatter_class=fmt)
    encode.add_argument("tokenizer", help="a tokenizer folder or tokenizer.json file")
    encode.add_argument("text", help="the text (with --file: a UTF-8 file to encode)")
    encode.add_argument("--file", action="store_true", help="TEXT names a file to encode")
    encode.add_argument("--tokens", action="store_true", help="print tokens, not ids")
    encode.set_defaults(handler=run_encode)

    decode = actions.add_parser("decode", help="token ids -> text",
                                description="Print the text of token ids.",
                                epilog=DECODE_EXAMPLE, formatter_class=fmt)
    decode.add_argument("tokenizer", help="a tokenizer folder or tokenizer.json file")
    decode.add_argument("ids", nargs="+", type=int, metavar="ID", help="token ids")
    decode.set_defaults(handler=run_decode)


def run_train(args: argparse.Namespace) -> int:
    from lmlab.bpe import MAX_VOCAB_SIZE
    from lmlab.progress import progress_enabled

    low = 256 + 1 if args.kind == "bpe" else 6
    if not low <= args.vocab_size <= MAX_VOCAB_SIZE:
        raise CLIError(f"--vocab-size {args.vocab_size}: a {args.kind} vocabulary holds from "
                       f"{low} to {MAX_VOCAB_SIZE} tokens")
    files = check_inputs(args.inputs)
    out = OutputFolder(args.out, args.force)
    docs = read_documents(files)
    chars = sum(len(d.text) for d in docs)
    echo(f"read {len(docs)} file{'s' * (len(docs) != 1)}, {chars:,} characters")
    with out:
        if args.kind == "bpe":
            from lmlab.bpe import BPETokenizer

            tok = BPETokenizer(special_tokens=[EOT])
            text = "\n\n".join(d.text for d in docs)
            tok.train(text, args.vocab_size, show_progress=progress_enabled())
            tok.save(out.path("tokenizer.json"))
            size = tok.vocab_size
        else:
            from lmlab.hf_tokenizers import save_tokenizer_file
            from lmlab.wordpiece import train_wordpiece

            tok = train_wordpiece([d.text for d in docs], args.vocab_size,
                                  lowercase=not args.cased)
            save_tokenizer_file(tok, out.path("tokenizer.json"))
            size = tok.get_vocab_size()
        write_json(out.path(RUN_FILE), {
            "command": "lmlab tokenizer train", "kind": "tokenizer",
            "tokenizer": args.kind, "vocab_size": size,
            "requested_vocab_size": args.vocab_size, "lowercase": not args.cased,
            "files": [str(d.path) for d in docs], "characters": chars})
        where = out.commit()
    note = "" if size == args.vocab_size else f" (no pair left to merge before {args.vocab_size})"
    echo(f"trained a {args.kind} tokenizer of {size:,} tokens{note}")
    echo(f"wrote {where / 'tokenizer.json'}")
    return 0


def _text(args: argparse.Namespace) -> str:
    if args.file:
        return read_documents(check_inputs([args.text]))[0].text
    return args.text


def run_encode(args: argparse.Namespace) -> int:
    tok = load_tokenizer(args.tokenizer)
    text = _text(args)
    if args.tokens:
        echo(" ".join(tok.tokens(text)))
    else:
        echo(" ".join(map(str, tok.encode(text))))
    return 0


def run_decode(args: argparse.Namespace) -> int:
    tok = load_tokenizer(args.tokenizer)
    echo(tok.decode(args.ids))
    return 0
