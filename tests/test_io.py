"""lmlab.io: atomic writes and safetensors round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import numpy as np

from lmlab.io import (
    atomic_write,
    load_json,
    load_npz,
    load_tensors,
    read_metadata,
    save_json,
    save_tensors,
)


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


# --------------------------------------------------------------------------- bad files


def _corrupt_versions(good, tmp_path):
    """Truncated (half, a few bytes, empty) and garbage copies of ``good``."""
    data = good.read_bytes()
    versions = {"half": data[: len(data) // 2], "head": data[:5], "empty": b"",
                "garbage": bytes(range(256)) * 4}
    paths = []
    for name, content in versions.items():
        path = tmp_path / f"{name}{good.suffix}"
        path.write_bytes(content)
        paths.append(path)
    return paths


def test_bad_safetensors_files_are_named(tmp_path):
    good = tmp_path / "good.safetensors"
    save_tensors({"w": torch.randn(32, 32)}, good, metadata={"a": "b"})
    for path in _corrupt_versions(good, tmp_path):
        with pytest.raises(ValueError, match=f"{path.name}: not a readable safetensors file"):
            load_tensors(path)
        with pytest.raises(ValueError, match=f"{path.name}: not a readable safetensors file"):
            read_metadata(path)
    with pytest.raises(FileNotFoundError, match="path: no file"):
        read_metadata(tmp_path / "none.safetensors")


def test_bad_json_files_are_named(tmp_path):
    good = tmp_path / "good.json"
    save_json({"merges": [["a", "b"]] * 20, "vocab": {"x": 1}}, good)
    for path in _corrupt_versions(good, tmp_path):
        with pytest.raises(ValueError, match=f"{path.name}: not a readable JSON file"):
            load_json(path)
    with pytest.raises(FileNotFoundError, match="path: no file"):
        load_json(tmp_path / "none.json")


def test_npz_round_trip_and_bad_files_are_named(tmp_path):
    good = tmp_path / "good.npz"
    arrays = {"a": np.arange(500, dtype=np.float32).reshape(20, 25), "b": np.ones(3)}
    np.savez_compressed(good, **arrays)
    back = load_npz(good)
    assert back.keys() == arrays.keys()
    assert all(np.array_equal(back[k], arrays[k]) for k in arrays)
    for path in _corrupt_versions(good, tmp_path):
        with pytest.raises(ValueError, match=f"{path.name}: not a readable .npz file"):
            load_npz(path)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled.npz: .*allow_pickle=False"):
        load_npz(pickled)
    single = tmp_path / "single.npy"
    np.save(single, np.arange(3))
    with pytest.raises(ValueError, match="single.npy: .*not an .npz archive"):
        load_npz(single)
    with pytest.raises(FileNotFoundError, match="path: no file"):
        load_npz(tmp_path / "none.npz")


def test_save_tensors_and_save_json_go_through_atomic_write(tmp_path, monkeypatch):
    """One place writes files: a failure inside atomic_write leaves the old file intact."""
    import contextlib

    import lmlab.io as io

    calls = []
    real = io.atomic_write

    @contextlib.contextmanager
    def spy(path, mode="w", encoding="utf-8"):
        calls.append((path.name, mode))
        with real(path, mode, encoding) as f:
            yield f
            if len(calls) > 2:
                raise OSError("disk full")

    monkeypatch.setattr(io, "atomic_write", spy)
    save_tensors({"w": torch.zeros(2)}, tmp_path / "w.safetensors")
    save_json([1], tmp_path / "o.json")
    assert calls == [("w.safetensors", "wb"), ("o.json", "w")]
    with pytest.raises(OSError, match="disk full"):
        save_tensors({"w": torch.ones(2)}, tmp_path / "w.safetensors")
    assert torch.equal(load_tensors(tmp_path / "w.safetensors")["w"], torch.zeros(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.json", "w.safetensors"]


def test_tied_and_sliced_tensors_are_saved_in_full(tmp_path):
    emb = torch.nn.Embedding(10, 4)
    head = torch.nn.Linear(4, 10, bias=False)
    head.weight = emb.weight  # tied, as in a language model's head
    state = {"emb": emb.weight, "head": head.weight, "row": emb.weight[3]}
    save_tensors(state, tmp_path / "tied.safetensors")
    back = load_tensors(tmp_path / "tied.safetensors")
    for k, v in state.items():
        assert torch.equal(back[k], v.detach())


def test_a_folder_is_not_a_file_to_write(tmp_path):
    """Before: the temporary file was written and then os.replace raised IsADirectoryError."""
    (tmp_path / "out").mkdir()
    for call in (lambda: save_tensors({"w": torch.ones(1)}, tmp_path / "out"),
                 lambda: save_json({}, tmp_path / "out"),
                 lambda: atomic_write(tmp_path / "out").__enter__()):
        with pytest.raises(ValueError, match="^path: .* is a folder"):
            call()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert not any((tmp_path / "out").iterdir())


def test_load_tensors_refuses_an_unknown_device(tmp_path):
    save_tensors({"w": torch.ones(2)}, tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="^device: unknown device 'tpu'"):
        load_tensors(tmp_path / "w.safetensors", device="tpu")


def test_load_tensors_onto_a_device(tmp_path):
    save_tensors({"w": torch.ones(2)}, tmp_path / "w.safetensors")
    assert load_tensors(tmp_path / "w.safetensors", device=torch.device("cpu"))["w"].device.type \
        == "cpu"


@pytest.mark.parametrize("call, error, message", [
    (lambda p: save_tensors([torch.zeros(1)], p / "x"), TypeError, "tensors"),
    (lambda p: save_tensors({"w": [1.0]}, p / "x"), TypeError, "tensors"),
    (lambda p: save_tensors({1: torch.zeros(1)}, p / "x"), TypeError, "tensors"),
    (lambda p: save_tensors({"w": torch.zeros(1)}, p / "x", metadata={"a": 1}), TypeError,
     "metadata"),
    (lambda p: save_tensors({"w": torch.zeros(1)}, 3), TypeError, "path"),
    (lambda p: save_tensors({"w": torch.zeros(1)}, p / "no" / "x"), FileNotFoundError, "path"),
    (lambda p: load_tensors(3), TypeError, "path"),
    (lambda p: save_json({"x": {1, 2}}, p / "x.json"), TypeError, "obj"),
    (lambda p: save_json({"x": float("nan")}, p / "x.json"), ValueError, "obj"),
    (lambda p: save_json({}, p / "no" / "x.json"), FileNotFoundError, "path"),
    (lambda p: load_json(None), TypeError, "path"),
    (lambda p: load_npz(b"x.npz"), TypeError, "path"),
    (lambda p: atomic_write(1).__enter__(), TypeError, "path"),
    (lambda p: atomic_write(p / "x", encoding=8).__enter__(), TypeError, "encoding"),
    (lambda p: save_tensors({"w": torch.zeros(1, device="meta")}, p / "x"), ValueError,
     "tensors: 'w' is on the meta device"),
    (lambda p: load_tensors(p / "x", device="tpu"), FileNotFoundError, "path"),
])
def test_bad_arguments(tmp_path, call, error, message):
    with pytest.raises(error, match=f"^{message}"):
        call(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_same_tensors_and_metadata_give_the_same_bytes_in_every_process(tmp_path):
    """safetensors writes its metadata in hash-map order, which changes from process to
    process; save_tensors sorts it, so a script run twice writes the same file."""
    import subprocess
    import sys

    code = ("import sys, torch\nfrom lmlab.io import save_tensors\n"
            "save_tensors({'w': torch.arange(6.0).view(2, 3), 'b': torch.ones(2)}, sys.argv[1],"
            " metadata={k: 'v' + k + '\\u00e9\"\\\\\\n' for k in 'zyxwvutsrq'})")
    companion = str(Path(__file__).resolve().parent.parent / "companion")
    files = []
    for i in range(4):
        files.append(tmp_path / f"{i}.safetensors")
        subprocess.run([sys.executable, "-c", code, str(files[-1])], check=True,
                       env={"PYTHONPATH": companion, "PATH": "/usr/bin:/bin"})
    assert len({f.read_bytes() for f in files}) == 1
    data = files[0].read_bytes()
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    assert list(header["__metadata__"]) == sorted("zyxwvutsrq")
    assert read_metadata(files[0])["z"] == 'vzé"\\\n'
