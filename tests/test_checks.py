"""The shared argument checks: wrong type is TypeError, wrong value is ValueError, names first."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lmlab import _checks


@pytest.mark.parametrize("value, error", [
    (2.0, TypeError), (True, TypeError), ("3", TypeError), (0, ValueError), (-5, ValueError),
])
def test_check_int_rejects(value, error):
    with pytest.raises(error, match="^size: "):
        _checks.check_int("size", value)


def test_check_int_bounds():
    assert _checks.check_int("n", 0, minimum=0) == 0
    assert _checks.check_int("n", 7, maximum=7) == 7
    with pytest.raises(ValueError, match="n: expected an int <= 7"):
        _checks.check_int("n", 8, maximum=7)


@pytest.mark.parametrize("value, error", [
    (math.nan, ValueError), (math.inf, ValueError), ("0.5", TypeError), (False, TypeError),
    (-0.1, ValueError), (1.5, ValueError),
])
def test_check_float_rejects(value, error):
    with pytest.raises(error, match="^p: "):
        _checks.check_float("p", value, 0.0, 1.0)


def test_check_float_exclusive_bounds():
    assert _checks.check_float("p", 1, 0.0, 1.0) == 1.0
    with pytest.raises(ValueError, match="0.0 < p <= 1.0"):
        _checks.check_float("p", 0.0, 0.0, 1.0, min_inclusive=False)


def test_check_tensor_and_device():
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        _checks.check_tensor("x", [1, 2])
    with pytest.raises(ValueError, match="x: expected 2 or 3 dimensions"):
        _checks.check_tensor("x", torch.zeros(4), ndim=(2, 3))
    with pytest.raises(TypeError, match="ids: expected an int tensor"):
        _checks.check_tensor("ids", torch.zeros(2), dtype="int")
    with pytest.raises(ValueError, match="x: contains NaN"):
        _checks.check_finite("x", torch.tensor([1.0, math.nan]))
    _checks.check_same_device(a=torch.zeros(1), b=torch.zeros(1))


def test_check_strings_and_file(tmp_path):
    with pytest.raises(TypeError, match="texts: expected a list of str"):
        _checks.check_strings("texts", "one string")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        _checks.check_strings("texts", ["a", 3])
    with pytest.raises(ValueError, match="texts: expected at least one"):
        _checks.check_strings("texts", [])
    with pytest.raises(FileNotFoundError, match="path: no file"):
        _checks.check_file("path", tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="mode: expected one of"):
        _checks.check_choice("mode", "x", ("a", "b"))


@given(st.integers(-10**6, 10**6), st.integers(-100, 100), st.integers(0, 200))
def test_check_int_accepts_exactly_the_range(value, low, width):
    high = low + width
    if low <= value <= high:
        assert _checks.check_int("n", value, low, high) == value
    else:
        with pytest.raises(ValueError, match="^n: expected an int"):
            _checks.check_int("n", value, low, high)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_check_float_accepts_exactly_finite_values_in_bounds(value):
    ok = math.isfinite(value) and -1.0 < value <= 1.0
    if ok:
        assert _checks.check_float("x", value, -1.0, 1.0, min_inclusive=False) == value
    else:
        with pytest.raises(ValueError, match="^x: expected"):
            _checks.check_float("x", value, -1.0, 1.0, min_inclusive=False)


def test_numpy_scalars_are_numbers():
    assert type(_checks.check_int("n", np.int64(3))) is int
    assert _checks.check_float("x", np.float32(0.5)) == 0.5
    with pytest.raises(TypeError, match="n: expected an int"):
        _checks.check_int("n", np.float64(3.0))
    with pytest.raises(TypeError, match="x: expected a number"):
        _checks.check_float("x", torch.tensor(0.5))


def test_check_bool_choice_str():
    assert _checks.check_bool("flag", False) is False
    for bad in (0, 1, "True", None):
        with pytest.raises(TypeError, match="^flag: expected True or False"):
            _checks.check_bool("flag", bad)
    assert _checks.check_choice("mode", "b", ("a", "b")) == "b"
    with pytest.raises(ValueError, match=r"^mode: expected one of \('a', 'b'\), got None"):
        _checks.check_choice("mode", None, ("a", "b"))
    assert _checks.check_str("s", "") == ""
    with pytest.raises(ValueError, match="^s: expected a non-empty str"):
        _checks.check_str("s", "", allow_empty=False)
    with pytest.raises(TypeError, match="^s: expected a str, got bytes"):
        _checks.check_str("s", b"x")


def test_check_strings_accepts_lists_and_tuples():
    assert _checks.check_strings("t", ("a", "b")) == ["a", "b"]
    assert _checks.check_strings("t", [], allow_empty=True) == []
    with pytest.raises(TypeError, match="^t: expected a list of str, got set"):
        _checks.check_strings("t", {"a"})


def test_check_tensor_kinds():
    mask = torch.ones(2, dtype=torch.bool)
    assert _checks.check_tensor("m", mask, dtype="bool") is mask
    with pytest.raises(TypeError, match="^m: expected a bool tensor"):
        _checks.check_tensor("m", torch.ones(2), dtype="bool")
    with pytest.raises(TypeError, match="^x: expected a float tensor"):
        _checks.check_tensor("x", torch.ones(2, dtype=torch.long), dtype="float")
    with pytest.raises(TypeError, match="^ids: expected an int tensor"):
        _checks.check_tensor("ids", torch.ones(2, dtype=torch.bool), dtype="int")
    _checks.check_finite("ids", torch.tensor([1, 2]))  # integers are always finite
    with pytest.raises(ValueError, match="^x: contains NaN or infinite"):
        _checks.check_finite("x", torch.tensor([1.0, -math.inf]))


def test_check_same_device_names_each_tensor():
    a = torch.zeros(1)
    b = torch.zeros(1, device="meta")
    with pytest.raises(ValueError, match="a on cpu, b on meta"):
        _checks.check_same_device(a=a, b=b)


def test_check_shape():
    x = torch.zeros(2, 3, 4)
    assert _checks.check_shape("x", x, (None, "T", 4)) is x
    with pytest.raises(ValueError, match=r"^x: expected shape \(B, T\), got \(2, 3, 4\)"):
        _checks.check_shape("x", x, ("B", "T"))
    with pytest.raises(ValueError, match=r"^x: expected shape \(2, 3, C=8\)"):
        _checks.check_shape("x", x, (2, 3, ("C", 8)))
    with pytest.raises(TypeError, match="^x: expected a torch.Tensor"):
        _checks.check_shape("x", [1], ("B",))


def test_check_ids():
    assert _checks.check_ids("ids", torch.zeros(0, dtype=torch.long), 5).numel() == 0
    with pytest.raises(ValueError, match=r"^ids: expected ids in \[0, 5\), got values from -1"):
        _checks.check_ids("ids", torch.tensor([-1, 2]), 5)
    with pytest.raises(TypeError, match="^ids: expected an int tensor"):
        _checks.check_ids("ids", torch.tensor([1.0]), 5)
    with pytest.raises(ValueError, match="^ids: expected 2 dimensions"):
        _checks.check_ids("ids", torch.tensor([1]), 5, ndim=2)


def test_check_divisible_instance_callable():
    assert _checks.check_divisible("d_model", 64, "num_heads", 8) == 64
    with pytest.raises(ValueError, match="^d_model: expected a multiple of num_heads=6, got 64"):
        _checks.check_divisible("d_model", 64, "num_heads", 6)
    assert _checks.check_instance("m", torch.nn.Linear(1, 1), torch.nn.Module)
    with pytest.raises(TypeError, match="^x: expected str or Path, got int"):
        _checks.check_instance("x", 3, (str, Path))
    assert _checks.check_callable("f", len) is len
    assert _checks.check_callable("f", None, allow_none=True) is None
    with pytest.raises(TypeError, match="^f: expected a callable, got NoneType"):
        _checks.check_callable("f", None)
    with pytest.raises(TypeError, match="^f: expected a callable or None, got int"):
        _checks.check_callable("f", 3, allow_none=True)


def test_check_path_and_file(tmp_path):
    assert _checks.check_path("out", str(tmp_path / "x")) == tmp_path / "x"
    for bad, error in [(3, TypeError), (None, TypeError), (b"x", TypeError), ("", ValueError)]:
        with pytest.raises(error, match="^out: expected a path"):
            _checks.check_path("out", bad)
    with pytest.raises(FileNotFoundError, match="^out: folder .* does not exist"):
        _checks.check_path("out", tmp_path / "no" / "x", folder_must_exist=True)
    (tmp_path / "f.txt").write_text("x")
    assert _checks.check_file("path", os.fspath(tmp_path / "f.txt")).name == "f.txt"
    with pytest.raises(FileNotFoundError, match="^path: no file"):
        _checks.check_file("path", tmp_path)  # a folder is not a file
    with pytest.raises(TypeError, match="^path: expected a path"):
        _checks.check_file("path", 1)


def test_check_ids_meta_tensor_is_refused():
    meta = torch.zeros(2, 3, dtype=torch.long, device="meta")
    with pytest.raises(ValueError, match=r"^ids: expected a tensor with values, got a meta"):
        _checks.check_ids("ids", meta, 5)
    with pytest.raises(ValueError, match="^x: expected a tensor with values"):
        _checks.check_finite("x", torch.zeros(2, device="meta"))


def test_check_ids_compiles_without_graph_break_and_still_checks():
    # While compiling, the range check is an on-device assert: no .item(), no graph break.
    def embed(ids):
        _checks.check_ids("ids", ids, 10, ndim=2)
        return ids * 2

    compiled = torch.compile(embed, backend="eager", fullgraph=True)
    ids = torch.tensor([[1, 9], [0, 3]])
    assert torch.equal(compiled(ids), ids * 2)
    for bad in (torch.tensor([[1, 10]]), torch.tensor([[-1, 0]])):
        with pytest.raises(RuntimeError, match=r"ids: expected ids in \[0, 10\)"):
            compiled(bad)
    torch._dynamo.reset()


def test_check_ids_on_an_accelerator_does_not_read_values(monkeypatch):
    # Off the CPU (and while compiling) the check is queued with torch._assert_async and never
    # reads a value back to the host. Take that branch on CPU by patching is_compiling, and
    # make every way of reading a value to the host fail.
    def no_sync(self, *args):
        raise AssertionError("host sync")

    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    for method in ("item", "__int__", "__bool__", "tolist"):
        monkeypatch.setattr(torch.Tensor, method, no_sync)
    ids = torch.tensor([1, 2])
    assert _checks.check_ids("ids", ids, 5) is ids
    with pytest.raises(RuntimeError, match=r"^ids: expected ids in \[0, 2\)"):
        _checks.check_ids("ids", ids, 2)  # _assert_async raises at once on CPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_check_ids_on_cuda_is_async():
    ids = torch.tensor([1, 2], device="cuda")
    torch.cuda.set_sync_debug_mode("error")  # any host sync now raises
    try:
        assert _checks.check_ids("ids", ids, 5) is ids
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_check_int_values_open_ends_and_messages():
    t = torch.tensor([-1, 0, 7])
    assert _checks.check_int_values("context", t, -1, 8) is t
    assert _checks.check_int_values("ids", t, None, None) is t
    with pytest.raises(ValueError, match=r"^ids: expected word ids >= 0, got values from -1 to 7"):
        _checks.check_int_values("ids", t, 0, None, what="word ids")
    with pytest.raises(ValueError, match=r"^ids: expected values < 7, got values from -1 to 7"):
        _checks.check_int_values("ids", t, None, 7)
    with pytest.raises(TypeError, match="^ids: expected an int tensor"):
        _checks.check_int_values("ids", t.float(), 0, 8)


def test_check_values_runs_on_cpu_and_names_what_it_found():
    x = torch.tensor([1.0, -2.0])
    assert _checks.check_values("x", x, x > -5, "x: expected values > -5") is x
    with pytest.raises(ValueError, match="^x: expected positive values, got -2.0$"):
        _checks.check_values("x", x, x > 0, "x: expected positive values",
                             lambda: f"got {float(x.min())}")
    with pytest.raises(ValueError, match="^x: expected a tensor with values"):
        meta = x.to("meta")
        _checks.check_values("x", meta, meta > 0, "x: expected positive values")


def test_check_same_dtype_device_and_generator():
    _checks.check_same_dtype(a=torch.zeros(1), b=torch.ones(2))
    with pytest.raises(TypeError, match="^a, b: expected one dtype, got a torch.float32, b "
                                        "torch.int64"):
        _checks.check_same_dtype(a=torch.zeros(1), b=torch.ones(1, dtype=torch.long))
    assert _checks.check_device("device", "cpu") == torch.device("cpu")
    assert _checks.check_device("device", None) is None
    for bad, error in [("tpu", ValueError), ("cuda:x", ValueError), (3, TypeError),
                       (None, TypeError)]:
        with pytest.raises(error, match="^device: expected"):
            _checks.check_device("device", bad, allow_none=False)
    g = torch.Generator()
    assert _checks.check_generator("generator", g, torch.device("cpu")) is g
    assert _checks.check_generator("generator", None) is None
    with pytest.raises(TypeError, match="^generator: expected a torch.Generator or None"):
        _checks.check_generator("generator", 0)
    with pytest.raises(ValueError, match="^generator: expected a generator on meta"):
        _checks.check_generator("generator", g, torch.device("meta"))
