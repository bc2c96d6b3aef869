"""One training loop for every model of the course.

:func:`train` runs AdamW for a fixed number of steps with learning-rate warm-up and decay
(:func:`learning_rate`), gradient clipping, periodic evaluation, a progress bar with the loss,
mixed precision on CUDA (bf16, a no-op elsewhere), optional :func:`torch.compile`, safetensors
checkpoints that resume bit-exactly, and data parallelism under :mod:`torch.distributed`
(launched with ``torchrun``; gloo on CPU, NCCL on GPUs), all configured by one frozen
:class:`TrainConfig`.

What makes a run reproducible, and a resumed run bit-identical to a straight one:

* batches come from ``batches(step, generator)``, a function of the step number and a
  :class:`torch.Generator` that the loop seeds from ``config.seed`` and stores in every
  checkpoint (an iterable works too; on resume its first ``step`` items are skipped);
* the loop draws its own random numbers (dropout) from PyTorch's global generator *inside*
  :func:`torch.random.fork_rng`, seeded from ``config.seed``: the caller's random state is the
  same after :func:`train` as before, and the stream is stored in the checkpoint;
* the learning rate is a pure function of the step, set before every step.

The loop never changes process-wide settings (thread counts, seeds, warnings filters).

Data parallelism: run the script with ``torchrun --nproc_per_node N script.py`` and call
:func:`train` inside :func:`lmlab.parallel.distributed`. Every rank draws the same *global*
batch and keeps its ``1/N`` share along the first dimension;
:class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients, so N processes follow
the same path as one process on the global batch (exactly so when ``loss_fn`` is a mean over
the batch's examples).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import nn

from lmlab import training_state
from lmlab._checks import (check_bool, check_callable, check_choice, check_float, check_instance,
                           check_int, check_path, check_str)
from lmlab.device import autocast, get_device
from lmlab.parallel import world
from lmlab.progress import progress

__all__ = ["TrainConfig", "TrainResult", "CheckpointInfo", "learning_rate", "train",
           "load_checkpoint"]

log = logging.getLogger(__name__)

# Fields that may differ between a checkpoint and the config resuming it (they do not change
# the arithmetic of a step).
_COSMETIC = ("eval_every", "checkpoint_every", "log_every", "desc", "compile")


def _check_fields(name: str, values: Mapping[str, Any]) -> None:
    known = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(map(str, set(values) - set(known)))
    if unknown:
        raise ValueError(f"{name}: unknown TrainConfig fields {unknown}; allowed: {known}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run, validated on creation.

    Example:
        >>> TrainConfig(steps=100, lr=1e-3, warmup_steps=10).decay
        'cosine'
        >>> TrainConfig(steps=0)
        Traceback (most recent call last):
        ...
        ValueError: steps: expected an int >= 1, got 0
    """

    steps: int = 1000  # optimizer steps in the whole run (a resumed run counts from 0 too)
    lr: float = 3e-4  # peak learning rate, reached at the end of warm-up
    warmup_steps: int = 0  # steps of linear warm-up from lr / warmup_steps up to lr
    decay: str = "cosine"  # after warm-up: "cosine", "linear" or "constant"
    min_lr_ratio: float = 0.1  # the last step's lr as a fraction of lr ("cosine", "linear")
    weight_decay: float = 0.0  # AdamW's decoupled weight decay, on tensors of >= 2 dimensions
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's moment decay rates
    eps: float = 1e-8  # AdamW's denominator guard
    grad_clip: float | None = 1.0  # largest global gradient norm; None: no clipping
    accumulate: int = 1  # split each batch into this many micro-batches, one backward each
    eval_every: int = 0  # run eval_fn every this many steps and after the last; 0: last only
    checkpoint_every: int = 0  # write the checkpoint every this many steps and after the last
    log_every: int = 1  # read losses back, update the bar and check for NaN every n steps
    mixed_precision: bool = True  # bf16 autocast on CUDA; no effect on CPU and MPS
    compile: bool = False  # run loss_fn (and the model inside it) through torch.compile
    seed: int = 0  # seeds the batch generator and the run's own random stream (dropout)
    desc: str = "train"  # label of the progress bar

    def __post_init__(self) -> None:
        check_int("steps", self.steps)
        check_float("lr", self.lr, 0.0, min_inclusive=False)
        check_int("warmup_steps", self.warmup_steps, minimum=0, maximum=self.steps)
        check_choice("decay", self.decay, ("cosine", "linear", "constant"))
        check_float("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        check_float("weight_decay", self.weight_decay, 0.0)
        if isinstance(self.betas, list):  # from JSON
            object.__setattr__(self, "betas", tuple(self.betas))
        if not isinstance(self.betas, tuple) or len(self.betas) != 2:
            raise TypeError(f"betas: expected a tuple of two floats, got {self.betas!r}")
        for i, beta in enumerate(self.betas):
            check_float(f"betas[{i}]", beta, 0.0, 1.0, max_inclusive=False)
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        check_float("eps", self.eps, 0.0, min_inclusive=False)
        if self.grad_clip is not None:
            check_float("grad_clip", self.grad_clip, 0.0, min_inclusive=False)
        check_int("accumulate", self.accumulate)
        check_int("eval_every", self.eval_every, minimum=0)
        check_int("checkpoint_every", self.checkpoint_every, minimum=0)
        check_int("log_every", self.log_every, minimum=1)
        check_bool("mixed_precision", self.mixed_precision)
        check_bool("compile", self.compile)
        check_int("seed", self.seed, minimum=0, maximum=2**63 - 1)
        check_str("desc", self.desc)

    @classmethod
    def small(cls, **overrides: Any) -> TrainConfig:
        """A short CPU run for a notebook: 500 steps at 3e-3, 5% warm-up, cosine decay.

        Example:
            >>> TrainConfig.small(steps=200).warmup_steps
            10
        """
        _check_fields("overrides", overrides)
        steps = overrides.get("steps", 500)
        base = {"steps": steps, "lr": 3e-3, "warmup_steps": steps // 20, "decay": "cosine",
                "min_lr_ratio": 0.1, "grad_clip": 1.0}
        return cls(**{**base, **overrides})

    @classmethod
    def gpt2(cls, **overrides: Any) -> TrainConfig:
        """GPT-2-style pre-training settings (as in nanoGPT): 6e-4 peak, 2,000 warm-up steps,
        cosine to a tenth, weight decay 0.1, betas (0.9, 0.95), clipping at 1.0.

        Example:
            >>> TrainConfig.gpt2(steps=5000).betas
            (0.9, 0.95)
        """
        _check_fields("overrides", overrides)
        base = {"steps": 600_000, "lr": 6e-4, "warmup_steps": 2000, "decay": "cosine",
                "min_lr_ratio": 0.1, "weight_decay": 0.1, "betas": (0.9, 0.95),
                "grad_clip": 1.0}
        base.update(overrides)
        base["warmup_steps"] = min(base["warmup_steps"], base["steps"])
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (``betas`` as a list)."""
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict`; unknown keys are an error that names them."""
        if not isinstance(values, Mapping):
            raise TypeError(f"values: expected a mapping of field names, got "
                            f"{type(values).__name__}")
        _check_fields("values", values)
        return cls(**values)


@dataclass
class TrainResult:
    """What a run leaves behind (a resumed run includes the steps before the checkpoint)."""

    losses: list[float]  # training loss of every step, from step 0 (mean over ranks)
    evals: list[tuple[int, Any]] = field(default_factory=list)  # (steps done, eval_fn's value)
    step: int = 0  # steps done in total
    start_step: int = 0  # the step this call began at (0, or the checkpoint's step)


class CheckpointInfo(NamedTuple):
    """The header of a training checkpoint, as returned by :func:`load_checkpoint`."""

    step: int  # steps done when it was written
    config: TrainConfig  # the run's configuration
    losses: list[float]  # the training loss of every step done
    evals: list[tuple[int, Any]]  # (steps done, value) of every evaluation


def learning_rate(step: int, config: TrainConfig) -> float:
    """The learning rate of step ``step`` (counted from 0).

    Linear warm-up over ``warmup_steps`` steps (``lr * (step + 1) / warmup_steps``), then
    ``decay`` from ``lr`` at step ``warmup_steps`` to ``lr * min_lr_ratio`` at the last step
    (``steps - 1``): half a cosine wave, a straight line, or constant at ``lr``.

    Args:
        step: the step, ``0 <= step < config.steps``.
        config: the run's settings.

    Returns:
        The learning rate, a float.

    Example:
        >>> config = TrainConfig(steps=5, lr=1.0, warmup_steps=2, decay="linear", min_lr_ratio=0.1)
        >>> [round(learning_rate(s, config), 3) for s in range(5)]
        [0.5, 1.0, 1.0, 0.55, 0.1]
    """
    check_instance("config", config, TrainConfig)
    check_int("step", step, minimum=0, maximum=config.steps - 1)
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = config.steps - 1 - config.warmup_steps
    if config.decay == "constant" or span == 0:
        return config.lr
    done = (step - config.warmup_steps) / span  # 0 at the first step after warm-up, 1 at the last
    low = config.lr * config.min_lr_ratio
    if config.decay == "linear":
        return low + (config.lr - low) * (1.0 - done)
    return low + (config.lr - low) * 0.5 * (1.0 + math.cos(math.pi * done))


# --------------------------------------------------------------------------- batches


def _map_tensors(batch: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``fn`` to every tensor in a batch (tensors, tuples, named tuples, lists, dicts)."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_map_tensors(x, fn) for x in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(_map_tensors(x, fn) for x in batch)
    if isinstance(batch, Mapping):
        return {k: _map_tensors(v, fn) for k, v in batch.items()}
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: _map_tensors(getattr(batch, f.name), fn)
                                             for f in dataclasses.fields(batch) if f.init})
    return batch


