"""Transformer blocks: self-attention with queries, keys and values, heads, and the block.

Each block reads a ``(B, T, C)`` sequence and returns one of the same width: self-attention lets
every token gather what it needs from the others, the feed-forward network (FFN) then works on
each position alone, and residual connections and norms keep the signal well behaved::

    x = x + attn(norm1(x))     # pre-norm (GPT-2, Llama); post-norm (BERT) normalises after
    x = x + ffn(norm2(x))

Stacked, the same blocks make the three families of chapter 6:

* :class:`GPT` -- decoder-only, causal mask: each token sees itself and the past (GPT, Llama).
* :class:`Encoder` -- bidirectional, padding mask, token types (BERT, MiniLM).
* :class:`EncoderDecoder` -- an encoder, and a decoder whose blocks also attend to the encoder's
  output (cross-attention; the original transformer, T5).

All are built from one :class:`~lmlab.transformer_config.TransformerConfig`. The sublayers,
:class:`~lmlab.sublayers.MultiHeadAttention` (MHA, GQA and MQA through ``num_kv_heads``, a
teaching path and a fast SDPA path, a :class:`~lmlab.sublayers.KVCache`) and
:class:`~lmlab.sublayers.FeedForward`, live in :mod:`lmlab.sublayers`; positions in
:mod:`lmlab.positions`. Boolean masks mean ``True = may attend``. Each model saves itself to one
file and loads from it (``save``, ``load``: :mod:`lmlab.model_files`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lmlab._checks import check_bool, check_ids, check_int, check_tensor, check_values
from lmlab.model_files import ModelFile, ModelFileMixin
from lmlab.positions import RotaryEmbedding, sinusoidal_positions
from lmlab.sublayers import FeedForward, KVCache, MultiHeadAttention
from lmlab.transformer_config import EXPERIMENT_SWITCHES, TransformerConfig

__all__ = ["TransformerBlock", "GPT", "Encoder", "EncoderDecoder", "IGNORE_INDEX"]

IGNORE_INDEX = -100
"""A target id the language-model loss skips (padding), as ``F.cross_entropy``'s default."""


def _norm(config: TransformerConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.d_model, eps=config.norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.norm_eps)


def _block_norm(config: TransformerConfig) -> nn.Module:
    """A norm inside a block, or the identity when the config has ``block_norms=False``."""
    return _norm(config) if config.block_norms else nn.Identity()


def _file_config(file: ModelFile, name: str) -> TransformerConfig:
    """A model file's config entry ``name``; a file written before the experiment switches
    (``residual``, ``block_norms``) existed lacks them, and they were on."""
    values = file.field(name)
    if isinstance(values, dict) and not set(EXPERIMENT_SWITCHES) <= set(values):
        values = {**{k: True for k in EXPERIMENT_SWITCHES}, **values}
        file = dataclasses.replace(file, config={**file.config, name: values})
    return file.config_of(TransformerConfig, name)


