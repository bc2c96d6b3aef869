"""Tests of lmlab.rnn against torch.nn.GRU/LSTM and their cells."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lmlab import rnn
from lmlab.device import seed_everything


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- cells vs torch


@pytest.mark.parametrize("kind", ["gru", "lstm"])
@pytest.mark.parametrize("B,T,C,R", [(1, 1, 3, 2), (4, 7, 5, 8), (2, 12, 16, 32)])
@pytest.mark.parametrize("with_state", [False, True])
def test_unroll_matches_torch(kind: str, B: int, T: int, C: int, R: int, with_state: bool) -> None:
    seed_everything(0)
    layer = (nn.GRU if kind == "gru" else nn.LSTM)(C, R, batch_first=True)
    x = torch.randn(B, T, C)
    state = None
    if with_state:
        state = torch.randn(1, B, R) if kind == "gru" else (torch.randn(1, B, R), torch.randn(1, B, R))
    ref_out, ref_state = layer(x, state)
    out, final = rnn.unroll(layer, x, state)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    if kind == "gru":
        torch.testing.assert_close(final, ref_state, rtol=1e-5, atol=1e-5)
    else:
        for a, b in zip(final, ref_state):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_gru_cell_matches_torch_grucell() -> None:
    seed_everything(1)
    cell = nn.GRUCell(6, 4)
    x, h = torch.randn(3, 6), torch.randn(3, 4)
    ours = rnn.gru_cell(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    torch.testing.assert_close(ours, cell(x, h))


def test_lstm_cell_matches_torch_lstmcell() -> None:
    seed_everything(2)
    cell = nn.LSTMCell(6, 4)
    x, h, c = torch.randn(3, 6), torch.randn(3, 4), torch.randn(3, 4)
    ours = rnn.lstm_cell(x, (h, c), cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    for a, b in zip(ours, cell(x, (h, c))):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_unroll_refuses_a_state_without_the_layer_axis(kind: str) -> None:
    """Issue 8: a (B, R) state used to run every sequence from the first one's state."""
    layer = (nn.GRU if kind == "gru" else nn.LSTM)(3, 4, batch_first=True)
    x = torch.randn(2, 5, 3)
    h = torch.randn(2, 4)
    state = h if kind == "gru" else (h, h)
    name = "state" if kind == "gru" else r"state\[0\]"
    with pytest.raises(ValueError, match=rf"^{name}: expected shape \(1, B, R\).*state\[None\]"):
        rnn.unroll(layer, x, state)
    with pytest.raises((ValueError, RuntimeError)):
        layer(x, state)  # torch refuses it too


