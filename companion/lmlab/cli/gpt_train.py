"""``lmlab gpt train``: a GPT on the user's text, on one process or under ``torchrun``.

The text's documents (files) are encoded one after another, each followed by
``<|endoftext|>``; the last ``--val-fraction`` of the tokens is held out for the validation
loss. Every step takes ``--batch-size`` random windows of ``context_length`` tokens
(:func:`lmlab.batching.random_windows`) and the model returns its own loss
(``model(ids, targets)``); :func:`lmlab.training.train` runs AdamW with warm-up and cosine
decay. Launched by ``torchrun``, each process joins the group (:func:`lmlab.parallel.
distributed`), trains on its share of every batch, and process 0 writes the folder.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import shutil
from pathlib import Path
from typing import Any

from lmlab.cli.common import (RUN_FILE, CLIError, OutputFolder, check_inputs, echo,
                              read_documents, resolve_device, write_json)
from lmlab.cli.tokenizer import EOT, Tokenizer, load_tokenizer
from lmlab.cli.gpt import COMMAND

# The options that define a run: a resumed run keeps them (passing another value is an error).
RUN_OPTIONS = ("preset", "context_length", "dropout", "steps", "batch_size", "lr", "warmup",
               "weight_decay", "val_fraction", "seed")
DEFAULTS = {"preset": "tiny", "context_length": None, "dropout": 0.0, "steps": 500,
            "batch_size": 16, "warmup": None, "weight_decay": 0.1, "val_fraction": 0.1,
            "seed": 0}
LR = {"tiny": 3e-3, "small": 3e-3, "gpt2_small": 6e-4, "smollm2": 6e-4}
OPTION = {"steps": "--steps", "lr": "--lr", "warmup_steps": "--warmup", "seed": "--seed",
          "weight_decay": "--weight-decay", "context_length": "--context-length",
          "dropout": "--dropout", "until": "--until"}
EVAL_WINDOWS = 32  # validation windows, evenly spread over the held-out tokens


def _option_error(err: Exception) -> CLIError:
    field, _, rest = str(err).partition(":")
    return CLIError(f"{OPTION.get(field.strip(), field)}:{rest}")


def _read_run(folder: str) -> dict[str, Any]:
    """The settings of the run in ``folder``, checked to be a resumable GPT run."""
    import json

    path = Path(folder) / RUN_FILE
    if not Path(folder).is_dir() or not path.is_file():
        raise CLIError(f"--resume {folder}: no {RUN_FILE} there; expected the --out folder of "
                       f"'{COMMAND}'")
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CLIError(f"{path}: unreadable ({err})") from None
    kind = run.get("kind") if isinstance(run, dict) else None
    if kind != "GPT":
        made_by = run.get("command") if isinstance(run, dict) else None
        raise CLIError(f"--resume {folder}: holds a {kind!r} (from '{made_by}'), not a GPT "
                       "run")
    if run["step"] >= run["settings"]["steps"]:
        raise CLIError(f"--resume {folder}: the run finished all its {run['step']} steps; "
                       "start a new run with more --steps")
    if not (Path(folder) / "checkpoint.safetensors").is_file():
        raise CLIError(f"--resume {folder}: no checkpoint.safetensors to resume from")
    return run


def _settings(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The run's settings (options over defaults, or the resumed run's) and the old run."""
    if args.resume is None:
        settings = {k: DEFAULTS[k] if getattr(args, k, None) is None else getattr(args, k)
                    for k in RUN_OPTIONS if k != "lr"}
        settings["lr"] = LR[settings["preset"]] if args.lr is None else args.lr
        return settings, None
    if args.tokenizer is not None:
        raise CLIError("--tokenizer: a resumed run keeps its own tokenizer.json")
    run = _read_run(args.resume)
    settings = run["settings"]
    for key in RUN_OPTIONS:
        value = getattr(args, key)
        if value is not None and value != settings[key]:
            raise CLIError(f"--{key.replace('_', '-')} {value}: the run in {args.resume} has "
                           f"{settings[key]}; a resumed run keeps its settings")
    return settings, run


