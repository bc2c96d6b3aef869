"""Data parallelism under :mod:`torch.distributed`: joining the group that ``torchrun`` starts.

Run a script with ``torchrun --nproc_per_node N script.py``; inside ``with distributed() as
ctx:`` each of the N processes knows its rank, the number of processes and its device, and
:func:`lmlab.training.train` runs data-parallel (gloo on CPUs, NCCL on GPUs). :func:`world`
says where a process sits, in a group or not.
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.distributed as dist

from lmlab._checks import check_choice, check_float

__all__ = ["DistributedContext", "distributed", "world"]


class DistributedContext(NamedTuple):
    """Where this process sits in a data-parallel run (see :func:`distributed`)."""

    rank: int  # this process's index, 0 .. world_size - 1
    world_size: int  # number of processes
    device: torch.device  # the device this process trains on


def world() -> tuple[int, int]:
    """This process's rank and the number of processes (0 and 1 outside a process group).

    Example:
        >>> world()  # a plain process
        (0, 1)
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK")


def _environment() -> dict[str, str | int]:
    """torchrun's variables, checked: the ranks and the port as ints in range."""
    missing = [k for k in _ENV if not os.environ.get(k)]
    if missing:
        raise RuntimeError(f"distributed: {', '.join(missing)} not set; launch the script with "
                           f"torchrun --nproc_per_node N (which sets {', '.join(_ENV)})")
    env: dict[str, str | int] = {"MASTER_ADDR": os.environ["MASTER_ADDR"]}
    for key, low in (("MASTER_PORT", 1), ("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0)):
        try:
            env[key] = int(os.environ[key])
        except ValueError:
            raise ValueError(f"{key}: expected an int, got {os.environ[key]!r}") from None
        if env[key] < low:  # type: ignore[operator]
            raise ValueError(f"{key}: expected an int >= {low}, got {env[key]}")
    if env["MASTER_PORT"] > 65535:  # type: ignore[operator]
        raise ValueError(f"MASTER_PORT: expected a port <= 65535, got {env['MASTER_PORT']}")
    if env["RANK"] >= env["WORLD_SIZE"]:  # type: ignore[operator]
        raise ValueError(f"RANK: expected 0 <= RANK < WORLD_SIZE={env['WORLD_SIZE']}, got "
                         f"{env['RANK']}")
    return env


@contextlib.contextmanager
def distributed(backend: str | None = None, timeout: float = 300.0,
                ) -> Iterator[DistributedContext]:
    """Join the data-parallel group that ``torchrun`` started; leave it on exit.

    Reads ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from
    the environment that ``torchrun`` sets, waits up to ``timeout`` seconds for all
    ``WORLD_SIZE`` processes to meet at ``MASTER_ADDR:MASTER_PORT``, calls
    :func:`torch.distributed.init_process_group` (NCCL when CUDA is available, else gloo) and,
    on CUDA, makes ``cuda:LOCAL_RANK`` this process's current device. Inside the block,
    :func:`lmlab.training.train` runs data-parallel.

    Args:
        backend: ``"gloo"`` or ``"nccl"``; ``None`` picks by device.
        timeout: seconds to wait for the other processes to join (> 0). Collectives inside
            the block keep PyTorch's default timeout.

    Yields:
        A :class:`DistributedContext` (rank, world size, device).

    Raises:
        RuntimeError: not started by ``torchrun`` (a variable above is unset), or a group is
            already initialised.
        ValueError: a variable is not an int in range (``RANK`` from 0 to ``WORLD_SIZE - 1``).
        TimeoutError: the processes did not all join within ``timeout`` (the message gives
            the four variables, which every process must agree on).
    """
    if backend is not None:
        check_choice("backend", backend, ("gloo", "nccl"))
    check_float("timeout", timeout, 0.0, min_inclusive=False)
    env = _environment()
    if dist.is_initialized():
        raise RuntimeError("distributed: a process group is already initialised")
    rank, world_size = int(env["RANK"]), int(env["WORLD_SIZE"])
    local_rank = int(env["LOCAL_RANK"])
    use_cuda = backend != "gloo" and torch.cuda.is_available()
    backend = backend or ("nccl" if use_cuda else "gloo")
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    where = ", ".join(f"{k}={env[k]}" for k in _ENV[:4])
    # torchrun's agent may host the store itself; otherwise rank 0 does, as torch's env://
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    try:  # the rendezvous, bounded by timeout (torch's default waits for 30 minutes)
        store = dist.TCPStore(str(env["MASTER_ADDR"]), int(env["MASTER_PORT"]), world_size,
                              is_master=rank == 0 and not agent,
                              timeout=timedelta(seconds=timeout), wait_for_workers=not agent,
                              multi_tenant=not agent)
    except (RuntimeError, OSError) as err:  # DistStoreError, DistNetworkError, timeouts
        raise TimeoutError(f"distributed: the {world_size} processes did not all meet within "
                           f"{timeout:g} s ({where}): start every rank with the same "
                           f"MASTER_ADDR, MASTER_PORT and WORLD_SIZE ({err})") from None
    dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size)
    try:
        yield DistributedContext(dist.get_rank(), dist.get_world_size(), device)
    finally:
        dist.destroy_process_group()