class TransformerBlock(nn.Module):
    """Self-attention, optional cross-attention, and the FFN, each with a residual and a norm.

    Pre-norm: ``x = x + sublayer(norm(x))``. Post-norm: ``x = norm(x + sublayer(x))``. For
    ablations, ``attention_enabled`` and ``ffn_enabled`` (plain attributes, ``True`` by default)
    switch a sublayer off, leaving only its residual path (the block then skips it).

    For experiments the config can drop the skip path (``residual=False``: pre-norm
    ``x = sublayer(norm(x))``, post-norm ``x = norm(sublayer(x))``) or the norms
    (``block_norms=False``: each ``norm`` is the identity).

    Args:
        config: sizes and switches.
        cross_attention: add a cross-attention sublayer (the decoder of an encoder-decoder).
        kv_d_model: width of the encoder output for cross-attention (default ``d_model``).

    Shape:
        x ``(B, T, C)`` -> ``(B, T, C)``; with ``need_weights`` also the self-attention weights
        ``(B, H, T, S)``.
    """

    def __init__(self, config: TransformerConfig, cross_attention: bool = False,
                 kv_d_model: int | None = None) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config: expected a TransformerConfig, got {type(config).__name__}")
        check_bool("cross_attention", cross_attention)
        if kv_d_model is not None:
            check_int("kv_d_model", kv_d_model)
            if not cross_attention:
                raise ValueError("kv_d_model: only a block with cross_attention=True reads "
                                 "another sequence")
        c = config
        self.d_model = c.d_model
        self.pre_norm = c.norm_placement == "pre"
        self.residual = c.residual
        self.attn_norm = _block_norm(c)
        self.attn = MultiHeadAttention(c.d_model, c.num_heads, c.num_kv_heads, c.attention_bias,
                                       c.dropout)
        self.cross_norm = _block_norm(c) if cross_attention else None
        self.cross_attn = (MultiHeadAttention(c.d_model, c.num_heads, c.num_kv_heads,
                                              c.attention_bias, c.dropout, kv_d_model)
                           if cross_attention else None)
        self.ffn_norm = _block_norm(c)
        self.ffn = FeedForward(c.d_model, c.d_ff, c.ffn, c.mlp_bias)
        self.drop = nn.Dropout(c.dropout)
        self.attention_enabled = True
        self.ffn_enabled = True

    def _residual(self, x: torch.Tensor, norm: nn.Module, branch: Any) -> torch.Tensor:
        if not self.residual:  # an experiment: the sublayer alone, no skip path
            return self.drop(branch(norm(x))) if self.pre_norm else norm(self.drop(branch(x)))
        if self.pre_norm:
            return x + self.drop(branch(norm(x)))
        return norm(x + self.drop(branch(x)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *,
                is_causal: bool = False, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: KVCache | None = None, memory: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, need_weights: bool = False,
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """One block; see :meth:`~lmlab.sublayers.MultiHeadAttention.forward` for the arguments.

        ``memory`` is the encoder output ``(B, S, kv_d_model)`` for cross-attention,
        ``memory_mask`` its mask (broadcastable to ``(B, H, T, S)``, like ``mask``).

        Raises:
            TypeError: ``x`` or ``memory`` is not a floating-point tensor.
            ValueError: ``x`` is not ``(B, T, d_model)``; ``memory`` is missing on a block with
                cross-attention, given to one without, or not ``(B, S, kv_d_model)``; and
                :meth:`~lmlab.sublayers.MultiHeadAttention.forward`'s cases.
        """
        check_tensor("x", x, ndim=3, dtype="float")
        if x.shape[-1] != self.d_model or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"x: expected shape (B, T, d_model={self.d_model}) with B, T >= 1, "
                             f"got {tuple(x.shape)}")
        weight = self.attn.out_proj.weight
        if x.device != weight.device:
            raise ValueError(f"x: on {x.device} but the block's weights are on {weight.device}")
        cross_attn, cross_norm = self.cross_attn, self.cross_norm
        if cross_attn is None:
            if memory is not None or memory_mask is not None:
                raise ValueError("memory: this block has no cross-attention (build it with "
                                 "cross_attention=True)")
        elif memory is None:
            raise ValueError("memory: a block with cross-attention needs the encoder output")
        else:
            _check_memory(memory, x.shape[0], cross_attn.kv_d_model, x.device)
            cross_attn.check_mask(memory_mask, x.shape[0], x.shape[1], memory.shape[1],
                                  x.device, "memory_mask")
        weights = None
        if self.attention_enabled:
            def attend(h: torch.Tensor) -> torch.Tensor:
                nonlocal weights
                out, weights = self.attn(h, mask=mask, is_causal=is_causal, rope=rope,
                                         cache=cache, need_weights=need_weights)
                return out
            x = self._residual(x, self.attn_norm, attend)
        if cross_attn is not None:
            x = self._residual(x, cross_norm,
                               lambda h: cross_attn(h, memory, memory_mask)[0])
        if self.ffn_enabled:
            x = self._residual(x, self.ffn_norm, self.ffn)
        return (x, weights) if need_weights else x


def _check_memory(memory: object, batch: int, width: int, device: torch.device) -> None:
    """The encoder output for cross-attention: ``(batch, S, width)`` floats, ``S >= 1``."""
    memory = check_tensor("memory", memory, ndim=3, dtype="float")
    if memory.shape[0] != batch or memory.shape[2] != width or memory.shape[1] == 0:
        raise ValueError(f"memory: expected shape (B={batch}, S, {width}) with S >= 1 (the "
                         f"batch of the ids, the encoder's width), got {tuple(memory.shape)}")
    if memory.device != device:
        raise ValueError(f"memory: on {memory.device} but the queries are on {device}")


def _check_ids(name: str, ids: object, vocab_size: int, context_length: int,
               weight: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Shape, device and range of a model's ids; the range check never syncs a GPU."""
    ids = check_tensor(name, ids, ndim=2, dtype="int")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one sequence of at least one token, got "
                         f"shape {tuple(ids.shape)}")
    if ids.shape[1] + offset > context_length:
        raise ValueError(f"{name}: {ids.shape[1] + offset} tokens exceed context_length="
                         f"{context_length}")
    if ids.device != weight.device:
        raise ValueError(f"{name}: on {ids.device} but the model is on {weight.device}")
    return check_ids(name, ids, vocab_size)


def _check_targets(targets: object, ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Next-token targets: ``ids``' shape and device, each in ``[0, V)`` or -100; no sync."""
    targets = check_tensor("targets", targets, ndim=2, dtype="int")
    if targets.shape != ids.shape or targets.device != ids.device:
        raise ValueError(f"targets: expected shape {tuple(ids.shape)} on {ids.device} (one per "
                         f"id), got {tuple(targets.shape)} on {targets.device}")
    ok = (((targets >= 0) & (targets < vocab_size)) | (targets == IGNORE_INDEX)).all()
    return check_values("targets", targets, ok, f"targets: expected ids in [0, {vocab_size}) "
                        f"or {IGNORE_INDEX} (ignored)",
                        lambda: f"got values from {int(targets.min())} to {int(targets.max())}")


def _check_padding(name: str, mask: object, shape: torch.Size, device: torch.device
                   ) -> torch.Tensor:
    """A ``(B, S)`` boolean padding mask, ``True`` on real tokens, matching its ids."""
    mask = check_tensor(name, mask, ndim=2, dtype="bool")
    if mask.shape != shape:
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(mask.shape)}")
    if mask.device != device:
        raise ValueError(f"{name}: on {mask.device} but the ids are on {device}")
    return mask


class _Embeddings(nn.Module):
    """Token (+ absolute position) (+ token type) embeddings, then norm and dropout."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = (nn.Embedding(c.context_length, c.d_model) if c.position == "learned"
                        else None)
        if c.position == "sinusoidal":
            self.register_buffer("sinusoid", sinusoidal_positions(c.context_length, c.d_model),
                                 persistent=False)  # (T, C)
        else:
            self.sinusoid = None
        self.type_emb = nn.Embedding(c.type_vocab_size, c.d_model) if c.type_vocab_size else None
        self.norm = _norm(c) if c.embedding_norm else None
        self.rotary = (RotaryEmbedding(c.head_dim, c.context_length, c.rope_base)
                       if c.position == "rotary" else None)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, ids: torch.Tensor, offset: int = 0,
                token_type_ids: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        T = ids.shape[1]
        x = self.tok_emb(ids)  # (B, T, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(offset, offset + T, device=ids.device))  # (T, C)
        if self.sinusoid is not None:
            x = x + self.sinusoid[offset:offset + T]
        if self.type_emb is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(ids)
            x = x + self.type_emb(token_type_ids)
        elif token_type_ids is not None:
            raise ValueError("token_type_ids: this config has type_vocab_size=0")
        if self.norm is not None:
            x = self.norm(x)
        rope = self.rotary(T, offset) if self.rotary is not None else None
        return self.drop(x), rope


def _init_weights(model: nn.Module, num_layers: int) -> None:
    """GPT-2's initialisation: N(0, 0.02), residual output projections scaled by 1/sqrt(2L)."""
    for name, p in model.named_parameters():
        if p.dim() < 2:
            continue  # biases stay zero, norms one
        std = 0.02
        if name.endswith(("out_proj.weight", "down_proj.weight")):
            std = 0.02 / (2 * num_layers) ** 0.5
        nn.init.normal_(p, 0.0, std)
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


class GPT(ModelFileMixin, nn.Module):
    """A decoder-only transformer language model: causal blocks and an LM head.

    ``model(ids)`` gives the next-token logits; ``model(ids, targets)`` also the language-model
    loss (nanoGPT's ``GPT(config)(idx, targets)``). ``save``/``load`` write and read one model
    file (:mod:`lmlab.model_files`, kind ``"GPT"``).

    Args:
        config: sizes and switches.
        cross_d_model: give every block cross-attention to an encoder output of this width (the
            decoder of :class:`EncoderDecoder`); ``None`` for a plain GPT.

    Shape:
        ids ``(B, T)`` -> logits ``(B, T, V)``: the scores of the next token at every position.

    Example:
        >>> torch.manual_seed(0) and None
        >>> model = GPT(TransformerConfig.tiny())
        >>> ids = torch.tensor([[1, 2, 3, 4]])
        >>> model(ids[:, :-1]).shape
        torch.Size([1, 3, 256])
        >>> logits, loss = model(ids[:, :-1], ids[:, 1:])  # the next token at each position
        >>> round(loss.item(), 1)  # about ln(256) = 5.5 before training
        5.5
    """

    kind = "GPT"

    def __init__(self, config: TransformerConfig, cross_d_model: int | None = None) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config: expected a TransformerConfig, got {type(config).__name__}")
        if cross_d_model is not None:
            check_int("cross_d_model", cross_d_model)
        self.config = config
        self.cross_d_model = cross_d_model
        self.embed = _Embeddings(config)
        self.blocks = nn.ModuleList(
            TransformerBlock(config, cross_attention=cross_d_model is not None,
                             kv_d_model=cross_d_model) for _ in range(config.num_layers))
        self.norm = _norm(config) if config.final_norm else None
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        _init_weights(self, config.num_layers)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.tok_emb.weight

    def file_config(self) -> dict[str, Any]:
        """The config ``save`` writes: ``{"config": ..., "cross_d_model": ...}``."""
        return {"config": self.config.to_dict(), "cross_d_model": self.cross_d_model}

    @classmethod
    def from_file_config(cls, file: ModelFile) -> GPT:
        """An untrained GPT of a model file's config (``load`` fills its weights)."""
        cross = file.field("cross_d_model")
        if cross is not None and (isinstance(cross, bool) or not isinstance(cross, int)
                                  or cross < 1):
            raise ValueError(f"{file.path}: cross_d_model is {cross!r}; expected null or an "
                             "int >= 1")
        return cls(_file_config(file, "config"), cross)

    def new_cache(self) -> list[KVCache]:
        """An empty :class:`KVCache` per block, for :meth:`forward`'s ``cache``."""
        return [KVCache(self.config.context_length) for _ in self.blocks]

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None, *,
                cache: list[KVCache] | None = None, memory: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, need_weights: bool = False,
                last_only: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | list[torch.Tensor]]:
        """Next-token logits at every position (or only the last), and the loss with targets.

        Args:
            ids: token ids.
            targets: the token that should follow each position (``ids`` shifted by one), or
                :data:`IGNORE_INDEX` (-100) where no loss is wanted (padding). Given, the
                result is ``(logits, loss)``: the mean cross-entropy over the targets that are
                not -100, in float32 whatever the model's dtype (nats per token; NaN when every
                target is -100).
            cache: from :meth:`new_cache`; the ids then continue the cached tokens.
            memory: encoder output ``(B, S, cross_d_model)`` (decoders of an encoder-decoder).
            memory_mask: boolean ``(B, S)``, ``True`` on real source tokens.
            need_weights: also return each block's attention weights (teaching path).
            last_only: compute the LM head for the last position only (generation), giving
                logits ``(B, 1, V)``.

        Returns:
            logits ``(B, T, V)``; ``(logits, loss)`` with ``targets``; ``(logits, [weights
            per block])`` with ``need_weights``.

        Raises:
            TypeError: ``ids`` or ``targets`` is not an integer tensor.
            ValueError: ``targets`` not of ``ids``' shape and device, or a target neither in
                ``[0, V)`` nor -100 (on a GPU this check is queued without a sync and raises at
                the next one); ``targets`` with ``need_weights`` or ``last_only``; and the
                cases of the ids, cache and memory.
        """
        offset = 0
        if cache is not None:
            if not isinstance(cache, (list, tuple)) or len(cache) != len(self.blocks):
                raise ValueError(f"cache: expected a list of {len(self.blocks)} KVCache (one "
                                 "per layer, from new_cache())")
            if not all(isinstance(c, KVCache) and c.length == cache[0].length for c in cache):
                raise ValueError("cache: expected KVCache objects holding the same tokens "
                                 "(from new_cache())")
            offset = cache[0].length
        check_bool("need_weights", need_weights)
        check_bool("last_only", last_only)
        _check_ids("ids", ids, self.config.vocab_size, self.config.context_length,
                   self.lm_head.weight, offset)
        if targets is not None:
            _check_targets(targets, ids, self.config.vocab_size)
            if need_weights or last_only:
                raise ValueError("targets: the loss needs the logits of every position and "
                                 "no attention weights (need_weights=False, last_only=False)")
        if (memory is None) != (self.cross_d_model is None):
            raise ValueError("memory: needed exactly when the model has cross-attention "
                             f"(cross_d_model={self.cross_d_model})")
        mmask = None
        if memory is not None:
            assert self.cross_d_model is not None
            _check_memory(memory, ids.shape[0], self.cross_d_model, ids.device)
            if memory_mask is not None:
                _check_padding("memory_mask", memory_mask, memory.shape[:2], memory.device)
                mmask = memory_mask[:, None, None, :]  # (B, 1, 1, S)
        elif memory_mask is not None:
            raise ValueError("memory_mask: given without memory")
        x, rope = self.embed(ids, offset)  # (B, T, C)
        all_weights = []
        for i, block in enumerate(self.blocks):
            x = block(x, is_causal=True, rope=rope, cache=None if cache is None else cache[i],
                      memory=memory, memory_mask=mmask, need_weights=need_weights)
            if need_weights:
                x, w = x
                all_weights.append(w)
        if last_only:
            x = x[:, -1:]  # (B, 1, C)
        if self.norm is not None:
            x = self.norm(x)
        logits = self.lm_head(x)  # (B, T, V)
        if targets is not None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(),
                                   ignore_index=IGNORE_INDEX)  # mean over the kept targets
            return logits, loss
        return (logits, all_weights) if need_weights else logits

    def num_parameters(self) -> int:
        """Trainable parameters, tied weights counted once."""
        return sum(p.numel() for p in self.parameters())


