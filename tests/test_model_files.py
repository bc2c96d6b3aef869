"""lmlab.model_files: every model kind round-trips through one safetensors file with its config
(read back by the safetensors package itself too); another kind, a missing field, a truncated,
corrupted or foreign file, and bad arguments are refused, naming the file."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import lmlab
from lmlab import g2p
from lmlab.device import seed_everything
from lmlab.io import load_tensors, read_metadata, save_tensors
from lmlab.model_files import (FORMAT, MODEL_KINDS, check_metadata, load, read_model_file,
                               write_model_file)
from lmlab.seq2seq import Seq2Seq, Seq2SeqConfig
from lmlab.transformer import GPT, Encoder, EncoderDecoder
from lmlab.transformer_config import TransformerConfig
from lmlab.vectors import WordVectors
from lmlab.word2vec import SkipGramNegativeSampling

# Grouped-query attention, rotary positions, SwiGLU and a tied head: the most to get right.
LLAMA_LIKE = TransformerConfig.tiny(norm="rmsnorm", position="rotary", ffn="swiglu",
                                    num_kv_heads=2, attention_bias=False, mlp_bias=False,
                                    d_ff=96)
MODELS = {
    "GPT": lambda: GPT(LLAMA_LIKE),
    "Encoder": lambda: Encoder(TransformerConfig.tiny(type_vocab_size=2,
                                                      position="sinusoidal")),
    "EncoderDecoder": lambda: EncoderDecoder(TransformerConfig.tiny(vocab_size=20),
                                             TransformerConfig.tiny(vocab_size=30)),
    "Seq2Seq": lambda: Seq2Seq(Seq2SeqConfig.tiny(g2p.GRAPHEME_VOCAB, g2p.PHONEME_VOCAB,
                                                  attention="additive")),
    "SkipGramNegativeSampling": lambda: SkipGramNegativeSampling(
        50, 8, generator=torch.Generator().manual_seed(0)),
}


def _outputs(model: torch.nn.Module) -> torch.Tensor:
    """What the model computes on a fixed input (so that a loaded model is checked whole)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        if isinstance(model, GPT):
            return model(torch.randint(0, 256, (2, 7), generator=g))
        if isinstance(model, Encoder):
            ids = torch.randint(0, 256, (2, 7), generator=g)
            return model(ids, torch.ones_like(ids), torch.ones(2, 7, dtype=torch.bool))
        if isinstance(model, EncoderDecoder):
            return model(torch.randint(0, 20, (2, 5), generator=g),
                         torch.randint(0, 30, (2, 6), generator=g))
        if isinstance(model, Seq2Seq):
            src, lengths = g2p.encode_words(["photograph", "cab"])
            return model(src, lengths, torch.randint(0, 10, (2, 5), generator=g))[0]
        return model.input.weight + model.output.weight


@pytest.mark.parametrize("kind", list(MODELS))
def test_every_kind_round_trips_with_its_config_and_metadata(tmp_path, kind: str) -> None:
    seed_everything(13)
    model = MODELS[kind]().eval()
    if kind == "SkipGramNegativeSampling":
        torch.nn.init.normal_(model.output.weight)  # not all zeros
    path = tmp_path / "m.safetensors"
    model.save(path, metadata={"command": "test", "curve": [3.5, 2.25], "steps": 3})
    for loaded in (type(model).load(path), load(path), lmlab.load(path)):
        assert type(loaded) is type(model) and not loaded.training
        for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
            assert k == k2 and torch.equal(a, b), k
        assert torch.equal(_outputs(loaded), _outputs(model))
    file = read_model_file(path)
    assert file.kind == kind == type(model).kind and MODEL_KINDS[kind] == type(model).__module__
    assert file.metadata == {"command": "test", "curve": [3.5, 2.25], "steps": 3}
    assert file.config == json.loads(json.dumps(model.file_config()))
    # the safetensors package reads the same tensors and header (no lmlab involved)
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    assert header["format"] == FORMAT and header["kind"] == kind
    assert json.loads(header["metadata"])["steps"] == 3
    assert load_file(path).keys() == file.tensors.keys()


def test_a_tied_head_is_stored_once_and_stays_tied(tmp_path) -> None:
    model = GPT(TransformerConfig.tiny())
    model.save(tmp_path / "g.safetensors")
    stored = load_file(tmp_path / "g.safetensors")
    assert "lm_head.weight" not in stored and "embed.tok_emb.weight" in stored
    loaded = GPT.load(tmp_path / "g.safetensors")
    assert loaded.lm_head.weight is loaded.embed.tok_emb.weight
    untied = GPT(TransformerConfig.tiny(tie_embeddings=False))
    untied.save(tmp_path / "u.safetensors")
    assert "lm_head.weight" in load_file(tmp_path / "u.safetensors")


