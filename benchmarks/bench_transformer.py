"""Benchmark lmlab's GPT training against the same model built from torch's encoder layers.

GPT training tokens/s (forward, backward, AdamW step) against a model of the same size made of
``torch.nn.TransformerEncoderLayer`` (causal mask, ``norm_first=True``, exact GELU, learned
positions, tied head), alternating the two so both see the same machine load; the best of
``--repeats`` rounds for each. Goal: ours / reference >= 1.0x.

Run: ``.venv/bin/python benchmarks/bench_transformer.py`` (``--threads``, sizes as options).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from lmlab.transformer import GPT
from lmlab.transformer_config import TransformerConfig


class TorchReference(nn.Module):
    """Embeddings + ``nn.TransformerEncoder`` (pre-norm, causal) + final norm + tied head."""

    def __init__(self, c: TransformerConfig) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = nn.Embedding(c.context_length, c.d_model)
        layer = nn.TransformerEncoderLayer(c.d_model, c.num_heads, c.d_ff, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, c.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.d_model)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(
            c.context_length), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        T = ids.shape[1]
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(T, device=ids.device))
        x = self.blocks(x, mask=self.mask[:T, :T], is_causal=True)
        return self.lm_head(self.norm(x))


def tokens_per_second(model: nn.Module, ids: torch.Tensor, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * ids[:, :-1].numel() / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-model", type=int, default=192)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--num-heads", type=int, default=6)
    p.add_argument("--context-length", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = TransformerConfig(vocab_size=args.vocab_size, context_length=args.context_length,
                               d_model=args.d_model, num_layers=args.num_layers,
                               num_heads=args.num_heads, ffn="gelu")
    torch.manual_seed(0)
    ours, ref = GPT(config), TorchReference(config)
    n_ours = ours.num_parameters()
    n_ref = sum(p.numel() for p in ref.parameters())
    ids = torch.randint(0, args.vocab_size, (args.batch_size, args.context_length + 1))
    best = {"lmlab": 0.0, "torch": 0.0}
    for _ in range(args.repeats):
        best["lmlab"] = max(best["lmlab"], tokens_per_second(ours, ids, args.steps))
        best["torch"] = max(best["torch"], tokens_per_second(ref, ids, args.steps))
    ratio = best["lmlab"] / best["torch"]
    print(f"GPT training, {args.num_layers} layers x {args.d_model}, {args.num_heads} heads, "
          f"context {args.context_length}, batch {args.batch_size}, {args.threads} thread(s) of "
          f"{os.cpu_count()} cores, torch {torch.__version__}")
    print(f"  parameters: lmlab {n_ours:,}, reference {n_ref:,}")
    print(f"  lmlab GPT                      : {best['lmlab']:9.0f} tokens/s")
    print(f"  nn.TransformerEncoderLayer GPT : {best['torch']:9.0f} tokens/s")
    print(f"  ratio lmlab / reference        : {ratio:9.2f}x   (goal: >= 1.0x)")
    return ratio


if __name__ == "__main__":
    main()
