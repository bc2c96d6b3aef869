"""The shared argument checks: wrong type is TypeError, wrong value is ValueError, names first."""

from __future__ import annotations

import math

import pytest
import torch

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
    with pytest.raises(TypeError, match="ids: expected a int tensor"):
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
