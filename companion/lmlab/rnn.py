"""Recurrent encoder-decoders: spelling in, pronunciation out.

The pieces of chapter 3, on CMUdict (letters -> ARPAbet phonemes)::

    splits = cmudict_splits()                            # train / validation / test, by word
    model  = Seq2Seq(Seq2SeqConfig())                    # GRU encoder + GRU decoder
    losses = train_seq2seq(model, splits["train"], steps=1000)
    hyps   = transcribe(model, ["spelling"])             # [('S', 'P', 'EH1', 'L', 'IH0', 'NG')]
    scores = evaluate(model, splits["test"])             # word accuracy, phoneme error rate

The encoder reads the letters (and an end mark ``</s>``) and hands its last hidden state to the
decoder, which generates phonemes one at a time, each fed back in as the next input. That one
vector is all the decoder knows about the word: the bottleneck. ``Seq2SeqConfig(attention=...)``
swaps in :class:`AttentionDecoder`, which also looks at every encoder state through
:mod:`lmlab.attention`.

:func:`gru_cell` and :func:`lstm_cell` are the update equations written out; :func:`unroll` runs
them step by step with the weights of a :class:`torch.nn.GRU` / :class:`torch.nn.LSTM`, which
the models use for speed (same math, the loop runs in C++). The vocabularies are those of the
pretrained ``g2p_en`` model, so :func:`load_g2p_en` runs its weights in :class:`Seq2Seq`.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lmlab._checks import check_int
from lmlab.attention import AdditiveAttention, DotProductAttention, padding_mask
from lmlab.device import resolve_device
from lmlab.progress import progress

__all__ = [
    "GRAPHEMES", "PHONEMES", "Vocab", "cmudict_splits", "Batch", "encode_words", "make_batch",
    "gru_cell", "lstm_cell", "unroll",
    "Seq2SeqConfig", "Encoder", "Decoder", "AttentionDecoder", "Seq2Seq",
    "train_seq2seq", "transcribe", "edit_distance", "evaluate", "load_g2p_en",
    "save_checkpoint", "load_checkpoint",
]

logger = logging.getLogger(__name__)

#: The input symbols, g2p_en's grapheme list (padding, unknown, end mark, then a to z).
GRAPHEMES: tuple[str, ...] = ("<pad>", "<unk>", "</s>", *"abcdefghijklmnopqrstuvwxyz")
#: The output symbols, g2p_en's phoneme list (padding, unknown, start, end, 70 ARPAbet phonemes).
PHONEMES: tuple[str, ...] = ("<pad>", "<unk>", "<s>", "</s>", *(
    "AA0 AA1 AA2 AE0 AE1 AE2 AH0 AH1 AH2 AO0 AO1 AO2 AW0 AW1 AW2 AY0 AY1 AY2 B CH D DH EH0 EH1 "
    "EH2 ER0 ER1 ER2 EY0 EY1 EY2 F G HH IH0 IH1 IH2 IY0 IY1 IY2 JH K L M N NG OW0 OW1 OW2 OY0 OY1 "
    "OY2 P R S SH T TH UH0 UH1 UH2 UW UW0 UW1 UW2 V W Y Z ZH").split())

_CELLS = ("gru", "lstm")
_ATTENTIONS = (None, "dot", "scaled_dot", "additive")


# --------------------------------------------------------------------------- vocabularies, data


class Vocab:
    """Symbols <-> ids for one side of the task, with the special symbols it defines.

    Args:
        symbols: id -> symbol; must contain ``"<pad>"`` (id of padding) and ``"</s>"`` (end).
    """

    def __init__(self, symbols: Sequence[str]) -> None:
        self.symbols = tuple(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        if len(self.index) != len(self.symbols):
            raise ValueError("symbols: contains duplicates")
        for special in ("<pad>", "</s>"):
            if special not in self.index:
                raise ValueError(f"symbols: must contain {special!r}")
        self.pad_id = self.index["<pad>"]
        self.eos_id = self.index["</s>"]
        self.bos_id = self.index.get("<s>")

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, symbols: Sequence[str], bos: bool = False, eos: bool = False) -> list[int]:
        """Ids of ``symbols`` (a word's letters or a list of phonemes), optionally framed.

        Raises:
            ValueError: ``symbols`` is empty, or holds a symbol outside the vocabulary.

        Example:
            >>> Vocab(GRAPHEMES).encode("cab", eos=True)
            [5, 3, 4, 2]
        """
        if len(symbols) == 0:
            raise ValueError("symbols: empty sequence; expected at least one symbol")
        unknown = sorted({s for s in symbols if s not in self.index})
        if unknown:
            raise ValueError(f"symbols: unknown symbol(s) {unknown}; allowed: "
                             f"{[s for s in self.symbols if not s.startswith('<')]}")
        if bos and self.bos_id is None:
            raise ValueError("bos: this vocabulary has no '<s>' symbol")
        ids = [self.index[s] for s in symbols]
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Sequence[int]) -> tuple[str, ...]:
        """Symbols of ``ids``, stopping at the end mark and skipping padding and ``<s>``."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                out.append(self.symbols[i])
        return tuple(out)


@functools.cache
def _cmudict_words() -> tuple[tuple[str, tuple[str, ...]], ...]:
    from lmlab.data import load_cmudict

    phonemes = set(PHONEMES)
    return tuple(sorted((w, p) for w, p in load_cmudict() if re.fullmatch("[a-z]+", w)
                        and all(x in phonemes for x in p)))


def cmudict_splits(seed: int = 0, validation_fraction: float = 0.05,
                   test_fraction: float = 0.1) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """CMUdict's words of letters a-z (first pronunciation), split into train/validation/test.

    The split is by word: the sorted word list is shuffled with ``seed`` and cut, so it is the
    same on every machine. Words with apostrophes, digits or dots are left out, and so are
    phonemes outside :data:`PHONEMES` (none in cmudict 1.1.3).

    Args:
        seed: seed of the permutation.
        validation_fraction: share of words for validation.
        test_fraction: share of words for the test split.

    Returns:
        ``{"train": [...], "validation": [...], "test": [...]}``, each a list of
        ``(word, phonemes)`` pairs, sorted by word.
    """
    for name, value in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 0.5:
            raise ValueError(f"{name}: expected a fraction in (0, 0.5), got {value!r}")
    pairs = _cmudict_words()
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_test = round(test_fraction * len(pairs))
    n_val = round(validation_fraction * len(pairs))
    parts = {"test": order[:n_test], "validation": order[n_test:n_test + n_val],
             "train": order[n_test + n_val:]}
    return {name: [pairs[i] for i in sorted(idx)] for name, idx in
            (("train", parts["train"]), ("validation", parts["validation"]), ("test", parts["test"]))}


@dataclass
class Batch:
    """A padded batch of (word, pronunciation) pairs as ids.

    ``src`` holds the letters and ``</s>``; ``tgt_in`` is ``<s>`` + phonemes (the decoder's
    inputs under teacher forcing) and ``tgt_out`` the phonemes + ``</s>`` (what it must predict).
    """

    src: torch.Tensor  # (B, S) letter ids, padded with 0
    src_lengths: torch.Tensor  # (B,) true source lengths, end mark included
    tgt_in: torch.Tensor  # (B, T) <s> + phoneme ids, padded with 0
    tgt_out: torch.Tensor  # (B, T) phoneme ids + </s>, padded with 0

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on ``device``."""
        return Batch(*(t.to(device) for t in (self.src, self.src_lengths, self.tgt_in, self.tgt_out)))


def _pad(seqs: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    out = torch.full((len(seqs), max(len(s) for s in seqs)), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return out  # (B, L)


def encode_words(words: Sequence[str], src_vocab: Vocab | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Letters + ``</s>`` of each word as a padded id tensor and its lengths ``(B, S), (B,)``."""
    src_vocab = src_vocab or Vocab(GRAPHEMES)
    if isinstance(words, str):
        raise TypeError("words: expected a list of words, got a single string (wrap it in a list)")
    if len(words) == 0:
        raise ValueError("words: expected at least one word, got none")
    ids = [src_vocab.encode(w, eos=True) for w in words]
    return _pad(ids, src_vocab.pad_id), torch.tensor([len(s) for s in ids])


def make_batch(pairs: Sequence[tuple[str, Sequence[str]]], src_vocab: Vocab | None = None,
               tgt_vocab: Vocab | None = None) -> Batch:
    """Encode and pad ``(word, phonemes)`` pairs (defaults: :data:`GRAPHEMES`, :data:`PHONEMES`).

    Example:
        >>> b = make_batch([("ab", ["EY1", "B"]), ("b", ["B"])])
        >>> b.src.tolist(), b.tgt_in.tolist(), b.tgt_out.tolist()
        ([[3, 4, 2], [4, 2, 0]], [[2, 33, 22], [2, 22, 0]], [[33, 22, 3], [22, 3, 0]])
    """
    tgt_vocab = tgt_vocab or Vocab(PHONEMES)
    src, src_lengths = encode_words([w for w, _ in pairs], src_vocab)
    tgt = [tgt_vocab.encode(p) for _, p in pairs]
    tgt_in = _pad([[tgt_vocab.bos_id, *t] for t in tgt], tgt_vocab.pad_id)
    tgt_out = _pad([[*t, tgt_vocab.eos_id] for t in tgt], tgt_vocab.pad_id)
    return Batch(src, src_lengths, tgt_in, tgt_out)


# --------------------------------------------------------------------------- the cells, by hand


def gru_cell(x: torch.Tensor, h: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
             bias_ih: torch.Tensor, bias_hh: torch.Tensor) -> torch.Tensor:
    """One GRU step, with :class:`torch.nn.GRU`'s weight layout (gates stacked as r, z, n).

    ``r = sigmoid(W_ir x + W_hr h)``, ``z = sigmoid(W_iz x + W_hz h)`` (biases omitted),
    ``n = tanh(W_in x + r * (W_hn h))``, and the new state ``(1 - z) * n + z * h``: the update
    gate ``z`` decides how much of the old state to keep.

    Args:
        x: the input at this step.
        h: the previous hidden state.
        weight_ih: input weights ``(3C, E)``.
        weight_hh: recurrent weights ``(3C, C)``.
        bias_ih: input bias ``(3C,)``.
        bias_hh: recurrent bias ``(3C,)``.

    Returns:
        The new hidden state.

    Shape:
        x ``(B, E)``, h ``(B, C)`` -> ``(B, C)``

    Example:
        >>> C, E = 2, 3
        >>> h = gru_cell(torch.ones(1, E), torch.zeros(1, C), torch.zeros(3 * C, E),
        ...              torch.zeros(3 * C, C), torch.zeros(3 * C), torch.zeros(3 * C))
        >>> h  # z = 0.5, n = 0: half of the old (zero) state, half of n
        tensor([[0., 0.]])
    """
    gi = x @ weight_ih.T + bias_ih  # (B, 3C)
    gh = h @ weight_hh.T + bias_hh  # (B, 3C)
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h  # (B, C)


def lstm_cell(x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], weight_ih: torch.Tensor,
              weight_hh: torch.Tensor, bias_ih: torch.Tensor,
              bias_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step, with :class:`torch.nn.LSTM`'s weight layout (gates stacked as i, f, g, o).

    The cell ``c`` is a running sum: ``c' = f * c + i * g`` (forget some, write some), and the
    hidden state shows part of it, ``h' = o * tanh(c')``.

    Args:
        x: the input at this step.
        state: ``(h, c)``, the previous hidden state and cell.
        weight_ih: input weights ``(4C, E)``.
        weight_hh: recurrent weights ``(4C, C)``.
        bias_ih: input bias ``(4C,)``.
        bias_hh: recurrent bias ``(4C,)``.

    Returns:
        The new ``(h, c)``.

    Shape:
        x ``(B, E)``, h and c ``(B, C)`` -> h and c ``(B, C)``

    Example:
        >>> C, E = 2, 3
        >>> h, c = lstm_cell(torch.ones(1, E), (torch.zeros(1, C), torch.ones(1, C)),
        ...                  torch.zeros(4 * C, E), torch.zeros(4 * C, C), torch.zeros(4 * C),
        ...                  torch.zeros(4 * C))
        >>> c  # f = 0.5 keeps half the old cell, g = 0 writes nothing
        tensor([[0.5000, 0.5000]])
    """
    h, c = state
    gates = x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh  # (B, 4C)
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # (B, C)
    h = torch.sigmoid(o) * torch.tanh(c)  # (B, C)
    return h, c


def unroll(rnn: nn.GRU | nn.LSTM, x: torch.Tensor,
           state: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
           ) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
    """Run a one-layer, batch-first :class:`torch.nn.GRU` / :class:`torch.nn.LSTM` step by step
    with :func:`gru_cell` / :func:`lstm_cell`: the same numbers as ``rnn(x, state)``.

    Args:
        rnn: the recurrent layer whose weights to use.
        x: the input sequence.
        state: initial hidden state ``(1, B, C)`` (GRU) or ``(h, c)`` (LSTM); zeros if ``None``.

    Returns:
        ``(outputs, state)``: the hidden state after every step, and the final state in
        ``rnn``'s format.

    Shape:
        x ``(B, T, E)`` -> outputs ``(B, T, C)``
    """
    if not isinstance(rnn, (nn.GRU, nn.LSTM)):
        raise TypeError(f"rnn: expected nn.GRU or nn.LSTM, got {type(rnn).__name__}")
    if rnn.num_layers != 1 or rnn.bidirectional or not rnn.batch_first or not rnn.bias:
        raise ValueError("rnn: unroll supports one layer, one direction, batch_first=True, bias=True")
    if x.dim() != 3 or x.shape[-1] != rnn.input_size:
        raise ValueError(f"x: expected shape (B, T, {rnn.input_size}), got {tuple(x.shape)}")
    B, T, _ = x.shape
    weights = (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
    zeros = x.new_zeros(B, rnn.hidden_size)  # (B, C)
    outputs = []
    if isinstance(rnn, nn.LSTM):
        h, c = (zeros, zeros) if state is None else (state[0][0], state[1][0])
        for t in range(T):
            h, c = lstm_cell(x[:, t], (h, c), *weights)
            outputs.append(h)
        return torch.stack(outputs, dim=1), (h[None], c[None])  # (B, T, C), (1, B, C) x 2
    h = zeros if state is None else state[0]
    for t in range(T):
        h = gru_cell(x[:, t], h, *weights)
        outputs.append(h)
    return torch.stack(outputs, dim=1), h[None]  # (B, T, C), (1, B, C)


# --------------------------------------------------------------------------- the models


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Sizes and choices of a :class:`Seq2Seq` model."""

    src_vocab_size: int = len(GRAPHEMES)  # input symbols (letters + specials)
    tgt_vocab_size: int = len(PHONEMES)  # output symbols (phonemes + specials)
    embedding_dim: int = 64  # width E of the symbol embeddings
    hidden_size: int = 128  # width C of the recurrent state
    cell: str = "gru"  # "gru" or "lstm"
    attention: str | None = None  # None (plain decoder) or "dot", "scaled_dot", "additive"
    pad_id: int = 0  # padding id, on both sides
    bos_id: int = 2  # the decoder's start symbol <s>
    eos_id: int = 3  # the decoder's end symbol </s>

    def __post_init__(self) -> None:
        for name in ("src_vocab_size", "tgt_vocab_size", "embedding_dim", "hidden_size"):
            value = getattr(self, name)
            check_int(name, value)
        if self.cell not in _CELLS:
            raise ValueError(f"cell: expected one of {_CELLS}, got {self.cell!r}")
        if self.attention not in _ATTENTIONS:
            raise ValueError(f"attention: expected one of {_ATTENTIONS}, got {self.attention!r}")
        for name in ("pad_id", "bos_id", "eos_id"):
            value = getattr(self, name)
            if not 0 <= value < self.tgt_vocab_size:
                raise ValueError(f"{name}: expected an id in [0, {self.tgt_vocab_size}), got {value}")