def test_word_vectors_round_trip_and_keep_their_metadata(tmp_path) -> None:
    wv = WordVectors(["king", "queen", "apple"], torch.randn(3, 4), [5, 3, 1],
                     metadata={"corpus": "toy", "history": {"loss": [1.0, 0.5]}})
    wv.save(tmp_path / "v.safetensors", metadata={"note": "more"})
    for loaded in (WordVectors.load(tmp_path / "v.safetensors"), lmlab.load(
            tmp_path / "v.safetensors")):
        assert loaded.words == wv.words and torch.equal(loaded.vectors, wv.vectors)
        assert torch.equal(loaded.counts, wv.counts)
        assert loaded.metadata == {"corpus": "toy", "history": {"loss": [1.0, 0.5]},
                                   "note": "more"}


def test_stored_and_loaded_dtypes(tmp_path) -> None:
    model = GPT(TransformerConfig.tiny())
    model.save(tmp_path / "f32.safetensors")
    model.save(tmp_path / "f16.safetensors", dtype=torch.float16)
    assert all(t.dtype == torch.float16 for t in load_file(tmp_path / "f16.safetensors").values())
    half = (tmp_path / "f16.safetensors").stat().st_size
    assert half < 0.55 * (tmp_path / "f32.safetensors").stat().st_size
    loaded = GPT.load(tmp_path / "f16.safetensors")  # float32 in memory, float16's values
    assert loaded.embed.tok_emb.weight.dtype == torch.float32
    assert torch.equal(loaded.embed.tok_emb.weight, model.embed.tok_emb.weight.half().float())
    bf16 = GPT.load(tmp_path / "f32.safetensors", dtype=torch.bfloat16, device="cpu")
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())
    with pytest.raises(ValueError, match="^dtype: tensor 'vectors' does not fit in torch.float16"):
        WordVectors(["a"], torch.full((1, 2), 1e6)).save(tmp_path / "big.safetensors",
                                                          dtype=torch.float16)
    assert not (tmp_path / "big.safetensors").exists()


def test_another_kind_is_refused_naming_the_file_and_both_kinds(tmp_path) -> None:
    GPT(TransformerConfig.tiny()).save(tmp_path / "gpt.safetensors")
    for cls in (Encoder, EncoderDecoder, Seq2Seq, WordVectors, SkipGramNegativeSampling):
        with pytest.raises(ValueError, match=r"gpt\.safetensors: holds a model of kind 'GPT', "
                                             rf"expected '{cls.kind}'"):
            cls.load(tmp_path / "gpt.safetensors")


def _rewrite_header(src, dst, edit) -> None:
    """Copy a model file with its header's config (a dict) changed by ``edit``."""
    header = read_metadata(src)
    config = json.loads(header["config"])
    edit(config)
    save_tensors(load_tensors(src), dst, metadata={**header, "config": json.dumps(config)})


@pytest.mark.parametrize("kind, edit, match", [
    ("GPT", lambda c: c["config"].pop("d_model"),
     r"the GPT config 'config' lacks the field 'd_model'"),
    ("GPT", lambda c: c.pop("cross_d_model"), "the GPT config lacks the field 'cross_d_model'"),
    ("GPT", lambda c: c["config"].update(heads=2),
     r"the GPT config 'config' has unknown fields \['heads'\]"),
    ("GPT", lambda c: c.update(cross_d_model="wide"), "cross_d_model is 'wide'"),
    ("GPT", lambda c: c.update(config=[1, 2]), "the GPT config 'config' is not a JSON object"),
    ("GPT", lambda c: c["config"].update(num_heads=0),
     "the GPT config 'config' is invalid: num_heads"),
    ("EncoderDecoder", lambda c: c.pop("decoder"),
     "the EncoderDecoder config lacks the field 'decoder'"),
    ("Seq2Seq", lambda c: c.pop("hidden_size"),
     "the Seq2Seq config lacks the field 'hidden_size'"),
    ("Seq2Seq", lambda c: c["tgt_vocab"].update(eos_token="<nothing>"),
     "the Seq2Seq config is invalid: eos_token"),
    ("SkipGramNegativeSampling", lambda c: c.pop("d_model"),
     "the SkipGramNegativeSampling config lacks the field 'd_model'"),
    ("SkipGramNegativeSampling", lambda c: c.update(d_model=0),
     "the SkipGramNegativeSampling config is invalid: d_model"),
])
def test_a_broken_config_is_named_with_the_file_and_field(tmp_path, kind, edit, match) -> None:
    good, bad = tmp_path / "good.safetensors", tmp_path / "bad.safetensors"
    MODELS[kind]().save(good)
    _rewrite_header(good, bad, edit)
    with pytest.raises(ValueError, match="bad.safetensors: " + match):
        load(bad)


def test_word_vectors_without_their_words_are_named(tmp_path) -> None:
    good, bad = tmp_path / "good.safetensors", tmp_path / "bad.safetensors"
    WordVectors(["a", "b"], torch.randn(2, 3)).save(good)
    _rewrite_header(good, bad, lambda c: c.pop("words"))
    with pytest.raises(ValueError, match="bad.safetensors: the WordVectors config lacks the "
                                         "field 'words'"):
        WordVectors.load(bad)


