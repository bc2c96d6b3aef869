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


@pytest.mark.parametrize("env, error, match", [
    ({"MASTER_PORT": "http"}, ValueError, "^MASTER_PORT: expected an int, got 'http'"),
    ({"MASTER_PORT": "70000"}, ValueError, "^MASTER_PORT: expected a port <= 65535"),
    ({"RANK": "2"}, ValueError, r"^RANK: expected 0 <= RANK < WORLD_SIZE=2, got 2"),
    ({"WORLD_SIZE": "0"}, ValueError, "^WORLD_SIZE: expected an int >= 1"),
    ({"LOCAL_RANK": "-1"}, ValueError, "^LOCAL_RANK: expected an int >= 0"),
    ({"MASTER_ADDR": ""}, RuntimeError, "MASTER_ADDR not set"),
])
def test_distributed_checks_torchrun_variables(monkeypatch, env, error, match):
    base = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "WORLD_SIZE": "2", "RANK": "0",
            "LOCAL_RANK": "0"}
    for key, value in {**base, **env}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(error, match=match):
        with distributed():
            pass


@pytest.mark.parametrize("timeout, error", [(0, ValueError), (-1.0, ValueError),
                                            (float("nan"), ValueError), ("60", TypeError)])
def test_distributed_timeout_must_be_positive(timeout, error):
    with pytest.raises(error, match="^timeout"):
        with distributed(timeout=timeout):
            pass


_ALONE = """
import sys, time
from lmlab.parallel import distributed
start = time.perf_counter()
try:
    with distributed(backend="gloo", timeout=2):
        print("JOINED")
except TimeoutError as err:
    print("TIMEOUT", round(time.perf_counter() - start, 1), err)
"""


@pytest.mark.parametrize("rank", [0, 1])
def test_distributed_gives_up_when_a_process_is_missing(rank):
    """WORLD_SIZE=2 with one process started: before, rank 0 waited for torch's default
    rendezvous timeout (30 minutes); now it stops after ``timeout`` and names the variables.
    Rank 0 hosts the rendezvous and waits for rank 1; rank 1 finds no host. A real gloo
    attempt, in a subprocess."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank),
           "TORCH_CPP_LOG_LEVEL": "FATAL"}
    env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
    run = subprocess.run([sys.executable, "-c", _ALONE], env=env, capture_output=True,
                         text=True, timeout=120)
    assert "JOINED" not in run.stdout
    line = next(ln for ln in run.stdout.splitlines() if ln.startswith("TIMEOUT"))
    waited = float(line.split()[1])
    assert waited < 30  # 2 s asked; the client side retries once
    for name in ("MASTER_ADDR=127.0.0.1", f"MASTER_PORT={port}", "WORLD_SIZE=2",
                 f"RANK={rank}"):
        assert name in line
