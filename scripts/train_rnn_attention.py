"""Train the chapter 3 and 4 checkpoints: a plain GRU encoder-decoder and the same model with
attention, on CMUdict's training split, with the same budget (steps, batch size, learning rate,
seed and batch order), and store them as small safetensors files beside the chapters.

Usage (from the repository root)::

    .venv/bin/python scripts/train_rnn_attention.py                  # both models, one after the other
    .venv/bin/python scripts/train_rnn_attention.py --model attention --steps 100 --out /tmp/x

The committed checkpoints were made on a CPU with the defaults, one process per model, each on
one thread (``--model rnn --threads 1`` and ``--model attention --threads 1``); on a CPU with one
thread the run is deterministic.

Each file keeps its config, the training budget and its loss curve (mean loss per ``--log-every``
steps) in the safetensors header; the chapters read them with :func:`lmlab.rnn.load_checkpoint`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from lmlab import rnn
from lmlab.device import get_device, seed_everything

MODELS = {"rnn": None, "attention": "scaled_dot"}  # file stem -> Seq2SeqConfig.attention
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "book" / "checkpoints"


def train_one(name: str, steps: int, batch_size: int, hidden_size: int, embedding_dim: int,
              lr: float, seed: int, out: Path, log_every: int, device: str | None = None) -> Path:
    """Train model ``name`` ("rnn" or "attention") and write ``out / f"g2p_{name}.safetensors"``."""
    if name not in MODELS:
        raise ValueError(f"name: expected one of {sorted(MODELS)}, got {name!r}")
    config = rnn.Seq2SeqConfig(embedding_dim=embedding_dim, hidden_size=hidden_size,
                               attention=MODELS[name])
    seed_everything(seed)
    model = rnn.Seq2Seq(config)
    train = rnn.cmudict_splits()["train"]
    losses = rnn.train_seq2seq(model, train, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                               device=get_device(device), desc=name)
    curve = [round(sum(losses[i:i + log_every]) / len(losses[i:i + log_every]), 4)
             for i in range(0, steps, log_every)]
    path = out / f"g2p_{name}.safetensors"
    rnn.save_checkpoint(model, path, metadata={
        "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "log_every": log_every,
        "loss_curve": curve, "script": "scripts/train_rnn_attention.py"})
    return path


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=[*MODELS, "both"], default="both")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    names = list(MODELS) if args.model == "both" else [args.model]
    paths = []
    for name in names:
        paths.append(train_one(name, args.steps, args.batch_size, args.hidden_size,
                               args.embedding_dim, args.lr, args.seed, args.out,
                               args.log_every, args.device))
        logging.getLogger(__name__).info("wrote %s", paths[-1])
    return paths


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
