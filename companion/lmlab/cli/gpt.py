"""``lmlab gpt train|generate``: chapter 7's GPT trained on your text, and sampled.

Training runs on one process, or data-parallel on several processes or GPUs when launched by
``torchrun`` (``torchrun --nproc_per_node 2 -m lmlab gpt train ...``; see
:mod:`lmlab.cli.gpt_train`).
"""

from __future__ import annotations

import argparse
from typing import Any

from lmlab.cli.common import (CLIError, add_device_option, model_file, resolve_device,
                              write_out)
from lmlab.cli.tokenizer import TextStream, load_tokenizer

COMMAND = "lmlab gpt train"
# TransformerConfig's presets of a decoder (minilm is an encoder's shape)
PRESETS = ("tiny", "small", "gpt2_small", "smollm2")

TRAIN_EXAMPLE = """examples:
  lmlab gpt train my_texts/ --tokenizer tok --preset tiny --steps 500 --out gpt
  lmlab gpt train my_texts/ --tokenizer tok --out gpt --steps 2000 --until 1000
  lmlab gpt train my_texts/ --resume gpt --out gpt-full        # steps 1000 to 2000
  torchrun --nproc_per_node 2 -m lmlab gpt train my_texts/ --tokenizer tok --out gpt
  (writes gpt/model.safetensors, gpt/tokenizer.json, gpt/checkpoint.safetensors for
  --resume, and gpt/run.json)"""
GENERATE_EXAMPLE = """example:
  lmlab gpt generate gpt --prompt "Once upon a time" --max-new-tokens 100 \\
      --temperature 0.8 --top-k 50 --seed 0"""


def add_parser(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    group = sub.add_parser("gpt", help="train a small GPT on text files and sample from it",
                           description="A decoder-only transformer (lmlab.transformer.GPT).",
                           epilog=TRAIN_EXAMPLE, formatter_class=fmt)
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    train = actions.add_parser("train", help="train a GPT from scratch (or resume one)",
                               description="Train a GPT on UTF-8 text files or folders: random "
                               "windows of the token stream, AdamW, warm-up and cosine decay.",
                               epilog=TRAIN_EXAMPLE, formatter_class=fmt)
    train.add_argument("inputs", nargs="+", metavar="TEXT",
                       help="UTF-8 text files, or folders (every *.txt under them)")
    train.add_argument("--out", required=True, help="the folder to write (must not exist)")
    train.add_argument("--force", action="store_true", help="replace --out if it exists")
    train.add_argument("--tokenizer", help="a BPE tokenizer folder of 'lmlab tokenizer train' "
                       "(default: bytes, 257 tokens)")
    train.add_argument("--preset", choices=PRESETS,
                       help="the model's shape, a TransformerConfig preset (default tiny)")
    train.add_argument("--context-length", type=int, help="tokens the model reads at once "
                       "(default: the preset's)")
    train.add_argument("--dropout", type=float, help="dropout rate (default 0)")
    train.add_argument("--steps", type=int, help="optimizer steps in the whole run (default 500)")
    train.add_argument("--batch-size", type=int, help="windows per step, over all processes "
                       "(default 16)")
    train.add_argument("--lr", type=float, help="peak learning rate (default 3e-3; 6e-4 for "
                       "gpt2_small and smollm2)")
    train.add_argument("--warmup", type=int, help="warm-up steps (default: steps / 20)")
    train.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 0.1)")
    train.add_argument("--val-fraction", type=float, help="share of the tokens (the last ones) "
                       "held out for the validation loss (default 0.1; 0: none)")
    train.add_argument("--seed", type=int, help="seed of the weights and batches (default 0)")
    train.add_argument("--until", type=int, help="stop after this many steps (the schedule "
                       "still spans --steps); continue later with --resume")
    train.add_argument("--resume", metavar="RUN", help="continue the run in this folder (its "
                       "model, tokenizer and settings; the same text)")
    train.add_argument("--dist-timeout", type=float, default=300.0, metavar="SECONDS",
                       help="under torchrun: how long to wait for every process (default 300)")
    add_device_option(train)
    train.set_defaults(handler=_run_train)

    gen = actions.add_parser("generate", help="continue a prompt with a trained GPT",
                             description="Sample text from a GPT trained by 'lmlab gpt "
                             "train', streamed as it is generated.",
                             epilog=GENERATE_EXAMPLE, formatter_class=fmt)
    gen.add_argument("run", metavar="RUN", help="a folder of 'lmlab gpt train' (or its "
                     "model.safetensors, with tokenizer.json beside it)")
    gen.add_argument("--prompt", default="", help="the text to continue (default: a new "
                     "document)")
    gen.add_argument("--max-new-tokens", type=int, default=200, help="default 200")
    gen.add_argument("--temperature", type=float, default=0.8,
                     help="0: greedy; below 1 sharper, above 1 flatter (default 0.8)")
    gen.add_argument("--top-k", type=int, help="sample among the k best tokens only")
    gen.add_argument("--top-p", type=float, help="sample among the best tokens that reach "
                     "probability p (nucleus sampling)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--samples", type=int, default=1, help="how many continuations")
    add_device_option(gen)
    gen.set_defaults(handler=run_generate)


