"""Checkers for the exercises of chapter 6, *Transformer blocks*.

* :func:`exercise_6_1` -- one head of scaled dot-product attention, written by the reader;
* :func:`exercise_6_2` -- how many query-key pairs a causal mask hides;
* :func:`exercise_6_3` -- what more heads cost in parameters;
* :func:`exercise_6_4` -- a rotary position rotation, written by the reader.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lmlab.attention import causal_mask, scaled_dot_product_attention
from lmlab.exercises import AnswerError, Verdict, call, compare, first_failure, mismatch, verdict
from lmlab.positions import apply_rotary, rotary_cos_sin
from lmlab.sublayers import MultiHeadAttention

__all__ = ["exercise_6_1", "exercise_6_2", "exercise_6_3", "exercise_6_4"]


def _tensor(name: str, got: Any, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise AnswerError(f"{name}: expected a tensor of shape {shape}, got "
                          f"{type(got).__name__}")
    return got


def exercise_6_1(attention: Any) -> Verdict:
    """Check ``attention(q, k, v, mask)``: one head, ``softmax(q k^T / sqrt(D)) v``.

    Args:
        attention: the reader's function; ``q`` ``(T, D)``, ``k`` and ``v`` ``(S, D)``,
            ``mask`` ``None`` or boolean ``(T, S)`` with ``True = may attend``; it returns
            the output ``(T, D)``.

    Returns:
        The verdict: correct when the output matches
        :func:`lmlab.attention.scaled_dot_product_attention` on the checker's inputs.
    """
    g = torch.Generator().manual_seed(61)
    cases = []
    for T, S, D, masked in ((4, 4, 8, None), (5, 5, 4, "causal"), (3, 6, 16, "some keys")):
        q, k, v = (torch.randn(n, D, generator=g) for n in (T, S, S))
        if masked == "causal":
            mask = causal_mask(T)
        elif masked == "some keys":
            mask = torch.tensor([True, False, True, True, False, True]).expand(T, S)
        else:
            mask = None
        cases.append((f"T={T}, S={S}, D={D}, mask: {masked or 'none'}", q, k, v, mask))

    def check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Any) -> str | None:
        got = call(attention, q, k, v, mask, what="attention")
        expected = scaled_dot_product_attention(q, k, v, mask)[0]
        hint = mismatch(_tensor("the output", got, tuple(expected.shape)), expected,
                        what="the output", atol=1e-5)
        if hint is not None and got.shape == expected.shape:
            unscaled = scaled_dot_product_attention(q, k, v, mask, scale=1.0)[0]
            unmasked = scaled_dot_product_attention(q, k, v)[0]
            if torch.allclose(got.double(), unscaled.double(), atol=1e-5):
                hint += " (this is the output without dividing the scores by sqrt(D))"
            elif mask is not None and torch.allclose(got.double(), unmasked.double(),
                                                     atol=1e-5):
                hint += " (this is the output with the mask ignored)"
        return hint

    hint = first_failure([(label, lambda q=q, k=k, v=v, m=m: check(q, k, v, m))
                          for label, q, k, v, m in cases])
    return verdict("6.1", hint, "Your head agrees with lmlab's on every input.")


def exercise_6_2(hidden_pairs: Any) -> Verdict:
    """Check the number of (query, key) pairs a causal mask hides in a 10-token sequence.

    Args:
        hidden_pairs: the reader's count (an int).
    """
    expected = int((~causal_mask(10)).sum())
    v = compare("6.2", hidden_pairs, expected, what="hidden pairs for T = 10", atol=0,
                rtol=0, remark="Query t sees keys 0..t, itself included.")
    if not v and isinstance(hidden_pairs, int) and hidden_pairs == expected + 10:
        return verdict("6.2", f"{v.message.removeprefix('not yet. ')} (a token does see "
                              "itself: the diagonal is not hidden)")
    return v


def exercise_6_3(parameters_8_heads: Any) -> Verdict:
    """Check the parameter count of ``MultiHeadAttention(64, num_heads=8)`` (with biases).

    Args:
        parameters_8_heads: the reader's prediction (an int).
    """
    expected = sum(p.numel() for p in MultiHeadAttention(64, num_heads=8).parameters())
    one = sum(p.numel() for p in MultiHeadAttention(64, num_heads=1).parameters())
    assert expected == one  # the point of the exercise
    return compare("6.3", parameters_8_heads, expected, atol=0, rtol=0,
                   what="parameters of MultiHeadAttention(64, num_heads=8)",
                   remark="Heads split the width; they add no parameters.")


def exercise_6_4(rotate: Any) -> Verdict:
    """Check ``rotate(x, t)``: the rotary rotation of one query or key at position ``t``.

    Args:
        rotate: the reader's function; ``x`` a float vector ``(D,)`` with ``D`` even, ``t``
            an int; it returns the rotated vector ``(D,)`` in lmlab's layout (dimension ``i``
            paired with ``i + D/2``, angle ``t * 10000^(-2i/D)``).
    """
    g = torch.Generator().manual_seed(64)
    cases = []
    for D, t in ((2, 3), (8, 0), (8, 1), (16, 7), (16, 100)):
        x = torch.randn(D, generator=g)
        cases.append((f"D={D}, t={t}", x, t))

    def check(x: torch.Tensor, t: int) -> str | None:
        got = call(rotate, x.clone(), t, what="rotate")
        cos, sin = rotary_cos_sin(torch.tensor([t]), x.shape[0])
        expected = apply_rotary(x[None], cos, sin)[0]
        hint = mismatch(_tensor("the rotated vector", got, tuple(expected.shape)), expected,
                        what="the rotated vector", atol=1e-5)
        if hint is not None and got.shape == expected.shape:  # neighbours paired instead?
            D = x.shape[0]
            order = torch.cat([torch.arange(0, D, 2), torch.arange(1, D, 2)])
            inverse = torch.argsort(order)
            paired = apply_rotary(x[order][None], cos, sin)[0][inverse]
            if torch.allclose(got.double(), paired.double(), atol=1e-5):
                hint += (" (this pairs neighbouring dimensions (0, 1), (2, 3), ...; lmlab "
                         "pairs dimension i with i + D/2)")
        return hint

    hint = first_failure([(label, lambda x=x, t=t: check(x, t)) for label, x, t in cases])
    if hint is None:  # the property the rotation is for
        q, k = torch.randn(8, generator=g), torch.randn(8, generator=g)
        a = float(call(rotate, q, 10) @ call(rotate, k, 7))
        b = float(call(rotate, q, 50) @ call(rotate, k, 47))
        if not math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4):
            hint = f"q.k at positions (10, 7): expected {b:.6g} as at (50, 47), got {a:.6g}"
    return verdict("6.4", hint, "Rotated queries and keys score by their distance only.")
