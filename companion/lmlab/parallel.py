"""Data parallelism under :mod:`torch.distributed`: joining the group that ``torchrun`` starts.

Run a script with ``torchrun --nproc_per_node N script.py``; inside ``with distributed() as
ctx:`` each of the N processes knows its rank, the number of processes and its device, and
:func:`lmlab.training.train` runs data-parallel (gloo on CPUs, NCCL on GPUs). :func:`world`
says where a process sits, in a group or not.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.distributed as dist

from lmlab._checks import check_choice

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


@contextlib.contextmanager
def distributed(backend: str | None = None) -> Iterator[DistributedContext]:
    """Join the data-parallel group that ``torchrun`` started; leave it on exit.

    Reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment that ``torchrun``
    sets, calls :func:`torch.distributed.init_process_group` (NCCL when CUDA is available, else
    gloo) and, on CUDA, makes ``cuda:LOCAL_RANK`` this process's current device. Inside the
    block, :func:`lmlab.training.train` runs data-parallel.

    Args:
        backend: ``"gloo"`` or ``"nccl"``; ``None`` picks by device.

    Yields:
        A :class:`DistributedContext` (rank, world size, device).

    Raises:
        RuntimeError: not started by ``torchrun`` (no ``RANK``/``WORLD_SIZE``), or a group is
            already initialised.
    """
    if backend is not None:
        check_choice("backend", backend, ("gloo", "nccl"))
    missing = [k for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if k not in os.environ]
    if missing:
        raise RuntimeError(f"distributed: {', '.join(missing)} not set; launch the script with "
                           f"torchrun --nproc_per_node N")
    if dist.is_initialized():
        raise RuntimeError("distributed: a process group is already initialised")
    local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = backend != "gloo" and torch.cuda.is_available()
    backend = backend or ("nccl" if use_cuda else "gloo")
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    try:
        yield DistributedContext(dist.get_rank(), dist.get_world_size(), device)
    finally:
        dist.destroy_process_group()
