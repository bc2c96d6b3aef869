"""The GPU check, one command: ``pytest -m gpu``, then GPT-2-small training speed and MFU.

1. ``pytest -m gpu tests`` (bf16 training steps, CUDA against CPU, and every other GPU test).
2. The bf16 matrix-product peak of this GPU, measured now (8192^3 products).
3. GPT-2 small (124M parameters, context 1024) training steps with bf16 autocast, flash SDPA,
   fused AdamW and ``torch.compile``: tokens/s and model-FLOPs utilisation (MFU) against that
   peak, for :class:`lmlab.transformer.GPT` and for the same model built from
   ``torch.nn.TransformerEncoderLayer`` (``benchmarks/bench_transformer.py``). Goals: >= 55%
   MFU and >= 1.0x the reference.
4. Attention alone (issue 12), bf16, forward + backward: :class:`lmlab.sublayers.MultiHeadAttention`
   (its SDPA fast path, causal, 12 heads and 12 or 4 key/value heads, T = 2048) against the same
   projections around a direct ``scaled_dot_product_attention`` call (goal: within 1.05x); and a
   causal sliding window of 1024 at T = 16384 through compiled ``flex_attention`` with
   :func:`lmlab.sparse.flex_block_mask` against causal SDPA (goal: >= 4x faster).

Model FLOPs per token follow nanoGPT / PaLM: ``6 N + 12 L T C`` (N parameters without the
position table, L layers, T context, C width), forward and backward, causal attention counted
in full.

Run on a machine with one CUDA GPU (under 5 minutes on an H100/H200)::

    python benchmarks/gpu.py

``--cpu-smoke`` runs every step at a tiny size on the CPU (no compile, no bf16), so the script
is exercised where no GPU is present.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_transformer import TorchReference  # noqa: E402

from lmlab.device import autocast  # noqa: E402
from lmlab.sparse import SparsePattern, flex_block_mask  # noqa: E402
from lmlab.sublayers import MultiHeadAttention  # noqa: E402
from lmlab.transformer import GPT  # noqa: E402
from lmlab.transformer_config import TransformerConfig  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def run_gpu_tests(smoke: bool) -> int:
    """``pytest -m gpu tests``; returns its exit code (5, "no tests ran", counts as success)."""
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-o", "addopts=-ra -p no:cacheprovider",
           "-p", "no:nbval", "tests"]
    if smoke:
        cmd += ["-k", "gpu_matches_cpu"]  # collected and skipped without a GPU: quick
    print("$", " ".join(cmd[1:]), flush=True)
    code = subprocess.call(cmd, cwd=ROOT)
    return 0 if code == 5 else code


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, n: int, repeats: int) -> float:
    """Measured FLOP/s of an ``n x n x n`` matrix product in bf16 (fp32 on CPU)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n ** 3 * repeats / (time.perf_counter() - start)


def flops_per_token(model: torch.nn.Module, config: TransformerConfig) -> float:
    n = sum(p.numel() for name, p in model.named_parameters() if "pos_emb" not in name)
    return 6 * n + 12 * config.num_layers * config.context_length * config.d_model


def mean_time(fn, device: torch.device, warmup: int, repeats: int) -> float:
    """Mean seconds per call after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def train_speed(model: torch.nn.Module, config: TransformerConfig, device: torch.device,
                batch_size: int, warmup: int, steps: int, compile_: bool) -> float:
    """Tokens per second of full training steps (forward, backward, AdamW)."""
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1,
                            fused=device.type == "cuda")
    fwd = torch.compile(model) if compile_ else model
    g = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (batch_size, config.context_length + 1),
                        generator=g).to(device)
    flash = contextlib.nullcontext()
    if device.type == "cuda":
        from torch.nn.attention import SDPBackend, sdpa_kernel
        flash = sdpa_kernel(SDPBackend.FLASH_ATTENTION)

    def step() -> None:
        with flash, autocast(device):
            logits = fwd(ids[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return batch_size * config.context_length / mean_time(step, device, warmup, steps)


def sdpa_reference(attn: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """``attn``'s projections around one direct SDPA call: what a user would write."""
    B, T, _ = x.shape
    H, G, D = attn.num_heads, attn.num_kv_heads, attn.head_dim
    q, k, v = attn.qkv_proj(x).split([H * D, G * D, G * D], dim=-1)  # the fused projection
    q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
    k = k.view(B, T, G, D).transpose(1, 2)  # (B, G, T, D)
    v = v.view(B, T, G, D).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=G < H)
    return attn.out_proj(out.transpose(1, 2).reshape(B, T, H * D))


