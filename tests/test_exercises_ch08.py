"""Right and wrong answers for the checkers of chapter 8 (run by tests/test_exercises.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmlab.exercises.ch08 import exercise_8_1, exercise_8_2, exercise_8_3, exercise_8_4


def _nearest(table, row, k):
    unit = F.normalize(table, dim=-1)
    sims = unit @ unit[row]
    sims[row] = -2.0
    return sims.topk(k).indices.tolist()


def _nearest_by_dot_product(table, row, k):  # length counts: not a cosine
    sims = table @ table[row]
    sims[row] = -float("inf")
    return sims.topk(k).indices.tolist()


def _nearest_with_itself(table, row, k):
    unit = F.normalize(table, dim=-1)
    return (unit @ unit[row]).topk(k).indices.tolist()


def _bytes(config, dtype):
    size = torch.empty((), dtype=dtype).element_size()
    return 2 * config.num_layers * config.num_kv_heads * config.head_dim * size


def _bytes_query_heads(config, dtype):  # every query head cached
    size = torch.empty((), dtype=dtype).element_size()
    return 2 * config.num_layers * config.num_heads * config.head_dim * size


def _bytes_keys_only(config, dtype):
    size = torch.empty((), dtype=dtype).element_size()
    return config.num_layers * config.num_kv_heads * config.head_dim * size


def _kept(logits, temperature, p):
    probs, _ = (logits / temperature).softmax(-1).sort(descending=True)
    before = probs.cumsum(-1) - probs  # mass of the better tokens
    return int((before < p).sum())


def _kept_ignoring_temperature(logits, temperature, p):
    return _kept(logits, 1.0, p)


def _kept_strictly_above(logits, temperature, p):  # drops the token that crosses p
    probs, _ = (logits / temperature).softmax(-1).sort(descending=True)
    return int((probs.cumsum(-1) < p).sum())


def _read(model, layer, neuron):
    v = model.blocks[layer].ffn.down_proj.weight[:, neuron]
    gamma = model.norm.weight if model.norm is not None else torch.ones_like(v)
    return model.lm_head.weight @ (gamma * v)


def _read_without_gamma(model, layer, neuron):
    return model.lm_head.weight @ model.blocks[layer].ffn.down_proj.weight[:, neuron]


def _read_the_input_weights(model, layer, neuron):  # what the unit reads, not what it writes
    v = model.blocks[layer].ffn.up_proj.weight[neuron]
    gamma = model.norm.weight if model.norm is not None else torch.ones_like(v)
    return model.lm_head.weight @ (gamma * v)


ANSWERS = {
    "8.1": (lambda: _nearest, [lambda: _nearest_by_dot_product, lambda: _nearest_with_itself,
                               lambda: 3]),
    "8.2": (lambda: _bytes, [lambda: _bytes_query_heads, lambda: _bytes_keys_only]),
    "8.3": (lambda: _kept, [lambda: _kept_ignoring_temperature,
                            lambda: _kept_strictly_above]),
    "8.4": (lambda: _read, [lambda: _read_without_gamma, lambda: _read_the_input_weights]),
}


def test_the_hints_name_the_input() -> None:
    hint = str(exercise_8_1(_nearest_with_itself))
    assert "row 0" in hint and "left out" in hint
    assert "bytes per token: expected 46080" in str(exercise_8_2(_bytes_query_heads))
    assert "temperature 0.5" in str(exercise_8_3(_kept_ignoring_temperature))
    assert "rmsnorm" in str(exercise_8_4(_read_without_gamma))
