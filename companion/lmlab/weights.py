"""Loading published weights by table: the machinery shared by BERT and the Llama family.

One rule for every checkpoint lmlab reads (:mod:`lmlab.pretrained`, :mod:`lmlab.llama`): an
explicit table from the file's tensor names to lmlab's, written out for a depth by
:func:`expand_names`; every shape checked before any copy; a missing or unexpected tensor an
error naming it and the file (:func:`check_names`, :func:`fill_weights`). Hugging Face folders
(``config.json``, ``model.safetensors`` or its sharded index) are read with :func:`read_json`,
:class:`SafetensorsFolder` and :func:`config_reader`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lmlab._checks import (check_bool, check_callable, check_float, check_instance, check_int,
                           check_path, check_str, check_strings)
from lmlab.sublayers import MultiHeadAttention
from lmlab.transformer_config import TransformerConfig

__all__ = ["expand_names", "check_names", "fill_weights", "read_json", "SafetensorsFolder",
           "checkpoint_folder", "config_reader", "transformer_config"]

_FIELDS = re.compile(r"\{[^{}]*\}")  # str.format fields of a name-table entry


# ---------------------------------------------------------------------- loading by table


def expand_names(table: Mapping[str, str], num_layers: int) -> dict[str, str]:
    """Write out a name table for ``num_layers`` layers (``{i}`` -> 0, 1, ...).

    Args:
        table: file name -> model name, ``{i}`` standing for the layer on both sides of a
            per-layer entry (and on neither side of the others).
        num_layers: the number of layers (>= 1).

    Raises:
        TypeError: ``table`` is not a mapping of str to str, or ``num_layers`` not an int.
        ValueError: ``num_layers`` < 1, or an entry has ``{i}`` on one side only or another
            ``{...}`` field.

    Example:
        >>> expand_names({"a.{i}.w": "b.{i}.w", "c": "d"}, 2)
        {'a.0.w': 'b.0.w', 'a.1.w': 'b.1.w', 'c': 'd'}
    """
    if not isinstance(table, Mapping):
        raise TypeError(f"table: expected a mapping of str to str, got {type(table).__name__}")
    check_int("num_layers", num_layers)
    for source, target in table.items():
        if not isinstance(source, str) or not isinstance(target, str) or not source \
                or not target:
            raise TypeError(f"table: expected non-empty str -> str entries, got "
                            f"{source!r}: {target!r}")
        fields = [set(_FIELDS.findall(name)) for name in (source, target)]
        if any(f - {"{i}"} for f in fields) or fields[0] != fields[1]:
            raise ValueError(f"table: entry {source!r}: {target!r} must hold {{i}} on both "
                             "sides or on neither, and no other {...} field")
    out: dict[str, str] = {}
    for source, target in table.items():
        if "{i}" in source:
            out.update({source.format(i=i): target.format(i=i) for i in range(num_layers)})
        else:
            out[source] = target
    return out


def _fused_rows(model: torch.nn.Module, target: str, label: str) -> tuple[str, slice]:
    """``"blocks.0.attn.qkv_proj.weight[k]"`` -> the fused tensor's name and the key rows.

    The owner (``blocks.0.attn``) must be a :class:`~lmlab.sublayers.MultiHeadAttention` with
    a fused projection: query rows ``[0, HD)``, then key and value rows (``GD`` each)."""
    name, part = target[:-3], target[-2]
    owner_name = name.rsplit(".", 2)[0] if name.count(".") >= 2 else ""  # "": the model
    try:
        owner = model.get_submodule(owner_name)
    except AttributeError:
        owner = None
    if not isinstance(owner, MultiHeadAttention) or owner.qkv_proj is None:
        raise ValueError(f"{label}: the table names {target!r}, but {owner_name!r} is not an "
                         "attention layer with a fused qkv_proj")
    HD, GD = owner.num_heads * owner.head_dim, owner.num_kv_heads * owner.head_dim
    start, size = {"q": (0, HD), "k": (HD, GD), "v": (HD + GD, GD)}[part]
    return name, slice(start, start + size)


def fill_weights(model: torch.nn.Module, names: Mapping[str, str],
                 read: Callable[[str], torch.Tensor], shape_of: Callable[[str], tuple[int, ...]],
                 label: str) -> None:
    """Copy every tensor of a name table from a file into ``model``, shapes checked first.

    Every shape is checked before anything is copied, and every parameter and persistent
    buffer of the model must be filled exactly once (tied parameters once under either name).
    A model name ending in ``[q]``, ``[k]`` or ``[v]`` is those rows of a fused q/k/v projection
    (``blocks.0.attn.qkv_proj.weight[q]``); a fused tensor needs all three parts.

    Args:
        model: the model to fill (its parameters are overwritten in place).
        names: file name -> model name (:func:`expand_names`' output).
        read: the file's tensor of a name.
        shape_of: the file's shape of a name (read without the data).
        label: how messages name the file (``"path: 'model.safetensors'"``).

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: a shape that does not fit, a model name the model does not have, or a
            parameter nothing fills; the message starts with ``label``.
    """
    check_instance("model", model, torch.nn.Module)
    if not isinstance(names, Mapping):
        raise TypeError(f"names: expected a mapping of str to str, got {type(names).__name__}")
    check_callable("read", read)
    check_callable("shape_of", shape_of)
    check_str("label", label)
    state = model.state_dict(keep_vars=True)
    shared = {id(t): k for k, t in state.items()}  # tied parameters appear under two names
    targets = {}
    places: dict[str, tuple[str, slice | None]] = {}  # file name -> (model name, rows)
    parts: dict[str, set[str]] = {}  # fused model name -> parts filled
    for source, target in names.items():
        rows = None
        name = target
        if target.endswith(("[q]", "[k]", "[v]")):
            name, rows = _fused_rows(model, target, label)
            parts.setdefault(name, set()).add(target[-2])
        if name not in state:
            raise ValueError(f"{label}: the table maps {source!r} to {target!r}, which the model "
                             "does not have")
        want = tuple(state[name].shape)
        if rows is not None:
            want = (rows.stop - rows.start, *want[1:])
        if shape_of(source) != want:
            raise ValueError(f"{label}: tensor {source!r} has shape {shape_of(source)}, "
                             f"expected {want} for {target!r}")
        targets[id(state[name])] = name
        places[source] = (name, rows)
    for name, filled in parts.items():
        if filled != {"q", "k", "v"}:
            missing = sorted({"q", "k", "v"} - filled)
            raise ValueError(f"{label}: nothing in the file fills {name}{missing}")
    uncovered = [k for k, t in state.items() if id(t) not in targets and shared[id(t)] == k]
    if uncovered:
        raise ValueError(f"{label}: nothing in the file fills {uncovered[:5]}")
    with torch.no_grad():
        for source, (name, rows) in places.items():
            (state[name] if rows is None else state[name][rows]).copy_(read(source))


def check_names(present: Iterable[str], expected: Iterable[str], label: str,
                unused: Sequence[str] = (), unused_prefixes: Sequence[str] = ()) -> None:
    """Check that a file holds exactly the tensors a name table expects.

    Args:
        present: the file's tensor names.
        expected: the names the table reads.
        label: how messages name the file.
        unused: names the file may hold and lmlab leaves unread (a classifier head).
        unused_prefixes: the same, by prefix (``"cls."``).

    Raises:
        TypeError: an argument that is not a str or a collection of str.
        ValueError: a tensor missing, or one neither expected nor unused; the message starts
            with ``label`` and names the first such tensor.

    Example:
        >>> check_names(["a", "pooler.w"], ["a"], "path: 'x'", unused_prefixes=["pooler."])
        >>> check_names(["a"], ["a", "b"], "path: 'x'")
        Traceback (most recent call last):
        ...
        ValueError: path: 'x': missing tensor 'b'
    """
    check_str("label", label)
    present, expected = (set(check_strings(name, list(value) if isinstance(value, Iterable)
                                           and not isinstance(value, (str, bytes)) else value,
                                           allow_empty=True))
                         for name, value in (("present", present), ("expected", expected)))
    unused = check_strings("unused", unused, allow_empty=True)
    unused_prefixes = tuple(check_strings("unused_prefixes", unused_prefixes,
                                          allow_empty=True))
    missing = sorted(expected - present)
    if missing:
        raise ValueError(f"{label}: missing tensor {missing[0]!r}"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    unexpected = sorted(n for n in present - expected
                        if n not in unused and not n.startswith(unused_prefixes))
    if unexpected:
        raise ValueError(f"{label}: unexpected tensor {unexpected[0]!r}"
                         + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
                         + "; is this the model family it claims to be?")


# ---------------------------------------------------------------------- Hugging Face folders


def read_json(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """A JSON object from a file of a checkpoint folder (``config.json`` ...).

    Args:
        path: the file.
        what: how messages name the folder it belongs to.

    Raises:
        TypeError: ``path`` is not a path or ``what`` not a str.
        FileNotFoundError: no file at ``path``.
        ValueError: not UTF-8 JSON, or not a JSON object; the message names the file.
    """
    path = check_path("path", path)
    check_str("what", what)
    if not path.is_file():
        raise FileNotFoundError(f"path: {what} has no {path.name} (looked at {str(path)!r})")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"path: {path.name!r} in {what} is not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise ValueError(f"path: {path.name!r} in {what} is not a JSON object")
    return value


class SafetensorsFolder:
    """The tensors of a Hugging Face folder: ``model.safetensors`` or its sharded index.

    The files are opened memory-mapped: names and shapes cost no read of the data.

    Args:
        folder: the checkpoint folder.

    Raises:
        TypeError: ``folder`` is not a path.
        FileNotFoundError: no such folder, or neither ``model.safetensors`` nor
            ``model.safetensors.index.json`` in it.
        ValueError: a file that is not safetensors (truncated or corrupted); the message names
            it.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        from safetensors import safe_open

        folder = checkpoint_folder(folder)
        self.folder = folder
        single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
        if single.is_file():
            files = [single]
        elif index.is_file():
            weight_map = read_json(index, str(folder)).get("weight_map", {})
            files = sorted({folder / f for f in weight_map.values()})
        else:
            raise FileNotFoundError(f"path: {str(folder)!r} has no model.safetensors")
        self._where: dict[str, Any] = {}
        self._handles = []
        for f in files:
            try:
                handle = safe_open(str(f), framework="pt")
                names = list(handle.keys())
            except Exception as err:  # SafetensorError, OSError
                raise ValueError(f"path: {f.name!r} is not a valid safetensors file ({err})") from err
            self._handles.append(handle)
            self._where.update({n: (f, handle) for n in names})

    def names(self) -> list[str]:
        """Every tensor name of the folder's files."""
        return list(self._where)

    def _file(self, name: object) -> tuple[Path, Any]:
        check_str("name", name)
        if name not in self._where:
            raise ValueError(f"name: {str(self.folder)!r} holds no tensor {name!r}")
        return self._where[name]  # type: ignore[index]

    def shape(self, name: str) -> tuple[int, ...]:
        """A tensor's shape, read from the file's header."""
        return tuple(self._file(name)[1].get_slice(name).get_shape())

    def read(self, name: str) -> torch.Tensor:
        """A tensor as float32 on the CPU.

        Raises:
            ValueError: no such tensor, or it cannot be read, is not floating point, or holds
                NaN or infinity; the message names the file.
        """
        path, handle = self._file(name)
        try:
            t = handle.get_tensor(name)
        except Exception as err:
            raise ValueError(f"path: {path.name!r}: tensor {name!r} cannot be read ({err})") from err
        if not t.is_floating_point():
            raise ValueError(f"path: {path.name!r}: tensor {name!r} is {t.dtype}, not floating point")
        t = t.float()
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"path: {path.name!r}: tensor {name!r} holds NaN or infinite values")
        return t


