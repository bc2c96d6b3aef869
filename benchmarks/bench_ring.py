"""Benchmark ring attention over 2 and 4 gloo processes against one-process attention (CPU).

Causal attention, B = 1, H = 2, D = 64, float32, T = 2048, 4096, 8192, forward + backward. One
process: ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)`` on the whole
sequence. Ring: :func:`lmlab.ring.ring_attention` over ``torchrun`` processes, each holding a
zigzag shard of ``T / N`` tokens. Per size: wall time (the slowest rank) and the growth of each
process's peak resident memory over its start-up level (``ru_maxrss``: includes the allocator's
caches, so it is an upper bound on what attention needed).

One thread per process (set here). On a machine with fewer cores than processes the ring's
times include waiting for a core: read them for memory per rank, not speed.

Each rank makes only its own T / N tokens; rank 0 prints every rank's result.

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=companion python benchmarks/bench_ring.py``
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

LENGTHS = (2048, 4096, 8192)
B, H, D = 1, 2, 64


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _measure(attend, T: int, rank: int, world: int) -> tuple[float, float]:
    """Forward + backward once on this rank's part; returns (seconds, peak RSS in MB)."""
    # Only this rank's T / world tokens are made (random: the timing does not depend on them),
    # so the peak memory is what a rank holding its shard needs.
    g = torch.Generator().manual_seed(T + rank)
    q, k, v = (torch.randn(B, H, T // world, D, generator=g, requires_grad=True)
               for _ in range(3))
    grad = torch.randn(B, H, T // world, D, generator=g)
    start = time.perf_counter()
    torch.autograd.backward(attend(q, k, v), grad)
    return time.perf_counter() - start, _peak_mb()


def worker(mode: str) -> None:
    torch.set_num_threads(1)
    if mode == "single":
        rank, world = 0, 1

        def attend(q, k, v):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        import torch.distributed as dist

        from lmlab.ring import ring_attention

        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()

        def attend(q, k, v):
            return ring_attention(q, k, v, causal=True, layout="zigzag")
    _measure(attend, 256, rank, world)  # warm-up
    base = _peak_mb()
    rows = []
    for T in LENGTHS:
        if mode != "single":
            dist.barrier()
        seconds, peak = _measure(attend, T, rank, world)
        rows.append({"T": T, "seconds": seconds, "peak_mb": peak - base})
    mine = {"rank": rank, "world": world, "rows": rows}
    if mode == "single":
        print("RESULT " + json.dumps(mine), flush=True)
        return
    every: list = [None] * world
    dist.all_gather_object(every, mine)  # one process prints: lines from several would mix
    if rank == 0:
        for result in every:
            print("RESULT " + json.dumps(result), flush=True)
    dist.destroy_process_group()


def _run(command: list[str]) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(done.stdout[-2000:] + done.stderr[-2000:])
    return [json.loads(line.split("RESULT ", 1)[1]) for line in done.stdout.splitlines()
            if "RESULT " in line]


def main() -> None:
    print(f"causal attention, B={B} H={H} D={D}, float32, forward + backward, 1 thread per "
          f"process, {os.cpu_count()} CPU cores, torch {torch.__version__}")
    results = {1: _run([sys.executable, __file__, "single"])}
    for n in (2, 4):
        results[n] = _run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={n}", __file__, "ring"])
    print(f"{'T':>6} {'one process':>22} {'ring, 2 ranks':>24} {'ring, 4 ranks':>24}")
    print(f"{'':>6} {'time':>10} {'peak MB':>11} {'time':>10} {'MB/rank':>13} "
          f"{'time':>10} {'MB/rank':>13}")
    for i, T in enumerate(LENGTHS):
        cells = []
        for n in (1, 2, 4):
            rows = [r["rows"][i] for r in results[n]]
            seconds = max(r["seconds"] for r in rows)
            peak = max(r["peak_mb"] for r in rows)
            cells.append(f"{seconds:>9.2f}s {peak:>{11 if n == 1 else 13}.0f}")
        print(f"{T:>6} " + " ".join(cells))
    print("time: slowest rank; MB: growth of peak resident memory over start-up, largest rank")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        worker(sys.argv[1])
    else:
        main()
