"""The file format of :mod:`lmlab.training`'s resumable checkpoints (to resume a run, use
``lmlab.training.train(..., resume=True)``; to read one, ``lmlab.training.load_checkpoint``).

One safetensors file holds the whole state of a run, so a resumed run is bit-identical to a
straight one:

* ``model.<name>``: the model's ``state_dict``;
* ``optimizer.<index>.<name>``: the optimizer's tensor state (AdamW's moments and step);
* ``rng.batches``: the batch generator; ``rng.rank<r>``: process ``r``'s own random state (CPU,
  then the GPU's);
* ``history.losses``: the loss of every step done, float64;
* the header (safetensors metadata ``"lmlab.training"``, JSON): format, step, number of
  processes, the config, the evaluations and any non-tensor optimizer state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from lmlab._checks import check_instance
from lmlab.io import load_tensors, read_metadata, save_tensors
from lmlab.parallel import world

FORMAT = "lmlab.training/1"
"""The header's ``"format"`` entry."""
META_KEY = "lmlab.training"
"""The safetensors metadata key holding the JSON header."""


def _gather_rng(device: torch.device, world_size: int) -> list[torch.Tensor]:
    """This process's own random state (CPU, and the GPU's), gathered from every process."""
    states = [torch.get_rng_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    local = torch.cat(states)
    if world_size == 1:
        return [local]
    where = device if dist.get_backend() == "nccl" else torch.device("cpu")
    gathered = [torch.empty_like(local, device=where) for _ in range(world_size)]
    dist.all_gather(gathered, local.to(where))
    return [g.cpu() for g in gathered]


def _set_rng(state: torch.Tensor, device: torch.device) -> None:
    cpu_size = torch.get_rng_state().numel()
    torch.set_rng_state(state[:cpu_size].clone())
    if device.type == "cuda":
        torch.cuda.set_rng_state(state[cpu_size:].clone(), device)


def write(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
          generator: torch.Generator, *, config: dict[str, Any], step: int,
          losses: list[float], evals: list[Any], device: torch.device) -> None:
    """Write the checkpoint atomically from rank 0; every process must call it (a collective).

    Args:
        path: the file to write.
        model: the model being trained.
        optimizer: its optimizer.
        generator: the generator that draws the batches.
        config: the run's config, as JSON-able data.
        step: the steps done.
        losses: the loss of every step done.
        evals: the evaluations so far (JSON-able).
        device: the device of the run (its random state is saved too).
    """
    check_instance("model", model, nn.Module)
    check_instance("optimizer", optimizer, torch.optim.Optimizer)
    check_instance("generator", generator, torch.Generator)
    rank, world_size = world()
    rng = _gather_rng(device, world_size)
    if rank == 0:
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        other: dict[str, dict[str, Any]] = {}
        for index, state in optimizer.state_dict()["state"].items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer.{index}.{key}"] = value
                else:
                    other.setdefault(str(index), {})[key] = value
        tensors["rng.batches"] = generator.get_state()
        for r, state in enumerate(rng):
            tensors[f"rng.rank{r}"] = state
        tensors["history.losses"] = torch.tensor(losses, dtype=torch.float64)
        header = {"format": FORMAT, "step": step, "world_size": world_size, "config": config,
                  "evals": evals, "optimizer_other": other}
        save_tensors(tensors, path, metadata={META_KEY: json.dumps(header)})
    if world_size > 1:
        dist.barrier()


def read_header(path: Path) -> dict[str, Any]:
    """The JSON header, checked for its format and entries (the config is left a dict).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a training checkpoint, or a corrupted one; the message names it.
    """
    raw = read_metadata(path).get(META_KEY)
    if raw is None:
        raise ValueError(f"{path}: not a training checkpoint (no {META_KEY!r} header)")
    try:
        header = json.loads(raw)
        if header["format"] != FORMAT:
            raise ValueError(f"format {header['format']!r}, expected {FORMAT!r}")
        for key in ("step", "world_size"):
            if not isinstance(header[key], int) or header[key] < 0:
                raise ValueError(f"{key} {header[key]!r}")
        if not isinstance(header["config"], dict) or not isinstance(header["evals"], list) \
                or not isinstance(header["optimizer_other"], dict):
            raise ValueError("config, evals or optimizer_other of the wrong type")
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{path}: corrupted training checkpoint header: {err}") from None
    return header


def load_model_state(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """Load the model's tensors (names, shapes and dtypes checked first); return all tensors.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file's model tensors do not fit ``model``; the message names the file.
    """
    check_instance("model", model, nn.Module)
    tensors = load_tensors(path)
    saved = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path}: does not fit the model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    for key, value in expected.items():
        if saved[key].shape != value.shape or saved[key].dtype != value.dtype:
            raise ValueError(f"{path}: tensor {key!r} is {tuple(saved[key].shape)} "
                             f"{saved[key].dtype}, the model has {tuple(value.shape)} "
                             f"{value.dtype}")
    model.load_state_dict(saved)
    return tensors


def _require(path: Path, tensors: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in tensors:
        raise ValueError(f"{path}: corrupted training checkpoint: no tensor {key!r}")
    return tensors[key]


def restore(path: Path, header: dict[str, Any], model: nn.Module,
            optimizer: torch.optim.Optimizer, generator: torch.Generator,
            device: torch.device) -> list[float]:
    """Put the model, optimizer, batch generator and this process's random state back as
    they were; return the loss history.

    Args:
        path: the checkpoint.
        header: its header (:func:`read_header`).
        model, optimizer, generator: the run's, to restore in place.
        device: the device of the run.

    Raises:
        ValueError: the file does not fit the run, or is corrupted; the message names it.
    """
    rank, _ = world()
    tensors = load_model_state(path, model)
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in header["optimizer_other"].items():
        state.setdefault(int(index), {}).update(values)
    groups = optimizer.state_dict()["param_groups"]
    known = {i for g in groups for i in g["params"]}
    if not set(state) <= known:
        raise ValueError(f"{path}: optimizer state for {len(state)} tensors does not fit the "
                         f"model's {len(known)} parameters")
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    generator.set_state(_require(path, tensors, "rng.batches"))
    _set_rng(_require(path, tensors, f"rng.rank{rank}"), device)
    losses = _require(path, tensors, "history.losses").tolist()
    if len(losses) != header["step"]:
        raise ValueError(f"{path}: corrupted training checkpoint: {len(losses)} losses for "
                         f"{header['step']} steps")
    return losses