def _run_train(args: argparse.Namespace) -> int:
    from lmlab.cli.gpt_train import run_train

    return run_train(args)


def check_sampling(args: argparse.Namespace) -> None:
    """The decoding flags shared by ``gpt generate`` and ``chat``, checked up front."""
    if args.max_new_tokens < 1:
        raise CLIError(f"--max-new-tokens {args.max_new_tokens}: expected at least 1")
    if not args.temperature >= 0:
        raise CLIError(f"--temperature {args.temperature}: expected 0 (greedy) or more")
    if args.top_k is not None and args.top_k < 1:
        raise CLIError(f"--top-k {args.top_k}: expected at least 1")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise CLIError(f"--top-p {args.top_p}: expected a probability in (0, 1]")
    if args.seed < 0:
        raise CLIError(f"--seed {args.seed}: expected 0 or more")


def stream_tokens(model: Any, ids: Any, args: argparse.Namespace, eos_id: int | None,
                  decode: Any) -> str:
    """Sample from ``model`` after the prompt ``ids`` and write the text as it comes."""
    import torch

    from lmlab.generation import stream

    generator = torch.Generator().manual_seed(args.seed)
    text = TextStream(decode)
    for token in stream(model, ids, args.max_new_tokens, temperature=args.temperature,
                        top_k=args.top_k, top_p=args.top_p, eos_id=eos_id,
                        generator=generator):
        t = int(token[0])
        if t == eos_id:
            break
        write_out(text.push(t))
    write_out(text.flush())
    return text.shown


def run_generate(args: argparse.Namespace) -> int:
    import torch

    from lmlab.transformer import GPT

    check_sampling(args)
    if args.samples < 1:
        raise CLIError(f"--samples {args.samples}: expected at least 1")
    device = resolve_device(args.device)
    path = model_file(args.run, COMMAND)
    model = GPT.load(path, device=device)
    tok = load_tokenizer(path.parent)
    if tok.kind != "bpe":
        raise CLIError(f"{tok.path}: a {tok.kind} tokenizer; a GPT of 'lmlab gpt train' "
                       "uses BPE")
    if tok.vocab_size != model.config.vocab_size:
        raise CLIError(f"{tok.path}: {tok.vocab_size} tokens, but {path} has "
                       f"vocab_size={model.config.vocab_size}: not the model's tokenizer")
    ids = tok.encode(args.prompt)
    if not ids:
        if tok.eot_id is None:
            raise CLIError("--prompt: empty, and the tokenizer has no <|endoftext|> to start "
                           "a document with; give a prompt")
        ids = [tok.eot_id]
    context = model.config.context_length
    if len(ids) >= context:
        raise CLIError(f"--prompt: {len(ids)} tokens; this model reads at most {context}, "
                       "so the prompt must be shorter")
    prompt = torch.tensor([ids], device=device)
    for i in range(args.samples):
        if i:
            write_out("\n\n")
        write_out(args.prompt)
        args_i = argparse.Namespace(**{**vars(args), "seed": args.seed + i})
        stream_tokens(model, prompt, args_i, tok.eot_id, tok.decode)
    write_out("\n")
    return 0

