"""Right and wrong answers to chapter 9's exercises, for ``tests/test_exercises.py``.

``ANSWERS = {"9.M": (right, [wrong, ...])}``: zero-argument functions returning the answer
given to ``lmlab.exercises.ch09.exercise_9_M``. The wrong answers are the mistakes a reader
makes: counting query heads instead of key/value heads, a window off by one, a merge that
overflows or ignores the log-sum-exps, a tile count that forgets the first blocks.
"""

from __future__ import annotations

import torch

from lmlab.exercises.ch09 import exercise_9_1, exercise_9_3


def _item_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def cache_bytes(config, num_tokens, dtype):
    per_token = 2 * config.num_layers * config.num_kv_heads * config.head_dim
    return per_token * _item_size(dtype) * num_tokens


def cache_bytes_query_heads(config, num_tokens, dtype):  # as if every query head had its own
    per_token = 2 * config.num_layers * config.num_heads * config.head_dim
    return per_token * _item_size(dtype) * num_tokens


def cache_bytes_keys_only(config, num_tokens, dtype):  # forgets the values
    return config.num_layers * config.num_kv_heads * config.head_dim * _item_size(dtype) \
        * num_tokens


def cache_bytes_float32(config, num_tokens, dtype):  # ignores the dtype
    return 2 * config.num_layers * config.num_kv_heads * config.head_dim * 4 * num_tokens


def window_mask(T, window):
    d = torch.arange(T)[:, None] - torch.arange(T)[None, :]  # i - j
    return (d >= 0) & (d < window)


def window_mask_both_sides(T, window):  # not causal
    d = torch.arange(T)[:, None] - torch.arange(T)[None, :]
    return d.abs() < window


def window_mask_one_too_many(T, window):
    d = torch.arange(T)[:, None] - torch.arange(T)[None, :]
    return (d >= 0) & (d <= window)


def window_mask_ints(T, window):
    return window_mask(T, window).int()


def merge(out_a, lse_a, out_b, lse_b):
    lse = torch.logaddexp(lse_a, lse_b)
    return (torch.exp(lse_a - lse)[..., None] * out_a
            + torch.exp(lse_b - lse)[..., None] * out_b), lse


def merge_naive_exp(out_a, lse_a, out_b, lse_b):  # exp() of the log-sum-exps overflows
    a, b = torch.exp(lse_a), torch.exp(lse_b)
    return (a[..., None] * out_a + b[..., None] * out_b) / (a + b)[..., None], torch.log(a + b)


def merge_average(out_a, lse_a, out_b, lse_b):  # ignores how much weight each block holds
    return (out_a + out_b) / 2, torch.maximum(lse_a, lse_b)


def merge_no_lse(out_a, lse_a, out_b, lse_b):  # right output, but returns only it
    return merge(out_a, lse_a, out_b, lse_b)[0]


def tiles(T, window, block_size):
    n = T // block_size
    reach = (window + block_size - 2) // block_size  # key blocks back a query block can see
    return sum(min(a, reach) + 1 for a in range(n))


def tiles_three_per_row(T, window, block_size):  # forgets the first query blocks
    return 3 * (T // block_size)


def tiles_window_over_block(T, window, block_size):  # misses a window that straddles tiles
    n, reach = T // block_size, window // block_size
    return sum(min(a, reach) + 1 for a in range(n))


ANSWERS = {
    "9.1": (lambda: cache_bytes, [lambda: cache_bytes_query_heads,
                                  lambda: cache_bytes_keys_only,
                                  lambda: cache_bytes_float32, lambda: 46080]),
    "9.2": (lambda: window_mask, [lambda: window_mask_both_sides,
                                  lambda: window_mask_one_too_many,
                                  lambda: window_mask_ints]),
    "9.3": (lambda: merge, [lambda: merge_naive_exp, lambda: merge_average,
                            lambda: merge_no_lse]),
    "9.4": (lambda: tiles, [lambda: tiles_three_per_row,
                            lambda: tiles_window_over_block]),
}


def test_the_cache_of_smollm2_and_its_variants() -> None:
    from lmlab.transformer_config import TransformerConfig

    smollm2 = TransformerConfig.smollm2()  # 30 layers, 3 kv heads of 64: 45 KiB per token
    assert cache_bytes(smollm2, 1, torch.float32) == 46080
    # MHA in bfloat16: keys and values x 30 layers x 9 heads x 64 x 2 bytes x 8192 tokens
    assert cache_bytes(smollm2.replace(num_kv_heads=9), 8192, torch.bfloat16) == 566_231_040
    assert exercise_9_1(cache_bytes)


def test_the_merge_hint_names_the_overflowing_case() -> None:
    bad = exercise_9_3(merge_naive_exp)
    assert not bad and "times 100" in bad.message, bad
