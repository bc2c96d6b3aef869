"""Benchmark SmolLM2's GGUF tokenizer on long runs without spaces against ``tokenizers``.

A run of random ASCII letters is one pre-tokenizer chunk (``\\p{L}+``), so encoding it is one
call of the ranked merge loop on a chunk as long as the text. A loop that looks for the best
pair again after every merge is quadratic in that length; :func:`lmlab.byte_pairs.merge_ranked`
(a heap of candidate merges over a linked list) is near-linear, as ``tokenizers``' own
``Word::merge_all``. Goal (issue 16): each doubling of the length costs about 2x (quadratic
would be 4x).

Lengths n, 2n, 4n, 8n (default 4,000 to 32,000 letters). Each timed call gets a text it has not
seen (a new random string per repeat), so neither tokenizer's cache of encoded chunks helps;
best of ``--repeats`` runs. Times are the process's CPU time (``time.process_time``), not wall
time: on a shared machine the wall clock also counts the time other processes held the core. The reference is SmolLM2's tokenizer in ``tokenizers``, built the
way the tests build it: transformers' reader of the same GGUF file, with the file's ``smollm``
pre-tokenizer (every digit alone, then GPT-2's byte-level regex). Both must give the same ids
on every text (checked; a mismatch stops the benchmark).

One thread for ``tokenizers`` (``RAYON_NUM_THREADS=1``, set here) so the two are compared
core for core.

Run: ``PYTHONPATH=companion python benchmarks/bench_gguf_tokenizer.py [--start 4000]
[--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import random
import string
import time

from lmlab.gguf_file import GGUFFile, smollm2_gguf_file
from lmlab.gguf_tokenizer import GGUFTokenizer


def reference_tokenizer(file: GGUFFile):
    """SmolLM2's tokenizer in ``tokenizers`` (None when transformers or tokenizers is missing)."""
    try:
        import copy

        from tokenizers import pre_tokenizers
        from transformers import AutoTokenizer
    except ImportError:
        return None
    hf = AutoTokenizer.from_pretrained(str(file.path.parent), gguf_file=file.path.name)
    backend = copy.deepcopy(hf.backend_tokenizer)
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    return backend


def letters(n: int, rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_letters, k=n))


def best_time(encode, n: int, repeats: int, rng: random.Random) -> tuple[float, list[str]]:
    """Fastest of ``repeats`` calls, each on a new text of ``n`` letters; the texts used."""
    best, texts = float("inf"), []
    for _ in range(repeats):
        text = letters(n, rng)
        start = time.process_time()
        encode(text)
        best = min(best, time.process_time() - start)
        texts.append(text)
    return best, texts


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--start", type=int, default=4000, help="the first length n")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    # before tokenizers' thread pool starts (on its first parallel call); set in main, not on
    # import, so that importing reference_tokenizer from here changes no one's thread count
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    lengths = [args.start * 2 ** i for i in range(4)]
    file = GGUFFile(smollm2_gguf_file())
    ours = GGUFTokenizer.from_gguf(file)
    ref = reference_tokenizer(file)
    rng = random.Random(0)
    ours.encode(letters(100, rng))  # warm-up
    if ref is not None:
        ref.encode(letters(100, rng), add_special_tokens=False)
    times: dict[str, list[float]] = {"lmlab": [], "tokenizers": []}
    for n in lengths:
        t, texts = best_time(ours.encode, n, args.repeats, rng)
        times["lmlab"].append(t)
        if ref is not None:
            t_ref, _ = best_time(lambda s: ref.encode(s, add_special_tokens=False), n,
                                 args.repeats, rng)
            times["tokenizers"].append(t_ref)
            for text in texts:
                if ours.encode(text) != ref.encode(text, add_special_tokens=False).ids:
                    raise SystemExit(f"ids differ from tokenizers' on a text of {n} letters")
    print(f"SmolLM2 GGUF tokenizer, one chunk of n random ASCII letters, CPU seconds, best of "
          f"{args.repeats}")
    header = f"{'n':>7} {'lmlab s':>9} {'x per 2n':>9}"
    if ref is not None:
        header += f" {'tokenizers s':>13} {'x per 2n':>9} {'lmlab/tokenizers':>17}"
    print(header)
    for i, n in enumerate(lengths):
        growth = f"{times['lmlab'][i] / times['lmlab'][i - 1]:>8.2f}x" if i else f"{'':>9}"
        row = f"{n:>7} {times['lmlab'][i]:>9.4f} {growth}"
        if ref is not None:
            t_ref = times["tokenizers"][i]
            g_ref = f"{t_ref / times['tokenizers'][i - 1]:>8.2f}x" if i else f"{'':>9}"
            row += f" {t_ref:>13.5f} {g_ref} {times['lmlab'][i] / t_ref:>16.1f}x"
        print(row)
    overall = times["lmlab"][-1] / times["lmlab"][0]
    print(f"lmlab: {lengths[-1] // lengths[0]}x the length costs {overall:.1f}x the time "
          f"({overall ** (1 / 3):.2f}x per doubling; linear 2x, quadratic 4x)")
    if ref is None:
        print("tokenizers/transformers not installed: no reference timing")
    else:
        print("ids equal to tokenizers' on every text timed")
    return times


if __name__ == "__main__":
    main()
