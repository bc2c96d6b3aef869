"""Atomic files, JSON and safetensors checkpoints.

Everything lmlab writes goes through :func:`atomic_write`: the file appears complete or not at
all. Weights are stored with safetensors and read back without pickle; NumPy archives are read
with ``allow_pickle=False``. A file that is missing, truncated or not of the expected format
gives an error that names it.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from lmlab._checks import check_file, check_path
from lmlab.device import get_device

__all__ = ["atomic_write", "save_tensors", "load_tensors", "read_metadata", "save_json",
           "load_json", "load_npz"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w",
                 encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` and move it over ``path`` only on success.

    The data is flushed to disk before the move, so a crash leaves either the old file or the
    complete new one, never half of it.

    Args:
        path: the destination file; its folder must exist.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        encoding: text encoding (ignored for bytes).

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> with atomic_write(folder / "note.txt") as f:
        ...     _ = f.write("all or nothing")
        >>> (folder / "note.txt").read_text()
        'all or nothing'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: expected 'w' or 'wb', got {mode!r}")
    if "b" not in mode and encoding is not None:
        if not isinstance(encoding, str):
            raise TypeError(f"encoding: expected a str, got {type(encoding).__name__}")
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"encoding: unknown text encoding {encoding!r}") from None
    path = check_path("path", path, folder_must_exist=True)
    if path.is_dir():
        raise ValueError(f"path: {str(path)!r} is a folder; expected a file to write")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_tensors(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike[str],
                 metadata: Mapping[str, str] | None = None) -> None:
    """Save named tensors to a safetensors file, atomically.

    Tensors are moved to the CPU and made contiguous first. Tensors that share memory (tied
    weights, as in a ``state_dict`` with a tied language-model head) are each stored in full.
    The same tensors and metadata always give the same bytes (the metadata is written in
    sorted key order).

    Args:
        tensors: name -> tensor.
        path: the destination file; its folder must exist.
        metadata: optional str -> str pairs stored in the file's header.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "w.safetensors"
        >>> save_tensors({"w": torch.ones(2)}, path, metadata={"note": "ones"})
        >>> load_tensors(path)["w"], read_metadata(path)
        (tensor([1., 1.]), {'note': 'ones'})
    """
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors: expected a mapping of str to torch.Tensor, "
                        f"got {type(tensors).__name__}")
    for key, value in tensors.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise TypeError(f"tensors: expected str -> torch.Tensor, got {key!r}: "
                            f"{type(value).__name__}")
        if value.is_meta:
            raise ValueError(f"tensors: {key!r} is on the meta device (a shape without data)")
    if metadata is not None:
        if not isinstance(metadata, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("metadata: expected a mapping of str to str")
    path = check_path("path", path, folder_must_exist=True)
    cpu: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for key, value in tensors.items():
        t = value.detach().to("cpu").contiguous()
        where = (t.untyped_storage().data_ptr(), t.storage_offset())
        if t.numel() and where in seen or t.untyped_storage().nbytes() != t.nbytes:
            t = t.clone()  # shared or partial storage: safetensors stores each tensor on its own
        seen.add(where)
        cpu[key] = t
    data = _sorted_metadata(_st_save(cpu, metadata=dict(metadata) if metadata else None))
    with atomic_write(path, "wb") as f:
        f.write(data)


def _sorted_metadata(data: bytes) -> bytes:
    """``data`` with its header's metadata in sorted key order, so that the same tensors and
    metadata always give the same bytes (safetensors writes the metadata in hash-map order,
    which changes from process to process)."""
    size = int.from_bytes(data[:8], "little")
    raw = data[8:8 + size]
    header = json.loads(raw)
    if "__metadata__" not in header:
        return data
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    if len(text) != len(raw.rstrip(b" ")) or json.loads(text) != json.loads(raw):
        return data  # an escape written differently: keep safetensors' own bytes
    return data[:8] + text.ljust(size, b" ") + data[8 + size:]


def _unreadable(path: Path, kind: str, err: BaseException) -> ValueError:
    return ValueError(f"{path}: not a readable {kind} file (truncated or corrupted?): {err}")


def load_tensors(path: str | os.PathLike[str],
                 device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file (no pickle involved) onto ``device``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is truncated or not safetensors; the message names it.
    """
    path = check_file("path", path)
    device = get_device(device, name="device")
    try:
        tensors = _st_load(path.read_bytes())
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise _unreadable(path, "safetensors", err) from None
    if str(device) != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    return tensors


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The str -> str metadata in a safetensors file's header (empty if there is none).

    Only the header is read, so this is cheap even for a large file.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is truncated or not safetensors; the message names it.
    """
    path = check_file("path", path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise _unreadable(path, "safetensors", err) from None


def save_json(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write ``obj`` as pretty UTF-8 JSON, atomically (the one JSON writer of the package).

    Raises:
        TypeError: ``obj`` holds something JSON cannot represent (checked before writing).
        ValueError: ``obj`` holds NaN or infinity (not valid JSON).
    """
    try:
        text = json.dumps(obj, ensure_ascii=False, indent=1, allow_nan=False)
    except TypeError as err:
        raise TypeError(f"obj: cannot be written as JSON: {err}") from None
    except ValueError as err:
        raise ValueError(f"obj: cannot be written as JSON: {err}") from None
    with atomic_write(path, "w") as f:
        f.write(text + "\n")


def load_json(path: str | os.PathLike[str]) -> Any:
    """Read a UTF-8 JSON file (the one JSON reader of the package).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is truncated or not JSON; the message names it and the position.
    """
    path = check_file("path", path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _unreadable(path, "JSON", err) from None


def load_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read every array of a NumPy ``.npz`` archive, without pickle.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is truncated, not an ``.npz`` archive, or holds pickled objects; the
            message names it.
    """
    path = check_file("path", path)
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with archive:
            return {name: archive[name] for name in archive.files}
    except Exception as err:  # zipfile, zlib, numpy and OS errors alike: the file is bad
        raise _unreadable(path, ".npz", err) from None
