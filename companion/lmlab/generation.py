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

from lmlab._checks import (
    check_bool, check_float, check_generator, check_ids, check_int, check_tensor,
    check_values,
)

__all__ = ["greedy", "apply_temperature", "top_k_filter", "top_p_filter", "sample",
           "generate", "stream"]

# Below this temperature the scaled logits can overflow float32: they are shifted by their
# maximum and scaled in float64 instead (a sampler's result is unchanged by the shift).
_SMALL_TEMPERATURE = 1e-6
# On an accelerator, generate() asks the device whether every row has stopped (a host sync)
# only every this many tokens, and trims the surplus end-of-sequence columns once at the end.
_STOP_CHECK_EVERY = 16


def _check_logits(logits: object, name: str = "logits") -> torch.Tensor:
    """Scores that a decoder can use: NaN and +inf are errors, and so is a row of only -inf.

    Checked once per call; on an accelerator (and under ``torch.compile``) the value check is
    queued on the device, so no call stops the GPU.
    """
    logits = check_tensor(name, logits, dtype="float")
    if logits.dim() == 0 or logits.shape[-1] == 0:
        raise ValueError(f"{name}: expected a last axis of vocabulary scores, got shape "
                         f"{tuple(logits.shape)}")
    usable = ~torch.isnan(logits) & (logits != float("inf"))  # (..., V)
    ok = usable.all() & (logits > float("-inf")).any(dim=-1).all()

    def found() -> str:
        if bool(torch.isnan(logits).any()):
            return "got NaN"
        if bool((logits == float("inf")).any()):
            return "got +inf"
        return "got a row of only -inf (every token masked)"

    return check_values(name, logits, ok, f"{name}: expected finite scores or -inf (masked), "
                        "with at least one finite score per row", found)


def _check_sampling(temperature: object, top_k: object, top_p: object,
                    generator: object) -> float:
    temperature = check_float("temperature", temperature, 0.0)
    if top_k is not None:
        check_int("top_k", top_k)
    if top_p is not None:
        check_float("top_p", top_p, 0.0, 1.0, min_inclusive=False)
    check_generator("generator", generator)  # any device: one there seeds the model's
    return temperature


def _generator_on(generator: torch.Generator | None,
                  device: torch.device) -> torch.Generator | None:
    """``generator`` where it can draw on ``device``; else a generator on ``device`` seeded from
    one draw of it (so a seeded CPU generator still gives reproducible draws on a GPU, with no
    copy of the probabilities to the host)."""
    if generator is None or torch.device(generator.device) == device:
        return generator
    seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
    return torch.Generator(device=device).manual_seed(seed)


def _stop_check_every(device: torch.device) -> int:
    """How often the decoding loop reads back whether every row has stopped (a host sync)."""
    return 1 if device.type == "cpu" else _STOP_CHECK_EVERY


def _top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def _top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    if p == 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True, stable=True)
    probs = sorted_logits.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # mass of the better tokens
    drop_sorted = before >= p  # the set had already reached p without this token
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def _sample(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
            generator: torch.Generator | None) -> torch.Tensor:
    """:func:`sample` without the checks; ``generator`` already on the logits' device."""
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    if temperature >= _SMALL_TEMPERATURE:
        logits = logits.float() / temperature
    else:  # tiny temperatures: shift so that the best score is 0 and nothing overflows
        logits = logits.double()
        logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature
    if top_k is not None:
        logits = _top_k(logits, top_k)
    if top_p is not None:
        logits = _top_p(logits, top_p)
    probs = logits.softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]  # (B,)


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
    return _top_k(logits, check_int("k", k))


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
    return _top_p(logits, check_float("p", p, 0.0, 1.0, min_inclusive=False))