def test_truncated_corrupted_and_foreign_files_are_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="^path"):
        load(tmp_path / "missing.safetensors")
    with pytest.raises(TypeError, match="^path"):
        load(3)
    good = tmp_path / "good.safetensors"
    GPT(TransformerConfig.tiny()).save(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.safetensors: not a readable safetensors"):
        load(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="garbage.safetensors"):
        load(garbage)
    flipped = tmp_path / "flipped.safetensors"
    flipped.write_bytes(data[:-10] + bytes([data[-10] ^ 1]) + data[-9:])  # one bit of a weight
    with pytest.raises(ValueError, match="flipped.safetensors: the tensors do not match the "
                                         "file's checksum"):
        load(flipped)
    plain = tmp_path / "plain.safetensors"
    save_tensors({"w": torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match=r"plain.safetensors: not an lmlab model file \(its "
                                         r"header's format is None"):
        load(plain)
    old = tmp_path / "old.safetensors"  # the header of lmlab's earlier save_model
    save_tensors(load_tensors(good), old, metadata={"lmlab_model": "GPT", "lmlab_config": "{}"})
    with pytest.raises(ValueError, match="old.safetensors: not an lmlab model file.*the script "
                                         "that made a file of an older lmlab makes it again"):
        GPT.load(old)
    unknown = tmp_path / "unknown.safetensors"
    save_tensors(load_tensors(good), unknown, metadata={**read_metadata(good), "kind": "T5"})
    with pytest.raises(ValueError, match="unknown.safetensors: holds an unknown kind of model "
                                         "'T5'; known: .*'GPT'"):
        load(unknown)
    broken = tmp_path / "broken.safetensors"
    save_tensors(load_tensors(good), broken, metadata={**read_metadata(good), "config": "{"})
    with pytest.raises(ValueError, match="broken.safetensors: the header's 'config' entry is "
                                         "missing or not JSON"):
        load(broken)


def test_a_file_with_separate_q_k_v_tensors_is_refused_naming_them(tmp_path) -> None:
    """A layout from before q, k and v were fused: the missing and the unexpected tensors are
    named instead of a model loaded wrongly."""
    model = GPT(TransformerConfig.tiny(num_layers=1))
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    fused = state.pop("blocks.0.attn.qkv_proj.weight")
    for name, rows in zip(("q", "k", "v"), fused.split(64)):
        state[f"blocks.0.attn.{name}_proj.weight"] = rows
    path = tmp_path / "old.safetensors"
    write_model_file(path, "GPT", model.file_config(), state)
    with pytest.raises(ValueError, match=r"old.safetensors: the weights do not fit the config: "
                                         r"missing \['blocks.0.attn.qkv_proj.weight'\], "
                                         r"unexpected \['blocks.0.attn.k_proj.weight'"):
        load(path)
    wide = {**{k: v for k, v in model.state_dict().items() if k != "lm_head.weight"},
            "norm.weight": torch.ones(65)}
    write_model_file(path, "GPT", model.file_config(), wide)
    with pytest.raises(ValueError, match="old.safetensors: the weights do not fit the config: "
                                         r"'norm.weight' has shape \(65,\), the config gives "
                                         r"\(64,\)"):
        load(path)


def test_bad_arguments_are_named_and_nothing_is_written(tmp_path) -> None:
    model = GPT(TransformerConfig.tiny())
    good = tmp_path / "good.safetensors"
    model.save(good)
    with pytest.raises(ValueError, match="^device"):
        GPT.load(good, device="tpu")
    with pytest.raises(TypeError, match="^dtype: expected a torch.dtype"):
        GPT.load(good, dtype="float16")
    with pytest.raises(ValueError, match="^dtype: expected one of"):
        GPT.load(good, dtype=torch.int8)
    with pytest.raises(ValueError, match="^dtype"):
        WordVectors.load(good, dtype=torch.float16)
    with pytest.raises(ValueError, match="^path: .* is a folder"):
        model.save(tmp_path)
    with pytest.raises(FileNotFoundError, match="^path: folder"):
        model.save(tmp_path / "no-folder" / "m.safetensors")
    with pytest.raises(ValueError, match="^metadata: not JSON data"):
        model.save(tmp_path / "m.safetensors", metadata={"loss": float("nan")})
    with pytest.raises(TypeError, match="^metadata: not JSON data"):
        model.save(tmp_path / "m.safetensors", metadata={"model": model})
    with pytest.raises(TypeError, match="^metadata: expected str keys"):
        model.save(tmp_path / "m.safetensors", metadata={3: "x"})
    with pytest.raises(TypeError, match="^metadata: expected a dict"):
        model.save(tmp_path / "m.safetensors", metadata=["x"])
    with pytest.raises(ValueError, match="^kind"):
        write_model_file(tmp_path / "m.safetensors", "T5", {}, {})
    with pytest.raises(ValueError, match="^kind"):
        read_model_file(good, kind="T5")
    with pytest.raises(TypeError, match=r"^tensors\['w'\]"):
        write_model_file(tmp_path / "m.safetensors", "GPT", {}, {"w": [1.0]})
    with pytest.raises(ValueError, match="^model: has weights on the meta device"):
        model.to("meta").save(tmp_path / "m.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.safetensors"]
    assert check_metadata("metadata", None) == {}
