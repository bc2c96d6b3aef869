"""The ``lmlab`` command line: the course's models on your own text.

::

    lmlab tokenizer train my_texts/ --out tok --vocab-size 2000
    lmlab gpt train my_texts/ --tokenizer tok --preset tiny --steps 500 --out gpt
    lmlab gpt generate gpt --prompt "Once upon" --temperature 0.8 --seed 0
    lmlab word2vec train my_texts/ --out vectors
    lmlab word2vec similar vectors king
    lmlab embed --sentence "A cat sat." --sentence "A dog sat."
    lmlab chat --prompt "What is a tokenizer?"
    lmlab info

Each subcommand group lives in its own module (:mod:`lmlab.cli.tokenizer`, ...); this one
builds the parser and turns bad input into one line on standard error (``lmlab: error: ...``)
with exit status 1 (2 for a malformed command line), never a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lmlab.cli.common import CLIError

__all__ = ["main", "build_parser"]

_GROUPS = ("tokenizer", "word2vec", "gpt", "embed", "chat", "info")


class _UsageError(Exception):
    """A malformed command line (argparse's complaint), printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``lmlab: error: ...; see 'PROG --help'``)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> Parser:
    """The ``lmlab`` parser with every subcommand (building it imports no torch)."""
    import importlib

    from lmlab import __version__

    parser = Parser(prog="lmlab", description="The lmlab course's models on your own text.",
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    epilog="example:\n  lmlab tokenizer train my_texts/ --out tok\n\n"
                           "'lmlab COMMAND --help' shows each command's options and an example.")
    parser.add_argument("--version", action="version", version=f"lmlab {__version__}")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for group in _GROUPS:
        importlib.import_module(f"lmlab.cli.{group}").add_parser(sub)
    return parser


def _one_line(err: BaseException) -> str:
    message = err.args[0] if len(err.args) == 1 and isinstance(err.args[0], str) else str(err)
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    return " ".join(lines) or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lmlab`` with ``argv`` (default: the process's arguments); returns the exit status.

    Example:
        >>> main(["info", "--help"]) == 0  # doctest: +ELLIPSIS
        usage: lmlab info ...
        True
    """
    parser = build_parser()
    debug = False
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as stop:  # --help, --version
            return int(stop.code or 0)
        debug = args.debug
        if args.quiet:
            from lmlab.progress import set_progress

            set_progress(False)
        if args.command is None:
            parser.print_help()
            return 2
        return int(args.handler(args) or 0)
    except _UsageError as err:
        print(f"lmlab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("lmlab: interrupted; nothing was written", file=sys.stderr)
        return 130
    except (CLIError, ValueError, OSError, ImportError, RuntimeError, ArithmeticError) as err:
        # OSError covers missing files and TimeoutError (a torchrun world that did not form);
        # ImportError covers lmlab.data.MissingDataError (weights or data not installed);
        # RuntimeError covers devices that are not there and running out of memory.
        if debug:
            raise
        print(f"lmlab: error: {_one_line(err)}", file=sys.stderr)
        return 1
