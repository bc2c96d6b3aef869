"""lmlab.training: schedule against torch's schedulers, one step against a plain torch loop,
bit-exact resume, data parallelism under torchrun, and bad input."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lmlab
from lmlab.io import load_tensors, read_metadata, save_tensors
from lmlab.training import (
    TrainConfig,
    TrainResult,
    learning_rate,
    load_checkpoint,
    train,
)

# The model, data and loss shared by the tests and by the torchrun worker (exec'd from here).
COMMON = textwrap.dedent('''
    import torch
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self, dropout=0.0):
            super().__init__()
            self.inp = nn.Linear(4, 16)
            self.drop = nn.Dropout(dropout)
            self.out = nn.Linear(16, 2)

        def forward(self, x):
            return self.out(self.drop(torch.tanh(self.inp(x))))

    def make_model(dropout=0.0, seed=0):
        model = TinyNet(dropout)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        return model

    g = torch.Generator().manual_seed(1)
    X = torch.randn(256, 4, generator=g)
    Y = torch.stack([X[:, 0] * X[:, 1], torch.sin(X[:, 2]) - X[:, 3]], dim=1)

    def batches(step, generator):
        rows = torch.randint(0, len(X), (16,), generator=generator)
        return X[rows], Y[rows]

    def loss_fn(model, batch):
        x, y = batch
        return nn.functional.mse_loss(model(x), y)
''')
exec(COMMON)  # defines TinyNet, make_model, X, Y, batches, loss_fn


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("LMLAB_PROGRESS", "0")


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_equal_params(a: nn.Module, b: nn.Module) -> None:
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k


# --------------------------------------------------------------------------- schedule


def torch_lrs(config: TrainConfig) -> list[float]:
    """The same schedule from torch.optim.lr_scheduler: LinearLR warm-up, then the decay."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=config.lr)
    lrs = []
    w = config.warmup_steps
    if w:
        warm = torch.optim.lr_scheduler.LinearLR(opt, 1 / w, 1.0, total_iters=max(w - 1, 1))
        for _ in range(w):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            warm.step()
        opt.param_groups[0]["lr"] = config.lr
    rest = config.steps - w
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=config.lr)
    if config.decay == "cosine":
        decay = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=max(rest - 1, 1), eta_min=config.lr * config.min_lr_ratio)
    elif config.decay == "linear":
        decay = torch.optim.lr_scheduler.LinearLR(opt, 1.0, config.min_lr_ratio,
                                                  total_iters=max(rest - 1, 1))
    else:
        decay = torch.optim.lr_scheduler.ConstantLR(opt, 1.0)
    for _ in range(rest):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        decay.step()
    return lrs


@pytest.mark.parametrize("decay", ["cosine", "linear", "constant"])
@pytest.mark.parametrize("steps, warmup", [(50, 0), (50, 10), (7, 3), (2, 0), (30, 1)])
def test_learning_rate_matches_torch_schedulers(decay, steps, warmup):
    config = TrainConfig(steps=steps, lr=3e-3, warmup_steps=warmup, decay=decay,
                         min_lr_ratio=0.05)
    mine = torch.tensor([learning_rate(s, config) for s in range(steps)], dtype=torch.float64)
    ref = torch.tensor(torch_lrs(config), dtype=torch.float64)
    torch.testing.assert_close(mine, ref, rtol=1e-9, atol=0.0)
    if decay != "constant" and steps - warmup > 1:
        assert math.isclose(mine[-1].item(), 3e-3 * 0.05)


@settings(max_examples=60, deadline=None)
@given(steps=st.integers(1, 300), warm=st.floats(0, 1), ratio=st.floats(0, 1),
       decay=st.sampled_from(["cosine", "linear", "constant"]))
