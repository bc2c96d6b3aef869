"""Tests of lmlab.model_files: a model and its config round-trip through one file (GPT with a
tied head, encoder, encoder-decoder), a mismatched config or a bad file is refused, naming it."""

from __future__ import annotations

import json

import pytest
import torch

from lmlab.device import seed_everything
from lmlab.io import save_tensors
from lmlab.model_files import load_model, save_model
from lmlab.transformer import GPT, Encoder, EncoderDecoder, TransformerConfig

# Grouped-query attention, rotary positions, SwiGLU and a tied head: the most to get right.
LLAMA_LIKE = TransformerConfig.tiny(norm="rmsnorm", position="rotary", ffn="swiglu",
                                    num_kv_heads=2, attention_bias=False, mlp_bias=False,
                                    d_ff=96)


@pytest.mark.parametrize("kind", ["gpt", "encoder", "encdec"])
def test_save_load_round_trip(tmp_path, kind: str) -> None:
    seed_everything(13)
    model = {"gpt": lambda: GPT(LLAMA_LIKE),
             "encoder": lambda: Encoder(TransformerConfig.tiny(type_vocab_size=2)),
             "encdec": lambda: EncoderDecoder(TransformerConfig.tiny(vocab_size=20),
                                              TransformerConfig.tiny(vocab_size=30))}[kind]()
    path = tmp_path / "m.safetensors"
    save_model(model, path, metadata={"command": "test"})
    loaded = load_model(path)
    assert type(loaded) is type(model)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    seed_everything(14)
    fresh = type(model)(*([model.encoder.config, model.decoder.config] if kind == "encdec"
                          else [model.config]))
    assert load_model(path, expected=fresh) is fresh
    assert torch.equal(next(iter(fresh.parameters())), next(iter(model.parameters())))
    if kind == "gpt":
        assert fresh.lm_head.weight is fresh.embed.tok_emb.weight


def test_load_refuses_mismatched_config(tmp_path) -> None:
    path = tmp_path / "m.safetensors"
    save_model(GPT(TransformerConfig.tiny()), path)
    with pytest.raises(ValueError, match=r"m\.safetensors: config does not match.*d_model is 64"):
        load_model(path, expected=GPT(TransformerConfig.tiny(d_model=32)))
    with pytest.raises(ValueError, match="holds a GPT, not a Encoder"):
        load_model(path, expected=Encoder(TransformerConfig.tiny()))


def test_load_refuses_bad_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="^path"):
        load_model(tmp_path / "missing.safetensors")
    with pytest.raises(TypeError, match="^path"):
        load_model(3)
    good = tmp_path / "good.safetensors"
    save_model(GPT(TransformerConfig.tiny()), good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.safetensors"):
        load_model(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="garbage.safetensors"):
        load_model(garbage)
    plain = tmp_path / "plain.safetensors"
    save_tensors({"w": torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match="plain.safetensors: no lmlab model config"):
        load_model(plain)
    broken = tmp_path / "broken.safetensors"
    save_tensors({"w": torch.zeros(2)}, broken,
                 metadata={"lmlab_model": "GPT", "lmlab_config": '{"config": '})
    with pytest.raises(ValueError, match="broken.safetensors: the model config is not valid JSON"):
        load_model(broken)


def _with_config(path, model: str, config: object) -> None:
    save_tensors({"w": torch.zeros(2)}, path,
                 metadata={"lmlab_model": model, "lmlab_config": json.dumps(config)})


def test_load_names_the_file_and_the_missing_or_bad_field(tmp_path) -> None:
    fields = TransformerConfig.tiny().to_dict()
    no_width = {k: v for k, v in fields.items() if k != "d_model"}
    cases = {
        "a.safetensors": ("GPT", {"cross_d_model": None}, "the GPT config has no field 'config'"),
        "b.safetensors": ("GPT", {"config": fields}, "the GPT config has no field 'cross_d_model'"),
        "c.safetensors": ("GPT", {"config": no_width, "cross_d_model": None},
                          "the config's 'config' has no field 'd_model'"),
        "d.safetensors": ("EncoderDecoder", {"encoder": fields},
                          "the EncoderDecoder config has no field 'decoder'"),
        "e.safetensors": ("Encoder", {"config": {**fields, "d_model": -1}},
                          r"the stored config is invalid \(d_model: expected an int >= 1"),
        "f.safetensors": ("GPT", {"config": fields, "cross_d_model": "x"},
                          r"the stored config is invalid \(cross_d_model: expected an int"),
        "g.safetensors": ("Encoder", [1], "the model config is not a JSON object"),
        "h.safetensors": ("Encoder", {"config": 3}, "the config's 'config' is not a JSON object"),
    }
    for name, (model, config, message) in cases.items():
        _with_config(tmp_path / name, model, config)
        with pytest.raises(ValueError, match=f"{name}: {message}"):
            load_model(tmp_path / name)


def test_save_and_load_reject_bad_arguments(tmp_path) -> None:
    model, path = GPT(TransformerConfig.tiny()), tmp_path / "m.safetensors"
    with pytest.raises(TypeError, match="^metadata: expected a dict of str to str"):
        save_model(model, path, metadata=[("a", "b")])
    with pytest.raises(TypeError, match="^metadata: expected a dict of str to str"):
        save_model(model, path, metadata={"a": 1})
    with pytest.raises(ValueError, match="^metadata: the key 'lmlab_config' is reserved"):
        save_model(model, path, metadata={"lmlab_config": "{}"})
    with pytest.raises(ValueError, match="^model: has tensors on the meta device"):
        save_model(GPT(TransformerConfig.tiny()).to("meta"), path)
    assert not path.exists()
    save_model(model, path)
    with pytest.raises(TypeError, match="^expected: a GPT, Encoder or EncoderDecoder"):
        load_model(path, expected=torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="^device: expected a torch device"):
        load_model(path, device="gpu")


def test_a_file_with_separate_q_k_v_tensors_is_refused_naming_them(tmp_path) -> None:
    """Files written before q, k and v were fused hold q_proj/k_proj/v_proj tensors; loading
    one names what is missing and what is unexpected instead of loading it wrongly."""
    model = GPT(TransformerConfig.tiny(num_layers=1))
    path = tmp_path / "old.safetensors"
    save_model(model, path)
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    fused = state.pop("blocks.0.attn.qkv_proj.weight")
    for name, rows in zip(("q", "k", "v"), fused.split(64)):
        state[f"blocks.0.attn.{name}_proj.weight"] = rows
    from lmlab.io import read_metadata
    save_tensors(state, path, metadata=read_metadata(path))
    with pytest.raises(ValueError, match=r"old.safetensors: missing tensors "
                                         r"\['blocks.0.attn.qkv_proj.weight'\], unexpected "
                                         r"\['blocks.0.attn.k_proj.weight'"):
        load_model(path)
