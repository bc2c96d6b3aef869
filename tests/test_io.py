"""lmlab.io: atomic writes and safetensors round trips."""

from __future__ import annotations

import pytest
import torch

from lmlab.io import atomic_write, load_json, load_tensors, save_json, save_tensors


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write("half of the new")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_replaces_on_success(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_write(target, "wb") as f:
        f.write(b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


def test_atomic_write_rejects_bad_mode_and_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "x", "a"):
            pass
    with pytest.raises(FileNotFoundError, match="path"):
        with atomic_write(tmp_path / "missing" / "x"):
            pass


def test_tensors_round_trip(tmp_path):
    tensors = {"w": torch.randn(3, 4), "ids": torch.arange(5)}
    save_tensors(tensors, tmp_path / "t.safetensors", metadata={"kind": "test"})
    back = load_tensors(tmp_path / "t.safetensors")
    assert back.keys() == tensors.keys()
    for k in tensors:
        assert torch.equal(back[k], tensors[k])


def test_load_tensors_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="path"):
        load_tensors(tmp_path / "nope.safetensors")


def test_json_round_trip(tmp_path):
    obj = {"vocab": ["a", "ü", "日本"], "n": 3}
    save_json(obj, tmp_path / "o.json")
    assert load_json(tmp_path / "o.json") == obj