def _rnn(config: Seq2SeqConfig) -> nn.GRU | nn.LSTM:
    layer = nn.GRU if config.cell == "gru" else nn.LSTM
    return layer(config.embedding_dim, config.hidden_size, batch_first=True)


class Encoder(nn.Module):
    """Embeds the letters and runs the recurrent layer over them (packed: padding is skipped).

    Args:
        config: the model's sizes.
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(config.src_vocab_size, config.embedding_dim,
                                      padding_idx=config.pad_id)
        self.rnn = _rnn(config)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        """Encode a padded batch.

        Returns:
            ``(memory, state)``: every step's hidden state (zeros on padding), and the state
            after each sequence's last real symbol.

        Shape:
            src ``(B, S)``, src_lengths ``(B,)`` -> memory ``(B, S, C)``, state ``(1, B, C)``
            (a pair of them for an LSTM)
        """
        x = self.embedding(src)  # (B, S, E)
        packed = pack_padded_sequence(x, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        memory, state = self.rnn(packed)
        memory, _ = pad_packed_sequence(memory, batch_first=True, total_length=src.shape[1])  # (B, S, C)
        return memory, state


class Decoder(nn.Module):
    """The plain decoder: the recurrent state alone carries everything it knows about the input.

    ``h_t = RNN(embed(y_{t-1}), h_{t-1})`` starting from the encoder's last state, and
    ``logits_t = W h_t``.

    Args:
        config: the model's sizes.
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(config.tgt_vocab_size, config.embedding_dim,
                                      padding_idx=config.pad_id)
        self.rnn = _rnn(config)
        self.out = nn.Linear(config.hidden_size, config.tgt_vocab_size)

    def forward(self, tgt_in: torch.Tensor, state: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                memory: torch.Tensor, src_mask: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                           torch.Tensor | None]:
        """Run the decoder over ``T`` given inputs (all of them under teacher forcing, one when
        generating).

        Args:
            tgt_in: previous output symbols.
            state: the recurrent state to start from.
            memory: the encoder's states (unused here: that is the bottleneck).
            src_mask: ``True`` on real source positions (unused here).

        Returns:
            ``(logits, state, None)``: scores of the next symbol at each step, the new state, and
            no attention weights.

        Shape:
            tgt_in ``(B, T)`` -> logits ``(B, T, V)``
        """
        h, state = self.rnn(self.embedding(tgt_in), state)  # (B, T, C)
        return self.out(h), state, None  # (B, T, V)


