"""Recurrent networks: the GRU and LSTM cells, an encoder, and two decoders.

The pieces of chapter 3. :func:`gru_cell` and :func:`lstm_cell` are the update equations written
out; :func:`unroll` runs them step by step with the weights of a :class:`torch.nn.GRU` /
:class:`torch.nn.LSTM`, which the models use for speed (same math, the loop runs in C++).

:class:`Encoder` embeds the input symbols and runs the recurrent layer over them; its last state
is all that the plain :class:`Decoder` knows about the input (the bottleneck).
:class:`AttentionDecoder` also reads every encoder state through :mod:`lmlab.attention`
(chapter 4). :mod:`lmlab.seq2seq` joins an encoder and a decoder into a model and trains and
decodes it; :mod:`lmlab.g2p` applies it to spelling -> pronunciation.

Shape letters: ``B`` batch, ``T`` steps (target length), ``S`` source length, ``C`` width of
the symbol embeddings (``d_model``), ``R`` width of the recurrent state (``hidden_size``), ``V``
vocabulary size.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lmlab._checks import (
    check_choice, check_ids, check_int, check_not_meta, check_same_device, check_same_dtype,
    check_tensor,
)
from lmlab.attention import AdditiveAttention, DotProductAttention

__all__ = ["CELLS", "ATTENTIONS", "gru_cell", "lstm_cell", "unroll", "Encoder", "Decoder",
           "AttentionDecoder"]

#: The recurrent cells the models can use.
CELLS: tuple[str, ...] = ("gru", "lstm")
#: The attention scores :class:`AttentionDecoder` can use (:mod:`lmlab.attention`).
ATTENTIONS: tuple[str, ...] = ("dot", "scaled_dot", "additive")

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


# --------------------------------------------------------------------------- the cells, by hand


def _check_cell(x: torch.Tensor, h: torch.Tensor, weight_ih: torch.Tensor,
                weight_hh: torch.Tensor, bias_ih: torch.Tensor, bias_hh: torch.Tensor,
                gates: int) -> None:
    name_h = "h" if gates == 3 else "state[0]"
    check_tensor("x", x, ndim=2, dtype="float")
    check_tensor(name_h, h, ndim=2, dtype="float")
    for name, w in (("weight_ih", weight_ih), ("weight_hh", weight_hh), ("bias_ih", bias_ih),
                    ("bias_hh", bias_hh)):
        check_tensor(name, w, dtype="float")
    R = h.shape[1]
    if h.shape[0] != x.shape[0]:
        raise ValueError(f"{name_h}: expected one state per input row ({x.shape[0]}), "
                         f"got shape {tuple(h.shape)}")
    expected = {"weight_ih": (gates * R, x.shape[1]), "weight_hh": (gates * R, R),
                "bias_ih": (gates * R,), "bias_hh": (gates * R,)}
    for name, w in (("weight_ih", weight_ih), ("weight_hh", weight_hh), ("bias_ih", bias_ih),
                    ("bias_hh", bias_hh)):
        if tuple(w.shape) != expected[name]:
            raise ValueError(f"{name}: expected shape {expected[name]} for x {tuple(x.shape)} "
                             f"and state {tuple(h.shape)}, got {tuple(w.shape)}")
    tensors = {"x": x, name_h: h, "weight_ih": weight_ih, "weight_hh": weight_hh,
               "bias_ih": bias_ih, "bias_hh": bias_hh}
    check_same_device(**tensors)
    check_same_dtype(**tensors)


def gru_cell(x: torch.Tensor, h: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
             bias_ih: torch.Tensor, bias_hh: torch.Tensor) -> torch.Tensor:
    """One GRU step, with :class:`torch.nn.GRU`'s weight layout (gates stacked as r, z, n).

    ``r = sigmoid(W_ir x + W_hr h)``, ``z = sigmoid(W_iz x + W_hz h)`` (biases omitted),
    ``n = tanh(W_in x + r * (W_hn h))``, and the new state ``(1 - z) * n + z * h``: the update
    gate ``z`` decides how much of the old state to keep.

    Args:
        x: the input at this step.
        h: the previous hidden state.
        weight_ih: input weights ``(3R, C)``.
        weight_hh: recurrent weights ``(3R, R)``.
        bias_ih: input bias ``(3R,)``.
        bias_hh: recurrent bias ``(3R,)``.

    Returns:
        The new hidden state.

    Shape:
        x ``(B, C)``, h ``(B, R)`` -> ``(B, R)``

    Example:
        >>> R, C = 2, 3
        >>> h = gru_cell(torch.ones(1, C), torch.zeros(1, R), torch.zeros(3 * R, C),
        ...              torch.zeros(3 * R, R), torch.zeros(3 * R), torch.zeros(3 * R))
        >>> h  # z = 0.5, n = 0: half of the old (zero) state, half of n
        tensor([[0., 0.]])
    """
    _check_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh, 3)
    gi = x @ weight_ih.T + bias_ih  # (B, 3R)
    gh = h @ weight_hh.T + bias_hh  # (B, 3R)
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h  # (B, R)


def lstm_cell(x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], weight_ih: torch.Tensor,
              weight_hh: torch.Tensor, bias_ih: torch.Tensor,
              bias_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step, with :class:`torch.nn.LSTM`'s weight layout (gates stacked as i, f, g, o).

    The cell ``c`` is a running sum: ``c' = f * c + i * g`` (forget some, write some), and the
    hidden state shows part of it, ``h' = o * tanh(c')``.

    Args:
        x: the input at this step.
        state: ``(h, c)``, the previous hidden state and cell.
        weight_ih: input weights ``(4R, C)``.
        weight_hh: recurrent weights ``(4R, R)``.
        bias_ih: input bias ``(4R,)``.
        bias_hh: recurrent bias ``(4R,)``.

    Returns:
        The new ``(h, c)``.

    Shape:
        x ``(B, C)``, h and c ``(B, R)`` -> h and c ``(B, R)``

    Example:
        >>> R, C = 2, 3
        >>> h, c = lstm_cell(torch.ones(1, C), (torch.zeros(1, R), torch.ones(1, R)),
        ...                  torch.zeros(4 * R, C), torch.zeros(4 * R, R), torch.zeros(4 * R),
        ...                  torch.zeros(4 * R))
        >>> c  # f = 0.5 keeps half the old cell, g = 0 writes nothing
        tensor([[0.5000, 0.5000]])
    """
    if not isinstance(state, tuple) or len(state) != 2:
        raise TypeError(f"state: expected a pair (h, c) of tensors, got {type(state).__name__}")
    h, c = state
    _check_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh, 4)
    check_tensor("state[1]", c, ndim=2, dtype="float")
    if c.shape != h.shape:
        raise ValueError(f"state[1]: expected the shape of h {tuple(h.shape)}, got {tuple(c.shape)}")
    check_same_device(**{"state[0]": h, "state[1]": c})
    check_same_dtype(**{"state[0]": h, "state[1]": c})
    gates = x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh  # (B, 4R)
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # (B, R)
    h = torch.sigmoid(o) * torch.tanh(c)  # (B, R)
    return h, c



