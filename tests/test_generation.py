"""Tests of lmlab.generation: the filters' defining properties, cached vs uncached decoding."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab.device import seed_everything
from lmlab.generation import (
    apply_temperature, generate, greedy, sample, stream, top_k_filter, top_p_filter,
)
from lmlab import generation
from lmlab.transformer import GPT, Encoder, EncoderDecoder
from lmlab.transformer_config import TransformerConfig

# distinct scores, at least 1/8 apart: the properties below are about ranks, not ties
LOGITS = st.lists(st.integers(-64, 64), min_size=2, max_size=40,
                  unique=True).map(lambda xs: torch.tensor(xs, dtype=torch.float32) / 8)


@settings(max_examples=200, deadline=None)
@given(LOGITS, st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_set_reaching_p(logits: torch.Tensor, p: float) -> None:
    kept = top_p_filter(logits, p).isfinite()
    probs = logits.double().softmax(-1)
    order = probs.argsort(descending=True)
    n = int(kept.sum())
    assert kept[order[:n]].all()  # the kept tokens are the n best
    mass = probs[order[:n]].sum()
    assert mass >= p - 1e-5  # they reach p ...
    assert probs[order[:n - 1]].sum() < p + 1e-5  # ... and one fewer would not


@settings(max_examples=200, deadline=None)
@given(LOGITS, st.integers(1, 50))
def test_top_k_keeps_k(logits: torch.Tensor, k: int) -> None:
    kept = top_k_filter(logits, k).isfinite()
    assert int(kept.sum()) == min(k, logits.numel())
    assert set(kept.nonzero()[:, 0].tolist()) == set(logits.topk(min(k, logits.numel())).indices
                                                     .tolist())


@settings(max_examples=100, deadline=None)
@given(LOGITS, st.integers(0, 2**31 - 1))
def test_temperature_to_zero_is_greedy(logits: torch.Tensor, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    top2 = logits.topk(2).values
    if float(top2[0] - top2[1]) < 1e-3:
        return  # a near-tie is not decided by a finite temperature
    assert int(sample(logits[None], temperature=1e-4, generator=g)) == int(greedy(logits))
    assert int(sample(logits[None], temperature=0.0)) == int(logits.argmax())


def test_temperature_scales_and_sample_distribution() -> None:
    torch.testing.assert_close(apply_temperature(torch.tensor([2.0, 4.0]), 2.0),
                               torch.tensor([1.0, 2.0]))
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[0.0, 1.0, 2.0]]).repeat(20000, 1)
    draws = sample(logits, generator=g)
    freq = torch.bincount(draws, minlength=3).float() / 20000
    torch.testing.assert_close(freq, logits[0].softmax(-1), rtol=0, atol=0.015)
    draws = sample(logits, top_k=2, generator=g)
    assert int((draws == 0).sum()) == 0


CONFIGS = {
    "gpt2": TransformerConfig.tiny(context_length=48, ffn="gelu_tanh"),
    "llama-gqa": TransformerConfig.tiny(context_length=48, norm="rmsnorm", position="rotary",
                                        ffn="swiglu", num_kv_heads=2),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("settings_", [dict(), dict(temperature=1.0),
                                       dict(temperature=0.8, top_k=20, top_p=0.9)])
def test_cached_generation_gives_the_same_tokens(name: str, settings_: dict) -> None:
    g = seed_everything(0)
    model = GPT(CONFIGS[name])
    prompt = torch.randint(0, 256, (3, 7), generator=g)
    with_cache = generate(model, prompt, 30, use_cache=True,
                          generator=torch.Generator().manual_seed(1), **settings_)
    without = generate(model, prompt, 30, use_cache=False,
                       generator=torch.Generator().manual_seed(1), **settings_)
    assert with_cache.shape == (3, 37)
    assert torch.equal(with_cache, without)
    assert torch.equal(with_cache[:, :7], prompt)


def test_seeded_sampling_is_reproducible_and_seeds_differ() -> None:
    model = GPT(CONFIGS["gpt2"])
    prompt = torch.zeros(2, 1, dtype=torch.long)
    a = generate(model, prompt, 20, temperature=1.5, generator=torch.Generator().manual_seed(5))
    b = generate(model, prompt, 20, temperature=1.5, generator=torch.Generator().manual_seed(5))
    c = generate(model, prompt, 20, temperature=1.5, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_greedy_generation_is_argmax_of_full_recomputation() -> None:
    model = GPT(CONFIGS["llama-gqa"]).eval()
    seq = torch.tensor([[3, 1, 4]])
    out = generate(model, seq, 6)
    for _ in range(6):
        seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, seq)


def test_stops_at_eos_and_at_context() -> None:
    seed_everything(2)
    model = GPT(CONFIGS["gpt2"])
    prompt = torch.tensor([[5, 6]])
    first = int(generate(model, prompt, 1)[0, -1])
    out = generate(model, prompt, 10, eos_id=first)
    assert out.tolist() == [[5, 6, first]]
    long = generate(model, prompt, 100)
    assert long.shape == (1, 48)  # the context length
    tokens = list(stream(model, prompt, 5))
    assert torch.equal(torch.stack(tokens, 1), generate(model, prompt, 5)[:, 2:])
    assert torch.equal(generate(model, prompt, 0), prompt)


def test_eos_rows_keep_eos_while_others_continue() -> None:
    seed_everything(3)
    model = GPT(CONFIGS["gpt2"])
    prompt = torch.randint(0, 256, (4, 3))
    free = generate(model, prompt, 8)
    eos = int(free[0, 3])  # row 0 stops at once
    out = generate(model, prompt, 8, eos_id=eos)
    assert (out[0, 3:] == eos).all()
    for row in range(4):
        hits = (free[row, 3:] == eos).nonzero()
        stop = int(hits[0]) + 1 if len(hits) else 8
        assert torch.equal(out[row, 3:3 + stop], free[row, 3:3 + stop])


def test_mode_is_restored() -> None:
    model = GPT(CONFIGS["gpt2"]).train()
    generate(model, torch.tensor([[1]]), 2)
    assert model.training


def test_encoder_decoder_generation_with_and_without_cache() -> None:
    seed_everything(4)
    model = EncoderDecoder(TransformerConfig.tiny(vocab_size=30),
                           TransformerConfig.tiny(vocab_size=40)).eval()
    src = torch.randint(0, 30, (2, 6))
    keep = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    memory = model.encode(src, keep)
    bos = torch.zeros(2, 1, dtype=torch.long)
    a = generate(model.decoder, bos, 12, memory=memory, memory_mask=keep)
    b = generate(model.decoder, bos, 12, memory=memory, memory_mask=keep, use_cache=False)
    assert torch.equal(a, b)
    seq = bos
    for _ in range(12):
        seq = torch.cat([seq, model(src, seq, keep)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(a, seq)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(temperature=-0.1), ValueError, "temperature"),
    (dict(temperature=float("nan")), ValueError, "temperature"),
    (dict(temperature="hot"), TypeError, "temperature"),
    (dict(top_p=0.0), ValueError, "top_p"),
    (dict(top_p=1.5), ValueError, "top_p"),
    (dict(top_k=0), ValueError, "top_k"),
    (dict(top_k=2.0), TypeError, "top_k"),
    (dict(eos_id=256), ValueError, "eos_id"),
    (dict(use_cache=1), TypeError, "use_cache"),
    (dict(generator=0), TypeError, "generator"),
    (dict(max_new_tokens=-1), ValueError, "max_new_tokens"),
    (dict(ids=torch.zeros(1, 49, dtype=torch.long)), ValueError,
     "ids: the prompt has 49 tokens, more than the model's context_length=48"),
    (dict(ids=torch.zeros(1, 0, dtype=torch.long)), ValueError, "ids: expected a batch of at"),
    (dict(ids=torch.zeros(0, 2, dtype=torch.long)), ValueError, "ids: expected a batch of at"),
    (dict(ids=torch.tensor([[1, 256]])), ValueError, r"ids: expected ids in \[0, 256\)"),
    (dict(ids=torch.tensor([[-1, 2]])), ValueError, r"ids: expected ids in \[0, 256\)"),
    (dict(ids=torch.zeros(1, 2, dtype=torch.long, device="meta")), ValueError,
     "ids: on meta but the model is on cpu"),
    (dict(temperature=True), TypeError, "temperature"),
    (dict(top_k=True), TypeError, "top_k"),
    (dict(top_p="0.9"), TypeError, "top_p"),
    (dict(max_new_tokens=2.0), TypeError, "max_new_tokens"),
    (dict(max_new_tokens=None), TypeError, "max_new_tokens"),
    (dict(eos_id=True), TypeError, "eos_id"),
    (dict(eos_id=-1), ValueError, "eos_id"),
    (dict(generator=torch.zeros(1)), TypeError, "generator"),
    (dict(ids=torch.zeros(1, 3)), TypeError, "ids: expected an int tensor"),
    (dict(ids=[1, 2]), TypeError, "ids: expected a torch.Tensor"),
])
def test_generate_rejects_bad_input_before_any_work(kwargs: dict, error: type, match: str) -> None:
    model = GPT(CONFIGS["gpt2"])
    args = dict(ids=torch.tensor([[1, 2]]), max_new_tokens=3) | kwargs
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(error, match=f"^{match}"):
        generate(model, **args)
    with pytest.raises(error, match=f"^{match}"):
        stream(model, **args)  # raises on the call, not on the first step
    assert calls == []


@pytest.mark.parametrize("call,error,match", [
    (lambda: top_p_filter(torch.zeros(3), 0.0), ValueError, "p"),
    (lambda: top_p_filter(torch.zeros(3), float("nan")), ValueError, "p"),
    (lambda: top_k_filter(torch.zeros(3), 0), ValueError, "k"),
    (lambda: apply_temperature(torch.zeros(3), 0.0), ValueError, "temperature"),
    (lambda: greedy(torch.tensor([1, 2])), TypeError, "logits: expected a float tensor"),
    (lambda: greedy(torch.tensor([1.0, float("nan")])), ValueError, "logits: .*got NaN"),
    (lambda: greedy(torch.zeros(2, 0)), ValueError, "logits: expected a last axis"),
    (lambda: sample(torch.zeros(3)), ValueError, r"logits: expected shape \(B, V\)"),
    (lambda: sample(torch.zeros(1, 3), temperature=-1.0), ValueError, "temperature"),
    (lambda: sample(torch.zeros(1, 3), generator="seed"), TypeError, "generator"),
    (lambda: generate(torch.nn.Linear(2, 2), torch.zeros(1, 1, dtype=torch.long), 1), TypeError,
     "model: expected a decoder that can generate"),
    (lambda: generate(Encoder(TransformerConfig.tiny()), torch.zeros(1, 1, dtype=torch.long), 1),
     TypeError, "model: expected a decoder that can generate.*an encoder has no LM head"),
    (lambda: list(stream(Encoder(TransformerConfig.tiny()), torch.zeros(1, 1, dtype=torch.long),
                         1)), TypeError, "model: expected a decoder"),
    (lambda: generate("gpt", torch.zeros(1, 1, dtype=torch.long), 1), TypeError, "model: "),
    # logits a sampler cannot use: NaN, +inf, or a row where every token is masked
    (lambda: sample(torch.full((2, 4), float("-inf"))), ValueError,
     "logits: expected finite scores or -inf .*, got a row of only -inf"),
    (lambda: sample(torch.tensor([[0.0, 1.0], [float("-inf")] * 2])), ValueError,
     "logits: .*a row of only -inf"),
    (lambda: sample(torch.tensor([[0.0, float("inf")]])), ValueError, "logits: .*got \\+inf"),
    (lambda: sample(torch.tensor([[0.0, float("inf")]]), temperature=0.0), ValueError,
     "logits: .*got \\+inf"),
    (lambda: sample(torch.tensor([[0.0, float("nan")]]), top_k=1), ValueError, "logits: .*got NaN"),
    (lambda: top_p_filter(torch.tensor([0.0, float("inf")]), 0.9), ValueError, "logits: "),
    (lambda: top_k_filter(torch.tensor([float("-inf")] * 3), 1), ValueError, "logits: "),
    (lambda: greedy(torch.tensor([float("-inf")] * 3)), ValueError, "logits: "),
    (lambda: greedy(torch.zeros(2, 3, device="meta")), ValueError, "logits: expected a tensor "
     "with values, got a meta tensor"),
    (lambda: sample(torch.zeros(0, 3).long()), TypeError, "logits: expected a float tensor"),
    (lambda: sample(torch.zeros(2, 0)), ValueError, r"logits: expected shape \(B, V\) with V"),
    (lambda: sample(torch.zeros(1, 3), top_k=True), TypeError, "top_k"),
    (lambda: sample(torch.zeros(1, 3), top_p=0), ValueError, "top_p"),
    (lambda: sample(torch.zeros(1, 3), temperature=None), TypeError, "temperature"),
])
def test_pure_functions_reject_bad_input(call, error: type, match: str) -> None:
    with pytest.raises(error, match=f"^{match}"):
        call()


def test_a_sampled_token_reads_nothing_back_from_an_accelerator(monkeypatch) -> None:
    # Off the CPU, the per-token checks are queued on the device: take that branch on the CPU
    # (values_checked_on_device -> True) and count every value read back to the host.
    model = GPT(CONFIGS["gpt2"])
    prompt = torch.tensor([[5, 6, 7]])
    monkeypatch.setattr(generation, "check_ids", lambda name, ids, vocab, **kw: ids)
    reads = []
    for method in ("__bool__", "__int__", "__float__", "item", "tolist"):
        real = getattr(torch.Tensor, method)

        def counted(self, *args, _real=real, _method=method):
            reads.append(_method)
            return _real(self, *args)
        monkeypatch.setattr(torch.Tensor, method, counted)
    # the model's own forward is not under test here: run it with reads not counted
    forward = GPT.forward

    def quiet_forward(self, *args, **kwargs):
        before = len(reads)
        out = forward(self, *args, **kwargs)
        del reads[before:]
        return out
    monkeypatch.setattr(GPT, "forward", quiet_forward)
    from lmlab import _checks
    monkeypatch.setattr(_checks, "values_checked_on_device", lambda value: True)
    for kwargs in (dict(), dict(temperature=0.8, top_k=20, top_p=0.9,
                                generator=torch.Generator().manual_seed(0))):
        reads.clear()
        out = generate(model, prompt, 12, **kwargs)
        assert out.shape == (1, 15)
        assert reads == [], f"{len(reads)} host reads for 12 tokens: {sorted(set(reads))}"


def test_generation_on_an_accelerator_stops_like_on_the_cpu(monkeypatch) -> None:
    # On an accelerator generate() asks whether every row has stopped only every 16 tokens and
    # trims the extra columns afterwards: the result must equal the token-by-token stop.
    seed_everything(3)
    model = GPT(CONFIGS["gpt2"])
    prompt = torch.randint(0, 256, (4, 3))
    free = generate(model, prompt, 30)
    for eos in {int(free[0, 3]), int(free[1, 6]), int(free[2, 20])}:
        expected = generate(model, prompt, 30, eos_id=eos)
        monkeypatch.setattr(generation, "_stop_check_every", lambda device: 16)
        got = generate(model, prompt, 30, eos_id=eos)
        monkeypatch.undo()
        assert torch.equal(got, expected)


def test_tiny_temperatures_are_greedy_not_an_overflow() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[1.0, 3.0, 2.0, float("-inf")], [50.0, -50.0, 49.0, 0.0]])
    for t in (1e-8, 1e-30, 1e-300, 5e-324):
        assert sample(logits, temperature=t, generator=g).tolist() == [1, 0]


def test_generator_on_the_model_device_is_the_callers() -> None:
    g = torch.Generator().manual_seed(0)
    assert generation._generator_on(g, torch.device("cpu")) is g
    assert generation._generator_on(None, torch.device("cpu")) is None


@pytest.mark.gpu
def test_cpu_generator_with_a_gpu_model_samples_on_the_gpu(gpu_device) -> None:
    seed_everything(0)
    model = GPT(CONFIGS["gpt2"]).to(gpu_device)
    prompt = torch.randint(0, 256, (2, 3), device=gpu_device)
    runs = [generate(model, prompt, 20, temperature=1.0, top_p=0.9,
                     generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert runs[0].device == prompt.device
    assert torch.equal(runs[0], runs[1])  # reproducible from the seeded CPU generator
    probs = []
    real = torch.multinomial

    def spy(p, *args, **kwargs):
        probs.append(p.device)
        return real(p, *args, **kwargs)
    torch.multinomial = spy
    try:
        generate(model, prompt, 3, temperature=1.0, generator=torch.Generator().manual_seed(7))
    finally:
        torch.multinomial = real
    assert probs and all(d == prompt.device for d in probs)  # no copy to the host


def test_filters_compile_without_graph_break() -> None:
    # the logits check is an on-device assert while compiling: no .item(), no graph break
    def decode(logits):
        return greedy(top_p_filter(top_k_filter(logits, 3), 0.9))

    compiled = torch.compile(decode, backend="eager", fullgraph=True)
    logits = torch.randn(2, 10)
    assert torch.equal(compiled(logits), decode(logits))
    with pytest.raises(RuntimeError, match="logits: expected finite scores"):
        compiled(torch.full((2, 10), float("nan")))
    torch._dynamo.reset()
