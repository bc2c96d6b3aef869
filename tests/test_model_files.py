"""Tests of lmlab.model_files: a model and its config round-trip through one file (GPT with a
tied head, encoder, encoder-decoder), a mismatched config or a bad file is refused, naming it."""

from __future__ import annotations

import json

import pytest
import torch

from lmlab.device import seed_everything
from lmlab.io import load_tensors, read_metadata, save_tensors
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


def _rewrite_config(src, dst, edit) -> None:
    """Copy a saved model with its header's config edited by ``edit(configs)``."""
    meta = read_metadata(src)
    configs = json.loads(meta["lmlab_config"])
    edit(configs)
    save_tensors(load_tensors(src), dst, metadata={**meta, "lmlab_config": json.dumps(configs)})


@pytest.mark.parametrize("edit, match", [
    (lambda c: c["config"].pop("d_model"), r"the model config 'config' lacks \['d_model'\]"),
    (lambda c: c["config"].update(heads=2),
     r"the model config 'config' has unknown fields \['heads'\]"),
    (lambda c: c.pop("cross_d_model"),
     r"the model config of a GPT must hold \['config', 'cross_d_model'\], got \['config'\]"),
    (lambda c: c.update(cross_d_model="wide"), "cross_d_model is 'wide'"),
    (lambda c: c.update(config=[1, 2]), "the model config 'config' is not a JSON object"),
    (lambda c: c["config"].update(num_heads=0), "the model config is invalid: num_heads"),
    (lambda c: c["config"].update(d_model=65), "the model config is invalid: d_model"),
])
def test_a_broken_config_is_named_with_the_file(tmp_path, edit, match) -> None:
    """Before: a missing field raised a bare KeyError naming neither the field nor the file."""
    good = tmp_path / "good.safetensors"
    save_model(GPT(TransformerConfig.tiny()), good)
    bad = tmp_path / "bad.safetensors"
    _rewrite_config(good, bad, edit)
    with pytest.raises(ValueError, match="bad.safetensors: " + match):
        load_model(bad)


def test_bad_arguments_are_named(tmp_path) -> None:
    good = tmp_path / "good.safetensors"
    model = GPT(TransformerConfig.tiny())
    save_model(model, good)
    with pytest.raises(TypeError, match="^expected"):
        load_model(good, expected="GPT")
    with pytest.raises(ValueError, match="^device"):
        load_model(good, device="tpu")
    with pytest.raises(ValueError, match="^path: .* is a folder"):
        save_model(model, tmp_path)
    with pytest.raises(TypeError, match="^metadata"):
        save_model(model, tmp_path / "m.safetensors", metadata={"steps": 3})
    with pytest.raises(ValueError, match=r"^metadata: \['lmlab_model'\]"):
        save_model(model, tmp_path / "m.safetensors", metadata={"lmlab_model": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.safetensors"]


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
