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

``--seeds 0 1 2`` runs the seed study instead: it trains the three models once per seed (the
seed sets the initial weights and the batch order), scores each on the test split as the
chapters do (greedy decoding, any CMUdict pronunciation counts) and writes only those figures,
with the budget, to ``g2p_seeds.json``; no weights are kept. At the checkpoints' budget a seed
costs about 40 CPU-minutes (three models of 3,000 steps at about 0.27 s a step on one thread,
and about 10 s to score each), so the work can be spread over processes, one per seed, and the
files joined with ``--merge``::

    .venv/bin/python scripts/train_rnn_attention.py --seeds 1 --threads 1 --out s1
    .venv/bin/python scripts/train_rnn_attention.py --seeds 2 --threads 1 --out s2
    .venv/bin/python scripts/train_rnn_attention.py --merge s1/g2p_seeds.json s2/g2p_seeds.json

Running ``--seeds 1 2`` in one process gives the same file (on one thread every run is
deterministic). The committed study, ``book/checkpoints/g2p_seeds.json`` (chapter 4), was made
that way with seeds 0, 1 and 2, one process each, then ``--merge``d; its seed 0 repeats the
checkpoints' scores.

Each checkpoint is a model file (:mod:`lmlab.model_files`, weights stored as float16) that keeps its
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
from lmlab.io import load_json, save_json

MODELS = ("rnn", "attention", "rnn_matched")  # file stems g2p_<name>.safetensors
SEEDS_FILE = "g2p_seeds.json"  # the seed study's figures (--seeds)
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


def seed_study(seeds: list[int], steps: int, batch_size: int, hidden_size: int, d_model: int,
               lr: float, out: Path, test_words: int = 0, device: str | None = None) -> Path:
    """Train the three models once per seed, score them on the test split, and write
    ``out / "g2p_seeds.json"``: ``{"budget": {...}, "runs": [{"seed", "model", "parameters",
    "final_loss", "word_accuracy", "per", "long_word_accuracy", "long_per", "n", "n_long"}]}``.

    ``test_words`` > 0 scores only every k-th test word, k chosen to leave about that many
    (for quick runs); 0 scores all of them.
    """
    train = g2p.cmudict_splits()["train"]
    test = g2p.cmudict_splits()["test"]
    if test_words:
        test = test[::max(1, len(test) // test_words)]
    listed = g2p.cmudict_pronunciations()
    runs = []
    for seed in seeds:
        for name in MODELS:
            config = make_config(name, hidden_size, d_model)
            seed_everything(seed)
            model = seq2seq.Seq2Seq(config)
            losses = seq2seq.train_seq2seq(model, train, steps=steps, batch_size=batch_size,
                                           lr=lr, seed=seed, device=get_device(device),
                                           desc=f"{name} seed {seed}")
            model.eval()
            scores = g2p.evaluate(model, test, references=listed)
            tail = losses[-min(50, len(losses)):]
            runs.append({"seed": seed, "model": name,
                         "parameters": sum(p.numel() for p in model.parameters()),
                         "final_loss": round(sum(tail) / len(tail), 4),
                         **{k: round(float(scores[k]), 5) for k in
                            ("word_accuracy", "per", "long_word_accuracy", "long_per")},
                         "n": scores["n"], "n_long": scores["n_long"]})
            logging.getLogger(__name__).info("%s", runs[-1])
    path = out / SEEDS_FILE
    save_json({"budget": {"steps": steps, "batch_size": batch_size, "lr": lr,
                          "hidden_size": hidden_size, "d_model": d_model, "seeds": seeds,
                          "test_words": test_words, "script": "scripts/train_rnn_attention.py"},
               "runs": runs}, path)
    return path


def merge_studies(paths: list[Path], out: Path) -> Path:
    """Join seed-study files made with the same budget (different seeds) into
    ``out / "g2p_seeds.json"``, in the order given.

    Raises:
        ValueError: a file is not a seed study, the budgets differ (other than in their seeds),
            or a seed occurs twice; the message names the file.
    """
    studies = []
    for path in paths:
        study = load_json(path)
        if not isinstance(study, dict) or set(study) != {"budget", "runs"}:
            raise ValueError(f"{path}: not a seed study (expected the keys budget and runs)")
        studies.append(study)
    budget = {k: v for k, v in studies[0]["budget"].items() if k != "seeds"}
    seeds: list[int] = []
    for path, study in zip(paths, studies):
        other = {k: v for k, v in study["budget"].items() if k != "seeds"}
        if other != budget:
            raise ValueError(f"{path}: budget {other} differs from {paths[0]}'s {budget}")
        twice = sorted(set(seeds) & set(study["budget"]["seeds"]))
        if twice:
            raise ValueError(f"{path}: seed(s) {twice} already in an earlier file")
        seeds += study["budget"]["seeds"]
    merged = {"budget": {**studies[0]["budget"], "seeds": seeds},
              "runs": [run for study in studies for run in study["runs"]]}
    path = out / SEEDS_FILE
    save_json(merged, path)
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
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="run the seed study with these seeds instead (writes g2p_seeds.json)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="join these seed-study files into OUT/g2p_seeds.json")
    parser.add_argument("--test-words", type=int, default=0,
                        help="seed study: score about this many test words (0: all)")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "hidden_size", "d_model", "log_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.merge is not None and args.seeds is not None:
        parser.error("--merge and --seeds: give one of them")
    if args.test_words < 0:
        parser.error("--test-words must be >= 0")
    if args.seeds is not None and (min(args.seeds) < 0 or len(set(args.seeds)) != len(args.seeds)):
        parser.error(f"--seeds must be distinct and >= 0, got {args.seeds}")
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.merge is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            return [merge_studies(args.merge, args.out)]
        args.out.mkdir(parents=True, exist_ok=True)
        if args.seeds is not None:
            return [seed_study(args.seeds, args.steps, args.batch_size, args.hidden_size,
                               args.d_model, args.lr, args.out, args.test_words, args.device)]
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
