"""One file format for every trained model: safetensors with the config in its header.

A model file is a safetensors file whose header holds what the model is (its *kind*: ``"GPT"``,
``"Encoder"``, ``"EncoderDecoder"``, ``"Seq2Seq"``, ``"WordVectors"``,
``"SkipGramNegativeSampling"``), the config that rebuilds it (JSON), free-form metadata (JSON:
the training command, a loss curve ...) and a SHA-256 checksum of the tensors. Every model class
saves and loads itself through this module::

    model.save("gpt.safetensors", metadata={"steps": 2600})
    model = GPT.load("gpt.safetensors", device="cuda")      # a file of another kind: an error
    model = lmlab.load("gpt.safetensors")                   # whatever kind the file holds

:func:`write_model_file` and :func:`read_model_file` are the format; :class:`ModelFileMixin`
gives an ``nn.Module`` its ``save`` and ``load``. Files are written atomically; a missing,
truncated or corrupted file, a file of another kind and a config that lacks a field are each
an error naming the file. (A training run's resumable checkpoints, with the optimizer's state,
are :mod:`lmlab.training_state`'s.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from lmlab._checks import check_choice, check_file, check_instance, check_str
from lmlab.device import get_device
from lmlab.io import load_tensors, read_metadata, save_tensors

__all__ = ["FORMAT", "MODEL_KINDS", "ModelFile", "write_model_file", "read_model_file",
           "check_metadata", "check_dtype", "placement", "move", "ModelFileMixin", "load"]

FORMAT = "lmlab.model/1"
"""The ``"format"`` entry of a model file's header."""

MODEL_KINDS: dict[str, str] = {
    "GPT": "lmlab.transformer",
    "Encoder": "lmlab.transformer",
    "EncoderDecoder": "lmlab.transformer",
    "Seq2Seq": "lmlab.seq2seq",
    "WordVectors": "lmlab.vectors",
    "SkipGramNegativeSampling": "lmlab.word2vec",
}
"""Every kind of model file, and the module whose class of that name reads it."""

_HEADER = ("format", "kind", "config", "metadata", "sha256")  # a model file's header entries
_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class ModelFile:
    """What a model file holds, as :func:`read_model_file` returns it."""

    kind: str  # the model's kind, one of MODEL_KINDS
    config: dict[str, Any]  # what rebuilds the model (its class's own layout)
    tensors: dict[str, torch.Tensor]  # name -> tensor on the CPU (empty if not read)
    metadata: dict[str, Any]  # free-form JSON data (the training command, a loss curve ...)
    path: Path  # the file, for messages

    def field(self, name: str) -> Any:
        """The config's entry ``name``.

        Raises:
            ValueError: the config has no such entry; the message names the file and field.
        """
        check_str("name", name)
        if name not in self.config:
            raise ValueError(f"{self.path}: the {self.kind} config lacks the field {name!r} "
                             f"(it has {sorted(self.config)})")
        return self.config[name]

    def config_of(self, cls: type[T], name: str | None = None) -> T:
        """The config (or its entry ``name``) as the config dataclass ``cls``.

        Every field of ``cls`` must be in the file (a missing one would otherwise take its
        default silently) and no other; ``cls.from_dict`` builds it when it has one.

        Raises:
            ValueError: a field missing or unknown, or a value ``cls`` refuses; the message
                names the file (and the field).
        """
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"cls: expected a dataclass, got {cls!r}")
        values = self.config if name is None else self.field(name)
        where = f"the {self.kind} config" + ("" if name is None else f" {name!r}")
        if not isinstance(values, dict):
            raise ValueError(f"{self.path}: {where} is not a JSON object")
        fields = {f.name for f in dataclasses.fields(cls) if f.init}
        missing, unknown = sorted(fields - set(values)), sorted(set(values) - fields)
        if missing:
            raise ValueError(f"{self.path}: {where} lacks the field {missing[0]!r}"
                             + (f" (and {missing[1:]})" if len(missing) > 1 else ""))
        if unknown:
            raise ValueError(f"{self.path}: {where} has unknown fields {unknown}")
        build = getattr(cls, "from_dict", None) or cls
        try:
            return build(values) if build is not cls else cls(**values)
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(f"{self.path}: {where} is invalid: {err}") from None


