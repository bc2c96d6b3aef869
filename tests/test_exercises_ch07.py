"""Right and wrong answers for chapter 7's exercise checkers (see tests/test_exercises.py)."""

from __future__ import annotations

import math

import torch

from lmlab.generation import top_k_filter


def _temperature_top_k(logits, temperature, k):
    scaled = logits / temperature
    kth = scaled.topk(k, dim=-1).values[..., -1:]
    return scaled.masked_fill(scaled < kth, float("-inf"))


def _top_k_without_temperature(logits, temperature, k):
    return top_k_filter(logits, k)


def _top_k_plus_one(logits, temperature, k):
    scaled = logits / temperature
    kth = scaled.topk(min(k + 1, scaled.shape[-1]), dim=-1).values[..., -1:]
    return scaled.masked_fill(scaled < kth, float("-inf"))


def _nucleus(logits, p):
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    drop = probs.cumsum(-1) - probs >= p
    return logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))


def _nucleus_one_short(logits, p):  # drops the token that makes the mass reach p
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    drop = sorted_logits.softmax(-1).cumsum(-1) >= p
    drop[..., 0] = False
    return logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))


def _nucleus_on_scores(logits, p):  # sums raw scores, not probabilities
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    drop = sorted_logits.cumsum(-1) - sorted_logits >= p
    return logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))


ANSWERS = {
    "7.1": (lambda: _temperature_top_k,
            [lambda: _top_k_without_temperature, lambda: _top_k_plus_one,
             lambda: (lambda logits, t, k: logits.tolist())]),
    "7.2": (lambda: _nucleus,
            [lambda: _nucleus_one_short, lambda: _nucleus_on_scores,
             lambda: (lambda logits, p: 1 / 0)]),
    "7.3": (lambda: (lambda nats, tokens, chars: nats * tokens / math.log(2) / chars),
            [lambda: (lambda nats, tokens, chars: nats * tokens / chars),
             lambda: (lambda nats, tokens, chars: nats / math.log(2)),
             lambda: (lambda nats, tokens, chars: nats * tokens / math.log(10) / chars)]),
    "7.4": (lambda: (lambda c, size: 2 * c.num_layers * c.num_kv_heads * c.head_dim * size),
            [lambda: (lambda c, size: 2 * c.num_layers * c.num_heads * c.head_dim * size),
             lambda: (lambda c, size: c.num_layers * c.num_kv_heads * c.head_dim * size),
             lambda: (lambda c, size: 2 * c.num_layers * c.d_model * 4)]),
}


def test_the_hints_name_the_mistake() -> None:
    from lmlab.exercises.ch07 import exercise_7_1, exercise_7_3, exercise_7_4

    assert "before dividing by the temperature" in str(exercise_7_1(_top_k_without_temperature))
    assert "nats per character" in str(exercise_7_3(lambda n, t, c: n * t / c))
    assert "num_kv_heads" in str(exercise_7_4(
        lambda c, s: 2 * c.num_layers * c.num_heads * c.head_dim * s))
    assert torch.isinf(_temperature_top_k(torch.tensor([1.0, 2.0, 3.0]), 1.0, 2)).sum() == 1