def test_learning_rate_rises_then_falls_within_bounds(steps, warm, ratio, decay):
    config = TrainConfig(steps=steps, lr=1.0, warmup_steps=int(warm * steps), decay=decay,
                         min_lr_ratio=ratio)
    lrs = [learning_rate(s, config) for s in range(steps)]
    w = config.warmup_steps
    assert all(0 <= lr <= 1.0 + 1e-12 for lr in lrs)
    assert all(lr > 0 for lr in lrs[:-1])  # only the last step may reach a ratio of 0
    assert all(a < b for a, b in zip(lrs[:w], lrs[1:w]))
    assert all(b <= a + 1e-12 for a, b in zip(lrs[w:], lrs[w + 1:]))
    assert all(lr >= ratio - 1e-12 for lr in lrs[w:])


# --------------------------------------------------------------------------- the loop


def reference_loop(model, config, steps):
    """What train() claims to do, written out with torch's own AdamW and clipping."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    keep = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": keep, "weight_decay": 0.0}],
                            lr=config.lr, betas=config.betas, eps=config.eps)
    g = torch.Generator().manual_seed(config.seed)
    losses = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model.train()
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, config)
            loss = loss_fn(model, batches(step, g))
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
    return losses


@pytest.mark.parametrize("grad_clip, weight_decay, dropout",
                         [(None, 0.0, 0.0), (0.05, 0.1, 0.0), (1.0, 0.01, 0.3)])
def test_train_equals_a_plain_torch_loop(grad_clip, weight_decay, dropout):
    config = TrainConfig(steps=25, lr=1e-2, warmup_steps=5, weight_decay=weight_decay,
                         grad_clip=grad_clip, seed=3)
    ours, ref = make_model(dropout), make_model(dropout)
    result = train(ours, loss_fn, batches, config, device="cpu")
    ref_losses = reference_loop(ref, config, config.steps)
    assert_equal_params(ours, ref)
    assert result.losses == ref_losses
    assert result.step == 25 and result.start_step == 0
    assert not ours.training


def test_training_learns():
    model = make_model()
    result = train(model, loss_fn, batches, TrainConfig.small(steps=300, lr=1e-2), device="cpu")
    first, last = sum(result.losses[:20]) / 20, sum(result.losses[-20:]) / 20
    assert last < 0.3 * first


def test_no_process_wide_side_effects():
    threads = torch.get_num_threads()
    model = make_model(0.2)  # (nn.Linear's initialisation draws from the global stream)
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    train(model, loss_fn, batches, TrainConfig(steps=5, seed=9), device="cpu")
    assert torch.equal(torch.rand(3), expected)  # the caller's random stream is untouched
    assert torch.get_num_threads() == threads


def test_an_eval_fn_returning_a_tensor_fails_before_the_first_step(tmp_path):
    """Before: the steps ran and the run failed at the checkpoint write (JSON header)."""
    calls = []

    def loss(model, batch):
        calls.append(1)
        return loss_fn(model, batch)

    with pytest.raises(TypeError, match="^eval_fn: returned a Tensor"):
        train(make_model(), loss, batches, TrainConfig(steps=3), device="cpu",
              eval_fn=lambda m: loss_fn(m, (X, Y)), checkpoint=tmp_path / "c.safetensors")
    assert calls == [] and list(tmp_path.iterdir()) == []


def test_the_eval_check_leaves_the_run_unchanged(tmp_path):
    """The call before the first step draws its random numbers in a fork: the steps before the
    first scheduled evaluation (dropout draws from the run's stream) are those of a run without
    eval_fn."""
    def eval_fn(model):  # draws from the run's own stream
        return float(torch.rand(()))

    config = TrainConfig(steps=4, eval_every=2)
    a = train(make_model(0.2), loss_fn, batches, config, device="cpu", eval_fn=eval_fn)
    b = train(make_model(0.2), loss_fn, batches, config, device="cpu")
    assert a.losses[:2] == b.losses[:2] and a.losses[2:] != b.losses[2:]
    c = train(make_model(0.2), loss_fn, batches, config, device="cpu", eval_fn=eval_fn)
    assert a.evals == c.evals and a.losses == c.losses


def test_evaluation_schedule_and_mode():
    seen = []

    def eval_fn(model):
        seen.append((model.training, torch.is_grad_enabled()))
        return {"mse": loss_fn(model, (X, Y)).item()}

    config = TrainConfig(steps=12, eval_every=5)
    result = train(make_model(), loss_fn, batches, config, device="cpu", eval_fn=eval_fn)
    assert [s for s, _ in result.evals] == [5, 10, 12]
    assert seen == [(False, False)] * 4  # a check before the first step, then 5, 10, 12
    assert result.evals[-1][1]["mse"] < result.evals[0][1]["mse"]


def test_log_every_keeps_every_loss():
    a = train(make_model(), loss_fn, batches, TrainConfig(steps=10, log_every=1), device="cpu")
    b = train(make_model(), loss_fn, batches, TrainConfig(steps=10, log_every=4), device="cpu")
    assert a.losses == b.losses and len(a.losses) == 10


def test_accumulating_micro_batches_equals_whole_batches():
    config = TrainConfig(steps=10, lr=1e-2, grad_clip=0.5)
    whole, parts = make_model(), make_model()
    a = train(whole, loss_fn, batches, config, device="cpu")
    b = train(parts, loss_fn, batches, TrainConfig(steps=10, lr=1e-2, grad_clip=0.5,
                                                   accumulate=4), device="cpu")
    torch.testing.assert_close(torch.tensor(b.losses), torch.tensor(a.losses), rtol=0,
                               atol=1e-6)
    for k, v in whole.state_dict().items():
        torch.testing.assert_close(parts.state_dict()[k], v, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"batches: .* 3 equal parts .*accumulate=3"):
        train(make_model(), loss_fn, batches, TrainConfig(steps=2, accumulate=3), device="cpu")

    class Opaque:  # a batch the loop cannot look into
        def __init__(self, x, y):
            self.x, self.y = x, y

        def to(self, device):
            return Opaque(self.x.to(device), self.y.to(device))

    with pytest.raises(TypeError, match="batches: cannot split a Opaque into 2 parts"):
        train(make_model(), lambda m, b: loss_fn(m, (b.x, b.y)),
              lambda s, g: Opaque(*batches(s, g)), TrainConfig(steps=2, accumulate=2),
              device="cpu")
    opaque = make_model()
    train(opaque, lambda m, b: loss_fn(m, (b.x, b.y)), lambda s, g: Opaque(*batches(s, g)),
          TrainConfig(steps=10, lr=1e-2, grad_clip=0.5), device="cpu")
    assert_equal_params(opaque, whole)  # whole batches through the object's own .to


class PairTuple(NamedTuple):
    x: torch.Tensor
    y: torch.Tensor


@dataclasses.dataclass
class PairClass:
    x: torch.Tensor
    y: torch.Tensor


@pytest.mark.parametrize("wrap, unwrap", [
    (lambda x, y: [x, y], lambda b: tuple(b)),
    (lambda x, y: {"x": x, "y": y}, lambda b: (b["x"], b["y"])),
    (PairTuple, lambda b: (b.x, b.y)),
    (PairClass, lambda b: (b.x, b.y)),
])
def test_batches_of_every_container_kind(wrap, unwrap):
    """Lists, dicts, named tuples and dataclasses of tensors train as tuples do, and split
    into micro-batches the same way."""
    config = TrainConfig(steps=6, lr=1e-2, accumulate=2)
    plain, wrapped = make_model(), make_model()
    train(plain, loss_fn, batches, config, device="cpu")
    train(wrapped, lambda m, b: loss_fn(m, unwrap(b)), lambda s, g: wrap(*batches(s, g)),
          config, device="cpu")
    assert_equal_params(plain, wrapped)


def test_on_log_sees_the_losses_so_far():
    seen = []
    train(make_model(), loss_fn, batches, TrainConfig(steps=10, log_every=4), device="cpu",
          on_log=lambda r: seen.append((r.step, len(r.losses))))
    assert seen == [(4, 4), (8, 8), (10, 10)]


def test_iterable_batches_equal_the_callable():
    g = torch.Generator().manual_seed(0)
    listed = [batches(s, g) for s in range(8)]
    a, b = make_model(), make_model()
    train(a, loss_fn, batches, TrainConfig(steps=8), device="cpu")
    train(b, loss_fn, iter(listed), TrainConfig(steps=8), device="cpu")
    assert_equal_params(a, b)
    with pytest.raises(ValueError, match="batches: the iterable ran out after 8"):
        train(make_model(), loss_fn, iter(listed), TrainConfig(steps=9), device="cpu")
    model = make_model()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="batches: holds 8 batches; the run needs 9"):
        train(model, loss_fn, listed, TrainConfig(steps=9), device="cpu")  # before any step
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))


def test_nan_loss_is_reported_with_its_step():
    def bad_loss(model, batch):
        loss = loss_fn(model, batch)
        return loss * math.nan if bad_loss.calls == 3 else (bad_loss.__setattr__(
            "calls", bad_loss.calls + 1) or loss)
    bad_loss.calls = 0
    with pytest.raises(FloatingPointError, match="loss_fn: the loss is nan at step 3"):
        train(make_model(), bad_loss, batches, TrainConfig(steps=10), device="cpu")


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_resume_is_bit_exact(tmp_path, dropout):
    config = TrainConfig(steps=16, lr=1e-2, warmup_steps=3, weight_decay=0.05, eval_every=4,
                         seed=5)

    def eval_fn(model):  # draws random numbers too: the stream must continue exactly
        return float(torch.rand(()).item() + loss_fn(model, (X, Y)).item())

    straight = make_model(dropout)
    full = train(straight, loss_fn, batches, config, device="cpu", eval_fn=eval_fn)

    path = tmp_path / "run.safetensors"
    first = make_model(dropout)
    part = train(first, loss_fn, batches, config, device="cpu", eval_fn=eval_fn,
                 checkpoint=path, until=8)
    assert part.step == 8 and len(part.losses) == 8
    del first
    second = make_model(dropout, seed=99)  # fresh objects, different initial weights
    rest = train(second, loss_fn, batches, config, device="cpu", eval_fn=eval_fn,
                 checkpoint=path, resume=True)
    assert_equal_params(second, straight)
    assert rest.losses == full.losses
    assert rest.evals == full.evals
    assert rest.start_step == 8 and rest.step == 16
    info = load_checkpoint(path, make_model())
    assert info.step == 16 and info.config == config and info.losses == full.losses


def test_resume_after_an_interruption(tmp_path):
    """A run killed mid-way (here: the batch source fails) resumes from its last checkpoint."""
    config = TrainConfig(steps=12, checkpoint_every=4, seed=2)
    straight = make_model()
    train(straight, loss_fn, batches, config, device="cpu")

    def failing(step, generator):
        if step == 10:
            raise KeyboardInterrupt
        return batches(step, generator)

    path = tmp_path / "ckpt.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train(make_model(), loss_fn, failing, config, device="cpu", checkpoint=path)
    assert load_checkpoint(path, make_model()).step == 8
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]  # no temporary left
    resumed = make_model()
    train(resumed, loss_fn, batches, config, device="cpu", checkpoint=path, resume=True)
    assert_equal_params(resumed, straight)


def test_resume_with_an_iterable_replays_its_start(tmp_path):
    g = torch.Generator().manual_seed(0)
    listed = [batches(s, g) for s in range(10)]
    config = TrainConfig(steps=10)
    straight = make_model()
    train(straight, loss_fn, listed, config, device="cpu")
    path = tmp_path / "c.safetensors"
    train(make_model(), loss_fn, listed, config, device="cpu", checkpoint=path, until=4)
    resumed = make_model()
    train(resumed, loss_fn, listed, config, device="cpu", checkpoint=path, resume=True)
    assert_equal_params(resumed, straight)


def test_cosmetic_fields_may_change_on_resume(tmp_path):
    path = tmp_path / "c.safetensors"
    config = TrainConfig(steps=6)
    train(make_model(), loss_fn, batches, config, device="cpu", checkpoint=path, until=3)
    changed = TrainConfig(steps=6, eval_every=2, log_every=3, desc="more")
    result = train(make_model(), loss_fn, batches, changed, device="cpu", checkpoint=path,
                   resume=True)
    assert result.step == 6


def test_checkpoint_holds_model_optimizer_rng_and_config(tmp_path):
    path = tmp_path / "c.safetensors"
    model = make_model()
    train(model, loss_fn, batches, TrainConfig(steps=3), device="cpu", checkpoint=path)
    tensors = load_tensors(path)
    for k, v in model.state_dict().items():
        assert torch.equal(tensors[f"model.{k}"], v)
    assert {"rng.batches", "rng.rank0", "history.losses"} <= tensors.keys()
    assert any(k.startswith("optimizer.") and k.endswith(".exp_avg") for k in tensors)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("field, value, error", [
    ("steps", 0, ValueError), ("steps", 2.0, TypeError), ("steps", True, TypeError),
    ("lr", 0.0, ValueError), ("lr", -1e-3, ValueError), ("lr", math.nan, ValueError),
    ("lr", math.inf, ValueError), ("lr", "1e-3", TypeError),
    ("warmup_steps", -1, ValueError), ("warmup_steps", 11, ValueError),
    ("warmup_steps", 1.5, TypeError),
    ("decay", "exp", ValueError), ("decay", None, ValueError),
    ("min_lr_ratio", 1.5, ValueError), ("min_lr_ratio", -0.1, ValueError),
    ("min_lr_ratio", math.nan, ValueError),
    ("weight_decay", -0.1, ValueError), ("weight_decay", math.inf, ValueError),
    ("betas", (0.9,), TypeError), ("betas", 0.9, TypeError), ("betas", (0.9, 1.0), ValueError),
    ("betas", (-0.1, 0.9), ValueError), ("betas", (0.9, "x"), TypeError),
    ("eps", 0.0, ValueError), ("eps", -1.0, ValueError),
    ("grad_clip", 0.0, ValueError), ("grad_clip", -1.0, ValueError),
    ("grad_clip", math.nan, ValueError), ("grad_clip", "1", TypeError),
    ("accumulate", 0, ValueError), ("accumulate", 2.0, TypeError),
    ("eval_every", -1, ValueError), ("eval_every", 1.0, TypeError),
    ("checkpoint_every", -2, ValueError), ("log_every", 0, ValueError),
    ("mixed_precision", 1, TypeError), ("compile", "yes", TypeError),
    ("seed", -1, ValueError), ("seed", 2**64, ValueError), ("seed", 0.5, TypeError),
    ("desc", 3, TypeError),
])
def test_config_rejects_bad_values(field, value, error):
    with pytest.raises(error, match=f"^{field}"):
        TrainConfig(**{"steps": 10, field: value})


def test_config_presets_and_round_trip():
    for config in (TrainConfig(), TrainConfig.small(), TrainConfig.gpt2(),
                   TrainConfig.gpt2(steps=100), TrainConfig.small(steps=3, lr=1.0)):
        assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.gpt2(steps=100).warmup_steps == 100
    with pytest.raises(ValueError, match="values: unknown TrainConfig fields"):
        TrainConfig.from_dict({"steps": 3, "learning_rate": 1.0})
    with pytest.raises(TypeError, match="^values: expected a mapping"):
        TrainConfig.from_dict([("steps", 3)])  # type: ignore[arg-type]
    for preset in (TrainConfig.small, TrainConfig.gpt2):
        with pytest.raises(ValueError, match=r"^overrides: unknown TrainConfig fields"):
            preset(lerning_rate=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().steps = 3  # type: ignore[misc]


@pytest.mark.parametrize("step, error", [(-1, ValueError), (10, ValueError), (1.0, TypeError)])
def test_learning_rate_rejects_bad_steps(step, error):
    with pytest.raises(error, match="^step"):
        learning_rate(step, TrainConfig(steps=10))
    with pytest.raises(TypeError, match="^config"):
        learning_rate(0, {"steps": 10})  # type: ignore[arg-type]


def test_train_rejects_bad_arguments(tmp_path):
    config = TrainConfig(steps=2)
    m = make_model()
    cases = [
        (dict(model="net"), TypeError, "model"),
        (dict(model=nn.ReLU()), ValueError, "model: has no trainable"),
        (dict(loss_fn=3), TypeError, "loss_fn"),
        (dict(batches=5), TypeError, "batches"),
        (dict(batches="abc"), TypeError, "batches"),
        (dict(batches=torch.zeros(3)), TypeError, "batches"),
        (dict(config={"steps": 2}), TypeError, "config"),
        (dict(device="tpu"), ValueError, "device"),
        (dict(device=3), TypeError, "device"),
        (dict(batches=(X, Y)), TypeError, "batches: got a tuple holding tensors"),
        (dict(batches={"x": X}), TypeError, "batches"),
        (dict(batches=[(X, Y)]), ValueError, "batches: holds 1 batches"),
        (dict(eval_fn=lambda model: loss_fn(model, (X, Y))), TypeError,
         "eval_fn: returned a Tensor"),
        (dict(eval_fn=lambda model: {"loss": X.sum()}), TypeError, "eval_fn: returned a dict"),
        (dict(model=nn.Linear(2, 1, device="meta")), ValueError, "model: 'weight' is on the meta"),
        (dict(batches=lambda step, g: "text"), TypeError, "batches: a batch must be a tensor"),
        (dict(batches=lambda step, g: (X.to("meta"), Y)), ValueError,
         "batches: a batch holds a meta tensor"),
        (dict(checkpoint=tmp_path), ValueError, "checkpoint: .* is a folder"),
        (dict(eval_fn="x"), TypeError, "eval_fn"),
        (dict(on_log=1), TypeError, "on_log"),
        (dict(checkpoint=3), TypeError, "checkpoint"),
        (dict(checkpoint=tmp_path / "no" / "c.safetensors"), FileNotFoundError, "checkpoint"),
        (dict(resume=1), TypeError, "resume"),
        (dict(resume=True), ValueError, "resume"),
        (dict(resume=True, checkpoint=tmp_path / "missing.safetensors"), FileNotFoundError,
         "checkpoint"),
        (dict(until=0), ValueError, "until"),
        (dict(until=3), ValueError, "until"),
        (dict(until=1.0), TypeError, "until"),
    ]
    for overrides, error, message in cases:
        kwargs = dict(model=m, loss_fn=loss_fn, batches=batches, config=config, device="cpu")
        kwargs.update(overrides)
        before = params(m)
        with pytest.raises(error, match=f"^{message}"):
            train(**kwargs)
        assert all(torch.equal(before[k], v) for k, v in params(m).items())  # no work done


@pytest.mark.parametrize("returned, error", [
    (lambda loss: loss.item(), TypeError), (lambda loss: loss.detach(), ValueError),
    (lambda loss: loss.expand(3), ValueError), (lambda loss: (loss * 0).long(), ValueError),
])
def test_loss_fn_must_return_a_differentiable_scalar(returned, error):
    with pytest.raises(error, match="^loss_fn"):
        train(make_model(), lambda m, b: returned(loss_fn(m, b)), batches,
              TrainConfig(steps=2), device="cpu")


def test_bad_checkpoints_name_the_file(tmp_path):
    config = TrainConfig(steps=4)
    good = tmp_path / "good.safetensors"
    train(make_model(), loss_fn, batches, config, device="cpu", checkpoint=good, until=2)
    data = good.read_bytes()

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\xff" * 100)
    plain = tmp_path / "plain.safetensors"
    save_tensors(make_model().state_dict(), plain)
    for path, message in [(truncated, "truncated"), (garbage, "garbage"),
                          (plain, "plain.*not a training checkpoint")]:
        with pytest.raises(ValueError, match=message):
            train(make_model(), loss_fn, batches, config, device="cpu", checkpoint=path,
                  resume=True)
        with pytest.raises(ValueError, match=message):
            load_checkpoint(path, make_model())

    tensors, header = load_tensors(good), read_metadata(good)
    broken = tmp_path / "broken.safetensors"
    edits = [
        ({"lmlab.training": "{not json"}, tensors, "corrupted training checkpoint header"),
        ({"lmlab.training": header["lmlab.training"].replace('"steps"', '"stepz"')}, tensors,
         "corrupted training checkpoint header.*stepz"),
        ({"lmlab.training": header["lmlab.training"].replace('"step": 2', '"step": -2')},
         tensors, "corrupted training checkpoint header"),
        (header, {k: v for k, v in tensors.items() if k != "rng.rank0"}, "no tensor 'rng.rank0'"),
        (header, {**tensors, "history.losses": torch.zeros(1, dtype=torch.float64)},
         "1 losses for 2 steps"),
    ]
    for metadata, content, message in edits:
        save_tensors(content, broken, metadata=metadata)
        with pytest.raises(ValueError, match=f"broken.safetensors: .*{message}"):
            train(make_model(), loss_fn, batches, config, device="cpu", checkpoint=broken,
                  resume=True)

    with pytest.raises(ValueError, match=r"good.*different config: lr=0.0003 \(now 0.1\)"):
        train(make_model(), loss_fn, batches, TrainConfig(steps=4, lr=0.1), device="cpu",
              checkpoint=good, resume=True)
    with pytest.raises(ValueError, match="good.*does not fit the model"):
        train(nn.Linear(4, 2), loss_fn, batches, config, device="cpu", checkpoint=good,
              resume=True)
    with pytest.raises(ValueError, match="until: 1 is before the checkpoint's step 2"):
        train(make_model(), loss_fn, batches, config, device="cpu", checkpoint=good,
              resume=True, until=1)
    with pytest.raises(ValueError, match="good.*does not fit the model"):
        load_checkpoint(good, TinyNet().out)
    with pytest.raises(TypeError, match="^model"):
        load_checkpoint(good, "model")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="path"):
        load_checkpoint(tmp_path / "none.safetensors", make_model())


# --------------------------------------------------------------------------- data parallel

WORKER = COMMON + textwrap.dedent('''
    import sys
    from lmlab.io import save_tensors
    from lmlab.parallel import distributed
    from lmlab.training import TrainConfig, train

    if __name__ == "__main__":
        out = sys.argv[1]
        sizes = set()

        def sharded_loss(model, batch):
            sizes.add(len(batch[0]))  # a micro-batch of this rank's share of 16
            return loss_fn(model, batch)

        with distributed() as ctx:
            assert ctx.world_size == 2
            model = make_model()
            config = TrainConfig(steps=10, lr=1e-2, warmup_steps=2, weight_decay=0.1,
                                 grad_clip=0.5, seed=4, accumulate=2)
            result = train(model, sharded_loss, batches, config, device=ctx.device,
                           checkpoint=out + "/ddp.safetensors", until=6)
            model = make_model(seed=7)
            result = train(model, sharded_loss, batches, config, device=ctx.device,
                           checkpoint=out + "/ddp.safetensors", resume=True)
            if ctx.rank == 0:
                save_tensors(model.state_dict(), out + "/final.safetensors",
                             metadata={"losses": repr(result.losses),
                                       "sizes": repr(sorted(sizes))})
''')


@pytest.mark.slow
def test_two_processes_equal_one_on_the_global_batch(tmp_path):
    """``torchrun`` with 2 gloo processes, each on half of every batch (accumulated in two
    micro-batches), and a resume in the middle, ends where one process on the whole batches
    does (within 1e-6)."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LMLAB_PROGRESS": "0",
           "PYTHONPATH": os.pathsep.join([str(Path(lmlab.__file__).parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", str(script), str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    ddp = load_tensors(tmp_path / "final.safetensors")

    model = make_model()
    config = TrainConfig(steps=10, lr=1e-2, warmup_steps=2, weight_decay=0.1, grad_clip=0.5,
                         seed=4)
    single = train(model, loss_fn, batches, config, device="cpu")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ddp[k], v, atol=1e-6, rtol=0)
    meta = read_metadata(tmp_path / "final.safetensors")
    assert meta["sizes"] == "[4]"  # each process saw half of each batch, in two parts
    ddp_losses = [float(x) for x in meta["losses"].strip("[]").split(",")]
    torch.testing.assert_close(torch.tensor(ddp_losses), torch.tensor(single.losses),
                               atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- compile, GPU


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_loss_matches_eager():
    eager, compiled = make_model(), make_model()
    a = train(eager, loss_fn, batches, TrainConfig(steps=6, lr=1e-2), device="cpu")
    b = train(compiled, loss_fn, batches, TrainConfig(steps=6, lr=1e-2, compile=True),
              device="cpu")
    torch.testing.assert_close(torch.tensor(b.losses), torch.tensor(a.losses),
                               rtol=1e-5, atol=1e-6)
    for k, v in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[k], v, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_bf16_steps_on_a_gpu_agree_with_cpu(gpu_device):
    """A few steps under bf16 autocast on the GPU follow the CPU's float32 run: bf16 keeps
    8 bits of mantissa (relative error ~4e-3 per product), so losses agree within 3%; Adam
    moves a weight by at most about lr per step whatever the gradient's rounding, so after 5
    steps of lr 1e-3 the weights agree within 1e-2."""
    config = TrainConfig(steps=5, lr=1e-3, mixed_precision=True)
    cpu_model, gpu_model = make_model(), make_model()
    cpu = train(cpu_model, loss_fn, batches, config, device="cpu")
    seen = []

    def spy(model, batch):
        loss = loss_fn(model, batch)
        seen.append(model(batch[0]).dtype)
        return loss

    gpu = train(gpu_model, spy, batches, config, device=gpu_device)
    if gpu_device.type == "cuda" and torch.cuda.is_bf16_supported():
        assert seen[0] == torch.bfloat16
    torch.testing.assert_close(torch.tensor(gpu.losses), torch.tensor(cpu.losses),
                               rtol=3e-2, atol=1e-3)
    for k, v in cpu_model.state_dict().items():
        torch.testing.assert_close(gpu_model.state_dict()[k].cpu(), v, rtol=0, atol=1e-2)
    assert isinstance(gpu, TrainResult)


@pytest.mark.gpu
def test_resume_is_bit_exact_on_a_gpu(gpu_device, tmp_path):
    """The GPU's own random stream (dropout) and the fused optimizer's state come back too."""
    config = TrainConfig(steps=8, lr=1e-2, weight_decay=0.1, seed=1)
    straight = make_model(0.25)
    train(straight, loss_fn, batches, config, device=gpu_device)
    path = tmp_path / "gpu.safetensors"
    train(make_model(0.25), loss_fn, batches, config, device=gpu_device, checkpoint=path,
          until=4)
    resumed = make_model(0.25)
    train(resumed, loss_fn, batches, config, device=gpu_device, checkpoint=path, resume=True)
    assert_equal_params(resumed, straight)
