"""Sequence-to-sequence models: an encoder, a decoder, teacher forcing, greedy and beam decoding.

Chapter 3's model, on any pair of vocabularies::

    config = Seq2SeqConfig.base(src_vocab, tgt_vocab, attention="scaled_dot")
    model  = Seq2Seq(config)                                # GRU encoder + decoder
    losses = train_seq2seq(model, pairs, steps=1000)        # pairs: (source, target) tokens
    ids, _ = model.greedy_decode(src, src_lengths)          # or model.beam_search(...)
    model.save("g2p.safetensors", metadata={"steps": 1000}) # Seq2Seq.load(...) reads it back

The config holds both vocabularies (:class:`lmlab.vocab.Vocabulary`), so the special ids (padding,
start and end marks) come from them and a model file carries the symbols it was trained on
(:mod:`lmlab.model_files`, kind ``"Seq2Seq"``).
Pairs become padded batches in :mod:`lmlab.batching`. :mod:`lmlab.g2p` uses this for
spelling -> pronunciation.

Shape letters: ``B`` batch, ``S`` source length, ``T`` target length, ``R`` width of the
recurrent state (``hidden_size``), ``V`` target vocabulary size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lmlab._checks import check_choice, check_float, check_int, check_tensor
from lmlab.attention import padding_mask
from lmlab.batching import Batch, check_vocabs, pair_batches
from lmlab.model_files import ModelFile, ModelFileMixin
from lmlab.vocab import Vocabulary
from lmlab.rnn import ATTENTIONS, CELLS, AttentionDecoder, Decoder, Encoder, State

__all__ = ["Seq2SeqConfig", "Seq2Seq", "train_seq2seq"]


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Vocabularies, sizes and choices of a :class:`Seq2Seq` model.

    Use a preset (:meth:`tiny`, :meth:`small`, :meth:`base`) or give every field.

    Example:
        >>> src = Vocabulary(("<pad>", "</s>", "a", "b"), pad_token="<pad>", eos_token="</s>")
        >>> tgt = Vocabulary(("<pad>", "<s>", "</s>", "x"), pad_token="<pad>", bos_token="<s>",
        ...                  eos_token="</s>")
        >>> config = Seq2SeqConfig.tiny(src, tgt)
        >>> config.d_model, config.hidden_size, config.bos_id, config.eos_id
        (16, 24, 1, 2)
    """

    src_vocab: Vocabulary  # input symbols; needs a pad_token and an eos_token (the end mark)
    tgt_vocab: Vocabulary  # output symbols; needs pad_token, bos_token (start) and eos_token
    d_model: int = 64  # width C of the symbol embeddings (the recurrent layers' input)
    hidden_size: int = 128  # width R of the recurrent state, encoder and decoder
    cell: str = "gru"  # "gru" or "lstm"
    attention: str | None = None  # None: plain decoder; "dot", "scaled_dot", "additive"

    def __post_init__(self) -> None:
        check_vocabs(self.src_vocab, self.tgt_vocab)
        check_int("d_model", self.d_model)
        check_int("hidden_size", self.hidden_size)
        check_choice("cell", self.cell, CELLS)
        check_choice("attention", self.attention, (None, *ATTENTIONS))

    @classmethod
    def tiny(cls, src_vocab: Vocabulary, tgt_vocab: Vocabulary, **changes: Any) -> Seq2SeqConfig:
        """Embeddings of 16, state of 24: for tests, trains in seconds."""
        return cls._preset(src_vocab, tgt_vocab, 16, 24, changes)

    @classmethod
    def small(cls, src_vocab: Vocabulary, tgt_vocab: Vocabulary, **changes: Any) -> Seq2SeqConfig:
        """Embeddings of 64, state of 128: a quick model for experiments."""
        return cls._preset(src_vocab, tgt_vocab, 64, 128, changes)

    @classmethod
    def base(cls, src_vocab: Vocabulary, tgt_vocab: Vocabulary, **changes: Any) -> Seq2SeqConfig:
        """Embeddings of 64, state of 256: the models of chapters 3 and 4."""
        return cls._preset(src_vocab, tgt_vocab, 64, 256, changes)

    @classmethod
    def _preset(cls, src_vocab: Vocabulary, tgt_vocab: Vocabulary, d_model: int,
                hidden_size: int, changes: dict[str, Any]) -> Seq2SeqConfig:
        unknown = set(changes) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"changes: unknown field(s) {sorted(unknown)}; allowed: "
                            f"{[f.name for f in fields(cls)]}")
        return replace(cls(src_vocab, tgt_vocab, d_model=d_model, hidden_size=hidden_size),
                       **changes)

    @property
    def src_vocab_size(self) -> int:
        """Number of input symbols."""
        return len(self.src_vocab)

    @property
    def tgt_vocab_size(self) -> int:
        """Number of output symbols, ``V``."""
        return len(self.tgt_vocab)

    @property
    def pad_id(self) -> int:
        """The target vocabulary's padding id (ignored by the loss)."""
        return int(self.tgt_vocab.pad_id)  # type: ignore[arg-type]

    @property
    def bos_id(self) -> int:
        """The target vocabulary's start id, the decoder's first input."""
        return int(self.tgt_vocab.bos_id)  # type: ignore[arg-type]

    @property
    def eos_id(self) -> int:
        """The target vocabulary's end id, where generation stops."""
        return int(self.tgt_vocab.eos_id)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-able data (vocabularies included)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["src_vocab"], out["tgt_vocab"] = self.src_vocab.to_dict(), self.tgt_vocab.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Seq2SeqConfig:
        """The inverse of :meth:`to_dict`."""
        if not isinstance(data, dict):
            raise TypeError(f"data: expected a dict, got {type(data).__name__}")
        unexpected = set(data) - {f.name for f in fields(cls)}
        if unexpected:
            raise ValueError(f"data: unexpected fields {sorted(unexpected)}")
        data = dict(data)
        for name in ("src_vocab", "tgt_vocab"):
            if name not in data:
                raise ValueError(f"data: no {name!r}")
            data[name] = Vocabulary.from_dict(data[name])
        return cls(**data)