class AttentionDecoder(nn.Module):
    """A decoder that also reads the encoder's states through attention (Luong et al., 2015).

    After the recurrent step, the new state ``h_t`` is the query: it scores every encoder state
    ``m_s`` (the keys and values), the softmax turns the scores into weights, and the context
    ``c_t = sum_s a_ts m_s`` joins ``h_t`` in the prediction
    ``logits_t = W_out tanh(W_c [h_t; c_t])``. The score is a dot product (``"dot"``), a scaled
    one (``"scaled_dot"``) or Bahdanau's additive network (``"additive"``), from
    :mod:`lmlab.attention`. Because the query is the state *after* the step, the recurrent part
    runs over all teacher-forced inputs at once and attention is one batched call.

    Args:
        config: the model's sizes; ``config.attention`` picks the score.
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        if config.attention is None:
            raise ValueError("config.attention: AttentionDecoder needs 'dot', 'scaled_dot' or "
                             "'additive', got None")
        C = config.hidden_size
        self.embedding = nn.Embedding(config.tgt_vocab_size, config.embedding_dim,
                                      padding_idx=config.pad_id)
        self.rnn = _rnn(config)
        if config.attention == "additive":
            self.attention: nn.Module = AdditiveAttention(C, C, C)
        else:
            self.attention = DotProductAttention(scaled=config.attention == "scaled_dot")
        self.combine = nn.Linear(2 * C, C)
        self.out = nn.Linear(C, config.tgt_vocab_size)

    def forward(self, tgt_in: torch.Tensor, state: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                memory: torch.Tensor, src_mask: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """As :meth:`Decoder.forward`, and also return the attention weights.

        Shape:
            tgt_in ``(B, T)``, memory ``(B, S, C)``, src_mask ``(B, S)`` -> logits ``(B, T, V)``,
            weights ``(B, T, S)``
        """
        h, state = self.rnn(self.embedding(tgt_in), state)  # (B, T, C)
        context, weights = self.attention(h, memory, memory, src_mask[:, None, :])  # (B, T, C), (B, T, S)
        logits = self.out(torch.tanh(self.combine(torch.cat([h, context], dim=-1))))  # (B, T, V)
        return logits, state, weights


def _select_state(state: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                  index: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    if isinstance(state, tuple):
        return tuple(s[:, index] for s in state)  # type: ignore[return-value]
    return state[:, index]


class Seq2Seq(nn.Module):
    """Encoder + decoder, trained with teacher forcing, decoded greedily or with a beam.

    ``Seq2SeqConfig(attention=None)`` gives the plain :class:`Decoder`, any other choice the
    :class:`AttentionDecoder`: the rest of the interface is the same.

    Args:
        config: the model's sizes and choices.
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config) if config.attention is None else AttentionDecoder(config)

    def _check_src(self, src: torch.Tensor, src_lengths: torch.Tensor) -> None:
        if src.dim() != 2:
            raise ValueError(f"src: expected shape (B, S), got {tuple(src.shape)}")
        if src_lengths.shape != (src.shape[0],):
            raise ValueError(f"src_lengths: expected one length per sequence, shape ({src.shape[0]},), "
                             f"got {tuple(src_lengths.shape)}")
        if src.shape[0] == 0 or src.shape[1] == 0:
            raise ValueError(f"src: empty batch or empty sequences, shape {tuple(src.shape)}")
        lo, hi = int(src_lengths.min()), int(src_lengths.max())
        if lo < 1:
            raise ValueError(f"src_lengths: every sequence needs length >= 1, got {lo}")
        if hi > src.shape[1]:
            raise ValueError(f"src_lengths: length {hi} exceeds the padded width S={src.shape[1]}")
        if int(src.min()) < 0 or int(src.max()) >= self.config.src_vocab_size:
            raise ValueError(f"src: ids must lie in [0, {self.config.src_vocab_size})")

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor,
               ) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``(memory, state, src_mask)`` for a batch; see :meth:`Encoder.forward`.

        Shape:
            src ``(B, S)`` -> memory ``(B, S, C)``, src_mask ``(B, S)`` (``True`` = real symbol)
        """
        self._check_src(src, src_lengths)
        memory, state = self.encoder(src, src_lengths)
        return memory, state, padding_mask(src_lengths.to(src.device), src.shape[1])

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor,
                tgt_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: predict every next symbol given the true previous ones.

        Returns:
            ``(logits, weights)``; ``weights`` is ``None`` for the plain decoder.

        Shape:
            src ``(B, S)``, tgt_in ``(B, T)`` -> logits ``(B, T, V)``, weights ``(B, T, S)``
        """
        memory, state, src_mask = self.encode(src, src_lengths)
        logits, _, weights = self.decoder(tgt_in, state, memory, src_mask)
        return logits, weights

    def loss(self, batch: Batch) -> torch.Tensor:
        """Mean cross-entropy of the next symbol over all real (non-padding) target positions."""
        logits, _ = self(batch.src, batch.src_lengths, batch.tgt_in)
        return F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(),
                               ignore_index=self.config.pad_id)

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, src_lengths: torch.Tensor, max_len: int = 30,
                      ) -> tuple[list[list[int]], list[torch.Tensor | None]]:
        """Generate by always taking the most likely next symbol, feeding it back in.

        Each sequence stops at ``</s>`` (not included in the output) or after ``max_len``
        symbols.

        Returns:
            ``(ids, weights)``: the generated ids of each sequence, and per sequence its
            attention weights over its own ``S_b`` letters, one row per decoding step
            (``len(ids) + 1`` rows when it ended with ``</s>``, ``len(ids)`` when cut off at
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

        A hypothesis ends at ``</s>``; the search for a sequence stops when no unfinished
        hypothesis can beat the best finished one (log-probabilities only fall), or after
        ``max_len`` symbols. With ``beam_size=1`` this is :meth:`greedy_decode`.

        Returns:
            The ids of the most likely output of each sequence (``</s>`` not included).
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

    def _beam_one(self, memory: torch.Tensor, state: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                  src_mask: torch.Tensor, beam_size: int, max_len: int) -> list[int]:
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


# --------------------------------------------------------------------------- training, evaluation


def train_seq2seq(model: Seq2Seq, pairs: Sequence[tuple[str, Sequence[str]]], steps: int,
                  batch_size: int = 128, lr: float = 3e-3, seed: int = 0, clip: float = 1.0,
                  device: torch.device | str | None = None, desc: str = "train") -> list[float]:
    """Train with teacher forcing and Adam for a fixed number of steps (the training budget).

    Batches are drawn by shuffling ``pairs`` with ``seed`` (reshuffled every epoch); the
    learning rate decays linearly to a tenth; gradients are clipped to norm ``clip``.

    Args:
        model: the model to train (moved to ``device``).
        pairs: ``(word, phonemes)`` training pairs.
        steps: number of optimizer steps.
        batch_size: pairs per step.
        lr: peak learning rate.
        seed: seed of the batch order.
        clip: maximum gradient norm.
        device: where to train (default: :func:`lmlab.device.get_device`).
        desc: label of the progress bar.

    Returns:
        The training loss of every step.
    """
    check_int("steps", steps)
    check_int("batch_size", batch_size)
    if len(pairs) == 0:
        raise ValueError("pairs: expected at least one training pair, got none")
    device = resolve_device(device)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - 0.9 * s / steps)
    rng = random.Random(seed)
    order: list[int] = []
    losses = []
    bar = progress(range(steps), desc=desc)
    for _ in bar:
        if len(order) < batch_size:
            fresh = list(range(len(pairs)))
            rng.shuffle(fresh)
            order += fresh
        chosen, order = order[:batch_size], order[batch_size:]
        batch = make_batch([pairs[i] for i in chosen]).to(device)
        loss = model.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


def transcribe(model: Seq2Seq, words: Sequence[str], beam_size: int = 1, max_len: int = 30,
               batch_size: int = 1024) -> list[tuple[str, ...]]:
    """Pronounce ``words`` (lower-case a-z) with ``model``, greedily or with a beam.

    Example:
        >>> model = load_g2p_en()
        >>> transcribe(model, ["attention"])
        [('AH0', 'T', 'EH1', 'N', 'SH', 'AH0', 'N')]
    """
    if isinstance(words, str):
        raise TypeError("words: expected a list of words, got a single string (wrap it in a list)")
    device = next(model.parameters()).device
    model.eval()
    tgt_vocab = Vocab(PHONEMES)
    order = sorted(range(len(words)), key=lambda i: len(words[i]))  # similar lengths together
    out: list[tuple[str, ...]] = [()] * len(words)
    for start in range(0, len(words), batch_size):
        chunk = order[start:start + batch_size]
        src, lengths = encode_words([words[i] for i in chunk])
        src, lengths = src.to(device), lengths.to(device)
        if beam_size == 1:
            ids, _ = model.greedy_decode(src, lengths, max_len=max_len)
        else:
            ids = model.beam_search(src, lengths, beam_size=beam_size, max_len=max_len)
        for i, seq in zip(chunk, ids):
            out[i] = tgt_vocab.decode(seq)
    return out


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions turning a into b.

    Example:
        >>> edit_distance(["K", "AE1", "T"], ["K", "AA1", "T", "S"])
        2
    """
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def evaluate(model: Seq2Seq, pairs: Sequence[tuple[str, Sequence[str]]], beam_size: int = 1,
             max_len: int = 30, long_from: int = 10) -> dict[str, object]:
    """Exact-word accuracy and phoneme error rate, overall, on long words and by word length.

    The phoneme error rate is the total edit distance between predicted and true phonemes
    divided by the total number of true phonemes.

    Args:
        model: the model to score.
        pairs: ``(word, phonemes)`` pairs to pronounce.
        beam_size: 1 for greedy decoding, more for beam search.
        max_len: the longest output allowed.
        long_from: words with at least this many letters count as long.

    Returns:
        ``{"word_accuracy", "per", "long_word_accuracy", "long_per", "n", "n_long",
        "by_length": {length: {"n", "word_accuracy", "per"}}, "predictions"}``.
    """
    if len(pairs) == 0:
        raise ValueError("pairs: expected at least one pair, got none")
    hyps = transcribe(model, [w for w, _ in pairs], beam_size=beam_size, max_len=max_len)
    rows = [(len(w), tuple(ref) == hyp, edit_distance(ref, hyp), len(ref))
            for (w, ref), hyp in zip(pairs, hyps)]

    def summary(sel: list[tuple[int, bool, int, int]]) -> dict[str, float]:
        return {"n": len(sel), "word_accuracy": sum(r[1] for r in sel) / max(len(sel), 1),
                "per": sum(r[2] for r in sel) / max(sum(r[3] for r in sel), 1)}

    overall, long = summary(rows), summary([r for r in rows if r[0] >= long_from])
    by_length = {n: summary([r for r in rows if r[0] == n]) for n in sorted({r[0] for r in rows})}
    return {"word_accuracy": overall["word_accuracy"], "per": overall["per"], "n": overall["n"],
            "long_word_accuracy": long["word_accuracy"], "long_per": long["per"],
            "n_long": long["n"], "by_length": by_length, "predictions": hyps}


