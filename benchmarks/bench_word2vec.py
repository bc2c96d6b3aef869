"""Throughput and quality of lmlab.word2vec against gensim's Word2Vec, same corpus and settings.

Run: ``.venv/bin/python benchmarks/bench_word2vec.py [--epochs 3] [--workers 2]``
(wrap it in ``flock /tmp/lmlab-cpu.lock`` on a shared machine).

Corpus: the State of the Union sentences, lower-cased words (``lmlab.vocab.tokenize``), 2.0M words.
Settings for both: skip-gram, 5 negatives, window 5, min_count 5, sample 1e-3, 100 dimensions,
``--workers`` threads, linear learning-rate decay 0.025 -> 0.0001.

Throughput is in *effective words per second*: corpus words that survive min_count and
subsampling (what gensim's ``train`` returns as ``trained_word_count`` and logs as "effective
words/s"), divided by the wall time of the whole call from tokenized sentences to vectors
(vocabulary building included on both sides). Quality: analogy accuracy on Google's analogy set
(30,000 most frequent words), Spearman's rho on WordSim-353 and SimLex-999, all computed with
:class:`lmlab.vectors.WordVectors` (whose numbers equal gensim's own evaluation, see the tests).
"""

from __future__ import annotations

import argparse
import logging
import time

import torch
from gensim.models import Word2Vec

from lmlab import data
from lmlab.vocab import tokenize
from lmlab.vectors import WordVectors
from lmlab.word2vec import Word2VecConfig, train_word2vec


def quality(wv: WordVectors) -> dict[str, float]:
    return {
        "analogy accuracy": wv.evaluate_analogies(restrict_vocab=30000).accuracy,
        "WordSim-353 rho": wv.evaluate_word_similarity("wordsim353").spearman,
        "SimLex-999 rho": wv.evaluate_word_similarity("simlex999").spearman,
    }


def run_gensim(sentences: list[list[str]], epochs: int, workers: int
               ) -> tuple[int, float, WordVectors]:
    """gensim's skip-gram on ``sentences``: effective words, wall seconds (vocabulary building
    included) and the vectors."""
    start = time.perf_counter()
    model = Word2Vec(sg=1, negative=5, window=5, min_count=5, sample=1e-3, vector_size=100,
                     workers=workers, seed=0, alpha=0.025, min_alpha=1e-4)
    model.build_vocab(sentences)
    effective, _raw = model.train(sentences, total_examples=model.corpus_count, epochs=epochs)
    seconds = time.perf_counter() - start
    return effective, seconds, WordVectors(model.wv.index_to_key,
                                           torch.from_numpy(model.wv.vectors.copy()))


def run_lmlab(sentences: list[list[str]], epochs: int, workers: int
              ) -> tuple[int, float, WordVectors]:
    """:func:`run_gensim` for :func:`lmlab.word2vec.train_word2vec` on the CPU."""
    config = Word2VecConfig(epochs=epochs, workers=workers)
    start = time.perf_counter()
    ours, history = train_word2vec(sentences, config, device="cpu", show_progress=False)
    return history.effective_words, time.perf_counter() - start, ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.workers)

    sentences = [tokenize(s) for s in data.load_sentences("sotu")]
    print(f"corpus: SOTU, {len(sentences):,} sentences, {sum(map(len, sentences)):,} words; "
          f"epochs={args.epochs}, threads={args.workers}, torch {torch.__version__}")

    effective, gensim_s, gensim_wv = run_gensim(sentences, args.epochs, args.workers)
    runs = [("gensim", "cpu", effective, gensim_s, quality(gensim_wv))]
    words, seconds, ours = run_lmlab(sentences, args.epochs, args.workers)
    runs.append(("lmlab", "cpu", words, seconds, quality(ours)))

    if torch.cuda.is_available():
        gpu_config = Word2VecConfig(epochs=args.epochs, batch_size=16384, chunk_words=1 << 20)
        train_word2vec(sentences[:2000], gpu_config, device="cuda", show_progress=False)  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        gpu_wv, gpu_history = train_word2vec(sentences, gpu_config, device="cuda", show_progress=False)
        torch.cuda.synchronize()
        runs.append(("lmlab", torch.cuda.get_device_name(), gpu_history.effective_words,
                     time.perf_counter() - start, quality(gpu_wv)))

    print(f"\n{'':8}{'device':>24}{'eff. words':>12}{'seconds':>9}{'words/s':>10}"
          f"{'analogy':>9}{'WS-353':>8}{'SL-999':>8}")
    for name, device, words, seconds, q in runs:
        print(f"{name:8}{device:>24}{words:>12,}{seconds:>9.1f}{words / seconds:>10,.0f}"
              f"{q['analogy accuracy']:>9.4f}{q['WordSim-353 rho']:>8.3f}{q['SimLex-999 rho']:>8.3f}")
    base_speed = runs[0][2] / runs[0][3]
    for name, device, words, seconds, q in runs[1:]:
        print(f"\n{name} on {device} / gensim ({args.workers} threads):")
        print(f"  throughput ratio   {words / seconds / base_speed:.2f}x")
        for key, value in q.items():
            print(f"  {key:<18} ratio {value / runs[0][4][key]:.2f}x")


if __name__ == "__main__":
    main()