def _check_state(name: str, state: object, B: int, R: int, weight: torch.Tensor) -> torch.Tensor:
    """``state`` is one ``(1, B, R)`` state of the weight's dtype and device."""
    check_tensor(name, state, dtype="float")
    assert isinstance(state, torch.Tensor)
    if tuple(state.shape) != (1, B, R):
        hint = " (add the layer axis: state[None])" if tuple(state.shape) == (B, R) else ""
        raise ValueError(f"{name}: expected shape (1, B, R) = (1, {B}, {R}) as torch.nn.GRU/LSTM "
                         f"take it, got {tuple(state.shape)}{hint}")
    if state.dtype != weight.dtype:
        raise TypeError(f"{name}: expected dtype {weight.dtype} (the weights'), got {state.dtype}")
    if state.device != weight.device:
        raise ValueError(f"{name}: on {state.device} but the weights are on {weight.device}")
    return state


def unroll(rnn: nn.GRU | nn.LSTM, x: torch.Tensor, state: State | None = None,
           ) -> tuple[torch.Tensor, State]:
    """Run a one-layer, batch-first :class:`torch.nn.GRU` / :class:`torch.nn.LSTM` step by step
    with :func:`gru_cell` / :func:`lstm_cell`: the same numbers as ``rnn(x, state)``.

    Args:
        rnn: the recurrent layer whose weights to use.
        x: the input sequence.
        state: initial hidden state ``(1, B, R)`` (GRU) or a pair ``(h, c)`` of them (LSTM), as
            ``rnn`` takes it; zeros if ``None``.

    Returns:
        ``(outputs, state)``: the hidden state after every step, and the final state in
        ``rnn``'s format.

    Shape:
        x ``(B, T, C)`` -> outputs ``(B, T, R)``, state ``(1, B, R)`` (a pair for an LSTM)

    Example:
        >>> gru = nn.GRU(3, 2, batch_first=True)
        >>> x = torch.randn(4, 5, 3)
        >>> out, h = unroll(gru, x)
        >>> torch.allclose(out, gru(x)[0], atol=1e-6), tuple(h.shape)
        (True, (1, 4, 2))
    """
    if not isinstance(rnn, (nn.GRU, nn.LSTM)):
        raise TypeError(f"rnn: expected nn.GRU or nn.LSTM, got {type(rnn).__name__}")
    if rnn.num_layers != 1 or rnn.bidirectional or not rnn.batch_first or not rnn.bias \
            or getattr(rnn, "proj_size", 0):
        raise ValueError("rnn: unroll supports one layer, one direction, batch_first=True, "
                         "bias=True and no projection")
    check_tensor("x", x, ndim=3, dtype="float")
    if x.shape[-1] != rnn.input_size or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x: expected shape (B, T, {rnn.input_size}) with B, T >= 1, "
                         f"got {tuple(x.shape)}")
    if x.dtype != rnn.weight_ih_l0.dtype:
        raise TypeError(f"x: expected dtype {rnn.weight_ih_l0.dtype} (the rnn's), got {x.dtype}")
    check_same_device(x=x, weight=rnn.weight_ih_l0)
    B, T, _ = x.shape
    R = rnn.hidden_size
    weights = (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
    zeros = x.new_zeros(B, R)  # (B, R)
    outputs = []
    if isinstance(rnn, nn.LSTM):
        if state is None:
            h, c = zeros, zeros
        else:
            if not isinstance(state, tuple) or len(state) != 2:
                raise TypeError(f"state: expected a pair (h, c) for an LSTM, got "
                                f"{type(state).__name__}")
            h = _check_state("state[0]", state[0], B, R, rnn.weight_hh_l0)[0]  # (B, R)
            c = _check_state("state[1]", state[1], B, R, rnn.weight_hh_l0)[0]  # (B, R)
        for t in range(T):
            h, c = lstm_cell(x[:, t], (h, c), *weights)
            outputs.append(h)
        return torch.stack(outputs, dim=1), (h[None], c[None])  # (B, T, R), (1, B, R) x 2
    if isinstance(state, tuple):
        raise TypeError("state: expected one tensor (1, B, R) for a GRU, got a tuple")
    h = zeros if state is None else _check_state("state", state, B, R,
                                                 rnn.weight_hh_l0)[0]  # (B, R)
    for t in range(T):
        h = gru_cell(x[:, t], h, *weights)
        outputs.append(h)
    return torch.stack(outputs, dim=1), h[None]  # (B, T, R), (1, B, R)


# --------------------------------------------------------------------------- encoder, decoders


def _layer(cell: str, d_model: int, hidden_size: int) -> nn.GRU | nn.LSTM:
    layer = nn.GRU if cell == "gru" else nn.LSTM
    return layer(d_model, hidden_size, batch_first=True)


def _check_sizes(vocab_size: int, d_model: int, hidden_size: int, cell: str,
                 pad_id: int | None) -> None:
    check_int("vocab_size", vocab_size)
    check_int("d_model", d_model)
    check_int("hidden_size", hidden_size)
    check_choice("cell", cell, CELLS)
    if pad_id is not None:
        check_int("pad_id", pad_id, minimum=0, maximum=vocab_size - 1)


def _check_symbols(name: str, ids: object, embedding: nn.Embedding) -> torch.Tensor:
    check_tensor(name, ids, ndim=2, dtype="int")
    assert isinstance(ids, torch.Tensor)
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"{name}: empty batch or empty sequences, shape {tuple(ids.shape)}")
    if ids.device != embedding.weight.device:
        raise ValueError(f"{name}: on {ids.device} but the model is on {embedding.weight.device}")
    return check_ids(name, ids, embedding.num_embeddings)  # no host sync on a GPU


