"""Checkers for the exercises of chapter 7, *A GPT on Shakespeare*.

* :func:`exercise_7_1` -- temperature, then top-k, written by the reader;
* :func:`exercise_7_2` -- nucleus (top-p) filtering, written by the reader;
* :func:`exercise_7_3` -- bits per character from a loss in nats per token;
* :func:`exercise_7_4` -- the bytes a key/value cache holds per token.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lmlab.exercises import AnswerError, Verdict, call, first_failure, mismatch, verdict
from lmlab.generation import apply_temperature, top_k_filter, top_p_filter
from lmlab.transformer_config import TransformerConfig, kv_cache_bytes_per_token

__all__ = ["exercise_7_1", "exercise_7_2", "exercise_7_3", "exercise_7_4"]


def _logits(seed: int, *shape: int) -> torch.Tensor:
    """Continuous random scores (no ties) of the given shape."""
    return 3 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _filtered(name: str, got: Any, expected: torch.Tensor) -> str | None:
    """Compare a filtered score tensor, naming the kept/dropped tokens when they differ."""
    if not isinstance(got, torch.Tensor):
        raise AnswerError(f"{name}: expected a tensor of shape {tuple(expected.shape)}, got "
                          f"{type(got).__name__}")
    if got.shape == expected.shape:
        kept, want = got.isfinite(), expected.isfinite()
        if not torch.equal(kept, want):
            return (f"{name}: expected {int(want.sum())} tokens kept (finite), got "
                    f"{int(kept.sum())} (the rest must be -inf)")
        got = got.masked_fill(~kept, 0.0)
        expected = expected.masked_fill(~want, 0.0)
    return mismatch(got, expected, what=name, atol=1e-5)


def exercise_7_1(filter_logits: Any) -> Verdict:
    """Check ``filter_logits(logits, temperature, k)``: divide by the temperature, then keep
    the ``k`` best scores and set the others to ``-inf``.

    Args:
        filter_logits: the reader's function; ``logits`` ``(..., V)``, ``temperature > 0``,
            ``1 <= k <= V``; it returns a tensor of ``logits``' shape.

    Returns:
        The verdict: correct when the result equals
        ``top_k_filter(apply_temperature(logits, temperature), k)`` on the checker's inputs.
    """
    cases = [("one row of 10 scores, temperature 0.5, k=3", _logits(71, 10), 0.5, 3),
             ("one row, temperature 2.0, k=1", _logits(72, 10), 2.0, 1),
             ("a batch (4, 50), temperature 0.8, k=5", _logits(73, 4, 50), 0.8, 5),
             ("k equal to the vocabulary (8), temperature 1.5", _logits(74, 8), 1.5, 8)]

    def check(logits: torch.Tensor, t: float, k: int) -> str | None:
        got = call(filter_logits, logits.clone(), t, k, what="filter_logits")
        expected = top_k_filter(apply_temperature(logits, t), k)
        hint = _filtered("the filtered scores", got, expected)
        if hint is not None and isinstance(got, torch.Tensor) and got.shape == logits.shape:
            if torch.equal(got.isfinite(), expected.isfinite()) and torch.allclose(
                    got.masked_fill(~got.isfinite(), 0), top_k_filter(logits, k).masked_fill(
                        ~expected.isfinite(), 0)):
                hint += " (these are the scores before dividing by the temperature)"
        return hint

    hint = first_failure([(label, lambda x=x, t=t, k=k: check(x, t, k))
                          for label, x, t, k in cases])
    return verdict("7.1", hint, "Your filter agrees with lmlab.generation on every input.")


def exercise_7_2(nucleus: Any) -> Verdict:
    """Check ``nucleus(logits, p)``: keep the smallest set of best tokens whose probabilities
    sum to at least ``p``, set the other scores to ``-inf``.

    Args:
        nucleus: the reader's function; ``logits`` ``(..., V)``, ``0 < p <= 1``.

    Returns:
        The verdict: correct when the result equals :func:`lmlab.generation.top_p_filter`.
    """
    peaked = torch.tensor([4.0, 1.0, 0.5, 0.0, -1.0, -2.0])
    cases = [("6 scores, one dominant token, p=0.5", peaked, 0.5),
             ("the same scores, p=0.95", peaked, 0.95),
             ("a row of 100 scores, p=0.9", _logits(75, 100), 0.9),
             ("a batch (3, 40), p=0.7", _logits(76, 3, 40), 0.7),
             ("p=1.0 keeps every token", _logits(77, 12), 1.0)]

    def check(logits: torch.Tensor, p: float) -> str | None:
        got = call(nucleus, logits.clone(), p, what="nucleus")
        return _filtered("the filtered scores", got, top_p_filter(logits, p))

    hint = first_failure([(label, lambda x=x, p=p: check(x, p)) for label, x, p in cases])
    return verdict("7.2", hint, "Your nucleus filter agrees with lmlab.generation.top_p_filter.")


def exercise_7_3(bits_per_char: Any) -> Verdict:
    """Check ``bits_per_char(nats_per_token, tokens, chars)``: the total loss in bits over
    the number of characters.

    Args:
        bits_per_char: the reader's function of the mean loss (nats per token), the number of
            tokens scored and the number of characters they spell.

    Returns:
        The verdict: correct when the result is ``nats_per_token * tokens / ln 2 / chars``.
    """
    cases = [(4.2143, 130_418, 412_856), (math.log(4096), 1000, 3200), (1.0, 10, 10),
             (2.5, 300, 1200)]

    def check(nats: float, tokens: int, chars: int) -> str | None:
        got = call(bits_per_char, nats, tokens, chars, what="bits_per_char")
        expected = nats * tokens / math.log(2) / chars
        hint = mismatch(got, expected, what="bits per character", rtol=1e-6)
        if hint is not None and isinstance(got, (int, float)):
            if math.isclose(got, nats * tokens / chars, rel_tol=1e-6):
                hint += " (that is nats per character: divide by ln 2 to get bits)"
            elif math.isclose(got, nats / math.log(2), rel_tol=1e-6):
                hint += " (that is bits per token: spread the total over the characters)"
        return hint

    hint = first_failure([(f"{n} nats/token, {t:,} tokens, {c:,} characters",
                           lambda n=n, t=t, c=c: check(n, t, c)) for n, t, c in cases])
    return verdict("7.3", hint, "The header's figures give 1.92 bits per character.")


def exercise_7_4(cache_bytes: Any) -> Verdict:
    """Check ``cache_bytes(config, bytes_per_value)``: the bytes a key/value cache holds per
    token of one sequence.

    Args:
        cache_bytes: the reader's function of a :class:`TransformerConfig` and the size of
            one stored number (4 for float32, 2 for bfloat16).

    Returns:
        The verdict: correct when the result equals
        :func:`lmlab.transformer_config.kv_cache_bytes_per_token`.
    """
    dtypes = {4: torch.float32, 2: torch.bfloat16}
    gpt = TransformerConfig(vocab_size=4096, context_length=256, d_model=160, num_layers=6,
                            num_heads=5)
    cases = [("the chapter's GPT (6 layers, 5 heads of 32), float32", gpt, 4),
             ("the same in bfloat16", gpt, 2),
             ("SmolLM2-135M's config (30 layers, 9 query heads, 3 key/value heads of 64), "
              "bfloat16", TransformerConfig.smollm2(), 2),
             ("TransformerConfig.tiny() (2 layers, 4 heads of 16), float32",
              TransformerConfig.tiny(), 4)]

    def check(config: TransformerConfig, size: int) -> str | None:
        got = call(cache_bytes, config, size, what="cache_bytes")
        expected = kv_cache_bytes_per_token(config, dtypes[size])
        hint = mismatch(got, expected, what="bytes per token", atol=0, rtol=0)
        if hint is not None and isinstance(got, (int, float)):
            D, L = config.head_dim, config.num_layers
            if got == 2 * L * config.num_heads * D * size and config.num_kv_heads < \
                    config.num_heads:
                hint += " (the cache stores num_kv_heads heads, not num_heads)"
            elif got == expected / 2:
                hint += " (a cache stores keys and values: two tensors)"
        return hint

    hint = first_failure([(label, lambda c=c, s=s: check(c, s)) for label, c, s in cases])
    return verdict("7.4", hint, "Your count agrees with kv_cache_bytes_per_token.")