def check_metadata(name: str, metadata: object) -> dict[str, Any]:
    """Check that ``metadata`` is a dict of str keys to JSON data (no NaN) and return a copy.

    Example:
        >>> check_metadata("metadata", {"steps": 3, "curve": [2.5, 1.0]})
        {'steps': 3, 'curve': [2.5, 1.0]}
        >>> check_metadata("metadata", {"loss": float("nan")})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: metadata: not JSON data (Out of range float values ...)
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"{name}: expected a dict of str to JSON data, got "
                        f"{type(metadata).__name__}")
    bad = [k for k in metadata if not isinstance(k, str)]
    if bad:
        raise TypeError(f"{name}: expected str keys, got {bad[0]!r}")
    try:
        return json.loads(json.dumps(dict(metadata), allow_nan=False))
    except TypeError as err:
        raise TypeError(f"{name}: not JSON data ({err})") from None
    except ValueError as err:
        raise ValueError(f"{name}: not JSON data ({err})") from None


def check_dtype(dtype: object) -> torch.dtype | None:
    """Check that ``dtype`` is ``None`` or a floating-point dtype a model file can hold."""
    if dtype is None:
        return None
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype: expected a torch.dtype such as torch.float16, got "
                        f"{type(dtype).__name__} {dtype!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype: expected one of {list(_DTYPES)}, got {dtype}")
    return dtype


def placement(device: str | torch.device | None, dtype: torch.dtype | None,
              ) -> tuple[torch.device, torch.dtype | None]:
    """Where a loaded model goes: ``device`` checked (``None``: the CPU) and ``dtype`` checked.

    Raises:
        ValueError: an unknown device or a dtype a model file cannot hold.
        TypeError: ``dtype`` is not a torch.dtype.
        RuntimeError: the device is not available here (``cuda`` without a GPU).

    Example:
        >>> placement(None, torch.bfloat16)
        (device(type='cpu'), torch.bfloat16)
    """
    check_dtype(dtype)
    return (torch.device("cpu") if device is None else get_device(device, name="device")), dtype


def move(module: nn.Module, device: str | torch.device | None = None,
         dtype: torch.dtype | None = None) -> nn.Module:
    """Move ``module`` to ``device`` and/or cast its floating-point weights to ``dtype``, both
    checked first (``None``: leave as is); return it.

    Raises:
        ValueError, TypeError, RuntimeError: as :func:`placement`.
    """
    check_instance("module", module, nn.Module)
    if device is not None:
        device = placement(device, None)[0]
    check_dtype(dtype)
    return module.to(device=device, dtype=dtype)


def _checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write_model_file(path: str | os.PathLike[str], kind: str, config: Mapping[str, Any],
                     tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None,
                     *, dtype: torch.dtype | None = None) -> None:
    """Write a model file, atomically: the tensors, and the kind, config and metadata.

    Args:
        path: the ``.safetensors`` file to write (its folder must exist).
        kind: what the model is, one of :data:`MODEL_KINDS`.
        config: what rebuilds the model (JSON data).
        tensors: name -> tensor (moved to the CPU).
        metadata: free-form JSON data kept with the model.
        dtype: store the floating-point tensors in this dtype (``torch.float16`` halves the
            file); ``None`` keeps each tensor's own.

    Raises:
        TypeError: an argument of the wrong type (config or metadata that is not JSON data).
        ValueError: an unknown kind, NaN in the config or metadata, a meta tensor, or
            tensors that do not fit in ``dtype``.
        FileNotFoundError: the folder does not exist.
    """
    check_choice("kind", kind, tuple(MODEL_KINDS))
    if not isinstance(config, Mapping):
        raise TypeError(f"config: expected a dict of JSON data, got {type(config).__name__}")
    config_json = json.dumps(check_metadata("config", config), sort_keys=True)
    metadata_json = json.dumps(check_metadata("metadata", metadata), ensure_ascii=False)
    check_dtype(dtype)
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors: expected a dict of str to torch.Tensor, got "
                        f"{type(tensors).__name__}")
    stored = {}
    for key, t in tensors.items():
        check_instance(f"tensors[{key!r}]", t, torch.Tensor)
        if t.is_meta:
            raise ValueError(f"tensors: {key!r} is on the meta device (a shape without data)")
        t = t.detach().cpu()
        if dtype is not None and t.is_floating_point() and t.dtype != dtype:
            wide = t
            t = t.to(dtype)
            if not bool(torch.isfinite(t).all()) and bool(torch.isfinite(wide).all()):
                raise ValueError(f"dtype: tensor {key!r} does not fit in {dtype} (values up to "
                                 f"{wide.abs().max().item():.3g})")
        stored[key] = t.contiguous()
    header = {"format": FORMAT, "kind": kind, "config": config_json, "metadata": metadata_json,
              "sha256": _checksum(stored)}
    save_tensors(stored, path, metadata=header)


def _json_entry(path: Path, header: Mapping[str, str], key: str) -> Any:
    try:
        value = json.loads(header[key])
    except (KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: the header's {key!r} entry is missing or not JSON ({err}): "
                         "a corrupted model file") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: the header's {key!r} entry is not a JSON object")
    return value


def read_model_file(path: str | os.PathLike[str], kind: str | None = None, *,
                    tensors: bool = True) -> ModelFile:
    """Read a model file written by :func:`write_model_file`.

    Args:
        path: the ``.safetensors`` file.
        kind: the kind expected (``None``: any).
        tensors: read the tensors (and check them against the checksum); ``False`` reads only
            the header (cheap: the kind, config and metadata).

    Returns:
        The file's kind, config, tensors (on the CPU, as stored) and metadata.

    Raises:
        TypeError: ``path`` is not a path.
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a model file (truncated, corrupted, another format or an
            older lmlab's), holds another kind than ``kind``, or its tensors do not match its
            checksum; the message names the file and, for a kind, both kinds.
    """
    path = check_file("path", path)
    if kind is not None:
        check_choice("kind", kind, tuple(MODEL_KINDS))
    header = read_metadata(path)  # a truncated or corrupted file raises, naming it
    if header.get("format") != FORMAT:
        raise ValueError(f"{path}: not an lmlab model file (its header's format is "
                         f"{header.get('format')!r}, expected {FORMAT!r}); a model's save() "
                         "writes one, and the script that made a file of an older lmlab makes "
                         "it again")
    found = header.get("kind")
    if found not in MODEL_KINDS:
        raise ValueError(f"{path}: holds an unknown kind of model {found!r}; known: "
                         f"{list(MODEL_KINDS)}")
    if kind is not None and found != kind:
        raise ValueError(f"{path}: holds a model of kind {found!r}, expected {kind!r} (load "
                         f"it with {found}.load, or lmlab.load for any kind)")
    config = _json_entry(path, header, "config")
    metadata = _json_entry(path, header, "metadata")
    loaded: dict[str, torch.Tensor] = {}
    if tensors:
        loaded = load_tensors(path)
        if header.get("sha256") != _checksum(loaded):
            raise ValueError(f"{path}: the tensors do not match the file's checksum (the file "
                             "is corrupted)")
    return ModelFile(found, config, loaded, metadata, path)


def _tied_names(module: nn.Module) -> set[str]:
    """Names of the state dict that repeat an earlier entry's tensor (tied weights)."""
    seen: set[int] = set()
    tied = set()
    for name, t in module.state_dict(keep_vars=True).items():
        if id(t) in seen:
            tied.add(name)
        seen.add(id(t))
    return tied


class ModelFileMixin:
    """``save`` and ``load`` for an ``nn.Module`` (one model file, :mod:`lmlab.model_files`).

    A class sets ``kind`` (its name in :data:`MODEL_KINDS`) and writes two methods:
    ``file_config()``, the config that rebuilds the model as JSON data, and the classmethod
    ``from_file_config(file)``, an untrained model built from a :class:`ModelFile`'s config.
    Tied weights are stored once.
    """

    kind: ClassVar[str]

    def file_config(self) -> dict[str, Any]:
        """The config written to the file (JSON data)."""
        raise NotImplementedError

    @classmethod
    def from_file_config(cls, file: ModelFile) -> Any:
        """An untrained model built from ``file``'s config (:meth:`~lmlab.model_files.ModelFileMixin.load` fills its weights)."""
        raise NotImplementedError

    def save(self, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None, *,
             dtype: torch.dtype | None = None) -> None:
        """Write the model's weights and config to one safetensors file, atomically.

        Args:
            path: the file to write (its folder must exist).
            metadata: free-form JSON data kept with the model (the training command, a loss
                curve ...), read back with ``read_model_file(path).metadata``.
            dtype: store the floating-point weights in this dtype (``torch.float16`` halves the
                file); ``None`` keeps the model's.

        Raises:
            TypeError, ValueError: metadata that is not JSON data, weights on the meta device.
            FileNotFoundError: the folder does not exist.
        """
        assert isinstance(self, nn.Module)
        tied = _tied_names(self)
        state = {k: v for k, v in self.state_dict().items() if k not in tied}
        if any(t.is_meta for t in state.values()):
            raise ValueError("model: has weights on the meta device (no values to save)")
        write_model_file(path, self.kind, self.file_config(), state, metadata, dtype=dtype)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str | torch.device | None = None,
             dtype: torch.dtype | None = None) -> Any:
        """Rebuild a model saved by :meth:`~lmlab.model_files.ModelFileMixin.save` from the file alone, in eval mode.

        Args:
            path: the file.
            device: where to put the model (default: the CPU).
            dtype: the floating-point dtype of its weights (default: float32, whatever the
                file stores).

        Raises:
            TypeError: ``path`` is not a path.
            FileNotFoundError: no file at ``path``.
            ValueError: not a model file of this class's kind, a config that lacks a field, a
                truncated or corrupted file, or weights that do not fit the config; the message
                names the file.
            RuntimeError: ``device`` is not available here.
        """
        device, dtype = placement(device, dtype)
        file = read_model_file(path, cls.kind)
        model = cls.from_file_config(file)
        expected = set(model.state_dict()) - _tied_names(model)
        missing, unexpected = sorted(expected - set(file.tensors)), sorted(
            set(file.tensors) - expected)
        if missing or unexpected:
            raise ValueError(f"{file.path}: the weights do not fit the config: missing "
                             f"{missing[:5]}, unexpected {unexpected[:5]}")
        state = model.state_dict()
        for name, t in file.tensors.items():
            if t.shape != state[name].shape:
                raise ValueError(f"{file.path}: the weights do not fit the config: {name!r} has "
                                 f"shape {tuple(t.shape)}, the config gives "
                                 f"{tuple(state[name].shape)}")
        try:
            model.load_state_dict(file.tensors, strict=False)
        except RuntimeError as err:
            raise ValueError(f"{file.path}: the weights do not fit the config ({err})") from None
        return model.to(device=device, dtype=dtype).eval()


def load(path: str | os.PathLike[str], *, device: str | torch.device | None = None,
         dtype: torch.dtype | None = None) -> Any:
    """Load whatever model a model file holds (``lmlab.load``): its kind picks the class.

    Args:
        path: a file written by a model's ``save``.
        device: where to put the model (default: the CPU).
        dtype: the floating-point dtype of its weights (default: float32).

    Returns:
        A :class:`~lmlab.transformer.GPT`, :class:`~lmlab.transformer.Encoder`,
        :class:`~lmlab.transformer.EncoderDecoder`, :class:`~lmlab.seq2seq.Seq2Seq`,
        :class:`~lmlab.vectors.WordVectors` or
        :class:`~lmlab.word2vec.SkipGramNegativeSampling`, whichever the file holds.

    Raises:
        ValueError: the errors of that class's ``load`` (a missing, corrupt or foreign file).
    """
    kind = read_model_file(path, tensors=False).kind
    cls = getattr(importlib.import_module(MODEL_KINDS[kind]), kind)
    return cls.load(path, device=device, dtype=dtype)