def _check_decoder_state(state: object, B: int, R: int, cell: str, weight: torch.Tensor) -> None:
    if cell == "lstm":
        if not isinstance(state, tuple) or len(state) != 2:
            raise TypeError(f"state: expected a pair (h, c) for an LSTM, got {type(state).__name__}")
        _check_state("state[0]", state[0], B, R, weight)
        _check_state("state[1]", state[1], B, R, weight)
    else:
        if isinstance(state, tuple):
            raise TypeError("state: expected one tensor (1, B, R) for a GRU, got a tuple")
        _check_state("state", state, B, R, weight)


def _check_decoder_inputs(decoder: Decoder | AttentionDecoder, tgt_in: torch.Tensor,
                          state: State) -> None:
    _check_symbols("tgt_in", tgt_in, decoder.embedding)
    _check_decoder_state(state, tgt_in.shape[0], decoder.rnn.hidden_size, decoder.cell,
                         decoder.rnn.weight_hh_l0)


class Encoder(nn.Module):
    """Embeds the input symbols and runs the recurrent layer over them (packed: padding skipped).

    Args:
        vocab_size: number of input symbols.
        d_model: width ``C`` of the symbol embeddings.
        hidden_size: width ``R`` of the recurrent state.
        cell: ``"gru"`` or ``"lstm"``.
        pad_id: the padding symbol (its embedding stays zero), or ``None``.

    Shape:
        src ``(B, S)``, src_lengths ``(B,)`` -> memory ``(B, S, R)``, state ``(1, B, R)`` (a pair
        of them for an LSTM)
    """

    def __init__(self, vocab_size: int, d_model: int, hidden_size: int, cell: str = "gru",
                 pad_id: int | None = None) -> None:
        super().__init__()
        _check_sizes(vocab_size, d_model, hidden_size, cell, pad_id)
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.rnn = _layer(cell, d_model, hidden_size)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, State]:
        """Encode a padded batch.

        Args:
            src: input ids, padded at the end.
            src_lengths: the true length of each sequence (``1 .. S``).

        Returns:
            ``(memory, state)``: every step's hidden state (zeros on padding), and the state
            after each sequence's last real symbol.
        """
        _check_symbols("src", src, self.embedding)
        check_tensor("src_lengths", src_lengths, ndim=1, dtype="int")
        if src_lengths.shape[0] != src.shape[0]:
            raise ValueError(f"src_lengths: expected one length per sequence, shape "
                             f"({src.shape[0]},), got {tuple(src_lengths.shape)}")
        check_not_meta("src_lengths", src_lengths)
        lengths = src_lengths.cpu()  # packing needs them on the CPU: the one copy
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 1:
            raise ValueError(f"src_lengths: every sequence needs length >= 1, got {lo}")
        if hi > src.shape[1]:
            raise ValueError(f"src_lengths: length {hi} exceeds the padded width S={src.shape[1]}")
        x = self.embedding(src)  # (B, S, C)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        memory, state = self.rnn(packed)
        memory, _ = pad_packed_sequence(memory, batch_first=True,
                                        total_length=src.shape[1])  # (B, S, R)
        return memory, state


