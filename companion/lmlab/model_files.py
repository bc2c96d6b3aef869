"""Trained transformer models as files: weights and config together in one safetensors file.

:func:`save_model` writes a :class:`~lmlab.transformer.GPT`,
:class:`~lmlab.transformer.Encoder` or :class:`~lmlab.transformer.EncoderDecoder` with its
:class:`~lmlab.transformer.TransformerConfig` in the file's header (tied weights stored once),
atomically; :func:`load_model` rebuilds the model from the file alone, or loads into a given
model after checking that its class and config match. Every tensor is checked by name; a
truncated, corrupted or foreign file is an error naming it. (A training run's resumable
checkpoints are :mod:`lmlab.training`'s.)
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmlab._checks import check_file
from lmlab.io import load_tensors, read_metadata, save_tensors
from lmlab.transformer import GPT, Encoder, EncoderDecoder, TransformerConfig

__all__ = ["save_model", "load_model"]

_MODELS = {"GPT": GPT, "Encoder": Encoder, "EncoderDecoder": EncoderDecoder}


def _configs_of(model: nn.Module) -> dict[str, Any]:
    if isinstance(model, EncoderDecoder):
        return {"encoder": model.encoder.config.to_dict(),
                "decoder": model.decoder.config.to_dict()}
    if isinstance(model, GPT):
        return {"config": model.config.to_dict(), "cross_d_model": model.cross_d_model}
    if isinstance(model, Encoder):
        return {"config": model.config.to_dict()}
    raise TypeError(f"model: expected a GPT, Encoder or EncoderDecoder, got {type(model).__name__}")


def save_model(model: nn.Module, path: str | os.PathLike[str],
               metadata: dict[str, str] | None = None) -> None:
    """Save a model's weights and config to one safetensors file, atomically.

    Args:
        model: a :class:`~lmlab.transformer.GPT`, :class:`~lmlab.transformer.Encoder` or
            :class:`~lmlab.transformer.EncoderDecoder`.
        path: the ``.safetensors`` file to write.
        metadata: extra strings to store (e.g. the training command); the keys
            ``lmlab_model`` and ``lmlab_config`` are this function's.

    Raises:
        TypeError: ``model`` is not one of the three, or ``metadata`` is not a dict of str.
        ValueError: ``model`` has weights on the meta device, or ``metadata`` uses a reserved
            key.
    """
    configs = _configs_of(model)
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError(f"metadata: expected a dict of str to str, got "
                            f"{type(metadata).__name__}")
        reserved = sorted({"lmlab_model", "lmlab_config"} & set(metadata))
        if reserved:
            raise ValueError(f"metadata: the key {reserved[0]!r} is reserved for the model's "
                             "class and config")
    if any(t.is_meta for t in model.state_dict().values()):
        raise ValueError("model: has tensors on the meta device (no values to save)")
    meta = {**(metadata or {}), "lmlab_model": type(model).__name__,
            "lmlab_config": json.dumps(configs, sort_keys=True)}
    # tied weights are stored once, under the embedding's name
    state = {k: v for k, v in model.state_dict().items()
             if not (k.endswith("lm_head.weight") and _tied(model, k))}
    save_tensors(state, path, metadata=meta)


def _tied(model: nn.Module, key: str) -> bool:
    owner = model.decoder if isinstance(model, EncoderDecoder) else model
    return isinstance(owner, GPT) and owner.config.tie_embeddings


# the keys of the stored JSON config, for each model class
_LAYOUT = {"GPT": ("config", "cross_d_model"), "Encoder": ("config",),
           "EncoderDecoder": ("encoder", "decoder")}


def _read_header(path: Path) -> tuple[str, dict[str, Any]]:
    meta = read_metadata(path)  # a truncated or corrupted file raises, naming it
    if "lmlab_model" not in meta or "lmlab_config" not in meta:
        raise ValueError(f"{path}: no lmlab model config in the file's metadata")
    if meta["lmlab_model"] not in _MODELS:
        raise ValueError(f"{path}: unknown model class {meta['lmlab_model']!r}")
    try:
        configs = json.loads(meta["lmlab_config"])
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: the model config is not valid JSON ({err})") from None
    name = meta["lmlab_model"]
    if not isinstance(configs, dict):
        raise ValueError(f"{path}: the model config is not a JSON object")
    fields = [f.name for f in dataclasses.fields(TransformerConfig)]
    for key in _LAYOUT[name]:
        if key not in configs:
            raise ValueError(f"{path}: the {name} config has no field {key!r}")
        if key == "cross_d_model":
            continue
        if not isinstance(configs[key], dict):
            raise ValueError(f"{path}: the config's {key!r} is not a JSON object")
        missing = [f for f in fields if f not in configs[key]]
        if missing:
            raise ValueError(f"{path}: the config's {key!r} has no field {missing[0]!r}"
                             + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return name, configs


def _build(path: Path, name: str, configs: dict[str, Any]) -> nn.Module:
    """The model the stored config describes; an invalid value is an error naming the file."""
    try:
        if name == "EncoderDecoder":
            return EncoderDecoder(TransformerConfig.from_dict(configs["encoder"]),
                                  TransformerConfig.from_dict(configs["decoder"]))
        if name == "GPT":
            return GPT(TransformerConfig.from_dict(configs["config"]), configs["cross_d_model"])
        return Encoder(TransformerConfig.from_dict(configs["config"]))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: the stored config is invalid ({err})") from None


def load_model(path: str | os.PathLike[str], expected: nn.Module | None = None,
               device: str | torch.device = "cpu") -> nn.Module:
    """Load a model saved by :func:`save_model`; its config is read from the file.

    Args:
        path: the ``.safetensors`` file.
        expected: an existing model to load into; its class and config must match the file's,
            or a ``ValueError`` names the differing fields before any weight is read.
        device: where to put the weights.

    Returns:
        The model (``expected`` itself when given), in eval mode.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is truncated, corrupted or not an lmlab model file; its stored
            config lacks a field or holds an invalid value; a tensor is missing, unexpected or
            of the wrong shape; or ``expected`` differs from it. The message names the file.
    """
    path = check_file("path", path)
    if expected is not None and not isinstance(expected, (GPT, Encoder, EncoderDecoder)):
        raise TypeError(f"expected: a GPT, Encoder or EncoderDecoder (or None), got "
                        f"{type(expected).__name__}")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device: expected a torch device such as 'cpu' or 'cuda', got "
                         f"{device!r} ({err})") from None
    name, configs = _read_header(path)
    if expected is not None:
        if type(expected).__name__ != name:
            raise ValueError(f"{path}: holds a {name}, not a {type(expected).__name__}")
        mine = _configs_of(expected)
        if mine != configs:
            diffs = _diff(configs, mine)
            raise ValueError(f"{path}: config does not match the model's: {diffs}")
        model = expected
    else:
        model = _build(path, name, configs)
    try:
        state = load_tensors(path)
    except Exception as err:
        raise ValueError(f"{path}: could not read the weights ({err})") from err
    expected_keys = set(model.state_dict())
    missing = sorted(k for k in expected_keys - set(state)
                     if not (k.endswith("lm_head.weight") and _tied(model, k)))
    unexpected = sorted(set(state) - expected_keys)
    if missing or unexpected:
        raise ValueError(f"{path}: missing tensors {missing[:5]}, unexpected {unexpected[:5]}")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit the config ({err})") from err
    return model.to(device).eval()


def _diff(stored: Any, mine: Any, prefix: str = "") -> str:
    if isinstance(stored, dict) and isinstance(mine, dict):
        parts = [_diff(stored.get(k), mine.get(k), f"{prefix}{k}.")
                 for k in sorted(set(stored) | set(mine)) if stored.get(k) != mine.get(k)]
        return "; ".join(parts)
    return f"{prefix.rstrip('.')} is {stored!r} in the file, {mine!r} in the model"
