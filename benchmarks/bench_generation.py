"""Benchmark generation with the key/value cache against recomputing the whole sequence.

A 2-layer, 384-wide GPT (6 heads, context 1,088) continues a 64-token prompt greedily by 256 and
1,024 tokens, with and without the cache; the tokens must be identical. Goal: > 10x at 1,024 new
tokens on a CPU.

Run: ``.venv/bin/python benchmarks/bench_generation.py`` (``--threads``, ``--new`` as options).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from lmlab.generation import generate
from lmlab.transformer import GPT
from lmlab.transformer_config import TransformerConfig, kv_cache_bytes_per_token


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> dict[int, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--new", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--d-model", type=int, default=384)
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--prompt", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = TransformerConfig(vocab_size=2048, context_length=args.prompt + max(args.new),
                               d_model=args.d_model, num_layers=args.num_layers, num_heads=6)
    torch.manual_seed(0)
    model = GPT(config).eval()
    prompt = torch.randint(0, 2048, (1, args.prompt))
    print(f"GPT {args.num_layers} layers x {args.d_model}, prompt {args.prompt} tokens, greedy, "
          f"{args.threads} thread(s) of {os.cpu_count()} cores, torch {torch.__version__}; "
          f"cache {kv_cache_bytes_per_token(config):,} bytes per token")
    ratios = {}
    for n in args.new:
        t_cache, a = timed(lambda: generate(model, prompt, n, use_cache=True))
        t_full, b = timed(lambda: generate(model, prompt, n, use_cache=False))
        assert torch.equal(a, b), "cached and uncached generation differ"
        ratios[n] = t_full / t_cache
        print(f"  {n:5d} new tokens: cache {n / t_cache:8.1f} tokens/s, no cache "
              f"{n / t_full:8.1f} tokens/s, ratio {ratios[n]:6.1f}x  (same tokens)")
    print("  goal: > 10x at 1024 new tokens")
    return ratios


if __name__ == "__main__":
    main()
