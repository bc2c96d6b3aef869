"""Checkers for chapter 9, attention variants (``Exercise 9.1`` ... ``Exercise 9.4``).

* 9.1: the bytes a key/value cache holds, for any config and dtype;
* 9.2: a causal sliding-window mask, built by hand;
* 9.3: the merge of two partial attention results (the online softmax's step);
* 9.4: how many tiles a block-sparse sliding window keeps.

Each checker runs the reader's function on inputs of its own and compares with ``lmlab``.
"""

from __future__ import annotations

from typing import Any

import torch

from lmlab.blockwise import attend_block, merge_partials
from lmlab.exercises import call, first_failure, mismatch, verdict
from lmlab.exercises import Verdict
from lmlab.sparse import SparsePattern, sliding_window_mask
from lmlab.transformer_config import TransformerConfig, kv_cache_bytes_per_token

__all__ = ["exercise_9_1", "exercise_9_2", "exercise_9_3", "exercise_9_4"]


def _count_mismatch(got: Any, expected: int, what: str) -> str | None:
    """``None`` when ``got`` is the whole number ``expected``, else the hint, with commas."""
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, float) and got.is_integer():
        got = int(got)
    if isinstance(got, bool) or not isinstance(got, int):
        return mismatch(got, expected, what=what, atol=0, rtol=0)
    return None if got == expected else f"{what}: expected {expected:,}, got {got:,}"


def exercise_9_1(answer: Any) -> Verdict:
    """Check ``answer(config, num_tokens, dtype) -> int``: the bytes of a KV cache.

    The cache of one sequence of ``num_tokens`` tokens, keys and values of every layer, in
    ``dtype``. Tried on SmolLM2 with 9, 3 and 1 key/value heads, GPT-2 small and the tiny
    config, in float32, bfloat16 and float16, against :func:`kv_cache_bytes_per_token`.
    """
    smollm2 = TransformerConfig.smollm2()
    configs = {
        "SmolLM2 as MHA (9 kv heads)": smollm2.replace(num_kv_heads=9),
        "SmolLM2 (3 kv heads)": smollm2,
        "SmolLM2 as MQA (1 kv head)": smollm2.replace(num_kv_heads=1),
        "GPT-2 small": TransformerConfig.gpt2_small(),
        "TransformerConfig.tiny()": TransformerConfig.tiny(),
    }
    cases = []
    for name, config in configs.items():
        for dtype, tokens in ((torch.float32, 8192), (torch.bfloat16, 1000),
                              (torch.float16, 1)):
            def check(config=config, dtype=dtype, tokens=tokens):
                got = call(answer, config, tokens, dtype)
                expected = kv_cache_bytes_per_token(config, dtype) * tokens
                return _count_mismatch(got, expected, "bytes")
            cases.append((f"{name}, {tokens} tokens in {dtype}", check))
    return verdict("9.1", first_failure(cases),
                   "The cache scales with the key/value heads G, not the query heads.")


def exercise_9_2(answer: Any) -> Verdict:
    """Check ``answer(T, window) -> (T, T) bool``: the causal sliding-window mask.

    ``True`` where query ``i`` may attend to key ``j``: ``0 <= i - j < window``. Tried on
    several lengths and windows (a window of 1 and one longer than the sequence included),
    against :func:`lmlab.sparse.sliding_window_mask`.
    """
    cases = []
    for T, window in ((8, 3), (5, 1), (6, 6), (4, 10), (33, 7)):
        def check(T=T, window=window):
            got = call(answer, T, window)
            expected = sliding_window_mask(T, window)
            if isinstance(got, torch.Tensor) and got.dtype != torch.bool:
                return f"expected a bool tensor (True = may attend), got dtype {got.dtype}"
            return mismatch(got, expected, what="the mask (True = may attend)")
        cases.append((f"T={T}, window={window}", check))
    return verdict("9.2", first_failure(cases),
                   "A window as long as the sequence is the plain causal mask.")


def _partials(seed: int, empty_rows: bool) -> tuple[torch.Tensor, ...]:
    """Two partial results of 5 queries over two blocks of keys (4 and 6 keys)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, 5, 8, generator=g)
    k, v = 3 * torch.randn(2, 10, 8, generator=g), torch.randn(2, 10, 4, generator=g)
    mask_a = None
    if empty_rows:  # queries 0 and 3 may attend to no key of the first block
        mask_a = torch.ones(5, 4, dtype=torch.bool)
        mask_a[[0, 3]] = False
    a = attend_block(q, k[:, :4], v[:, :4], scale=8**-0.5, mask=mask_a)
    b = attend_block(q, k[:, 4:], v[:, 4:], scale=8**-0.5)
    return (*a, *b)


def exercise_9_3(answer: Any) -> Verdict:
    """Check ``answer(out_a, lse_a, out_b, lse_b) -> (out, lse)``: merge two partial results.

    Tried on partial results over two blocks of keys, once with scores large enough to
    overflow a plain ``exp``, once with queries that may attend to no key of the first block
    (``lse = -inf``, ``out = 0``), against :func:`lmlab.blockwise.merge_partials`.
    """
    cases = []
    for label, seed, empty in (("two blocks of keys", 0, False),
                               ("two blocks, scores times 100", 1, False),
                               ("queries 0 and 3 see no key of block a (lse_a = -inf)", 2,
                                True)):
        def check(seed=seed, empty=empty, label=label):
            parts = list(_partials(seed, empty))
            if "times 100" in label:  # log-sum-exps near 100: exp() of them overflows float32
                parts[1], parts[3] = parts[1] + 100, parts[3] + 100
            expected = merge_partials(*parts)
            got = call(answer, *(p.clone() for p in parts), what="your merge")
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                return f"expected a pair (out, lse), got {type(got).__name__}"
            return (mismatch(got[0], expected[0], what="out", atol=1e-5)
                    or mismatch(got[1], expected[1], what="lse", atol=1e-5))
        cases.append((label, check))
    return verdict("9.3", first_failure(cases),
                   "Each side is weighted by exp(its lse - the merged lse).")


def exercise_9_4(answer: Any) -> Verdict:
    """Check ``answer(T, window, block_size) -> int``: tiles a causal sliding window keeps.

    The number of ``block_size x block_size`` tiles of the ``T x T`` causal window mask that
    hold any allowed entry, for ``T`` a multiple of ``block_size``. Tried on several lengths,
    windows and tile sizes against :meth:`lmlab.sparse.SparsePattern.layout`.
    """
    cases = []
    for T, window, block in ((4096, 256, 128), (8192, 256, 128), (1024, 64, 64),
                             (1024, 100, 64), (512, 1, 32), (256, 1000, 32), (96, 50, 32)):
        def check(T=T, window=window, block=block):
            got = call(answer, T, window, block)
            expected = int(SparsePattern(window=window).layout(T, block).sum())
            return _count_mismatch(got, expected, "tiles kept")
        cases.append((f"T={T}, window={window}, block_size={block}", check))
    return verdict("9.4", first_failure(cases),
                   "With the window fixed, the tiles, and the work, grow like T.")
