"""lmlab.device: device choice, seeding, mixed precision."""

from __future__ import annotations

import pytest
import torch

import lmlab.device
from lmlab.device import autocast, get_device, seed_everything


def test_cpu_can_always_be_chosen():
    assert get_device("cpu") == torch.device("cpu")


def test_default_prefers_accelerators(monkeypatch):
    monkeypatch.delenv("LMLAB_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert get_device().type == expected


def test_environment_variable_overrides(monkeypatch):
    monkeypatch.setenv("LMLAB_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    assert get_device(None) == torch.device("cpu")


def test_a_bad_environment_variable_is_named(monkeypatch):
    monkeypatch.setenv("LMLAB_DEVICE", "tpu")
    with pytest.raises(ValueError, match="^LMLAB_DEVICE: unknown device"):
        get_device()


def test_torch_devices_are_accepted():
    assert get_device(torch.device("cpu")) == torch.device("cpu")


def test_one_helper_picks_the_device():
    """``get_device`` is the one public way to choose a device (no aliases beside it)."""
    public = [n for n in lmlab.device.__all__ if "device" in n]
    assert public == ["get_device"]
    assert not hasattr(lmlab.device, "resolve_device")
    assert not hasattr(lmlab.device, "device_name")


@pytest.mark.parametrize("bad", ["tpu", "gpu0", "banana"])
def test_unknown_device_is_a_value_error(bad):
    with pytest.raises(ValueError, match="prefer"):
        get_device(bad)


def test_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="prefer"):
        get_device(3)  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_missing_cuda_is_reported():
    with pytest.raises(RuntimeError, match="CUDA"):
        get_device("cuda")
    with pytest.raises(RuntimeError, match="CUDA"):
        get_device("cuda:1")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="checks the error without MPS")
def test_missing_mps_is_reported():
    with pytest.raises(RuntimeError, match="MPS"):
        get_device("mps")


def test_seed_everything_makes_runs_repeatable():
    import random

    import numpy as np

    seed_everything(123)
    first = (random.random(), np.random.rand(), torch.rand(4))
    g = seed_everything(123)
    second = (random.random(), np.random.rand(), torch.rand(4))
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2])
    fresh = torch.Generator().manual_seed(123)
    assert torch.equal(torch.rand(2, generator=g), torch.rand(2, generator=fresh))


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (2**64, ValueError),
                                        (1.5, TypeError), ("1", TypeError), (True, TypeError),
                                        (None, TypeError)])
def test_seed_must_be_a_non_negative_int(bad, error):
    with pytest.raises(error, match="^seed"):
        seed_everything(bad)


def test_large_seeds_work():
    g = seed_everything(2**64 - 1)
    assert g.initial_seed() == 2**64 - 1


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(device=3), TypeError, "device"), (dict(device="tpu"), ValueError, "device"),
    (dict(device="cpu", enabled=1), TypeError, "enabled"),
    (dict(device="cpu", dtype=torch.float32), ValueError, "dtype"),
    (dict(device="cpu", dtype="bf16"), ValueError, "dtype"),
])
def test_autocast_rejects_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=f"^{name}"):
        with autocast(**kwargs):
            pass


def test_autocast_is_a_no_op_on_cpu():
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with autocast("cpu") as dtype:
        out = a @ b
    assert dtype is None
    with autocast(torch.device("cpu"), dtype=torch.bfloat16) as dtype:
        assert not torch.is_autocast_enabled("cpu")
    assert dtype is None
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, a @ b)


@pytest.mark.gpu
def test_autocast_lowers_precision_on_a_gpu(gpu_device):
    a, b = torch.randn(64, 64, device=gpu_device), torch.randn(64, 64, device=gpu_device)
    with autocast(gpu_device) as dtype:
        out = a @ b
    assert dtype in (torch.bfloat16, torch.float16)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float().cpu(), (a @ b).cpu(), atol=0.5, rtol=0.05)


def test_messages_name_the_callers_parameter():
    """A trainer's device= argument is named as such, not as get_device's own prefer."""
    with pytest.raises(ValueError, match="^device: unknown device 'tpu'"):
        get_device("tpu", name="device")
    with pytest.raises(TypeError, match="^device: expected a str"):
        get_device(3, name="device")
    with pytest.raises(TypeError, match="^name"):
        get_device("cpu", name=None)
