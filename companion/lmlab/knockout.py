"""Knockouts and neuron reading: what the sublayers and FFN neurons of a trained GPT do.

Two kinds of experiment on an :class:`lmlab.transformer.GPT` (the book runs them on
SmolLM2):

* **Knockouts.** Switch whole sublayers off (:func:`switched_off`, the blocks'
  ``attention_enabled`` / ``ffn_enabled`` flags) or one hidden unit of an FFN
  (:func:`neuron_off`), and score the next token of a batch of prompts
  (:func:`next_token_logits`).
* **Reading neurons** (Geva et al., 2021). An FFN's output is a sum over its hidden units,
  ``down_proj(h) = sum_i h_i v_i`` with ``v_i = down_proj.weight[:, i]``, the unit's *value
  vector*. Read through the final norm's weight and the LM head, a value vector scores every
  token (:func:`value_logits`); :func:`direct_push` weighs those scores by the activations of
  one prompt (:func:`ffn_activations`), and :func:`token_z_scores` finds, from the weights
  alone, the value vectors that single out one token.

Letters: L layers, F the FFN's hidden width (``d_ff``), T positions, C model width, V vocab.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from lmlab._checks import check_ids, check_instance, check_int
from lmlab.transformer import GPT

__all__ = ["FFNTrace", "switched_off", "neuron_off", "next_token_logits", "ffn_activations",
           "value_logits", "direct_push", "token_z_scores"]


def _layers(name: str, layers: object, num_layers: int) -> set[int]:
    """A set of block indices in ``[0, num_layers)`` (any iterable of ints, a range included)."""
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise TypeError(f"{name}: expected an iterable of layer indices, got "
                        f"{type(layers).__name__}")
    return {check_int(f"{name}[{k}]", i, 0, num_layers - 1) for k, i in enumerate(layers)}


@contextmanager
def switched_off(model: GPT, *, ffn: Sequence[int] | range = (),
                 attention: Sequence[int] | range = ()) -> Iterator[GPT]:
    """Switch off the FFN and/or self-attention sublayers of some blocks, inside a ``with``.

    A switched-off sublayer leaves only its residual path: the stream passes the block
    unchanged by it. The flags are restored on leaving, also after an error.

    Args:
        model: the GPT.
        ffn: indices of the blocks whose FFN is switched off.
        attention: indices of the blocks whose self-attention is switched off.

    Example:
        >>> from lmlab.transformer_config import TransformerConfig
        >>> model = GPT(TransformerConfig.tiny())
        >>> with switched_off(model, ffn=range(0, 2)):
        ...     logits = next_token_logits(model, [[1, 2, 3], [4]])
        >>> tuple(logits.shape), model.blocks[0].ffn_enabled
        ((2, 256), True)
    """
    check_instance("model", model, GPT)
    n = len(model.blocks)
    off_ffn, off_attention = _layers("ffn", ffn, n), _layers("attention", attention, n)
    saved = [(b.ffn_enabled, b.attention_enabled) for b in model.blocks]
    try:
        for i, block in enumerate(model.blocks):
            block.ffn_enabled = block.ffn_enabled and i not in off_ffn
            block.attention_enabled = block.attention_enabled and i not in off_attention
        yield model
    finally:
        for block, (f, a) in zip(model.blocks, saved, strict=True):
            block.ffn_enabled, block.attention_enabled = f, a


def _ids(name: str, ids: object, vocab_size: int) -> torch.Tensor:
    """One sequence of token ids (a list of ints or a 1-D tensor), non-empty, as ``(T,)``."""
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{name}: expected a list of token ids, got {type(ids).__name__}")
    if not isinstance(ids, torch.Tensor):
        if not isinstance(ids, Sequence):
            raise TypeError(f"{name}: expected a list of token ids, got {type(ids).__name__}")
        if len(ids) == 0:
            raise ValueError(f"{name}: expected at least one token id, got an empty list")
        ids = torch.tensor(list(ids)) if all(isinstance(i, int) for i in ids) else ids
    check_ids(name, ids, vocab_size, ndim=1)
    assert isinstance(ids, torch.Tensor)
    if len(ids) == 0:
        raise ValueError(f"{name}: expected at least one token id, got none")
    return ids


def _check_neuron(model: GPT, layer: object, neuron: object) -> tuple[int, int]:
    check_instance("model", model, GPT)
    layer = check_int("layer", layer, 0, len(model.blocks) - 1)
    d_ff = model.blocks[layer].ffn.down_proj.in_features
    return layer, check_int("neuron", neuron, 0, d_ff - 1)


@contextmanager
def neuron_off(model: GPT, layer: int, neuron: int) -> Iterator[GPT]:
    """Zero one hidden unit of one FFN (its activation ``h_i``), inside a ``with``.

    The unit's value vector then adds nothing to the stream, as if column ``neuron`` of
    ``down_proj.weight`` were zero; the rest of the model is untouched. Works through a forward
    pre-hook on ``down_proj``, removed on leaving.

    Args:
        model: the GPT.
        layer: the block, ``0 <= layer < L``.
        neuron: the hidden unit, ``0 <= neuron < F``.
    """
    layer, neuron = _check_neuron(model, layer, neuron)

    def zero(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        h = inputs[0].clone()  # (B, T, F)
        h[..., neuron] = 0
        return (h,)

    handle = model.blocks[layer].ffn.down_proj.register_forward_pre_hook(zero)
    try:
        yield model
    finally:
        handle.remove()


def next_token_logits(model: GPT, ids: Sequence[Sequence[int]]) -> torch.Tensor:
    """The scores of the next token after each prompt, for prompts of different lengths.

    The prompts are padded on the right into one batch. Under the causal mask a position never
    sees later ones, so the padding cannot change the scores at a prompt's last real token:
    they equal those of the prompt run alone (up to float rounding).

    Args:
        model: the GPT.
        ids: one list of token ids per prompt, each non-empty.

    Returns:
        The logits at each prompt's last token.

    Shape:
        ``(B, V)``
    """
    check_instance("model", model, GPT)
    if isinstance(ids, (str, bytes, torch.Tensor)) or not isinstance(ids, Sequence):
        raise TypeError("ids: expected a list of token-id lists, one per prompt, got "
                        f"{type(ids).__name__}")
    if len(ids) == 0:
        raise ValueError("ids: expected at least one prompt, got an empty list")
    rows = [_ids(f"ids[{k}]", s, model.config.vocab_size) for k, s in enumerate(ids)]
    device = model.lm_head.weight.device
    x = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long, device=device)
    for k, r in enumerate(rows):
        x[k, :len(r)] = r.to(device)
    last = torch.tensor([len(r) - 1 for r in rows], device=device)  # (B,)
    rows_index = torch.arange(len(rows), device=device)

    def gather(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        return (inputs[0][rows_index, last][:, None],)  # (B, 1, C): the head scores only these

    handle = model.lm_head.register_forward_pre_hook(gather)
    try:
        with torch.no_grad():
            logits = model(x)  # (B, 1, V)
    finally:
        handle.remove()
    return logits[:, 0]  # (B, V)


@dataclass(frozen=True)
class FFNTrace:
    """Every FFN's hidden activations and output for one sequence."""

    hidden: torch.Tensor  # (L, T, F): h = silu(gate(x)) * up(x) (or act(up(x))), per position
    output: torch.Tensor  # (L, T, C): what the FFN adds to the stream, down_proj(h)