# --------------------------------------------------------------------------- encoder, decoders


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_encoder_matches_the_layer_on_each_sequence_alone(cell: str) -> None:
    seed_everything(3)
    enc = rnn.Encoder(10, 6, 8, cell, pad_id=0)
    src = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    memory, state = enc(src, torch.tensor([4, 2]))
    alone, _ = enc.rnn(enc.embedding(src[1:, :2]))
    torch.testing.assert_close(memory[1, :2], alone[0], rtol=1e-5, atol=1e-6)
    assert torch.all(memory[1, 2:] == 0)
    h = state if cell == "gru" else state[0]
    torch.testing.assert_close(h[0, 1], alone[0, -1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attention", rnn.ATTENTIONS)
def test_attention_decoder_adds_exactly_the_combination_layer(attention: str) -> None:
    plain = rnn.Decoder(11, 6, 8)
    attn = rnn.AttentionDecoder(11, 6, 8, attention=attention)
    extra = sum(p.numel() for p in attn.parameters()) - sum(p.numel() for p in plain.parameters())
    combine = 2 * 8 * 8 + 8  # W_c: [h; c] (2R) -> R, with bias
    scores = 2 * 8 * 8 + 8 if attention == "additive" else 0  # w_q, w_k (R x R), w_v (R)
    assert extra == combine + scores


def test_decoders_step_by_step_equal_teacher_forcing() -> None:
    seed_everything(4)
    dec = rnn.AttentionDecoder(9, 5, 7, attention="additive")
    memory, mask = torch.randn(2, 4, 7), torch.tensor([[True] * 4, [True, True, False, False]])
    tgt, state = torch.randint(0, 9, (2, 3)), torch.randn(1, 2, 7)
    full, _, weights = dec(tgt, state, memory, mask)
    s, steps = state, []
    for t in range(3):
        logits, s, _ = dec(tgt[:, t:t + 1], s, memory, mask)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-6)
    assert torch.all(weights[1, :, 2:] == 0)


# --------------------------------------------------------------------------- bad input


def _layer() -> nn.GRU:
    return nn.GRU(3, 4, batch_first=True)


W = (torch.zeros(12, 3), torch.zeros(12, 4), torch.zeros(12), torch.zeros(12))
WL = (torch.zeros(16, 3), torch.zeros(16, 4), torch.zeros(16), torch.zeros(16))
ENC = rnn.Encoder(10, 6, 8)
DEC = rnn.Decoder(10, 6, 8)
ADEC = rnn.AttentionDecoder(10, 6, 8)
LDEC = rnn.Decoder(10, 6, 8, cell="lstm")
MEM, MASK, H = torch.zeros(2, 4, 8), torch.ones(2, 4, dtype=torch.bool), torch.zeros(1, 2, 8)
IDS = torch.ones(2, 3, dtype=torch.long)


@pytest.mark.parametrize("call, error, match", [
    (lambda: rnn.gru_cell(torch.zeros(2, 3).long(), torch.zeros(2, 4), *W), TypeError, "x"),
    (lambda: rnn.gru_cell(torch.zeros(2, 3), torch.zeros(3, 4), *W), ValueError, "h"),
    (lambda: rnn.gru_cell(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(12, 5), *W[1:]),
     ValueError, "weight_ih"),
    (lambda: rnn.gru_cell(torch.zeros(2, 3), torch.zeros(2, 4), *WL), ValueError, "weight_ih"),
    (lambda: rnn.gru_cell(torch.zeros(3), torch.zeros(2, 4), *W), ValueError, "x"),
    (lambda: rnn.lstm_cell(torch.zeros(2, 3), torch.zeros(2, 4), *WL), TypeError, "state"),
    (lambda: rnn.lstm_cell(torch.zeros(2, 3), (torch.zeros(2, 4), torch.zeros(2, 5)), *WL),
     ValueError, r"state\[1\]"),
    (lambda: rnn.unroll(nn.Linear(3, 4), torch.zeros(1, 2, 3)), TypeError, "rnn"),
    (lambda: rnn.unroll(nn.GRU(3, 4, num_layers=2, batch_first=True), torch.zeros(1, 2, 3)),
     ValueError, "rnn"),
    (lambda: rnn.unroll(nn.GRU(3, 4), torch.zeros(1, 2, 3)), ValueError, "rnn"),
    (lambda: rnn.unroll(_layer(), torch.zeros(1, 2, 5)), ValueError, "x"),
    (lambda: rnn.unroll(_layer(), torch.zeros(0, 2, 3)), ValueError, "x"),
    (lambda: rnn.unroll(_layer(), torch.zeros(1, 2, 3).long()), TypeError, "x"),
    (lambda: rnn.unroll(_layer(), [[[0.0] * 3]]), TypeError, "x"),
    (lambda: rnn.unroll(_layer(), torch.zeros(2, 2, 3), torch.zeros(1, 3, 4)), ValueError, "state"),
    (lambda: rnn.unroll(_layer(), torch.zeros(2, 2, 3), (H, H)), TypeError, "state"),
    (lambda: rnn.unroll(nn.LSTM(3, 4, batch_first=True), torch.zeros(2, 2, 3), torch.zeros(1, 2, 4)),
     TypeError, "state"),
    (lambda: rnn.Encoder(0, 6, 8), ValueError, "vocab_size"),
    (lambda: rnn.Encoder(10, 6.0, 8), TypeError, "d_model"),
    (lambda: rnn.Encoder(10, 6, -1), ValueError, "hidden_size"),
    (lambda: rnn.Encoder(10, 6, 8, cell="rnn"), ValueError, "cell"),
    (lambda: rnn.Encoder(10, 6, 8, pad_id=10), ValueError, "pad_id"),
    (lambda: rnn.Decoder(10, 6, 8, pad_id=-1), ValueError, "pad_id"),
    (lambda: rnn.AttentionDecoder(10, 6, 8, attention="cosine"), ValueError, "attention"),
    (lambda: rnn.AttentionDecoder(10, 6, 8, attention=None), ValueError, "attention"),
    (lambda: ENC(IDS.float(), torch.tensor([3, 3])), TypeError, "src"),
    (lambda: ENC(IDS * 10, torch.tensor([3, 3])), ValueError, "src"),
    (lambda: ENC(IDS[:, :0], torch.tensor([0, 0])), ValueError, "src"),
    (lambda: ENC(IDS, torch.tensor([3, 4])), ValueError, "src_lengths"),
    (lambda: ENC(IDS, torch.tensor([3, 0])), ValueError, "src_lengths"),
    (lambda: ENC(IDS, torch.tensor([3])), ValueError, "src_lengths"),
    (lambda: ENC(IDS, torch.tensor([3.0, 3.0])), TypeError, "src_lengths"),
    (lambda: DEC(IDS, H[:, :1]), ValueError, "state"),
    (lambda: DEC(IDS, H[0]), ValueError, "state"),
    (lambda: DEC(-IDS, H), ValueError, "tgt_in"),
    (lambda: LDEC(IDS, H), TypeError, "state"),
    (lambda: ADEC(IDS, H, MEM[:, :, :5], MASK), ValueError, "memory"),
    (lambda: ADEC(IDS, H, MEM, MASK[:, :3]), ValueError, "src_mask"),
    (lambda: ADEC(IDS, H, MEM, MASK.long()), TypeError, "src_mask"),
    (lambda: ADEC(IDS, H, None, MASK), TypeError, "memory"),
    # mixed dtypes: a raw "mat1 and mat2 must have the same dtype" before
    (lambda: rnn.gru_cell(torch.zeros(2, 3).double(), torch.zeros(2, 4), *W), TypeError,
     "x, h, weight_ih, weight_hh, bias_ih, bias_hh: expected one dtype"),
    (lambda: rnn.gru_cell(torch.zeros(2, 3), torch.zeros(2, 4), *W[:3], W[3].half()), TypeError,
     "x, h, .*: expected one dtype, .*bias_hh torch.float16"),
    (lambda: rnn.lstm_cell(torch.zeros(2, 3), (torch.zeros(2, 4), torch.zeros(2, 4).double()),
                           *WL), TypeError, r"state\[0\], state\[1\]: expected one dtype"),
    (lambda: rnn.gru_cell(torch.zeros(2, 3), torch.zeros(2, 4), *W[:3], W[3].to("meta")),
     ValueError, "x, h, .*: expected tensors on one device"),
    (lambda: rnn.lstm_cell(torch.zeros(2, 3), (torch.zeros(2, 4, device="meta"),) * 2, *WL),
     ValueError, r"x, state\[0\], .*: expected tensors on one device"),
    (lambda: rnn.unroll(_layer(), torch.zeros(1, 2, 3).double()), TypeError,
     "x: expected dtype torch.float32"),
    (lambda: rnn.unroll(_layer(), torch.zeros(1, 2, 3), torch.zeros(1, 1, 4).double()), TypeError,
     "state: expected dtype torch.float32"),
    (lambda: rnn.unroll(_layer(), torch.zeros(1, 2, 3, device="meta")), ValueError,
     "x, weight: expected tensors on one device"),
    (lambda: DEC(IDS, H.double()), TypeError, "state: expected dtype torch.float32"),
    (lambda: LDEC(IDS, (H, H.half())), TypeError, r"state\[1\]: expected dtype torch.float32"),
    (lambda: ADEC(IDS, H, MEM.double(), MASK), TypeError, "memory: expected dtype torch.float32"),
    (lambda: DEC(IDS, H.to("meta")), ValueError, "state: on meta but the weights are on cpu"),
    # meta tensors: no values to check ("Tensor.item() cannot be called" before)
    (lambda: ENC(IDS.to("meta"), torch.tensor([3, 3])), ValueError, "src: on meta but the model"),
    (lambda: rnn.Encoder(10, 6, 8).to("meta")(IDS.to("meta"), torch.tensor([3, 3])), ValueError,
     "src: expected a tensor with values, got a meta tensor"),
    (lambda: ENC(IDS, torch.tensor([3, 3], device="meta")), ValueError,
     "src_lengths: expected a tensor with values"),
    (lambda: DEC(IDS.to("meta"), H), ValueError, "tgt_in: on meta but the model is on cpu"),
    (lambda: DEC(IDS * 10, H), ValueError, r"tgt_in: expected ids in \[0, 10\), got values from"),
])
def test_bad_input_names_the_parameter(call, error, match) -> None:
    with pytest.raises(error, match=f"^{match}"):
        call()


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_unroll_on_gpu_matches_cpu(gpu_device: torch.device, kind: str) -> None:
    seed_everything(5)
    layer = (nn.GRU if kind == "gru" else nn.LSTM)(5, 8, batch_first=True)
    x = torch.randn(3, 6, 5)
    out, _ = rnn.unroll(layer, x)
    gpu_out, _ = rnn.unroll(layer.to(gpu_device), x.to(gpu_device))
    torch.testing.assert_close(gpu_out.cpu(), out, rtol=1e-3, atol=1e-3)


@torch._dynamo.config.patch(allow_rnn=True)  # dynamo traces nn.GRU only when asked
def test_decoder_step_compiles_without_graph_break() -> None:
    decoder = rnn.Decoder(10, 6, 8).eval()
    step = torch.compile(decoder, backend="eager", fullgraph=True)
    ids = torch.tensor([[3], [4]])
    logits, state, _ = step(ids, H)
    torch.testing.assert_close(logits, decoder(ids, H)[0])
    with pytest.raises(RuntimeError, match=r"tgt_in: expected ids in \[0, 10\)"):
        step(ids * 5, H)  # id 20: still checked, on the device
    torch._dynamo.reset()
