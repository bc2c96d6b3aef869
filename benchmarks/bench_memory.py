"""Peak memory of causal attention's forward + backward on CPU: dense against blockwise and
block-sparse attention.

B = 1, H = 2, D = 64, float32, T = S = 4096 and 8192 (``--lengths``), causal. One forward and
one backward (``out.backward(grad)``), from inputs ``q, k, v`` (requiring gradients) and
``grad`` that exist before the measurement starts. Cases:

* ``sdpa mask``: ``torch.nn.functional.scaled_dot_product_attention`` with the materialised
  ``(T, T)`` boolean causal mask (built inside the measurement: dense masked attention needs it);
* ``sdpa math``: the same call forced onto SDPA's math path (``SDPBackend.MATH``), the textbook
  ``softmax(q k^T / sqrt(D)) v`` that keeps every score for the backward pass;
* ``sdpa causal``: SDPA with ``is_causal=True`` and no mask (PyTorch's fused CPU kernel), for
  reference;
* ``blockwise 128`` / ``blockwise 512``: :func:`lmlab.blockwise.blockwise_attention` with that
  ``block_size``: exact causal attention;
* ``block-sparse``: :func:`lmlab.sparse.block_sparse_attention` with a causal sliding window of
  256 keys in tiles of 128: a different, sparse attention, shown for its memory.

Method. Each case runs in a fresh Python process (this script, called with ``--case``), after a
warm-up of the same case at T = 256, and is measured two ways:

1. **torch's allocator** (the first figure): ``torch.profiler.profile(profile_memory=True)``
   records every allocation and free of torch's CPU allocator with the running total; its
   largest value is the most memory torch's tensors held at once during the call, beyond what
   existed before (the inputs). Exact for tensors; blind to memory libraries allocate on their
   own (oneDNN/MKL scratch space). ``tracemalloc`` sees none of torch's allocations, so it is not
   used.
2. **resident memory** (the second figure): the process's peak resident set (``VmHWM``), reset
   just before the call (``/proc/self/clear_refs``), minus the resident set at that moment: what
   the operating system had to provide, allocator caches and library buffers included. An upper
   bound, and Linux only (shown as ``-`` elsewhere).

A third figure, **kept for backward**, is what the autograd graph holds between the forward
and the backward pass beyond ``q, k, v``: the distinct storages of every tensor saved for
backward (``torch.autograd.graph.saved_tensors_hooks`` sees each, built-in and custom
functions alike) and of tensors stored as attributes of custom functions' contexts (which no
hook sees). ``tests/test_blockwise.py`` asserts the same quantity for blockwise attention.

Ratios are dense (``sdpa mask``) over each case, per measure. ``T*T*4`` is one float32 score
matrix per head, for scale.

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=companion python benchmarks/bench_memory.py [--lengths 4096
8192] [--cases ...]`` (about five minutes on two shared cores; the math path at T = 8192 needs
1.6 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

B, H, D = 1, 2, 64
LENGTHS = (4096, 8192)
WINDOW, TILE = 256, 128
CASES = ("sdpa mask", "sdpa math", "sdpa causal", "blockwise 128", "blockwise 512",
         "block-sparse")
MB = 2**20


def _attend(case: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    T = q.shape[-2]
    if case == "sdpa mask":
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if case == "sdpa math":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        mask = torch.ones(T, T, dtype=torch.bool).tril()
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if case == "sdpa causal":
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if case.startswith("blockwise"):
        from lmlab.blockwise import blockwise_attention

        return blockwise_attention(q, k, v, causal=True, block_size=int(case.split()[1]))[0]
    if case == "block-sparse":
        from lmlab.sparse import SparsePattern, block_sparse_attention

        return block_sparse_attention(q, k, v, SparsePattern(window=WINDOW), TILE)
    raise ValueError(f"case: expected one of {CASES}, got {case!r}")


def _inputs(T: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(T)
    q, k, v = (torch.randn(B, H, T, D, generator=g, requires_grad=True) for _ in range(3))
    return q, k, v, torch.randn(B, H, T, D, generator=g)


def _status_kb(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) if found else None


def _allocator_peak(case: str, T: int) -> float:
    """Largest running total of torch's CPU allocator during forward + backward, in bytes."""
    from torch.profiler import ProfilerActivity, profile

    q, k, v, grad = _inputs(T)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _attend(case, q, k, v).backward(grad)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text())["traceEvents"]
    totals = [e["args"]["Total Allocated"] for e in events
              if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0]
    return float(max([0, *totals]))


