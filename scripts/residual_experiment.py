"""Chapter 6's residual experiment: a deep stack of blocks with and without skip paths and norms.

Three variants of one 16-block character GPT (lmlab's pre-norm blocks, 32 wide, 4 heads,
GPT-2's initialisation), switched by :class:`lmlab.transformer_config.TransformerConfig`:

- ``residual + norms``: the package's block, ``x = x + sublayer(norm(x))``;
- ``residual, no block norms``: ``x = x + sublayer(x)`` (``block_norms=False``);
- ``no residual``: ``x = sublayer(norm(x))`` (``residual=False``).

All keep the final norm before the LM head. Each variant is trained from seeds 0, 1 and 2 on
the characters of Shakespeare's plays (:func:`lmlab.data.load_shakespeare`, the first 90% of the
text; the last 10% is held out), with AdamW at a learning rate of 1e-3, batches of 16 windows
of 64 characters, no dropout and no clipping. The script writes one JSON file
(``book/checkpoints/residual_experiment.json``): the settings and command, the uniform and
unigram losses of the held-out text, and per run the gradient norm of every block's
parameters at initialisation, the training loss of every step and the held-out loss at the
end (nats per character).

Deterministic on one thread: the same command on the same machine writes the same file.

Usage (from the repository root; with the defaults about 7 minutes of CPU time on one core,
27 minutes of wall time on a busy shared machine)::

    .venv/bin/python scripts/residual_experiment.py
    .venv/bin/python scripts/residual_experiment.py --layers 2 --steps 5 --seeds 0 --out /tmp/r.json
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lmlab.batching import random_windows
from lmlab.data import load_shakespeare
from lmlab.io import save_json
from lmlab.transformer import GPT
from lmlab.transformer_config import TransformerConfig

VARIANTS = {
    "residual + norms": {},
    "residual, no block norms": {"block_norms": False},
    "no residual": {"residual": False},
}
"""The variants: name -> the config fields that differ from the package's block."""
DEFAULT_OUT = (Path(__file__).resolve().parent.parent / "book" / "checkpoints"
               / "residual_experiment.json")
SCRIPT = "scripts/residual_experiment.py"
VAL_BATCHES, VAL_BATCH_SIZE, VAL_SEED, INIT_BATCH_SEED = 4, 64, 1234, 99


def characters() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The plays as character ids: the first 90% for training, the rest held out."""
    text = "\n".join(spoken for _, spoken in load_shakespeare())
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text])  # (N,)
    n = int(0.9 * len(ids))
    return ids[:n], ids[n:], chars


def unigram_loss(train_ids: torch.Tensor, val_ids: torch.Tensor, vocab_size: int) -> float:
    """Held-out cross-entropy of the training text's character frequencies (no context)."""
    counts = torch.bincount(train_ids, minlength=vocab_size).double() + 1.0  # add-one
    log_p = (counts / counts.sum()).log()
    return float(-log_p[val_ids].mean())


def make_model(variant: str, vocab_size: int, *, num_layers: int, d_model: int,
               context_length: int, seed: int) -> GPT:
    """The variant's GPT, initialised from ``seed``."""
    config = TransformerConfig(vocab_size=vocab_size, context_length=context_length,
                               d_model=d_model, num_layers=num_layers, num_heads=4,
                               **VARIANTS[variant])
    torch.manual_seed(seed)
    return GPT(config)


def block_gradient_norms(model: GPT, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """The norm of the loss's gradient over each block's parameters, first block first."""
    model.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    norms = [math.sqrt(sum(float(p.grad.pow(2).sum()) for p in block.parameters()))
             for block in model.blocks]
    model.zero_grad()
    return norms


def held_out_loss(model: GPT, val_ids: torch.Tensor, context_length: int) -> float:
    """Mean loss over a fixed set of held-out windows."""
    g = torch.Generator().manual_seed(VAL_SEED)
    with torch.no_grad():
        losses = [float(model(*random_windows(val_ids, VAL_BATCH_SIZE, context_length, g))[1])
                  for _ in range(VAL_BATCHES)]
    return sum(losses) / len(losses)


def run(variant: str, seed: int, train_ids: torch.Tensor, val_ids: torch.Tensor,
        vocab_size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Gradient norms at initialisation, then ``args.steps`` AdamW steps; one JSON record."""
    model = make_model(variant, vocab_size, num_layers=args.layers, d_model=args.d_model,
                       context_length=args.context, seed=seed)
    x, y = random_windows(train_ids, args.batch, args.context,
                          torch.Generator().manual_seed(INIT_BATCH_SEED))
    grads = block_gradient_norms(model, x, y)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    curve = []
    for _ in range(args.steps):
        _, loss = model(*random_windows(train_ids, args.batch, args.context, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve.append(round(float(loss.detach()), 4))
    return {"variant": variant, "seed": seed, "grad_norms": grads, "train_loss": curve,
            "val_loss": held_out_loss(model, val_ids, args.context)}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=16, help="blocks in the stack")
    p.add_argument("--d-model", type=int, default=32, help="width of the model")
    p.add_argument("--context", type=int, default=64, help="characters per window")
    p.add_argument("--batch", type=int, default=16, help="windows per step")
    p.add_argument("--steps", type=int, default=300, help="training steps per run")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW's learning rate")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON file to write")
    args = p.parse_args(argv)
    for name in ("layers", "d_model", "context", "batch", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}: expected an int >= 1")
    if args.steps < 0 or not args.lr > 0:
        p.error("--steps: expected >= 0, --lr: expected > 0")
    if args.d_model % 4:
        p.error("--d-model: expected a multiple of the 4 heads")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    train_ids, val_ids, chars = characters()
    V = len(chars)
    runs = []
    for variant in args.variants:
        for seed in args.seeds:
            runs.append(run(variant, seed, train_ids, val_ids, V, args))
            print(f"{variant:>25} seed {seed}: held-out loss {runs[-1]['val_loss']:.3f}",
                  flush=True)
    result = {
        "script": SCRIPT,
        "command": " ".join(["python", SCRIPT, *(sys.argv[1:] if argv is None else argv)]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                     if k != "out"},
        "vocab_size": V,
        "uniform_loss": math.log(V),
        "unigram_loss": unigram_loss(train_ids, val_ids, V),
        "runs": runs,
    }
    save_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
