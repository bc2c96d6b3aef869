"""Checkers for the exercises of chapter 8, "Pretrained transformers".

* 8.1 -- nearest neighbours in an embedding table, against :meth:`WordVectors.most_similar`.
* 8.2 -- the key/value cache's bytes per token, against :func:`kv_cache_bytes_per_token`.
* 8.3 -- how many tokens top-p keeps after a temperature, against :func:`top_p_filter`.
* 8.4 -- a value vector read through the final norm and the LM head, against
  :func:`lmlab.knockout.value_logits`.

Each checker runs the reader's function on inputs of its own (seeded random tables, the
configs of real models, small GPTs) and names the first input that fails.
"""

from __future__ import annotations

from typing import Any

import torch

from lmlab.exercises import AnswerError, Verdict, call, first_failure, mismatch, verdict

__all__ = ["exercise_8_1", "exercise_8_2", "exercise_8_3", "exercise_8_4"]


def exercise_8_1(nearest: Any) -> Verdict:
    """Exercise 8.1: ``nearest(table, row, k) -> list[int]``, the ``k`` rows of ``table``
    ``(V, C)`` with the highest cosine similarity to row ``row``, best first, ``row`` itself
    left out."""
    from lmlab.vectors import WordVectors

    generator = torch.Generator().manual_seed(8)
    cases = []
    for V, C, row, k in ((10, 4, 0, 3), (50, 16, 17, 5), (200, 8, 199, 1)):
        table = torch.randn(V, C, generator=generator)
        table[row // 2 + 1] = 3.0 * table[row]  # a row pointing the same way, 3 times longer
        words = [f"w{i}" for i in range(V)]
        expected = [int(w[1:]) for w, _ in
                    WordVectors(words, table).most_similar(words[row], k)]

        def check(table: torch.Tensor = table, row: int = row, k: int = k,
                  expected: list[int] = expected) -> str | None:
            got = call(nearest, table.clone(), row, k, what="nearest")
            if isinstance(got, torch.Tensor):
                got = got.tolist()
            if not isinstance(got, (list, tuple)) or not all(
                    isinstance(i, int) and not isinstance(i, bool) for i in got):
                raise AnswerError(f"expected a list of row indices, got {got!r}")
            hint = mismatch(list(got), expected, what="the neighbours, best first")
            if hint is not None and row in got:
                hint += " (the row itself must be left out)"
            return hint

        cases.append((f"a ({V}, {C}) table, row {row}, k={k}", check))
    return verdict("8.1", first_failure(cases),
                   "Cosine ignores length: the row 3 times as long comes first.")


def exercise_8_2(bytes_per_token: Any) -> Verdict:
    """Exercise 8.2: ``bytes_per_token(config, dtype) -> int``, the bytes a key/value cache
    holds for one token of one sequence."""
    from lmlab.transformer_config import TransformerConfig, kv_cache_bytes_per_token

    configs = [("SmolLM2", TransformerConfig.smollm2()),
               ("SmolLM2 with 9 key/value heads", TransformerConfig.smollm2(num_kv_heads=9)),
               ("GPT-2 small", TransformerConfig.gpt2_small()),
               ("a tiny model", TransformerConfig.tiny(num_layers=3, num_kv_heads=2))]
    cases = []
    for name, config in configs:
        for dtype in (torch.float32, torch.bfloat16):
            expected = kv_cache_bytes_per_token(config, dtype)

            def check(config: TransformerConfig = config, dtype: torch.dtype = dtype,
                      expected: int = expected) -> str | None:
                got = call(bytes_per_token, config, dtype, what="bytes_per_token")
                return mismatch(got, expected, what="bytes per token", atol=0, rtol=0)

            cases.append((f"{name} ({config.num_layers} layers, {config.num_kv_heads} "
                          f"key/value heads of {config.head_dim}), {dtype}", check))
    return verdict("8.2", first_failure(cases),
                   "A key and a value per layer and key/value head.")


def exercise_8_3(kept: Any) -> Verdict:
    """Exercise 8.3: ``kept(logits, temperature, p) -> int``, how many tokens top-p keeps
    once the logits ``(V,)`` are divided by the temperature."""
    from lmlab.generation import apply_temperature, top_p_filter

    generator = torch.Generator().manual_seed(3)
    cases = []
    for V, spread in ((100, 3.0), (1000, 1.0)):
        logits = torch.randn(V, generator=generator) * spread
        for temperature, p in ((0.5, 0.9), (1.0, 0.9), (2.0, 0.5), (1.0, 1.0)):
            expected = int(torch.isfinite(top_p_filter(apply_temperature(logits, temperature),
                                                       p)).sum())

            def check(logits: torch.Tensor = logits, temperature: float = temperature,
                      p: float = p, expected: int = expected) -> str | None:
                got = call(kept, logits.clone(), temperature, p, what="kept")
                if isinstance(got, torch.Tensor) and got.numel() == 1:
                    got = int(got)
                return mismatch(got, expected, what="tokens kept", atol=0, rtol=0)

            cases.append((f"{V} logits (scale {spread}), temperature {temperature}, p={p}",
                          check))
    return verdict("8.3", first_failure(cases),
                   "Lower temperatures sharpen the distribution: fewer tokens kept.")


def exercise_8_4(read: Any) -> Verdict:
    """Exercise 8.4: ``read(model, layer, neuron) -> Tensor (V,)``, the token scores of one
    FFN unit's value vector through the final norm's weight and the LM head."""
    from lmlab.knockout import value_logits
    from lmlab.transformer import GPT
    from lmlab.transformer_config import TransformerConfig

    cases = []
    for seed, norm, final_norm in ((0, "rmsnorm", True), (1, "layernorm", True),
                                   (2, "rmsnorm", False)):
        with torch.random.fork_rng():  # the reader's random state stays as it was
            torch.manual_seed(seed)
            model = GPT(TransformerConfig.tiny(num_layers=2, ffn="swiglu", norm=norm,
                                               final_norm=final_norm, mlp_bias=False)).eval()
        if model.norm is not None:
            with torch.no_grad():
                model.norm.weight.uniform_(-1.0, 2.0)
        for layer, neuron in ((0, 3), (1, 200)):
            expected = value_logits(model, layer, neuron)

            def check(model: GPT = model, layer: int = layer, neuron: int = neuron,
                      expected: torch.Tensor = expected) -> str | None:
                with torch.no_grad():
                    got = call(read, model, layer, neuron, what="read")
                return mismatch(got, expected, what="the token scores", atol=1e-7, rtol=1e-4)

            label = (f"a tiny GPT ({norm}, final norm {'on' if final_norm else 'off'}), "
                     f"layer {layer}, neuron {neuron}")
            cases.append((label, check))
    return verdict("8.4", first_failure(cases),
                   "The norm's weight scales each channel before the head.")
