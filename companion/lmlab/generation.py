"""Decoding: turning a language model's scores into text, one token at a time.

The model gives a score (logit) to every token of the vocabulary; a decoding strategy picks one.
Each strategy is a pure function on the logits of the last position::

    greedy(logits)                     # the highest score, always the same answer
    apply_temperature(logits, 0.7)     # < 1 sharpens the distribution, > 1 flattens it
    top_k_filter(logits, 50)           # keep the k best tokens
    top_p_filter(logits, 0.9)          # keep the smallest set whose probability reaches p
    sample(logits, temperature, top_k, top_p, generator)

:func:`generate` loops: process the prompt in one parallel pass, then feed back one token at a
time, with a key/value cache (each step computes only the new token) or without (each step
recomputes the whole sequence; same tokens, slower). :func:`stream` yields the tokens as they
come.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from lmlab._checks import check_bool, check_float, check_int, check_tensor

__all__ = ["greedy", "apply_temperature", "top_k_filter", "top_p_filter", "sample",
           "generate", "stream"]


def _check_logits(logits: object) -> torch.Tensor:
    logits = check_tensor("logits", logits, dtype="float")
    if logits.dim() == 0 or logits.shape[-1] == 0:
        raise ValueError(f"logits: expected a last axis of vocabulary scores, got shape "
                         f"{tuple(logits.shape)}")
    if bool(torch.isnan(logits).any()):
        raise ValueError("logits: contains NaN")
    return logits


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """The id of the highest score (the first one on ties).

    Shape:
        ``(..., V)`` -> ``(...)``

    Example:
        >>> greedy(torch.tensor([[0.1, 2.0, -1.0]]))
        tensor([1])
    """
    return _check_logits(logits).argmax(dim=-1)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide the logits by ``temperature`` (> 0): below 1 sharper, above 1 flatter.

    Shape:
        ``(..., V)`` -> ``(..., V)``

    Example:
        >>> apply_temperature(torch.tensor([1.0, 2.0]), 0.5)
        tensor([2., 4.])
    """
    logits = _check_logits(logits)
    temperature = check_float("temperature", temperature, 0.0, min_inclusive=False)
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` highest scores, set the rest to ``-inf`` (ties at the edge are kept).

    Shape:
        ``(..., V)`` -> ``(..., V)``

    Example:
        >>> top_k_filter(torch.tensor([1.0, 3.0, 2.0]), 2)
        tensor([-inf, 3., 2.])
    """
    logits = _check_logits(logits)
    check_int("k", k)
    if k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of best tokens whose probability reaches ``p``.

    Tokens are taken best first until their probabilities sum to at least ``p``; the rest get
    ``-inf``. ``p = 1`` keeps everything.

    Shape:
        ``(..., V)`` -> ``(..., V)``

    Example:
        >>> logits = torch.tensor([0.5, 0.3, 0.2]).log()
        >>> top_p_filter(logits, 0.75).isfinite().tolist()
        [True, True, False]
    """
    logits = _check_logits(logits)
    p = check_float("p", p, 0.0, 1.0, min_inclusive=False)
    if p == 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True, stable=True)
    probs = sorted_logits.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # mass of the better tokens
    drop_sorted = before >= p  # the set had already reached p without this token
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick a token: temperature, then top-k, then top-p, then a draw; ``temperature=0`` is greedy.

    Args:
        logits: scores of the next token.
        temperature: >= 0; 0 means greedy (no randomness).
        top_k: keep only the k best tokens (>= 1), or ``None``.
        top_p: keep the smallest set reaching this probability, in (0, 1], or ``None``.
        generator: the random source (seed it for reproducible draws).

    Returns:
        The chosen token ids.

    Shape:
        ``(B, V)`` -> ``(B,)``

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sample(torch.tensor([[0.0, 9.0, 0.0]]), temperature=0.0)
        tensor([1])
        >>> sample(torch.tensor([[0.0, 1.0, 0.5]]), top_k=1, generator=g)  # one token left
        tensor([1])
    """
    logits = _check_logits(logits)
    temperature = check_float("temperature", temperature, 0.0)
    if top_k is not None:
        check_int("top_k", top_k)
    if top_p is not None:
        check_float("top_p", top_p, 0.0, 1.0, min_inclusive=False)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
    if logits.dim() != 2:
        raise ValueError(f"logits: expected shape (B, V), got {tuple(logits.shape)}")
    if temperature == 0.0:
        return greedy(logits)
    logits = apply_temperature(logits.float(), temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = logits.softmax(dim=-1)  # (B, V)
    if generator is not None and generator.device != probs.device:
        probs = probs.to(generator.device)
    ids = torch.multinomial(probs, 1, generator=generator)[:, 0]  # (B,)
    return ids.to(logits.device)


def _check_generate(model: nn.Module, ids: object, max_new_tokens: object, temperature: object,
                    top_k: object, top_p: object, eos_id: object, use_cache: object,
                    generator: object) -> torch.Tensor:
    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise TypeError(f"model: expected an lmlab GPT, got {type(model).__name__}")
    ids = check_tensor("ids", ids, ndim=2, dtype="int")
    if ids.shape[1] == 0:
        raise ValueError("ids: expected a prompt of at least one token")
    context = model.config.context_length
    if ids.shape[1] > context:
        raise ValueError(f"ids: the prompt has {ids.shape[1]} tokens, more than the model's "
                         f"context_length={context}")
    check_int("max_new_tokens", max_new_tokens, minimum=0)
    check_float("temperature", temperature, 0.0)
    if top_k is not None:
        check_int("top_k", top_k)
    if top_p is not None:
        check_float("top_p", top_p, 0.0, 1.0, min_inclusive=False)
    if eos_id is not None:
        check_int("eos_id", eos_id, minimum=0, maximum=model.config.vocab_size - 1)
    check_bool("use_cache", use_cache)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
    return ids


def stream(model: nn.Module, ids: torch.Tensor, max_new_tokens: int, *, temperature: float = 0.0,
           top_k: int | None = None, top_p: float | None = None, eos_id: int | None = None,
           use_cache: bool = True, generator: torch.Generator | None = None,
           **model_kwargs: Any) -> Iterator[torch.Tensor]:
    """Yield the new tokens one step at a time (see :func:`generate` for the arguments).

    Arguments are checked when ``stream`` is called, before the first step. Rows of the batch
    that have produced ``eos_id`` keep yielding ``eos_id``; the stream ends
    when every row has, after ``max_new_tokens`` steps, or at the model's context length.

    Shape:
        ids ``(B, T)`` -> yields ``(B,)`` per step.
    """
    ids = _check_generate(model, ids, max_new_tokens, temperature, top_k, top_p, eos_id,
                          use_cache, generator)
    return _stream(model, ids, max_new_tokens, temperature, top_k, top_p, eos_id, use_cache,
                   generator, model_kwargs)


def _stream(model: nn.Module, ids: torch.Tensor, max_new_tokens: int, temperature: float,
            top_k: int | None, top_p: float | None, eos_id: int | None, use_cache: bool,
            generator: torch.Generator | None, model_kwargs: dict[str, Any]
            ) -> Iterator[torch.Tensor]:
    context = model.config.context_length
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            cache = model.new_cache() if use_cache else None
            seq = ids
            done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
            step_input = ids
            for _ in range(max_new_tokens):
                if seq.shape[1] >= context:
                    break
                if use_cache:
                    logits = model(step_input, cache=cache, last_only=True, **model_kwargs)
                else:
                    logits = model(seq, last_only=True, **model_kwargs)
                nxt = sample(logits[:, -1], temperature, top_k, top_p, generator)  # (B,)
                if eos_id is not None:
                    nxt = nxt.masked_fill(done, eos_id)
                    done = done | (nxt == eos_id)
                yield nxt
                seq = torch.cat([seq, nxt[:, None]], dim=1)
                step_input = nxt[:, None]
                if eos_id is not None and bool(done.all()):
                    break
    finally:
        model.train(was_training)


def generate(model: nn.Module, ids: torch.Tensor, max_new_tokens: int, *,
             temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
             eos_id: int | None = None, use_cache: bool = True,
             generator: torch.Generator | None = None, **model_kwargs: Any) -> torch.Tensor:
    """Continue a prompt: the prompt in one pass, then one token per step.

    The model runs in eval mode without gradients (its mode is restored afterwards).

    Args:
        model: a :class:`lmlab.transformer.GPT` (or a model with ``config``, ``new_cache`` and
            the same ``forward``, including ``cache=`` and ``last_only=``).
        ids: the prompt, at most ``context_length`` tokens.
        max_new_tokens: how many tokens to add at most (>= 0).
        temperature: 0 for greedy decoding, > 0 to sample.
        top_k: sample only among the k best tokens.
        top_p: sample only among the smallest set of best tokens reaching probability p.
        eos_id: stop a row when it produces this token (later positions repeat it).
        use_cache: keep keys and values (same tokens, much faster for long outputs).
        generator: random source for sampling; seed it for reproducible samples.
        **model_kwargs: passed to the model each step (e.g. ``memory=`` and ``memory_mask=``
            for the decoder of an encoder-decoder).

    Returns:
        The prompt followed by the new tokens; fewer than ``max_new_tokens`` when every row
        stopped or the context is full.

    Shape:
        ids ``(B, T)`` -> ``(B, T + new)``
    """
    new = list(stream(model, ids, max_new_tokens, temperature=temperature, top_k=top_k,
                      top_p=top_p, eos_id=eos_id, use_cache=use_cache, generator=generator,
                      **model_kwargs))
    if not new:
        return ids
    return torch.cat([ids, torch.stack(new, dim=1)], dim=1)
