"""Tests of lmlab.parallel outside a process group (the data-parallel run itself, two gloo
processes under ``torchrun``, is tested in tests/test_training.py)."""

from __future__ import annotations

import pytest

from lmlab.parallel import distributed, world


def test_a_plain_process_is_rank_0_of_1():
    assert world() == (0, 1)


def test_distributed_needs_torchrun(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        with distributed():
            pass
    with pytest.raises(ValueError, match="^backend"):
        with distributed("mpi"):
            pass