# --------------------------------------------------------------------------- the model


def _no_meta(**tensors: object) -> None:
    """Meta tensors carry shapes but no ids: refuse them before the model reads any."""
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor) and t.is_meta:
            raise ValueError(f"{name}: a meta tensor (a shape without data); expected ids on "
                             "the model's device")


def _select_state(state: State, index: torch.Tensor) -> State:
    if isinstance(state, tuple):
        return tuple(s[:, index] for s in state)  # type: ignore[return-value]
    return state[:, index]


class Seq2Seq(ModelFileMixin, nn.Module):
    """Encoder + decoder, trained with teacher forcing, decoded greedily or with a beam.

    ``config.attention=None`` gives the plain :class:`lmlab.rnn.Decoder`, any other choice the
    :class:`lmlab.rnn.AttentionDecoder`: the rest of the interface is the same. ``save``/``load``
    write and read one model file (:mod:`lmlab.model_files`), vocabularies included.

    Args:
        config: the model's vocabularies, sizes and choices.

    Shape:
        src ``(B, S)``, src_lengths ``(B,)``, tgt_in ``(B, T)`` -> logits ``(B, T, V)``,
        weights ``(B, T, S)`` (``None`` for the plain decoder)
    """

    kind = "Seq2Seq"

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        if not isinstance(config, Seq2SeqConfig):
            raise TypeError(f"config: expected a Seq2SeqConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.encoder = Encoder(c.src_vocab_size, c.d_model, c.hidden_size, c.cell,
                               c.src_vocab.pad_id)
        self.decoder: Decoder | AttentionDecoder
        if c.attention is None:
            self.decoder = Decoder(c.tgt_vocab_size, c.d_model, c.hidden_size, c.cell, c.pad_id)
        else:
            self.decoder = AttentionDecoder(c.tgt_vocab_size, c.d_model, c.hidden_size, c.cell,
                                            c.attention, c.pad_id)

    def file_config(self) -> dict[str, Any]:
        """The config :meth:`~lmlab.model_files.ModelFileMixin.save` writes: the :class:`Seq2SeqConfig`, vocabularies included."""
        return self.config.to_dict()

    @classmethod
    def from_file_config(cls, file: ModelFile) -> Seq2Seq:
        """An untrained model of a model file's config (:meth:`~lmlab.model_files.ModelFileMixin.load` fills its weights)."""
        return cls(file.config_of(Seq2SeqConfig))

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor,
               ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """``(memory, state, src_mask)`` for a batch; see :class:`lmlab.rnn.Encoder`.

        Shape:
            src ``(B, S)`` -> memory ``(B, S, R)``, src_mask ``(B, S)`` (``True`` = real symbol)
        """
        _no_meta(src=src, src_lengths=src_lengths)
        memory, state = self.encoder(src, src_lengths)
        return memory, state, padding_mask(src_lengths.to(src.device), src.shape[1])

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor,
                tgt_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: predict every next symbol given the true previous ones.

        Args:
            src: source ids, padded.
            src_lengths: true source lengths.
            tgt_in: the start id and the true target ids, padded.

        Returns:
            ``(logits, weights)``; ``weights`` is ``None`` for the plain decoder.
        """
        _no_meta(tgt_in=tgt_in)
        memory, state, src_mask = self.encode(src, src_lengths)
        if isinstance(tgt_in, torch.Tensor) and tgt_in.dim() == 2 and tgt_in.shape[0] != src.shape[0]:
            raise ValueError(f"tgt_in: expected {src.shape[0]} sequences like src, "
                             f"got shape {tuple(tgt_in.shape)}")
        logits, _, weights = self.decoder(tgt_in, state, memory, src_mask)
        return logits, weights

    def loss(self, batch: Batch) -> torch.Tensor:
        """Mean cross-entropy of the next symbol over all real (non-padding) target positions."""
        if not isinstance(batch, Batch):
            raise TypeError(f"batch: expected a Batch, got {type(batch).__name__}")
        logits, _ = self(batch.src, batch.src_lengths, batch.tgt_in)
        check_tensor("batch.tgt_out", batch.tgt_out, ndim=2, dtype="int")
        if batch.tgt_out.shape != batch.tgt_in.shape:
            raise ValueError(f"batch.tgt_out: expected the shape of tgt_in "
                             f"{tuple(batch.tgt_in.shape)}, got {tuple(batch.tgt_out.shape)}")
        return F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(),
                               ignore_index=self.config.pad_id)

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, src_lengths: torch.Tensor, max_len: int = 30,
                      ) -> tuple[list[list[int]], list[torch.Tensor | None]]:
        """Generate by always taking the most likely next symbol, feeding it back in.

        Each sequence stops at the end id (not included in the output) or after ``max_len``
        symbols.

        Args:
            src: source ids, padded.
            src_lengths: true source lengths.
            max_len: the most symbols to generate per sequence.

        Returns:
            ``(ids, weights)``: the generated ids of each sequence, and per sequence its
            attention weights over its own ``S_b`` source symbols, one row per decoding step
            (``len(ids) + 1`` rows when it ended with the end id, ``len(ids)`` when cut off at
            ``max_len``; ``None`` for the plain decoder).
        """
        check_int("max_len", max_len)
        memory, state, src_mask = self.encode(src, src_lengths)
        B, S = src_mask.shape
        eos = self.config.eos_id
        out: list[list[int]] = [[] for _ in range(B)]
        rows: list[list[torch.Tensor]] = [[] for _ in range(B)]
        active = torch.arange(B, device=src.device)  # sequences still generating
        token = torch.full((B, 1), self.config.bos_id, dtype=torch.long, device=src.device)
        for _ in range(max_len):
            logits, state, weights = self.decoder(token, state, memory, src_mask)  # (b, 1, V)
            token = logits[:, -1].argmax(-1, keepdim=True)  # (b, 1)
            chosen = token[:, 0].tolist()
            for j, b in enumerate(active.tolist()):
                if chosen[j] != eos:
                    out[b].append(chosen[j])
                if weights is not None:
                    rows[b].append(weights[j, 0])  # (S,)
            keep = token[:, 0] != eos
            if not bool(keep.any()):
                break
            if not bool(keep.all()):  # drop finished sequences from the batch
                active, token = active[keep], token[keep]
                memory, src_mask = memory[keep], src_mask[keep]
                state = _select_state(state, keep.nonzero()[:, 0])
        weights_out = [torch.stack(r)[:, :int(src_lengths[b])].cpu() if r else None
                       for b, r in enumerate(rows)]  # (L_b, S_b)
        return out, weights_out

    @torch.no_grad()
    def beam_search(self, src: torch.Tensor, src_lengths: torch.Tensor, beam_size: int = 4,
                    max_len: int = 30) -> list[list[int]]:
        """Generate by keeping the ``beam_size`` most likely partial outputs at every step.

        A hypothesis ends at the end id; the search for a sequence stops when no unfinished
        hypothesis can beat the best finished one (log-probabilities only fall), or after
        ``max_len`` symbols. With ``beam_size=1`` this is :meth:`greedy_decode`.

        Args:
            src: source ids, padded.
            src_lengths: true source lengths.
            beam_size: hypotheses kept per step.
            max_len: the most symbols to generate per sequence.

        Returns:
            The ids of the most likely output of each sequence (the end id not included).
        """
        check_int("beam_size", beam_size)
        check_int("max_len", max_len)
        memory, state, src_mask = self.encode(src, src_lengths)
        results = []
        for b in range(src.shape[0]):
            idx = torch.tensor([b], device=src.device)
            results.append(self._beam_one(memory[idx], _select_state(state, idx), src_mask[idx],
                                          beam_size, max_len))
        return results

    def _beam_one(self, memory: torch.Tensor, state: State, src_mask: torch.Tensor,
                  beam_size: int, max_len: int) -> list[int]:
        eos = self.config.eos_id
        device = memory.device
        seqs: list[list[int]] = [[]]
        scores = torch.zeros(1, device=device)  # (K,) log-probability of each hypothesis
        token = torch.full((1, 1), self.config.bos_id, dtype=torch.long, device=device)
        best: tuple[float, list[int]] | None = None
        for step in range(max_len):
            K = len(seqs)
            logits, state, _ = self.decoder(token, state, memory.expand(K, -1, -1),
                                            src_mask.expand(K, -1))
            logp = scores[:, None] + torch.log_softmax(logits[:, -1], dim=-1)  # (K, V)
            top, flat = logp.flatten().topk(min(beam_size, logp.numel()))
            V = logp.shape[1]
            alive_rows, alive_seqs, alive_scores, next_tokens = [], [], [], []
            for score, f in zip(top.tolist(), flat.tolist()):
                row, tok = divmod(f, V)
                if tok == eos:
                    if best is None or score > best[0]:
                        best = (score, seqs[row])
                else:
                    alive_rows.append(row)
                    alive_seqs.append(seqs[row] + [tok])
                    alive_scores.append(score)
                    next_tokens.append(tok)
            if not alive_seqs or (best is not None and best[0] >= max(alive_scores)):
                break
            if step == max_len - 1:
                if best is None or max(alive_scores) > best[0]:
                    best = (max(alive_scores), alive_seqs[alive_scores.index(max(alive_scores))])
                break
            rows = torch.tensor(alive_rows, device=device)
            state = _select_state(state, rows)
            seqs, scores = alive_seqs, torch.tensor(alive_scores, device=device)
            token = torch.tensor(next_tokens, device=device)[:, None]  # (K, 1)
        assert best is not None
        return best[1]


# --------------------------------------------------------------------------- training


def train_seq2seq(model: Seq2Seq, pairs: Sequence[tuple[str | Sequence[str], str | Sequence[str]]],
                  steps: int, batch_size: int = 128, lr: float = 3e-3, seed: int = 0,
                  clip: float | None = 1.0, device: torch.device | str | None = None,
                  desc: str = "train", warmup_steps: int = 0) -> list[float]:
    """Train with teacher forcing for a fixed number of steps (the training budget), with
    :func:`lmlab.training.train`.

    Batches come from :func:`~lmlab.batching.pair_batches` (each epoch shuffled with ``seed``); the optimizer
    is Adam (AdamW without weight decay); the learning rate warms up linearly over
    ``warmup_steps`` and then decays linearly to a tenth at the last step; the gradient norm
    is clipped to ``clip``.

    Args:
        model: the model to train (moved to ``device``).
        pairs: ``(source, target)`` training pairs, encoded with the model's vocabularies.
        steps: number of optimizer steps (>= 1).
        batch_size: pairs per step (>= 1).
        lr: peak learning rate (> 0).
        seed: seed of the batch order (>= 0).
        clip: maximum gradient norm (> 0), or ``None`` for no clipping.
        device: where to train (default: :func:`lmlab.device.get_device`).
        desc: label of the progress bar.
        warmup_steps: steps of linear warm-up (0 .. ``steps``).

    Returns:
        The training loss of every step.
    """
    from lmlab.training import TrainConfig, train

    if not isinstance(model, Seq2Seq):
        raise TypeError(f"model: expected a Seq2Seq, got {type(model).__name__}")
    check_int("steps", steps)
    if clip is not None:
        check_float("clip", clip, minimum=0.0, min_inclusive=False)
    config = TrainConfig(steps=steps, lr=lr, warmup_steps=warmup_steps, decay="linear",
                         min_lr_ratio=0.1, grad_clip=clip, seed=seed, desc=desc,
                         mixed_precision=False)  # float32 everywhere: small GRUs, exact tests
    batches = pair_batches(pairs, model.config.src_vocab, model.config.tgt_vocab, batch_size,
                           seed)
    result = train(model, lambda m, batch: m.loss(batch), batches, config, device=device)
    return result.losses