def checkpoint_folder(path: object) -> Path:
    """``path`` as an existing folder.

    Raises:
        TypeError: ``path`` is not a str or os.PathLike.
        FileNotFoundError: no folder at ``path``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a folder path (str or os.PathLike), got "
                        f"{type(path).__name__}")
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"path: no folder at {str(folder)!r}")
    return folder


_REQUIRED = object()


def config_reader(hf: object, label: object) -> Callable[..., Any]:
    """``read(key, kind, default, minimum)``: the config's value for ``key``, checked.

    Args:
        hf: the parsed config (``config.json``, or a GGUF file's metadata).
        label: how messages name the file.

    Returns:
        The reader. ``kind`` is ``"int"`` (>= ``minimum``), ``"float"`` (finite, > ``minimum``), ``"bool"`` or
    ``"str"``; a missing (or ``null``) key gives ``default``, or without one a ``ValueError``
    naming ``label``. A value of the wrong kind raises naming ``label`` and the key.
    """
    if not isinstance(hf, Mapping):
        raise TypeError(f"hf: expected the parsed config.json (a mapping), got "
                        f"{type(hf).__name__}")
    label = check_str("label", label)

    def read(key: str, kind: str = "int", default: Any = _REQUIRED,
             minimum: float | None = 1) -> Any:
        value = hf.get(key)
        if value is None:
            if default is _REQUIRED:
                raise ValueError(f"path: {label} has no {key!r}")
            return default
        try:
            if kind == "int":
                return check_int(key, value, minimum=None if minimum is None else int(minimum))
            if kind == "float":
                return check_float(key, value, minimum, min_inclusive=False)
            if kind == "bool":
                return check_bool(key, value)
            return check_str(key, value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"path: {label}: {err}") from None
    return read


def transformer_config(label: str, **fields: Any) -> TransformerConfig:
    """``TransformerConfig(**fields)``, its errors naming ``label``.

    Raises:
        ValueError: the fields make no valid config; the message names ``label``.
    """
    try:
        return TransformerConfig(**fields)
    except (TypeError, ValueError) as err:
        raise ValueError(f"path: {label} gives an invalid model: {err}") from None