def _split(batch: Any, parts: int, why: str) -> list[Any]:
    """``parts`` equal slices of a batch along dim 0 (of every tensor in it)."""
    if parts == 1:
        return [batch]

    found = []

    def check(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 0 or t.shape[0] % parts:
            raise ValueError(f"batches: every tensor of a batch must split into {parts} equal "
                             f"parts along dim 0 ({why}), got shape {tuple(t.shape)}")
        found.append(t)
        return t
    _map_tensors(batch, check)
    if not found:
        raise TypeError(f"batches: cannot split a {type(batch).__name__} into {parts} parts "
                        f"({why}); return tensors in a tuple, list, dict or dataclass")
    return [_map_tensors(batch, lambda t, i=i: t.chunk(parts)[i]) for i in range(parts)]


def _check_batch(batch: Any) -> None:
    """A batch must hold a tensor (in a tuple, list, dict or dataclass) or move itself."""
    found: list[torch.Tensor] = []
    _map_tensors(batch, lambda t: found.append(t) or t)
    if not found and not (hasattr(batch, "to") and callable(batch.to)):
        raise TypeError(f"batches: a batch must be a tensor, or hold tensors in a tuple, list, "
                        f"dict or dataclass, or have a .to(device) method; got "
                        f"{type(batch).__name__} {batch!r:.60}")
    meta = [t for t in found if t.is_meta]
    if meta:
        raise ValueError("batches: a batch holds a meta tensor (a shape without data)")


def _to_device(batch: Any, device: torch.device) -> Any:
    moved = _map_tensors(batch, lambda t: t.to(device))
    if moved is batch and hasattr(batch, "to") and not isinstance(batch, torch.Tensor):
        return batch.to(device)  # a custom batch class with its own .to
    return moved


class _Batches:
    """``batches(step, generator)`` or an iterable, behind one ``get(step)``."""

    def __init__(self, batches: Any, start: int, generator: torch.Generator, steps: int):
        self.generator = generator
        self.steps = steps
        self.fn = batches if callable(batches) else None
        self.iterator: Iterator[Any] | None = None
        if self.fn is None:
            self.iterator = iter(batches)
            for done in range(start):  # an iterable replays its first `start` batches
                self._next(done)

    def _next(self, done: int) -> Any:
        assert self.iterator is not None
        try:
            return next(self.iterator)
        except StopIteration:
            raise ValueError(f"batches: the iterable ran out after {done} batches; "
                             f"config.steps needs {self.steps}") from None

    def get(self, step: int) -> Any:
        if self.fn is not None:
            return self.fn(step, self.generator)
        return self._next(step)


# --------------------------------------------------------------------------- checkpoints


def load_checkpoint(path: str | os.PathLike[str], model: nn.Module) -> CheckpointInfo:
    """Load a training checkpoint's weights into ``model`` (strictly) and return its header.

    For evaluating or sampling from a trained model; to continue training, pass the checkpoint
    to :func:`train` with ``resume=True`` instead. The weights land on the device the model's
    own tensors are on.

    Args:
        path: a checkpoint written by :func:`train`.
        model: a model of the same architecture.

    Returns:
        The checkpoint's step, config, loss history and evaluations.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is truncated, corrupted, not a training checkpoint, or its tensors
            do not fit ``model`` (names and shapes listed).
    """
    check_instance("model", model, nn.Module)
    path = check_path("path", path)
    header = _read_header(path)
    tensors = training_state.load_model_state(path, model)
    losses = tensors.get("history.losses", torch.zeros(0)).tolist()
    return CheckpointInfo(header["step"], header["config"], losses,
                          [tuple(e) for e in header["evals"]])


def _read_header(path: Path) -> dict[str, Any]:
    header = training_state.read_header(path)
    try:
        header["config"] = TrainConfig.from_dict(header["config"])
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: corrupted training checkpoint header: {err}") from None
    return header


# --------------------------------------------------------------------------- the loop


def _optimizer(model: nn.Module, config: TrainConfig,
               device: torch.device) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    keep = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": keep, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate(0, config), betas=config.betas,
                             eps=config.eps, fused=device.type == "cuda" or None)