class Decoder(nn.Module):
    """The plain decoder: the recurrent state alone carries everything it knows about the input.

    ``h_t = RNN(embed(y_{t-1}), h_{t-1})`` starting from the encoder's last state, and
    ``logits_t = W h_t``.

    Args:
        vocab_size: number of output symbols.
        d_model: width ``C`` of the symbol embeddings.
        hidden_size: width ``R`` of the recurrent state (the encoder's).
        cell: ``"gru"`` or ``"lstm"`` (the encoder's).
        pad_id: the padding symbol, or ``None``.

    Shape:
        tgt_in ``(B, T)``, state ``(1, B, R)`` -> logits ``(B, T, V)``, state ``(1, B, R)``
    """

    def __init__(self, vocab_size: int, d_model: int, hidden_size: int, cell: str = "gru",
                 pad_id: int | None = None) -> None:
        super().__init__()
        _check_sizes(vocab_size, d_model, hidden_size, cell, pad_id)
        self.cell = cell
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.rnn = _layer(cell, d_model, hidden_size)
        self.out = nn.Linear(hidden_size, vocab_size)

    def forward(self, tgt_in: torch.Tensor, state: State, memory: torch.Tensor | None = None,
                src_mask: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
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
        """
        _check_decoder_inputs(self, tgt_in, state)
        h, state = self.rnn(self.embedding(tgt_in), state)  # (B, T, R)
        return self.out(h), state, None  # (B, T, V)


class AttentionDecoder(nn.Module):
    """A decoder that also reads the encoder's states through attention (Luong et al., 2015).

    After the recurrent step, the new state ``h_t`` is the query: it scores every encoder state
    ``m_s`` (the keys and values), the softmax turns the scores into weights, and the context
    ``c_t = sum_s a_ts m_s`` joins ``h_t`` in the prediction
    ``logits_t = W_out tanh(W_c [h_t; c_t])``. The score is a dot product (``"dot"``), a scaled
    one (``"scaled_dot"``) or Bahdanau's additive network (``"additive"``), from
    :mod:`lmlab.attention`. Because the query is the state *after* the step, the recurrent part
    runs over all teacher-forced inputs at once and attention is one batched call. The
    combination layer ``W_c`` (``2R x R`` weights) is what this decoder adds in parameters.

    Args:
        vocab_size: number of output symbols.
        d_model: width ``C`` of the symbol embeddings.
        hidden_size: width ``R`` of the recurrent state (and of the encoder's states).
        cell: ``"gru"`` or ``"lstm"``.
        attention: ``"dot"``, ``"scaled_dot"`` or ``"additive"``.
        pad_id: the padding symbol, or ``None``.

    Shape:
        tgt_in ``(B, T)``, state ``(1, B, R)``, memory ``(B, S, R)``, src_mask ``(B, S)`` ->
        logits ``(B, T, V)``, state ``(1, B, R)``, weights ``(B, T, S)``
    """

    def __init__(self, vocab_size: int, d_model: int, hidden_size: int, cell: str = "gru",
                 attention: str = "scaled_dot", pad_id: int | None = None) -> None:
        super().__init__()
        _check_sizes(vocab_size, d_model, hidden_size, cell, pad_id)
        check_choice("attention", attention, ATTENTIONS)
        R = hidden_size
        self.cell = cell
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.rnn = _layer(cell, d_model, hidden_size)
        if attention == "additive":
            self.attention: nn.Module = AdditiveAttention(R, R)
        else:
            self.attention = DotProductAttention(scaled=attention == "scaled_dot")
        self.combine = nn.Linear(2 * R, R)
        self.out = nn.Linear(R, vocab_size)

    def forward(self, tgt_in: torch.Tensor, state: State, memory: torch.Tensor | None = None,
                src_mask: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """As :meth:`Decoder.forward`, and also return the attention weights.

        Args:
            tgt_in: previous output symbols.
            state: the recurrent state to start from.
            memory: the encoder's states, the keys and values.
            src_mask: ``True`` on real source positions (``True = may attend``).

        Returns:
            ``(logits, state, weights)``.
        """
        _check_decoder_inputs(self, tgt_in, state)
        B = tgt_in.shape[0]
        R = self.rnn.hidden_size
        check_tensor("memory", memory, ndim=3, dtype="float")
        check_tensor("src_mask", src_mask, ndim=2, dtype="bool")
        assert memory is not None and src_mask is not None
        if memory.shape[0] != B or memory.shape[2] != R:
            raise ValueError(f"memory: expected shape (B, S, R) = ({B}, S, {R}), "
                             f"got {tuple(memory.shape)}")
        if tuple(src_mask.shape) != tuple(memory.shape[:2]):
            raise ValueError(f"src_mask: expected shape (B, S) = {tuple(memory.shape[:2])}, "
                             f"got {tuple(src_mask.shape)}")
        check_same_device(tgt_in=tgt_in, memory=memory, src_mask=src_mask)
        if memory.dtype != self.combine.weight.dtype:
            raise TypeError(f"memory: expected dtype {self.combine.weight.dtype} (the weights'), "
                            f"got {memory.dtype}")
        h, state = self.rnn(self.embedding(tgt_in), state)  # (B, T, R)
        context, weights = self.attention(h, memory, memory,
                                          src_mask[:, None, :])  # (B, T, R), (B, T, S)
        logits = self.out(torch.tanh(self.combine(torch.cat([h, context], dim=-1))))  # (B, T, V)
        return logits, state, weights