def load_g2p_en(path: str | Path | None = None) -> Seq2Seq:
    """The pretrained GRU encoder-decoder of ``g2p_en`` 2.1.0, running in :class:`Seq2Seq`.

    The checkpoint (``checkpoint20.npz``, read with NumPy; ``g2p_en`` itself is never
    imported) holds a 256-wide GRU encoder and decoder over :data:`GRAPHEMES` and
    :data:`PHONEMES`, with no attention. g2p_en decodes greedily for at most 20 steps.

    Args:
        path: the ``.npz`` file; defaults to :func:`lmlab.data.g2p_checkpoint`.

    Returns:
        The model on the CPU, in evaluation mode.
    """
    if path is None:
        from lmlab.data import g2p_checkpoint

        path = g2p_checkpoint()
    with np.load(path) as npz:
        w = {k: torch.from_numpy(npz[k].astype(np.float32)) for k in npz.files}
    E = w["enc_emb"].shape[1]
    C = w["enc_w_hh"].shape[1]
    model = Seq2Seq(Seq2SeqConfig(src_vocab_size=w["enc_emb"].shape[0],
                                  tgt_vocab_size=w["dec_emb"].shape[0], embedding_dim=E, hidden_size=C))
    state = {
        "encoder.embedding.weight": w["enc_emb"], "decoder.embedding.weight": w["dec_emb"],
        "decoder.out.weight": w["fc_w"], "decoder.out.bias": w["fc_b"],
    }
    for side, prefix in (("encoder", "enc"), ("decoder", "dec")):
        for ours, theirs in (("weight_ih_l0", "w_ih"), ("weight_hh_l0", "w_hh"),
                             ("bias_ih_l0", "b_ih"), ("bias_hh_l0", "b_hh")):
            state[f"{side}.rnn.{ours}"] = w[f"{prefix}_{theirs}"]
    model.load_state_dict(state)
    logger.info("loaded g2p_en checkpoint: E=%d, C=%d", E, C)
    return model.eval()