def _check_loss(loss: object) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"loss_fn: expected it to return a scalar tensor, got "
                        f"{type(loss).__name__}")
    if loss.numel() != 1 or not loss.is_floating_point() or not loss.requires_grad:
        raise ValueError(f"loss_fn: expected a floating-point scalar that requires grad, got "
                         f"shape {tuple(loss.shape)}, dtype {loss.dtype}, "
                         f"requires_grad={loss.requires_grad}")
    return loss


def _check_eval(value: object) -> object:
    """``eval_fn``'s value, which the checkpoint's JSON header must be able to hold."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as err:
        kind = type(value).__name__
        raise TypeError(f"eval_fn: returned a {kind}, which JSON cannot hold ({err}); return "
                        "a float (e.g. loss.item()) or a dict of floats") from None
    return value


def _evaluate(model: nn.Module, eval_fn: Callable[[nn.Module], Any], device: torch.device,
              use_amp: bool) -> object:
    """``eval_fn(model)`` in eval mode without gradients, its value checked."""
    model.eval()
    try:
        with torch.no_grad(), autocast(device, enabled=use_amp, dtype=torch.bfloat16):
            return _check_eval(eval_fn(model))
    finally:
        model.train()


def _mixed_precision(config: TrainConfig, device: torch.device) -> bool:
    if not config.mixed_precision or device.type != "cuda":
        return False
    if not torch.cuda.is_bf16_supported():
        log.warning("mixed_precision: this GPU has no bf16; training in float32")
        return False
    return True


def _fork_rng(device: torch.device) -> contextlib.AbstractContextManager[None]:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.random.fork_rng(devices=[index], device_type="cuda")
    return torch.random.fork_rng(devices=[], device_type="cpu")


def _seed_fork(seed: int, device: torch.device) -> None:
    """Seed the forked global generators (CPU, and this GPU's) only."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)  # this GPU only, which the fork covers


def train(model: nn.Module, loss_fn: Callable[[nn.Module, Any], torch.Tensor],
          batches: Callable[[int, torch.Generator], Any] | Iterable[Any], config: TrainConfig,
          *, device: str | torch.device | None = None,
          eval_fn: Callable[[nn.Module], Any] | None = None,
          checkpoint: str | os.PathLike[str] | None = None,
          resume: bool = False, until: int | None = None,
          on_log: Callable[[TrainResult], None] | None = None) -> TrainResult:
    """Train ``model`` for ``config.steps`` steps of AdamW; see the module docstring.

    Every step: set the learning rate (:func:`learning_rate`), take the step's batch (this
    rank's share of it under :func:`lmlab.parallel.distributed`), move it to ``device``, compute
    ``loss_fn(model, batch)`` (under bf16 autocast on CUDA), backpropagate, clip the global
    gradient norm to ``grad_clip``, and step. With ``accumulate > 1`` the batch is cut into
    that many equal micro-batches along dim 0, each backpropagated on its own (``loss /
    accumulate``) before the one optimizer step: the same update for less memory. Weight
    decay applies to tensors of two or more dimensions (weight matrices and embeddings), not
    to biases and norm gains.

    Args:
        model: the model; moved to ``device``, trained in place, returned in eval mode.
        loss_fn: ``loss_fn(model, batch) -> loss``, a scalar tensor. Under data parallelism the
            model it receives is wrapped in ``DistributedDataParallel``: call it
            (``model(...)``) so that gradients are synchronised.
        batches: ``batches(step, generator) -> batch`` drawing its randomness from
            ``generator`` only (bit-exact resume), or an iterable yielding at least
            ``config.steps`` batches (on resume the first ``step`` are skipped, so it must
            yield the same sequence again). A batch is a tensor, or a tuple, named tuple, list,
            dict or dataclass of tensors, or any object with a ``.to(device)`` method.
        config: the run's settings.
        device: where to train; ``None`` picks :func:`lmlab.device.get_device`.
        eval_fn: ``eval_fn(model) -> value`` (a float or a dict of floats: JSON), run under
            ``torch.no_grad()`` in eval mode every ``config.eval_every`` steps and after the
            last step, on every rank; also once before the first step, to check that its value
            is JSON (a tensor is refused there, before any training).
        checkpoint: a ``.safetensors`` path, written atomically every
            ``config.checkpoint_every`` steps and after the last step: the model, the
            optimizer, the step, the random states, the loss history and the config.
        resume: continue from ``checkpoint`` (which must exist, with a config equal to
            ``config`` except for ``eval_every``, ``checkpoint_every``, ``log_every``, ``desc``
            and ``compile``).
        until: stop once this many steps are done (default ``config.steps``), writing the
            checkpoint there; a later call with ``resume=True`` continues the same run, so a
            long run can be split into parts. The schedule still spans ``config.steps``.
        on_log: ``on_log(result)``, called every ``config.log_every`` steps once the losses
            so far are in ``result.losses`` (a point where the GPU has caught up: benchmarks
            time steps from here).

    Returns:
        The :class:`TrainResult`: the loss of every step, the evaluations, the step count.

    Raises:
        TypeError, ValueError: a bad argument (``batches`` a tuple of tensors, which would
            read as a sequence of batches, or too short a list; ``eval_fn`` returning what JSON
            cannot hold), before any step is taken.
        FloatingPointError: the loss became NaN or infinite (the message gives the step).

    Example:
        >>> model = torch.nn.Linear(3, 1)
        >>> x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
        >>> y = x.sum(dim=1, keepdim=True)
        >>> def batches(step, generator):
        ...     rows = torch.randint(0, 64, (16,), generator=generator)
        ...     return x[rows], y[rows]
        >>> def loss_fn(model, batch):
        ...     inputs, targets = batch
        ...     return torch.nn.functional.mse_loss(model(inputs), targets)
        >>> config = TrainConfig.small(steps=200, lr=0.05)
        >>> result = train(model, loss_fn, batches, config, device="cpu")
        >>> result.losses[-1] < 0.01 * result.losses[0]
        True
    """
    check_instance("model", model, nn.Module)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model: has no trainable parameters")
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if meta:
        raise ValueError(f"model: {meta[0]!r} is on the meta device (a shape without data); "
                         "materialise the model (to_empty() and initialise, or load weights)")
    check_callable("loss_fn", loss_fn)
    if not callable(batches) and not isinstance(batches, Iterable):
        raise TypeError(f"batches: expected a callable (step, generator) or an iterable, got "
                        f"{type(batches).__name__}")
    if isinstance(batches, (str, bytes, torch.Tensor, Mapping)):
        raise TypeError(f"batches: expected a callable (step, generator) or an iterable of "
                        f"batches, got {type(batches).__name__}")
    if isinstance(batches, tuple) and any(isinstance(b, torch.Tensor) for b in batches):
        raise TypeError(f"batches: got a tuple holding tensors, which reads as one batch "
                        f"(x, y), not as {len(batches)} batches; pass a function (step, "
                        f"generator) -> batch, or a list of batches ([batch] * steps)")
    check_instance("config", config, TrainConfig)
    check_callable("eval_fn", eval_fn, allow_none=True)
    check_callable("on_log", on_log, allow_none=True)
    check_bool("resume", resume)
    path = None if checkpoint is None else check_path("checkpoint", checkpoint,
                                                      folder_must_exist=True)
    if path is not None and path.is_dir():
        raise ValueError(f"checkpoint: {str(path)!r} is a folder; expected a .safetensors file")
    if resume and path is None:
        raise ValueError("resume: True needs a checkpoint path to resume from")
    device = get_device(device, name="device")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    stop = config.steps if until is None else check_int("until", until, maximum=config.steps)
    if hasattr(batches, "__len__") and not callable(batches) and len(batches) < stop:
        raise ValueError(f"batches: holds {len(batches)} batches; the run needs {stop} "
                         "(config.steps, or until)")
    rank, world_size = world()
    header = None
    if resume:
        assert path is not None
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint: no file at {str(path)!r} to resume from")
        header = _read_header(path)
        saved = header["config"].to_dict()
        wanted = config.to_dict()
        differ = [k for k in wanted if k not in _COSMETIC and saved[k] != wanted[k]]
        if differ:
            raise ValueError(f"checkpoint: {path} was written with a different config: "
                             + ", ".join(f"{k}={saved[k]!r} (now {wanted[k]!r})" for k in differ))
        if stop < header["step"]:
            raise ValueError(f"until: {stop} is before the checkpoint's step {header['step']}")
        if header["world_size"] != world_size:
            raise ValueError(f"checkpoint: {path} was written by {header['world_size']} "
                             f"processes, this run has {world_size}")

    model.to(device)
    optimizer = _optimizer(model, config, device)
    generator = torch.Generator().manual_seed(config.seed)
    use_amp = _mixed_precision(config, device)
    with _fork_rng(device):
        _seed_fork(config.seed + rank, device)
        result = TrainResult(losses=[])
        if header is not None:
            assert path is not None
            losses = training_state.restore(path, header, model, optimizer, generator, device)
            result = TrainResult(losses, [tuple(e) for e in header["evals"]], header["step"],
                                 header["step"])
        if eval_fn is not None and result.start_step < stop:
            # One call before the first step checks what eval_fn returns, so that a value the
            # checkpoint cannot hold fails now, not after the run; its random numbers do not
            # count (the run's stream is forked again and left as it was).
            with _fork_rng(device):
                _evaluate(model, eval_fn, device, use_amp)
        source = _Batches(batches, result.start_step, generator, config.steps)
        net: nn.Module = model
        if world_size > 1:
            ids = [device.index] if device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        step_loss = torch.compile(loss_fn) if config.compile else loss_fn
        bar = progress(total=config.steps, desc=config.desc, enabled=None if rank == 0 else False,
                       initial=result.start_step)
        pending: list[torch.Tensor] = []

        def flush() -> None:
            if not pending:
                return
            values = torch.stack(pending).float()
            if world_size > 1:
                dist.all_reduce(values)  # the sum over ranks, then the mean
                values /= world_size
            first = result.step - len(pending)
            for i, value in enumerate(values.tolist()):
                if not math.isfinite(value):
                    raise FloatingPointError(f"loss_fn: the loss is {value} at step {first + i}")
                result.losses.append(value)
            pending.clear()
            bar.set_postfix(loss=f"{result.losses[-1]:.4f}")

        model.train()
        try:
            for step in range(result.start_step, stop):
                lr = learning_rate(step, config)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch = source.get(step)
                if step == result.start_step:
                    _check_batch(batch)
                batch = _split(batch, world_size, f"one share per process of {world_size}")[rank]
                micro = _split(batch, config.accumulate, f"accumulate={config.accumulate}")
                loss = torch.zeros((), device=device)
                for i, part in enumerate(micro):
                    part = _to_device(part, device)
                    sync = i == len(micro) - 1 or world_size == 1  # DDP: all-reduce once
                    with contextlib.nullcontext() if sync else net.no_sync():
                        with autocast(device, enabled=use_amp, dtype=torch.bfloat16):
                            part_loss = step_loss(net, part)
                        if step == result.start_step:
                            _check_loss(part_loss)
                        if len(micro) > 1:
                            part_loss = part_loss / len(micro)
                        part_loss.backward()
                    loss += part_loss.detach().float()
                if config.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                pending.append(loss)
                result.step = done = step + 1
                last = done == stop
                if last or done % config.log_every == 0:
                    flush()
                    if on_log is not None:
                        on_log(result)
                if eval_fn is not None and (done == config.steps or (
                        config.eval_every and done % config.eval_every == 0)):
                    flush()
                    result.evals.append((done, _evaluate(model, eval_fn, device, use_amp)))
                if path is not None and (last or (config.checkpoint_every
                                                  and done % config.checkpoint_every == 0)):
                    flush()
                    training_state.write(path, model, optimizer, generator,
                                      config=config.to_dict(), step=result.step,
                                      losses=result.losses, evals=result.evals, device=device)
                bar.update(1)
        finally:
            bar.close()
            model.eval()
    return result