def _kept_for_backward(case: str, T: int) -> float:
    """Bytes of the distinct storages the graph keeps for the backward, beyond q, k, v."""
    q, k, v, _ = _inputs(T)
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = _attend(case, q, k, v)

    def tensors(value):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from tensors(item)
        elif isinstance(value, dict):
            for item in value.values():
                yield from tensors(item)

    stack, seen = [out.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        saved.extend(tensors(getattr(node, "__dict__", {})))
        stack.extend(n for n, _ in node.next_functions)
    inputs = {t.untyped_storage().data_ptr() for t in (q, k, v)}
    storages = {(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()) for t in saved}
    return float(sum(n for ptr, n in storages if ptr not in inputs))


def _resident_peak(case: str, T: int) -> float | None:
    """Growth of the peak resident set over its level just before the call, in bytes."""
    q, k, v, grad = _inputs(T)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    except OSError:
        return None
    before = _status_kb("VmRSS")
    _attend(case, q, k, v).backward(grad)
    peak = _status_kb("VmHWM")
    return None if before is None or peak is None else (peak - before) * 1024.0


def measure(case: str, T: int) -> dict:
    torch.set_num_threads(1)
    q, k, v, grad = _inputs(256)
    _attend(case, q, k, v).backward(grad)  # warm-up: kernels, thread pools, lazy imports
    resident = _resident_peak(case, T)  # first: the profiler's own buffers would count
    return {"case": case, "T": T, "allocator": _allocator_peak(case, T), "resident": resident,
            "kept": _kept_for_backward(case, T)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=CASES, help="measure one case here (the worker)")
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--cases", choices=CASES, nargs="+", default=list(CASES),
                        help="which cases to run (the dense 'sdpa mask' always runs)")
    args = parser.parse_args(argv)
    cases = ["sdpa mask", *(c for c in CASES if c in args.cases and c != "sdpa mask")]
    if args.case:
        for T in args.lengths:
            print("RESULT " + json.dumps(measure(args.case, T)), flush=True)
        return {}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    results: dict = {}
    for T in args.lengths:
        for case in cases:
            done = subprocess.run([sys.executable, __file__, "--case", case, "--lengths",
                                   str(T)], capture_output=True, text=True, env=env,
                                  timeout=1800)
            if done.returncode != 0:
                raise SystemExit(f"{case} at T={T} failed:\n{done.stderr[-3000:]}")
            line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
            results[(case, T)] = json.loads(line.split(" ", 1)[1])
    print(f"causal attention, forward + backward, B={B} H={H} D={D} float32, one thread, "
          f"torch {torch.__version__}; block-sparse: window {WINDOW}, tiles {TILE}")
    print("peak memory beyond the inputs, MB: torch allocator (profiler) / resident set "
          "(VmHWM); ratio: dense (sdpa mask) over the case; kept: what the graph holds for "
          "the backward beyond q, k, v")
    for T in args.lengths:
        dense = results[("sdpa mask", T)]
        print(f"\nT = S = {T}  (one {T}x{T} float32 score matrix per head: "
              f"{T * T * 4 / MB:.0f} MB; x {B * H} heads)")
        print(f"  {'case':<14} {'allocator MB':>13} {'ratio':>8} {'resident MB':>12} "
              f"{'ratio':>8} {'kept MB':>9}")
        for case in cases:
            r = results[(case, T)]
            alloc = r["allocator"]
            ratio = f"{dense['allocator'] / alloc:>7.1f}x" if alloc else f"{'-':>8}"
            if r["resident"] is None or dense["resident"] is None:
                res, res_ratio = f"{'-':>12}", f"{'-':>8}"
            else:
                res = f"{r['resident'] / MB:>12.1f}"
                res_ratio = (f"{dense['resident'] / r['resident']:>7.1f}x" if r["resident"] > 0
                             else f"{'-':>8}")
            print(f"  {case:<14} {alloc / MB:>13.1f} {ratio} {res} {res_ratio} "
                  f"{r['kept'] / MB:>9.2f}")
    return results


if __name__ == "__main__":
    main()
