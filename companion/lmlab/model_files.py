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

from lmlab._checks import check_file, check_instance
from lmlab.device import get_device
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
        metadata: extra strings to store (e.g. the training command).
    """
    configs = _configs_of(model)
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("metadata: expected a dict of str to str")
        taken = sorted({"lmlab_model", "lmlab_config"} & set(metadata))
        if taken:
            raise ValueError(f"metadata: {taken} are lmlab's own entries; use other names")
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


_HEADER_KEYS = {"GPT": ("config", "cross_d_model"), "Encoder": ("config",),
                "EncoderDecoder": ("encoder", "decoder")}


def _read_header(path: Path) -> tuple[str, dict[str, Any]]:
    """The model class and its configs, every entry checked (the configs stay dicts)."""
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
    keys = _HEADER_KEYS[name]
    if not isinstance(configs, dict) or set(configs) != set(keys):
        got = sorted(configs) if isinstance(configs, dict) else type(configs).__name__
        raise ValueError(f"{path}: the model config of a {name} must hold {list(keys)}, "
                         f"got {got}")
    fields = {f.name for f in dataclasses.fields(TransformerConfig)}
    for key in keys:
        if key == "cross_d_model":
            value = configs[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"{path}: cross_d_model is {value!r}; expected null or an "
                                 "int >= 1")
            continue
        if not isinstance(configs[key], dict):
            raise ValueError(f"{path}: the model config {key!r} is not a JSON object")
        missing = sorted(fields - set(configs[key]))
        unknown = sorted(set(configs[key]) - fields)
        if missing or unknown:
            what = "; ".join(([f"lacks {missing}"] if missing else [])
                             + ([f"has unknown fields {unknown}"] if unknown else []))
            raise ValueError(f"{path}: the model config {key!r} {what}; was the file written "
                             "by save_model?")
    return name, configs


def _transformer_config(path: Path, values: dict[str, Any]) -> TransformerConfig:
    try:
        return TransformerConfig.from_dict(values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: the model config is invalid: {err}") from None


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
    """
    path = check_file("path", path)
    if expected is not None:
        check_instance("expected", expected, (GPT, Encoder, EncoderDecoder))
    device = get_device(device, name="device")
    name, configs = _read_header(path)
    if expected is not None:
        if type(expected).__name__ != name:
            raise ValueError(f"{path}: holds a {name}, not a {type(expected).__name__}")
        mine = _configs_of(expected)
        if mine != configs:
            diffs = _diff(configs, mine)
            raise ValueError(f"{path}: config does not match the model's: {diffs}")
        model = expected
    elif name == "EncoderDecoder":
        model = EncoderDecoder(_transformer_config(path, configs["encoder"]),
                               _transformer_config(path, configs["decoder"]))
    elif name == "GPT":
        model = GPT(_transformer_config(path, configs["config"]), configs["cross_d_model"])
    else:
        model = Encoder(_transformer_config(path, configs["config"]))
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
