"""Train the chapter 3 and 4 checkpoints: a plain GRU encoder-decoder, the same model with
attention, and a plain GRU whose state is widened until it has as many parameters as the
attention model (the control at equal size), all on CMUdict's training split with the same budget
(steps, batch size, learning rate, seed and batch order), stored as small safetensors files beside
the chapters.

Usage (from the repository root)::

    .venv/bin/python scripts/train_rnn_attention.py                  # all three, one after another
    .venv/bin/python scripts/train_rnn_attention.py --model attention --steps 100 --out /tmp/x

The committed checkpoints were made on a CPU with the defaults, one process per model, each on
one thread (``--model rnn --threads 1`` and so on); on a CPU with one thread the run is
deterministic.

Each file is a model file (:mod:`lmlab.model_files`, weights stored as float16) that keeps its
config, the training budget, its parameter count and its loss curve (mean loss per
``--log-every`` steps) in the safetensors header; the chapters read the model with
:meth:`lmlab.seq2seq.Seq2Seq.load` and the rest with :func:`lmlab.model_files.read_model_file`.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

import torch

from lmlab import g2p, seq2seq
from lmlab.device import get_device, seed_everything

MODELS = ("rnn", "attention", "rnn_matched")  # file stems g2p_<name>.safetensors
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "book" / "checkpoints"


def parameter_count(config: seq2seq.Seq2SeqConfig) -> int:
    """Number of parameters of a model with ``config`` (built on the meta device: no memory)."""
    with torch.device("meta"):
        return sum(p.numel() for p in seq2seq.Seq2Seq(config).parameters())


def matched_hidden_size(target: seq2seq.Seq2SeqConfig) -> int:
    """The hidden size of a plain model (same vocabularies, embeddings and cell) whose parameter
    count is closest to ``target``'s."""
    plain = replace(target, attention=None)
    goal = parameter_count(target)
    size = plain.hidden_size
    while parameter_count(replace(plain, hidden_size=size + 1)) <= goal:
        size += 1
    below, above = (parameter_count(replace(plain, hidden_size=s)) for s in (size, size + 1))
    return size if goal - below <= above - goal else size + 1


def make_config(name: str, hidden_size: int, d_model: int) -> seq2seq.Seq2SeqConfig:
    """The config of model ``name`` for the given base sizes."""
    base = seq2seq.Seq2SeqConfig(g2p.GRAPHEME_VOCAB, g2p.PHONEME_VOCAB, d_model=d_model,
                                 hidden_size=hidden_size)
    if name == "rnn":
        return base
    attention = replace(base, attention="scaled_dot")
    if name == "attention":
        return attention
    if name == "rnn_matched":
        return replace(base, hidden_size=matched_hidden_size(attention))
    raise ValueError(f"name: expected one of {MODELS}, got {name!r}")


def train_one(name: str, steps: int, batch_size: int, hidden_size: int, d_model: int,
              lr: float, seed: int, out: Path, log_every: int, device: str | None = None) -> Path:
    """Train model ``name`` and write ``out / f"g2p_{name}.safetensors"``."""
    config = make_config(name, hidden_size, d_model)
    seed_everything(seed)
    model = seq2seq.Seq2Seq(config)
    train = g2p.cmudict_splits()["train"]
    losses = seq2seq.train_seq2seq(model, train, steps=steps, batch_size=batch_size, lr=lr,
                                   seed=seed, device=get_device(device), desc=name)
    curve = [round(sum(losses[i:i + log_every]) / len(losses[i:i + log_every]), 4)
             for i in range(0, steps, log_every)]
    path = out / f"g2p_{name}.safetensors"
    model.save(path, metadata={
        "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "log_every": log_every,
        "parameters": sum(p.numel() for p in model.parameters()), "loss_curve": curve,
        "script": "scripts/train_rnn_attention.py"}, dtype=torch.float16)
    return path


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=[*MODELS, "all"], default="all")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "hidden_size", "d_model", "log_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        names = list(MODELS) if args.model == "all" else [args.model]
        paths = []
        for name in names:
            paths.append(train_one(name, args.steps, args.batch_size, args.hidden_size,
                                   args.d_model, args.lr, args.seed, args.out, args.log_every,
                                   args.device))
            logging.getLogger(__name__).info("wrote %s", paths[-1])
    finally:
        torch.set_num_threads(threads)
    return paths


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