def attention_speed(device: torch.device, smoke: bool) -> dict[str, float]:
    """Our attention module against direct SDPA; flex sliding window against causal SDPA."""
    results: dict[str, float] = {}
    dtype = torch.float32 if smoke else torch.bfloat16
    B, T, H, D = (2, 64, 4, 16) if smoke else (8, 2048, 12, 64)
    warmup, repeats = (1, 2) if smoke else (5, 30)
    for G in (H, H // 4 or 1):
        attn = MultiHeadAttention(H * D, H, G, bias=False).to(device=device, dtype=dtype)
        x = torch.randn(B, T, H * D, device=device, dtype=dtype, requires_grad=True)
        ours = attn(x, is_causal=True)[0]
        torch.testing.assert_close(ours, sdpa_reference(attn, x), atol=2e-2, rtol=2e-2)
        t_ours = mean_time(lambda: attn(x, is_causal=True)[0].sum().backward(), device,
                           warmup, repeats)
        t_ref = mean_time(lambda: sdpa_reference(attn, x).sum().backward(), device,
                          warmup, repeats)
        results[f"attention G={G} ratio"] = t_ours / t_ref
        print(f"MultiHeadAttention H={H} G={G} B={B} T={T}, fwd+bwd: {t_ours * 1e3:.2f} ms, "
              f"direct SDPA {t_ref * 1e3:.2f} ms, ratio {t_ours / t_ref:.3f} "
              f"(goal <= 1.05)", flush=True)

    from torch.nn.attention.flex_attention import flex_attention

    B, H, T, D, window = (1, 2, 256, 16, 32) if smoke else (1, 16, 16384, 64, 1024)
    pattern = SparsePattern(window=window)
    q, k, v = (torch.randn(B, H, T, D, device=device, dtype=dtype, requires_grad=not smoke)
               for _ in range(3))
    block_mask = flex_block_mask(pattern, T, device)
    flex = flex_attention if smoke else torch.compile(flex_attention)  # CPU: eager, forward

    def flex_call() -> torch.Tensor:
        return flex(q, k, v, block_mask=block_mask)

    def causal_call() -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    check = min(T, 2048)  # the window's result on the first `check` queries equals dense
    dense = F.scaled_dot_product_attention(q[:, :, :check], k[:, :, :check], v[:, :, :check],
                                           attn_mask=pattern.mask(check, device=device))
    with warnings.catch_warnings():  # CPU smoke run: flex's "use torch.compile" warning
        warnings.simplefilter("ignore", UserWarning)
        torch.testing.assert_close(flex_call()[:, :, :check], dense, atol=2e-2, rtol=2e-2)
    passes = {"forward": lambda fn: fn}
    if not smoke:  # flex attention has no CPU backward in torch 2.13
        passes["fwd+bwd"] = lambda fn: (lambda: fn().sum().backward())
    for name, wrap in passes.items():
        with (torch.no_grad() if name == "forward" else contextlib.nullcontext(),
              warnings.catch_warnings()):
            warnings.simplefilter("ignore", UserWarning)
            t_flex = mean_time(wrap(flex_call), device, warmup, repeats)
            t_causal = mean_time(wrap(causal_call), device, warmup, repeats)
        results[f"flex window {name} speed-up"] = t_causal / t_flex
        print(f"sliding window {window} via flex_attention vs causal SDPA, T={T}, {name}: "
              f"{t_flex * 1e3:.2f} ms vs {t_causal * 1e3:.2f} ms, "
              f"{t_causal / t_flex:.2f}x faster (goal >= 4x)", flush=True)
    return results


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU")
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--no-compile", action="store_true")
    args = p.parse_args(argv)
    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py: no CUDA GPU here; use --cpu-smoke to exercise the script")
    device = torch.device("cpu" if smoke else "cuda")
    results: dict[str, float] = {}
    if not args.skip_tests:
        code = run_gpu_tests(smoke)
        results["tests_exit_code"] = code
        if code != 0:
            print(f"pytest -m gpu failed with exit code {code}")
    if smoke:
        config = TransformerConfig.tiny(ffn="gelu")
        batch, warmup, steps, compile_, n = 2, 1, 2, False, 256
    else:
        torch.backends.cuda.matmul.allow_tf32 = True  # a benchmark process may set this
        config = TransformerConfig.gpt2_small(ffn="gelu")
        batch, warmup, steps, compile_, n = args.batch_size, 5, args.steps, not args.no_compile, 8192
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}, torch {torch.__version__}, {os.cpu_count()} CPU cores", flush=True)
    peak = matmul_peak(device, n, 5 if smoke else 50)
    results["peak_tflops"] = peak / 1e12
    print(f"matrix-product peak ({'fp32' if smoke else 'bf16'}, {n}^3): {peak / 1e12:.3f} TFLOP/s")
    torch.manual_seed(0)
    for label, model in (("lmlab GPT", GPT(config)), ("TransformerEncoderLayer", TorchReference(config))):
        tps = train_speed(model, config, device, batch, warmup, steps, compile_)
        mfu = tps * flops_per_token(model, config) / peak
        results[label] = tps
        results[f"{label} MFU"] = mfu
        print(f"{label:>24}: {tps:12,.0f} tokens/s, MFU {100 * mfu:5.1f}%  "
              f"(batch {batch} x {config.context_length}, compile={compile_})", flush=True)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    ratio = results["lmlab GPT"] / results["TransformerEncoderLayer"]
    results["ratio"] = ratio
    print(f"ratio lmlab / reference: {ratio:.2f}x   (goals: >= 1.0x and >= 55% MFU)")
    results.update(attention_speed(device, smoke))
    return results


if __name__ == "__main__":
    main()
