"""What every subcommand shares: reading the user's text, output folders, devices, tokenizers.

Everything here checks before work starts and fails with a :class:`CLIError` whose message is
the one line ``lmlab: error: ...`` that :func:`lmlab.cli.main` prints.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CLIError", "Document", "read_documents", "check_inputs", "OutputFolder",
           "resolve_device", "add_device_option", "write_json", "write_out", "model_file",
           "echo"]

RUN_FILE = "run.json"  # what a command wrote and how (in every output folder)
READ_BAR_BYTES = 50_000_000  # reading this much text shows a progress bar


class CLIError(Exception):
    """Bad input or a state the user can fix: printed as one line, exit status 1."""


def echo(*parts: object) -> None:
    """A line of results on standard output (progress bars go to standard error)."""
    print(*parts, flush=True)


# --------------------------------------------------------------------------- input text


@dataclass(frozen=True)
class Document:
    """One UTF-8 text file of the user's."""

    path: Path  # as the user named it (or found under a folder they named)
    text: str  # decoded, without a byte-order mark, with "\n" line ends


def _files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The files that ``paths`` name: files as given, folders as every ``*.txt`` under them."""
    if not paths:
        raise CLIError("no input: name text files or folders of *.txt files")
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(f for f in p.rglob("*.txt") if f.is_file())
            if not inside:
                raise CLIError(f"{p}: a folder without *.txt files")
            found += inside
        elif p.is_file():
            found.append(p)
        elif p.exists():
            raise CLIError(f"{p}: not a file or folder")
        else:
            raise CLIError(f"{p}: no such file or folder")
    return found


def _decode(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CLIError(f"{path}: cannot read it ({err.strerror or err})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CLIError(f"{path}: not UTF-8 text: byte {err.start} is "
                       f"0x{data[err.start]:02x}; save the file as UTF-8") from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise CLIError(f"{path}: empty file" if not text else f"{path}: only white space")
    return text


def check_inputs(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The files ``paths`` name, each checked to exist (folders: their ``*.txt``)."""
    return _files(paths)


def read_documents(files: Sequence[Path]) -> list[Document]:
    """Read and check every file (UTF-8, not empty), with a progress bar over the files."""
    from lmlab.progress import progress

    docs = []
    big = sum(f.stat().st_size for f in files) >= READ_BAR_BYTES
    with progress(files, desc="read", enabled=None if big else False) as bar:
        for f in bar:
            docs.append(Document(f, _decode(f)))
    return docs


# --------------------------------------------------------------------------- output folders


def _nearest_folder(path: Path) -> Path:
    """The deepest folder of ``path``'s ancestors that exists."""
    for parent in path.absolute().parents:
        if parent.is_dir():
            return parent
    raise CLIError(f"{path}: no existing folder above it")  # pragma: no cover (/ exists)


class OutputFolder:
    """A folder the user names, written all at once or not at all.

    Checked when made (before any work): ``path`` must not exist unless ``force``, and its
    nearest existing ancestor must be writable. Files go into a hidden temporary folder beside
    it (``folder.path(name)``); :meth:`commit` moves that folder into place (replacing an old
    one when ``force``); :meth:`discard` (or an error inside ``with``) deletes it.
    """

    def __init__(self, path: str | os.PathLike[str], force: bool = False,
                 option: str = "--out") -> None:
        self.target = Path(path)
        self.option = option
        if self.target.exists() and not self.target.is_dir():
            raise CLIError(f"{option} {self.target}: is a file; name a folder to write")
        if self.target.exists() and not force:
            raise CLIError(f"{option} {self.target}: already exists; name a new folder, or "
                           "add --force to replace it")
        self.base = _nearest_folder(self.target)
        if not os.access(self.base, os.W_OK | os.X_OK):
            raise CLIError(f"{option} {self.target}: cannot write in {self.base}")
        self.tmp: Path | None = None

    def __enter__(self) -> OutputFolder:
        self.tmp = Path(tempfile.mkdtemp(dir=self.base, prefix=f".{self.target.name}.",
                                         suffix=".tmp"))
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        self.discard()

    def path(self, name: str) -> Path:
        """Where to write the file ``name`` (inside the temporary folder)."""
        assert self.tmp is not None, "use OutputFolder in a with block"
        return self.tmp / name

    def commit(self) -> Path:
        """Move the finished folder into place; returns its final path."""
        assert self.tmp is not None
        self.target.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if self.target.exists():
            old = Path(tempfile.mkdtemp(dir=self.target.parent, prefix=f".{self.target.name}.",
                                        suffix=".old"))
            os.replace(self.target, old / "previous")
        os.replace(self.tmp, self.target)
        self.tmp = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.target

    def discard(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented UTF-8 JSON (the folder is moved into place as a whole)."""
    from lmlab.io import save_json

    save_json(obj, path)


def model_file(path: str | os.PathLike[str], command: str) -> Path:
    """A model file: ``path`` itself, or ``model.safetensors`` in the folder ``path``."""
    p = Path(path)
    if p.is_dir():
        p = p / "model.safetensors"
        if not p.is_file():
            raise CLIError(f"{path}: no model.safetensors in this folder; expected the --out "
                           f"folder of '{command}'")
    elif not p.is_file():
        raise CLIError(f"{path}: no such file or folder")
    return p


# --------------------------------------------------------------------------- devices

DEVICES = ("auto", "cpu", "cuda", "mps")


def _device_arg(value: str) -> str:
    base = value.split(":", 1)[0]
    if base not in DEVICES or (":" in value and (base != "cuda"
                                                 or not value.split(":", 1)[1].isdigit())):
        raise argparse.ArgumentTypeError(f"{value!r}: expected one of {', '.join(DEVICES)} "
                                         "(or cuda:N)")
    return value


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", type=_device_arg, metavar="DEVICE",
                        help="auto (CUDA, then Apple MPS, then CPU; or LMLAB_DEVICE), cpu, "
                             "cuda, cuda:N or mps (default: auto)")


def resolve_device(name: str) -> Any:
    """The :class:`torch.device` for ``--device``; one line when it is not available here."""
    import torch

    from lmlab.device import get_device

    try:
        return get_device(None if name == "auto" else name, name="--device")
    except RuntimeError:
        if name.startswith("cuda"):
            build = ("a CPU-only build" if torch.version.cuda is None
                     else f"built for CUDA {torch.version.cuda}")
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            raise CLIError(f"--device {name}: no such CUDA device here ({count} found; torch "
                           f"{torch.__version__} is {build}); use --device cpu or auto") from None
        raise CLIError(f"--device {name}: not available on this machine; use --device cpu "
                       "or auto") from None
    except ValueError as err:
        raise CLIError(str(err)) from None


def write_out(piece: str) -> None:
    """Write a piece of text to standard output now (streamed tokens)."""
    if piece:
        sys.stdout.write(piece)
        sys.stdout.flush()