def save_checkpoint(model: Seq2Seq, path: str | Path, metadata: dict[str, object] | None = None,
                    half: bool = True) -> None:
    """Save ``model`` as safetensors, its config and ``metadata`` (JSON-able) in the header.

    Args:
        model: the model to save.
        path: the ``.safetensors`` file to write (atomically).
        metadata: anything else worth keeping (training budget, loss curve, scores).
        half: store the weights as float16, halving the file (they are read back as float32).
    """
    from dataclasses import asdict

    from lmlab.io import save_tensors

    tensors = {k: (v.half() if half and v.is_floating_point() else v)
               for k, v in model.state_dict().items()}
    header = {"config": json.dumps(asdict(model.config)), "metadata": json.dumps(metadata or {})}
    save_tensors(tensors, path, metadata=header)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu",
                    ) -> tuple[Seq2Seq, dict[str, object]]:
    """Read a model written by :func:`save_checkpoint`.

    Returns:
        ``(model, metadata)``: the model in evaluation mode (float32, on ``device``) and the
        metadata saved with it.
    """
    from safetensors import safe_open

    from lmlab.io import load_tensors

    path = Path(path)
    tensors = load_tensors(path, device=device)
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
    if "config" not in header:
        raise ValueError(f"path: {path.name} holds no Seq2Seq config; was it written by save_checkpoint?")
    model = Seq2Seq(Seq2SeqConfig(**json.loads(header["config"])))
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    return model.to(device).eval(), json.loads(header.get("metadata", "{}"))
