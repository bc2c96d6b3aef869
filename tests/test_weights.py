"""lmlab.weights: loading by table, Hugging Face folders and config readers, checked by kind."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from lmlab.sublayers import MultiHeadAttention
from lmlab.transformer import GPT
from lmlab.transformer_config import TransformerConfig
from lmlab.weights import (
    SafetensorsFolder,
    check_names,
    checkpoint_folder,
    config_reader,
    expand_names,
    fill_weights,
    read_json,
    transformer_config,
)


@pytest.mark.parametrize("table, layers, error, match", [
    ({"a.{i}": "b.{i}"}, -1, ValueError, "^num_layers: expected an int >= 1, got -1"),
    ({"a.{i}": "b.{i}"}, 0, ValueError, "^num_layers"),
    ({"a.{i}": "b.{i}"}, True, TypeError, "^num_layers"),
    ({"a.{i}": "b.{i}"}, 2.0, TypeError, "^num_layers"),
    ([("a", "b")], 2, TypeError, "^table"),
    ({"a.{i}": "b"}, 2, ValueError, r"^table: entry 'a.\{i\}': 'b'"),
    ({"a.{j}": "b.{j}"}, 2, ValueError, "^table"),
    ({"a": 3}, 2, TypeError, "^table"),
])
def test_expand_names_bad_input(table, layers, error, match):
    """Before: -1 layers silently dropped every per-layer entry."""
    with pytest.raises(error, match=match):
        expand_names(table, layers)


def _attention_file(attn: MultiHeadAttention) -> dict[str, torch.Tensor]:
    """Separate q, k, v projections as Hugging Face files store them, from torch's own MHA."""
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(attn.d_model, attn.num_heads, batch_first=True)
    q, k, v = ref.in_proj_weight.detach().chunk(3)
    qb, kb, vb = ref.in_proj_bias.detach().chunk(3)
    return {"q.weight": q, "k.weight": k, "v.weight": v, "q.bias": qb, "k.bias": kb,
            "v.bias": vb, "o.weight": ref.out_proj.weight.detach(),
            "o.bias": ref.out_proj.bias.detach(), "ref": ref}


TABLE = {"q.weight": "qkv_proj.weight[q]", "k.weight": "qkv_proj.weight[k]",
         "v.weight": "qkv_proj.weight[v]", "q.bias": "qkv_proj.bias[q]",
         "k.bias": "qkv_proj.bias[k]", "v.bias": "qkv_proj.bias[v]",
         "o.weight": "out_proj.weight", "o.bias": "out_proj.bias"}


def test_fill_weights_puts_q_k_v_rows_where_torch_mha_reads_them():
    attn = MultiHeadAttention(d_model=16, num_heads=4).eval()
    file = _attention_file(attn)
    ref = file.pop("ref").eval()
    fill_weights(attn, TABLE, file.__getitem__, lambda n: tuple(file[n].shape), "path: 'x'")
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, _ = ref(x, x, x, need_weights=False)
        torch.testing.assert_close(attn(x)[0], expected)


def test_fill_weights_checks_every_shape_before_copying():
    attn = MultiHeadAttention(d_model=16, num_heads=4)
    before = {k: v.clone() for k, v in attn.state_dict().items()}
    file = _attention_file(attn)
    file.pop("ref")
    file["o.weight"] = torch.zeros(16, 15)  # the last entry of the table: wrong shape
    with pytest.raises(ValueError, match=r"^path: 'x': tensor 'o.weight' has shape \(16, 15\)"):
        fill_weights(attn, TABLE, file.__getitem__, lambda n: tuple(file[n].shape), "path: 'x'")
    for k, v in attn.state_dict().items():
        assert torch.equal(v, before[k]), k  # nothing copied


def test_fill_weights_needs_every_parameter_and_all_three_parts():
    attn = MultiHeadAttention(d_model=16, num_heads=4)
    file = _attention_file(attn)
    file.pop("ref")
    read, shape = file.__getitem__, (lambda n: tuple(file[n].shape))
    no_bias = {k: v for k, v in TABLE.items() if k != "o.bias"}
    with pytest.raises(ValueError, match=r"nothing in the file fills \['out_proj.bias'\]"):
        fill_weights(attn, no_bias, read, shape, "path: 'x'")
    no_v = {k: v for k, v in TABLE.items() if k != "v.weight"}
    with pytest.raises(ValueError, match=r"fills qkv_proj.weight\['v'\]"):
        fill_weights(attn, no_v, read, shape, "path: 'x'")
    with pytest.raises(ValueError, match="which the model does not have"):
        fill_weights(attn, {**TABLE, "extra": "no.such.weight"}, read, shape, "path: 'x'")


def test_fill_weights_fills_tied_parameters_once():
    model = GPT(TransformerConfig.tiny(num_layers=1))
    state = {k: torch.randn_like(v) for k, v in model.state_dict().items()
             if k != "lm_head.weight"}
    table = {k: k for k in state}
    fill_weights(model, table, state.__getitem__, lambda n: tuple(state[n].shape), "path: 'x'")
    assert torch.equal(model.lm_head.weight, state["embed.tok_emb.weight"])