class Encoder(ModelFileMixin, nn.Module):
    """A bidirectional transformer encoder (BERT): every token sees every real token.

    ``save``/``load`` write and read one model file (:mod:`lmlab.model_files`, kind
    ``"Encoder"``).

    Args:
        config: sizes and switches (BERT: ``TransformerConfig.minilm()``).

    Shape:
        ids ``(B, T)``, token_type_ids ``(B, T)``, padding_mask ``(B, T)`` -> ``(B, T, C)``.

    Example:
        >>> enc = Encoder(TransformerConfig.tiny(type_vocab_size=2))
        >>> enc(torch.tensor([[5, 6, 0]]), padding_mask=torch.tensor([[True, True, False]])).shape
        torch.Size([1, 3, 64])
    """

    kind = "Encoder"

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config: expected a TransformerConfig, got {type(config).__name__}")
        self.config = config
        self.embed = _Embeddings(config)
        self.blocks = nn.ModuleList(TransformerBlock(config) for _ in range(config.num_layers))
        self.norm = _norm(config) if config.final_norm else None
        _init_weights(self, config.num_layers)

    def file_config(self) -> dict[str, Any]:
        """The config ``save`` writes: ``{"config": ...}``."""
        return {"config": self.config.to_dict()}

    @classmethod
    def from_file_config(cls, file: ModelFile) -> Encoder:
        """An untrained encoder of a model file's config (``load`` fills its weights)."""
        return cls(_file_config(file, "config"))

    def forward(self, ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                padding_mask: torch.Tensor | None = None, *, need_weights: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Contextual vectors for every token.

        Args:
            ids: token ids.
            token_type_ids: segment ids (sentence A = 0, B = 1); zeros when ``None``.
            padding_mask: boolean, ``True`` on real tokens, ``False`` on padding.
            need_weights: also return each block's attention weights (teaching path).

        Returns:
            hidden states ``(B, T, C)``, or ``(hidden, [weights per block])``.
        """
        _check_ids("ids", ids, self.config.vocab_size, self.config.context_length,
                   self.embed.tok_emb.weight)
        check_bool("need_weights", need_weights)
        mask = None
        if padding_mask is not None:
            _check_padding("padding_mask", padding_mask, ids.shape, ids.device)
            mask = padding_mask[:, None, None, :]  # (B, 1, 1, S)
        if token_type_ids is not None:
            if not self.config.type_vocab_size:
                raise ValueError("token_type_ids: this config has type_vocab_size=0")
            check_tensor("token_type_ids", token_type_ids, ndim=2, dtype="int")
            if token_type_ids.shape != ids.shape or token_type_ids.device != ids.device:
                raise ValueError(f"token_type_ids: expected shape {tuple(ids.shape)} on "
                                 f"{ids.device} (like ids), got {tuple(token_type_ids.shape)} "
                                 f"on {token_type_ids.device}")
            check_ids("token_type_ids", token_type_ids, self.config.type_vocab_size)
        x, rope = self.embed(ids, 0, token_type_ids)  # (B, T, C)
        all_weights = []
        for block in self.blocks:
            x = block(x, mask, rope=rope, need_weights=need_weights)
            if need_weights:
                x, w = x
                all_weights.append(w)
        if self.norm is not None:
            x = self.norm(x)
        return (x, all_weights) if need_weights else x


class EncoderDecoder(ModelFileMixin, nn.Module):
    """An encoder and a decoder that cross-attends to it (the original transformer, T5).

    ``save``/``load`` write and read one model file (:mod:`lmlab.model_files`, kind
    ``"EncoderDecoder"``).

    Args:
        encoder_config: the encoder's sizes; its ``vocab_size`` is the source vocabulary.
        decoder_config: the decoder's sizes; its ``vocab_size`` is the target vocabulary.

    Shape:
        src ``(B, S)``, tgt ``(B, T)``, src_padding_mask ``(B, S)`` -> logits ``(B, T, V)``.
    """

    kind = "EncoderDecoder"

    def __init__(self, encoder_config: TransformerConfig,
                 decoder_config: TransformerConfig | None = None) -> None:
        super().__init__()
        if not isinstance(encoder_config, TransformerConfig):
            raise TypeError("encoder_config: expected a TransformerConfig, got "
                            f"{type(encoder_config).__name__}")
        decoder_config = encoder_config if decoder_config is None else decoder_config
        if not isinstance(decoder_config, TransformerConfig):
            raise TypeError("decoder_config: expected a TransformerConfig, got "
                            f"{type(decoder_config).__name__}")
        self.encoder = Encoder(encoder_config)
        self.decoder = GPT(decoder_config, cross_d_model=encoder_config.d_model)

    def file_config(self) -> dict[str, Any]:
        """The config ``save`` writes: ``{"encoder": ..., "decoder": ...}``."""
        return {"encoder": self.encoder.config.to_dict(),
                "decoder": self.decoder.config.to_dict()}

    @classmethod
    def from_file_config(cls, file: ModelFile) -> EncoderDecoder:
        """An untrained model of a model file's configs (``load`` fills its weights)."""
        return cls(_file_config(file, "encoder"),
                   _file_config(file, "decoder"))

    def encode(self, src: torch.Tensor, src_padding_mask: torch.Tensor | None = None
               ) -> torch.Tensor:
        """The encoder's output ``(B, S, C)``."""
        self._check_src(src, src_padding_mask)
        return self.encoder(src, padding_mask=src_padding_mask)

    def _check_src(self, src: object, src_padding_mask: object) -> torch.Tensor:
        c = self.encoder.config
        src = _check_ids("src", src, c.vocab_size, c.context_length,
                         self.encoder.embed.tok_emb.weight)
        if src_padding_mask is not None:
            _check_padding("src_padding_mask", src_padding_mask, src.shape, src.device)
        return src

    def forward(self, src: torch.Tensor, tgt: torch.Tensor,
                src_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-target-token logits at every target position (teacher forcing).

        Raises:
            ValueError: ``src`` and ``tgt`` hold different numbers of sequences, and the cases
                of :meth:`Encoder.forward` and :meth:`GPT.forward`.
        """
        src = self._check_src(src, src_padding_mask)
        tgt = check_tensor("tgt", tgt, ndim=2, dtype="int")
        if src.shape[0] != tgt.shape[0]:
            raise ValueError(f"tgt: expected the batch of src ({src.shape[0]} sequences), got "
                             f"shape {tuple(tgt.shape)}")
        memory = self.encoder(src, padding_mask=src_padding_mask)  # (B, S, C)
        return self.decoder(tgt, memory=memory, memory_mask=src_padding_mask)  # (B, T, V)

    def num_parameters(self) -> int:
        """Trainable parameters, tied weights counted once."""
        return sum(p.numel() for p in self.parameters())