def sample(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick a token: temperature, then top-k, then top-p, then a draw; ``temperature=0`` is greedy.

    Args:
        logits: scores of the next token.
        temperature: >= 0; 0 means greedy (no randomness).
        top_k: keep only the k best tokens (>= 1), or ``None``.
        top_p: keep the smallest set reaching this probability, in (0, 1], or ``None``.
        generator: the random source (seed it for reproducible draws). The draw happens on
            the logits' device: a generator elsewhere (a CPU one for GPU logits) seeds a
            generator there, so nothing is copied to the host.

    Returns:
        The chosen token ids, on the logits' device.

    Raises:
        ValueError: NaN or +inf among the logits, or a row of only ``-inf`` (no token left to
            draw). On a GPU this check runs on the device without stopping it, and a failure
            surfaces as a ``RuntimeError`` with the same message at the next synchronisation.

    Shape:
        ``(B, V)`` -> ``(B,)``

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sample(torch.tensor([[0.0, 9.0, 0.0]]), temperature=0.0)
        tensor([1])
        >>> sample(torch.tensor([[0.0, 1.0, 0.5]]), top_k=1, generator=g)  # one token left
        tensor([1])
    """
    logits = check_tensor("logits", logits, dtype="float")
    if logits.dim() != 2 or logits.shape[-1] == 0:
        raise ValueError(f"logits: expected shape (B, V) with V >= 1, got {tuple(logits.shape)}")
    temperature = _check_sampling(temperature, top_k, top_p, generator)
    logits = _check_logits(logits)
    return _sample(logits, temperature, top_k, top_p, _generator_on(generator, logits.device))


def _check_generate(model: object, ids: object, max_new_tokens: object, temperature: object,
                    top_k: object, top_p: object, eos_id: object, use_cache: object,
                    generator: object) -> torch.Tensor:
    config = getattr(model, "config", None)
    if (not isinstance(model, nn.Module) or not callable(getattr(model, "new_cache", None))
            or not isinstance(getattr(config, "context_length", None), int)
            or not isinstance(getattr(config, "vocab_size", None), int)):
        hint = (" (an encoder has no LM head and cannot generate: use a GPT, or the decoder of "
                "an EncoderDecoder)" if type(model).__name__ == "Encoder" else "")
        raise TypeError(f"model: expected a decoder that can generate, an lmlab GPT (or a module "
                        f"with config.context_length, config.vocab_size, new_cache() and "
                        f"forward(ids, cache=, last_only=)), got {type(model).__name__}{hint}")
    ids = check_tensor("ids", ids, ndim=2, dtype="int")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"ids: expected a batch of at least one prompt of at least one token, "
                         f"got shape {tuple(ids.shape)}")
    context = config.context_length
    if ids.shape[1] > context:
        raise ValueError(f"ids: the prompt has {ids.shape[1]} tokens, more than the model's "
                         f"context_length={context}")
    weight = next(model.parameters(), None)
    if weight is not None and weight.device != ids.device:
        raise ValueError(f"ids: on {ids.device} but the model is on {weight.device}; move one "
                         f"to the other")
    check_int("max_new_tokens", max_new_tokens, minimum=0)
    _check_sampling(temperature, top_k, top_p, generator)
    if eos_id is not None:
        check_int("eos_id", eos_id, minimum=0, maximum=config.vocab_size - 1)
    check_bool("use_cache", use_cache)
    return check_ids("ids", ids, config.vocab_size)


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
    return _stream(model, ids, max_new_tokens, float(temperature), top_k, top_p, eos_id,
                   use_cache, generator, model_kwargs, stop_check_every=1)


def _stream(model: nn.Module, ids: torch.Tensor, max_new_tokens: int, temperature: float,
            top_k: int | None, top_p: float | None, eos_id: int | None, use_cache: bool,
            generator: torch.Generator | None, model_kwargs: dict[str, Any],
            stop_check_every: int) -> Iterator[torch.Tensor]:
    """The decoding loop. Per step: one forward, one value check of the logits (queued on the
    device off the CPU), one draw on the model's device; whether every row has stopped is read
    back only every ``stop_check_every`` steps."""
    context = model.config.context_length
    generator = _generator_on(generator, ids.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            cache = model.new_cache() if use_cache else None
            seq = ids
            done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
            step_input = ids
            for step in range(max_new_tokens):
                if seq.shape[1] >= context:
                    break
                if use_cache:
                    logits = model(step_input, cache=cache, last_only=True, **model_kwargs)
                else:
                    logits = model(seq, last_only=True, **model_kwargs)
                last = _check_logits(logits[:, -1], "model output")  # (B, V)
                nxt = _sample(last, temperature, top_k, top_p, generator)  # (B,)
                if eos_id is not None:
                    nxt = nxt.masked_fill(done, eos_id)
                    done = done | (nxt == eos_id)
                yield nxt
                seq = torch.cat([seq, nxt[:, None]], dim=1)
                step_input = nxt[:, None]
                if (eos_id is not None and (step + 1) % stop_check_every == 0
                        and bool(done.all())):
                    break
    finally:
        model.train(was_training)


def generate(model: nn.Module, ids: torch.Tensor, max_new_tokens: int, *,
             temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
             eos_id: int | None = None, use_cache: bool = True,
             generator: torch.Generator | None = None, **model_kwargs: Any) -> torch.Tensor:
    """Continue a prompt: the prompt in one pass, then one token per step.

    The model runs in eval mode without gradients (its mode is restored afterwards). Nothing in
    the loop stops a GPU for a check: each step's logits are checked on the device (NaN, +inf or
    a row of only -inf raise, at the next synchronisation), and whether every row has produced
    ``eos_id`` is read back every 16 tokens (on the CPU: every token).

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
        generator: random source for sampling; seed it for reproducible samples. Sampling
            runs on the model's device; a generator on another device (a seeded CPU one with a
            GPU model) seeds one there once per call.
        **model_kwargs: passed to the model each step (e.g. ``memory=`` and ``memory_mask=``
            for the decoder of an encoder-decoder).

    Returns:
        The prompt followed by the new tokens; fewer than ``max_new_tokens`` when every row
        stopped or the context is full.

    Raises:
        TypeError: ``model`` cannot generate (e.g. an :class:`~lmlab.transformer.Encoder`), or an
            argument of the wrong type.
        ValueError: an argument out of range (an empty prompt or batch, ids outside the
            vocabulary, ids and model on different devices, ...), all before the first step.

    Shape:
        ids ``(B, T)`` -> ``(B, T + new)``
    """
    ids = _check_generate(model, ids, max_new_tokens, temperature, top_k, top_p, eos_id,
                          use_cache, generator)
    every = _stop_check_every(ids.device)
    new = list(_stream(model, ids, max_new_tokens, float(temperature), top_k, top_p, eos_id,
                       use_cache, generator, model_kwargs, stop_check_every=every))
    if not new:
        return ids
    out = torch.stack(new, dim=1)  # (B, N)
    if eos_id is not None and every > 1:
        # the loop may have run past the step where every row had stopped: cut there
        hit = (out == eos_id).int().cummax(dim=1).values  # (B, N) 1 from a row's first eos on
        stopped = hit.bool().all(dim=0)  # (N,) every row done by this step
        if bool(stopped.any()):
            out = out[:, :int(stopped.int().argmax()) + 1]
    return torch.cat([ids, out], dim=1)