def ffn_activations(model: GPT, ids: Sequence[int] | torch.Tensor) -> FFNTrace:
    """Run one sequence and record each FFN's hidden activations and output (forward hooks).

    Args:
        model: the GPT.
        ids: the token ids of one sequence.

    Returns:
        The :class:`FFNTrace`; ``output[l] == down_proj(hidden[l])`` of block ``l``.

    Shape:
        ids ``(T,)`` -> hidden ``(L, T, F)``, output ``(L, T, C)``
    """
    check_instance("model", model, GPT)
    ids = _ids("ids", ids, model.config.vocab_size)
    hidden: list[torch.Tensor] = []
    output: list[torch.Tensor] = []

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        hidden.append(inputs[0][0])  # (T, F)
        output.append(out[0])  # (T, C)

    handles = [b.ffn.down_proj.register_forward_hook(record) for b in model.blocks]
    try:
        with torch.no_grad():
            model(ids[None].to(model.lm_head.weight.device))
    finally:
        for handle in handles:
            handle.remove()
    if len(hidden) != len(model.blocks):
        raise ValueError("model: every FFN must be switched on to record its activations")
    return FFNTrace(torch.stack(hidden), torch.stack(output))


def _readout(model: GPT) -> tuple[torch.Tensor, torch.Tensor]:
    """The LM head ``(V, C)`` and the final norm's per-channel weight ``(C,)`` (ones if none)."""
    E = model.lm_head.weight.detach()  # (V, C)
    norm = model.norm
    weight = getattr(norm, "weight", None) if norm is not None else None
    gamma = weight.detach() if weight is not None else torch.ones_like(E[0])
    return E, gamma


