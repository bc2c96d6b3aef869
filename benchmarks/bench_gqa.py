"""Benchmark a grouped-query decode step: one new query token against a cache of 2048 tokens.

B = 4, H = 8 query heads of D = 64, cache S = 2048, float32, one thread, attention only (no
projections). For G = 8 (MHA), 2 (GQA-2) and 1 (MQA) key/value heads, four ways:

* ``lmlab``: the fast path of :class:`lmlab.sublayers.MultiHeadAttention` (what its decode
  step runs), on the same q, k, v: with B x H = 32 query rows, one grouped matrix product for
  G < H (below 32 rows it hands the step to SDPA, which is faster there);
* ``sdpa gqa``: ``scaled_dot_product_attention(..., enable_gqa=True)``;
* ``grouped``: a plain grouped matrix product, queries viewed as ``(B, G, H / G, D)`` against
  the ``G`` key heads;
* ``repeat``: keys and values repeated to ``H`` heads, then SDPA.

Goals (issue 12): never slower than ``enable_gqa``; >= 2.4x (GQA-2) and >= 3.5x (MQA) over MHA.

With ``--sweep`` it also compares the grouped product with ``enable_gqa`` over batch sizes, head
counts and cache lengths (:func:`sweep`): the measurement behind the 32 query rows from which
``MultiHeadAttention`` takes the product.

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=companion python benchmarks/bench_gqa.py [--sweep]``
"""

from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F

from lmlab.sublayers import MultiHeadAttention

B, H, D, S = 4, 8, 64, 2048
REPEATS, CALLS = 5, 50


def grouped(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    G = k.shape[1]
    qg = q.view(B, G, H // G, D) * D ** -0.5  # (B, G, H/G, D): one query token per head
    weights = torch.softmax(qg @ k.transpose(-2, -1), dim=-1)  # (B, G, H/G, S)
    return (weights @ v).view(B, H, 1, D)  # (B, H, 1, D)


def measure(repeats: int = REPEATS, calls: int = CALLS) -> dict[int, dict[str, float]]:
    """Seconds per call of each way, for G = 8, 2, 1 key/value heads (outputs checked equal).

    The ways are timed in interleaved rounds (each round times every way once), so all of them
    see the same machine load; each keeps its fastest round. The order turns by one way each
    round: a way timed just after ``repeat`` (which writes two large copies) ran up to twice as
    slow, so no way is always the one after it.
    """
    times: dict[int, dict[str, float]] = {}
    for G in (8, 2, 1):
        q = torch.randn(B, H, 1, D)
        k, v = torch.randn(B, G, S, D), torch.randn(B, G, S, D)
        mha = MultiHeadAttention(H * D, H, G)
        ways = {
            "lmlab": lambda: mha._fast(q, k, v, None, 0.0, False),
            "sdpa gqa": lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=G < H),
            "grouped": lambda: grouped(q, k, v),
            "repeat": lambda: F.scaled_dot_product_attention(
                q, k.repeat_interleave(H // G, 1), v.repeat_interleave(H // G, 1)),
        }
        reference = ways["sdpa gqa"]()
        for name, fn in ways.items():
            torch.testing.assert_close(fn(), reference, atol=1e-5, rtol=1e-5)
        with torch.no_grad():
            best = {name: float("inf") for name in ways}
            for name, fn in ways.items():
                fn()  # warm-up
            order = list(ways)
            for _ in range(repeats):
                for name in order:
                    fn = ways[name]
                    start = time.perf_counter()
                    for _ in range(calls):
                        fn()
                    best[name] = min(best[name], (time.perf_counter() - start) / calls)
                order = order[1:] + order[:1]  # each way also runs first, and after each other
            times[G] = best
    return times


SWEEP_SHAPES = ((1, 6, 2, 64), (1, 9, 3, 64), (1, 12, 4, 64), (4, 8, 2, 64), (8, 4, 1, 32),
                (1, 32, 8, 128))  # (B, H, G, D); SmolLM2-135M has H = 9, G = 3, D = 64
SWEEP_LENGTHS = (64, 256, 512, 1024, 2048, 4096)


def sweep(shapes=SWEEP_SHAPES, lengths=SWEEP_LENGTHS, rounds: int = 5) -> dict:
    """SDPA enable_gqa time over the grouped product's time for one decode step, for each
    ``(B, H, G, D)`` and cache length (> 1: the grouped product is faster): the measurement
    behind the 32 query rows (B x H) from which :class:`lmlab.sublayers.MultiHeadAttention`
    takes the grouped product on CPU. Returns ``{(B, H, G, D, S): ratio}``."""
    ratios = {}
    for b, h, g, d in shapes:
        for t in lengths:
            q = torch.randn(b, h, 1, d)
            k, v = torch.randn(b, g, t, d), torch.randn(b, g, t, d)
            group = h // g

            def product():
                qg = q.reshape(b, g, group, d) * d ** -0.5
                return (torch.softmax(qg @ k.transpose(-2, -1), dim=-1) @ v).view(b, h, 1, d)

            def sdpa():
                return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)

            torch.testing.assert_close(product(), sdpa(), atol=1e-5, rtol=1e-5)
            calls = max(5, int(1e6 / (b * h * t * d)))
            best = {"product": float("inf"), "sdpa": float("inf")}
            for _ in range(rounds):
                for name, fn in (("product", product), ("sdpa", sdpa)):
                    start = time.perf_counter()
                    for _ in range(calls):
                        fn()
                    best[name] = min(best[name], (time.perf_counter() - start) / calls)
            ratios[(b, h, g, d, t)] = best["sdpa"] / best["product"]
    print("\none decode step, SDPA enable_gqa time / grouped product time (> 1: product faster)")
    print(f"{'B':>3}{'H':>4}{'G':>4}{'D':>5}{'B*H':>5}  " + "".join(f"{f'S={t}':>8}"
                                                            for t in lengths))
    for b, h, g, d in shapes:
        print(f"{b:>3}{h:>4}{g:>4}{d:>5}{b * h:>5}  " + "".join(
            f"{ratios[(b, h, g, d, t)]:>7.2f}x" for t in lengths))
    return ratios


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"decode step: B={B} H={H} D={D} cache S={S}, float32, {torch.get_num_threads()} "
          f"thread, torch {torch.__version__}, mean per call, best of {REPEATS}x{CALLS}")
    times = measure()
    names = list(times[8])
    print(f"{'kv heads':>9} " + "".join(f"{n:>12}" for n in names) + "   (microseconds)")
    for G, row in times.items():
        print(f"{G:>9} " + "".join(f"{row[n] * 1e6:>12.0f}" for n in names))
    print("\nspeed-up over MHA (time with 8 kv heads / time with G), each way against itself:")
    for G in (2, 1):
        print(f"  G={G}: " + "  ".join(f"{n} {times[8][n] / times[G][n]:.2f}x" for n in names))
    print("\nlmlab vs sdpa enable_gqa at the same G (>= 1 means not slower):")
    print("  " + "  ".join(f"G={G} {times[G]['sdpa gqa'] / times[G]['lmlab']:.2f}x"
                           for G in (8, 2, 1)))
    print("lmlab over MHA SDPA: " + "  ".join(
        f"G={G} {times[8]['sdpa gqa'] / times[G]['lmlab']:.2f}x" for G in (2, 1))
        + "   (goal: >= 2.4x at G=2, >= 3.5x at G=1)")
    if "--sweep" in sys.argv[1:]:
        sweep()


if __name__ == "__main__":
    main()