def _configs(settings: dict[str, Any], vocab_size: int) -> tuple[Any, Any]:
    from lmlab.training import TrainConfig
    from lmlab.transformer_config import TransformerConfig

    overrides: dict[str, Any] = {"vocab_size": vocab_size, "dropout": settings["dropout"]}
    if settings["context_length"] is not None:
        overrides["context_length"] = settings["context_length"]
    extra = {} if settings["warmup"] is None else {"warmup_steps": settings["warmup"]}
    try:
        model = getattr(TransformerConfig, settings["preset"])(**overrides)
        train = TrainConfig.small(steps=settings["steps"], lr=settings["lr"],
                                  weight_decay=settings["weight_decay"], betas=(0.9, 0.95),
                                  seed=settings["seed"], desc="gpt", log_every=10, **extra)
    except (TypeError, ValueError) as err:
        raise _option_error(err) from None
    return model, train


def _world(args: argparse.Namespace) -> contextlib.AbstractContextManager[Any]:
    """The torchrun group to join (when launched by torchrun), else nothing."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return contextlib.nullcontext()
    from lmlab.parallel import distributed

    if args.device not in ("auto", "cpu", "cuda"):
        raise CLIError(f"--device {args.device}: under torchrun each process takes "
                       "cuda:LOCAL_RANK (--device cuda or auto) or the CPU (--device cpu)")
    if not args.dist_timeout > 0:
        raise CLIError(f"--dist-timeout {args.dist_timeout}: expected seconds > 0")
    return distributed(backend="gloo" if args.device == "cpu" else None,
                       timeout=args.dist_timeout)


def _encode(docs: list[Any], tok: Any) -> Any:
    import torch

    from lmlab.progress import progress

    sep = [tok.eot_id] if tok.eot_id is not None else tok.encode("\n\n")
    ids: list[int] = []
    with progress(docs, desc="encode", enabled=None if len(docs) > 1 else False) as bar:
        for d in bar:
            ids += tok.encode(d.text) + sep
    return torch.tensor(ids, dtype=torch.long)


def run_train(args: argparse.Namespace) -> int:
    import torch

    from lmlab.device import seed_everything
    from lmlab.parallel import world
    from lmlab.training import train
    from lmlab.transformer import GPT

    settings, old = _settings(args)
    if args.resume is not None:
        tok = load_tokenizer(args.resume)
    elif args.tokenizer is not None:
        tok = load_tokenizer(args.tokenizer)
    else:
        from lmlab.bpe import BPETokenizer

        tok = Tokenizer(Path("bytes"), "bpe", BPETokenizer(special_tokens=[EOT]))
    if tok.kind != "bpe":
        raise CLIError(f"--tokenizer {tok.path}: a {tok.kind} tokenizer; a GPT needs a "
                       "byte-level BPE one (lmlab tokenizer train --kind bpe)")
    config, tconfig = _configs(settings, tok.vocab_size)
    T, B = config.context_length, settings["batch_size"]
    if B < 1:
        raise CLIError(f"--batch-size {B}: expected at least 1")
    if not 0 <= settings["val_fraction"] < 1:
        raise CLIError(f"--val-fraction {settings['val_fraction']}: expected 0 <= f < 1")
    start = 0 if old is None else old["step"]
    until = tconfig.steps if args.until is None else args.until
    if not start < until <= tconfig.steps:
        raise CLIError(f"--until {until}: expected a step after {start} and at most "
                       f"--steps {tconfig.steps}")
    device = resolve_device(args.device)
    files = check_inputs(args.inputs)
    out = OutputFolder(args.out, args.force)
    with _world(args) as ctx:
        rank, world_size = world()
        if ctx is not None:
            device = ctx.device
        if B % world_size:
            raise CLIError(f"--batch-size {B}: does not split over {world_size} processes")
        docs = read_documents(files)
        if rank == 0:
            echo(f"read {len(docs)} file{'s' * (len(docs) != 1)}, "
                 f"{sum(len(d.text) for d in docs):,} characters")
        stream = _encode(docs, tok)
        n_val = int(len(stream) * settings["val_fraction"])
        train_ids, val_ids = stream[:len(stream) - n_val], stream[len(stream) - n_val:]
        if len(train_ids) < T + 1:
            raise CLIError(f"the text gives {len(train_ids):,} tokens for training, fewer than "
                           f"the {T + 1} of one window (context_length {T} + 1): give more "
                           "text, or a smaller --context-length")
        if n_val and len(val_ids) < T + 1:
            raise CLIError(f"--val-fraction {settings['val_fraction']} holds out {n_val:,} "
                           f"tokens, fewer than the {T + 1} of one window: give more text, a "
                           "larger fraction, or --val-fraction 0")
        digest = hashlib.sha256(stream.numpy().tobytes()).hexdigest()
        if old is not None and old["data_sha256"] != digest:
            raise CLIError(f"the text differs from the text of the run in {args.resume}; "
                           "resume with the same files")
        seed_everything(settings["seed"])
        model = GPT(config)
        if rank == 0:
            echo(f"{len(stream):,} tokens: {len(train_ids):,} to train on, {n_val:,} held out")
            echo(f"model: {settings['preset']} preset, {model.num_parameters() / 1e6:.2f}M "
                 f"parameters, context {T}, {config.vocab_size:,} tokens; on {device}"
                 + (f" x {world_size} processes" if world_size > 1 else ""))

        def batches(step: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
            from lmlab.batching import random_windows

            return random_windows(train_ids, B, T, generator)

        def loss_fn(net: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            _logits, loss = net(*batch)
            return loss

        with out:
            checkpoint = out.path("checkpoint.safetensors")
            if old is not None:
                shutil.copyfile(Path(args.resume) / "checkpoint.safetensors", checkpoint)
            result = train(model, loss_fn, batches, tconfig, device=device,
                           eval_fn=_evaluator(val_ids, T, B) if n_val else None,
                           checkpoint=checkpoint, resume=old is not None, until=until)
            if rank != 0:
                return 0
            tok.backend.save(out.path("tokenizer.json"))
            model.save(out.path("model.safetensors"), metadata={"command": COMMAND})
            recent = result.losses[-10:]
            summary = {"train_loss": sum(recent) / len(recent),
                       "val_loss": result.evals[-1][1] if result.evals else None}
            write_json(out.path(RUN_FILE), {
                "command": COMMAND, "kind": "GPT", "settings": settings,
                "model": config.to_dict(), "train": tconfig.to_dict(),
                "step": result.step, "world_size": world_size, "device": str(device),
                "files": [str(d.path) for d in docs], "tokens": len(stream),
                "train_tokens": len(train_ids), "val_tokens": n_val, "data_sha256": digest,
                "losses": result.losses, "evals": result.evals, **summary})
            where = out.commit()
    val = summary["val_loss"]
    done = f"step {result.step}/{tconfig.steps}: train loss {summary['train_loss']:.3f}"
    if val is not None:
        done += f", validation loss {val:.3f} (perplexity {math.exp(val):.1f})"
    echo(done)
    echo(f"wrote {where}: model.safetensors, tokenizer.json, checkpoint.safetensors, "
         f"{RUN_FILE}")
    return 0


def _evaluator(val_ids: Any, T: int, B: int) -> Any:
    """The mean next-token loss over up to 32 windows spread evenly over ``val_ids``."""
    import torch

    from lmlab.batching import token_windows

    starts = torch.linspace(0, len(val_ids) - T - 1, EVAL_WINDOWS).long().unique()
    inputs, targets = token_windows(val_ids, starts, T)  # (N, T) each

    def evaluate(model: torch.nn.Module) -> float:
        device = next(model.parameters()).device
        total = 0.0
        for i in range(0, len(starts), B):
            _logits, loss = model(inputs[i:i + B].to(device), targets[i:i + B].to(device))
            total += float(loss) * len(inputs[i:i + B])
        return total / len(starts)
    return evaluate