def value_logits(model: GPT, layer: int, neuron: int) -> torch.Tensor:
    """The token scores of one FFN unit's value vector, read through the final norm and head.

    ``lm_head.weight @ (gamma * v)`` with ``v = down_proj.weight[:, neuron]`` and ``gamma`` the
    final norm's weight: what the final RMSNorm and the head make of the direction ``v``, up to
    the positive factor ``1 / rms``. A unit with a negative activation writes ``-v``: flip the
    sign to read it.

    Args:
        model: the GPT.
        layer: the block, ``0 <= layer < L``.
        neuron: the hidden unit, ``0 <= neuron < F``.

    Shape:
        ``(V,)``
    """
    layer, neuron = _check_neuron(model, layer, neuron)
    E, gamma = _readout(model)
    v = model.blocks[layer].ffn.down_proj.weight.detach()[:, neuron]  # (C,)
    return E @ (gamma * v)  # (V,)


def _value_vectors(model: GPT) -> torch.Tensor:
    """Every FFN unit's value vector, ``(L, C, F)``."""
    return torch.stack([b.ffn.down_proj.weight.detach() for b in model.blocks])


def direct_push(model: GPT, hidden: torch.Tensor, token: int) -> torch.Tensor:
    """How much each FFN unit, at one position, pushes ``token``'s score above the average.

    ``h_i * (E[token] - mean(E)) . (gamma * v_i)``: the unit's contribution to the token's
    logit minus the mean logit, through the final norm's weight, before the ``1 / rms`` factor
    the norm applies to the whole stream (the same for every unit).

    Args:
        model: the GPT.
        hidden: the FFN activations at one position, e.g. ``ffn_activations(...).hidden[:, -1]``.
        token: the token id.

    Shape:
        hidden ``(L, F)`` -> ``(L, F)``
    """
    check_instance("model", model, GPT)
    E, gamma = _readout(model)
    token = check_int("token", token, 0, E.shape[0] - 1)
    W = _value_vectors(model)  # (L, C, F)
    check_instance("hidden", hidden, torch.Tensor)
    if tuple(hidden.shape) != (W.shape[0], W.shape[2]):
        raise ValueError(f"hidden: expected shape (L={W.shape[0]}, F={W.shape[2]}), got "
                         f"{tuple(hidden.shape)}")
    direction = (E[token] - E.mean(0)) * gamma  # (C,)
    return hidden * torch.einsum("c,lcf->lf", direction, W)  # (L, F)


def token_z_scores(model: GPT, token: int) -> torch.Tensor:
    """For every FFN unit, how far ``token`` stands out among its value vector's token scores.

    The z-score of ``token``'s score in :func:`value_logits`, over the whole vocabulary:
    ``(s[token] - mean(s)) / std(s)`` (population standard deviation), computed for all units
    at once from the head's covariance ``(C, C)`` instead of ``V`` scores per unit. A large
    positive z: the unit writes the token; a large negative one: ``-v`` does.

    Args:
        model: the GPT.
        token: the token id.

    Shape:
        ``(L, F)``
    """
    check_instance("model", model, GPT)
    E, gamma = _readout(model)
    token = check_int("token", token, 0, E.shape[0] - 1)
    mean = E.mean(0)  # (C,)
    # the head's covariance without a centred (V, C) copy of the head
    cov = E.T @ E / E.shape[0] - torch.outer(mean, mean)  # (C, C)
    target = E[token] - mean  # (C,)
    z = []
    for block in model.blocks:  # one layer at a time: no (L, C, F) temporaries
        u = block.ffn.down_proj.weight.detach() * gamma[:, None]  # (C, F)
        sd = ((cov @ u) * u).sum(0).sqrt()  # (F,): sqrt(u^T cov u) per unit
        z.append(target @ u / sd)
    return torch.stack(z)  # (L, F)