@pytest.mark.parametrize("call, error, match", [
    (lambda m: fill_weights("m", {}, str, str, "x"), TypeError, "^model"),
    (lambda m: fill_weights(m, [("a", "b")], str, str, "x"), TypeError, "^names"),
    (lambda m: fill_weights(m, {}, None, str, "x"), TypeError, "^read"),
    (lambda m: fill_weights(m, {}, str, 3, "x"), TypeError, "^shape_of"),
    (lambda m: fill_weights(m, {}, str, str, None), TypeError, "^label"),
    (lambda m: check_names("ab", ["a"], "x"), TypeError, "^present"),
    (lambda m: check_names(["a"], [1], "x"), TypeError, "^expected"),
    (lambda m: check_names(["a"], ["a"], 3), TypeError, "^label"),
    (lambda m: check_names(["a"], ["a"], "x", unused="a"), TypeError, "^unused"),
    (lambda m: read_json(3, "folder"), TypeError, "^path"),
    (lambda m: checkpoint_folder(None), TypeError, "^path"),
    (lambda m: config_reader([1], "x"), TypeError, "^hf"),
    (lambda m: config_reader({}, 3), TypeError, "^label"),
    (lambda m: transformer_config("'c.json'", d_model=30, num_heads=4), ValueError,
     "^path: 'c.json' gives an invalid model: d_model"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call(MultiHeadAttention(d_model=16, num_heads=4))


def test_check_names_names_the_first_missing_and_unexpected_tensor():
    check_names(["a", "b", "cls.x", "pool"], ["a", "b"], "L", unused=["pool"],
                unused_prefixes=["cls."])
    with pytest.raises(ValueError, match=r"^L: missing tensor 'b' \(and 1 more\)"):
        check_names(["a"], ["a", "b", "c"], "L")
    with pytest.raises(ValueError, match=r"^L: unexpected tensor 'z'; is this the model family"):
        check_names(["a", "z"], ["a"], "L")


def test_safetensors_folder_reads_a_sharded_index_as_one_file(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    tensors = {"a": torch.randn(3, 2), "b": torch.randn(4), "c": torch.randn(2, 2)}
    save_file(tensors, one / "model.safetensors")
    save_file({"a": tensors["a"]}, two / "model-00001-of-00002.safetensors")
    save_file({"b": tensors["b"], "c": tensors["c"]}, two / "model-00002-of-00002.safetensors")
    (two / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors",
        "c": "model-00002-of-00002.safetensors"}}), encoding="utf-8")
    for folder in (one, two):
        weights = SafetensorsFolder(folder)
        assert sorted(weights.names()) == ["a", "b", "c"]
        for name, t in tensors.items():
            assert weights.shape(name) == tuple(t.shape)
            assert torch.equal(weights.read(name), t)
    with pytest.raises(ValueError, match="^name: .* holds no tensor 'd'"):
        SafetensorsFolder(one).read("d")
    with pytest.raises(FileNotFoundError, match="^path: .* has no model.safetensors"):
        SafetensorsFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="^path: no folder"):
        SafetensorsFolder(tmp_path / "missing")


def test_safetensors_folder_refuses_integer_and_non_finite_tensors(tmp_path):
    save_file({"ids": torch.arange(3), "nan": torch.tensor([1.0, float("nan")])},
              tmp_path / "model.safetensors")
    weights = SafetensorsFolder(tmp_path)
    with pytest.raises(ValueError, match="'ids' is torch.int64, not floating point"):
        weights.read("ids")
    with pytest.raises(ValueError, match="'nan' holds NaN or infinite values"):
        weights.read("nan")
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(ValueError, match="'model.safetensors' is not a valid safetensors file"):
        SafetensorsFolder(tmp_path)


def test_read_json_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text('{"a": 1}', encoding="utf-8")
    assert read_json(tmp_path / "config.json", "the folder") == {"a": 1}
    with pytest.raises(FileNotFoundError, match="^path: the folder has no missing.json"):
        read_json(tmp_path / "missing.json", "the folder")
    (tmp_path / "cut.json").write_text('{"a": ', encoding="utf-8")
    with pytest.raises(ValueError, match="^path: 'cut.json' in the folder is not valid JSON"):
        read_json(tmp_path / "cut.json", "the folder")
    (tmp_path / "list.json").write_text("[1]", encoding="utf-8")
    with pytest.raises(ValueError, match="is not a JSON object"):
        read_json(tmp_path / "list.json", "the folder")


def test_config_reader_checks_each_kind():
    read = config_reader({"n": 3, "eps": 1e-6, "flag": True, "name": "bert", "zero": 0,
                          "none": None}, "'config.json'")
    assert (read("n"), read("eps", "float", minimum=0.0), read("flag", "bool"),
            read("name", "str")) == (3, 1e-6, True, "bert")
    assert read("none", "int", 7) == 7 and read("absent", "str", "x") == "x"
    assert read("zero", "int", minimum=0) == 0
    with pytest.raises(ValueError, match="^path: 'config.json' has no 'absent'"):
        read("absent")
    with pytest.raises(ValueError, match="^path: 'config.json': zero: expected an int >= 1"):
        read("zero")
    with pytest.raises(ValueError, match="^path: 'config.json': name: expected"):
        read("name", "int")
