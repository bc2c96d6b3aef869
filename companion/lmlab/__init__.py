"""lmlab: the companion library of the lmlab course.

The main classes and functions are names of the package itself, imported on first use
(``import lmlab`` imports neither torch nor any submodule)::

    import lmlab

    tok = lmlab.BPETokenizer()                       # byte-level BPE (lmlab.bpe)
    tok.train(text, vocab_size=4096)
    model = lmlab.GPT(lmlab.TransformerConfig.small(vocab_size=tok.vocab_size))
    logits, loss = model(inputs, targets)            # inputs, targets: lmlab.batching windows
    model.save("gpt.safetensors")                    # one file: weights and config
    model = lmlab.load("gpt.safetensors")            # any model file, by the kind it holds

They are :data:`MAIN_NAMES`. Underneath, one module per concept, layered bottom-up:

* :mod:`lmlab.device` -- pick a device (cuda -> mps -> cpu), seed everything, mixed precision.
* :mod:`lmlab.data` -- corpora, evaluation sets, vocabularies and weights, read from installed
  packages (never the network).
* :mod:`lmlab.io` -- atomic files and safetensors files.
* :mod:`lmlab.model_files` -- one file format for every trained model (its config in the
  header), ``lmlab.load``.
* :mod:`lmlab.progress` -- the one progress bar, without timing fields.
* :mod:`lmlab.parallel` -- data parallelism: joining the ``torchrun`` group, rank and world size.
* :mod:`lmlab.training_state` and :mod:`lmlab.training` -- the one training loop: schedules,
  clipping, evaluation, bf16 on CUDA, ``torch.compile``, checkpoints that resume bit-exactly,
  data parallelism (``torchrun``).
* :mod:`lmlab.vocab` -- words out of text and the one vocabulary class (ids, special tokens).
* :mod:`lmlab.bow` -- chapter 1, Bag of Words: count and TF-IDF vectors, cosine similarity.
* :mod:`lmlab.vectors` -- word vectors: neighbours, analogies, gensim-equal evaluation, files.
* :mod:`lmlab.skipgram` -- chapter 2, the skip-gram task: counts, subsampling, the noise
  distribution, windows and pairs.
* :mod:`lmlab.word2vec` -- chapter 2, skip-gram with negative sampling, trained for real.
* :mod:`lmlab.attention` -- chapter 4, dot-product and additive attention, masks.
* :mod:`lmlab.rnn` -- chapter 3, GRU/LSTM cells by hand, the encoder and the (attention)
  decoders.
* :mod:`lmlab.batching` -- chapters 3-4 and 6, (source, target) pairs as padded batches of ids,
  and the (input, target) windows of a token stream.
* :mod:`lmlab.seq2seq` -- chapters 3-4, the encoder-decoder model: training, greedy and beam
  decoding.
* :mod:`lmlab.g2p` -- chapters 3-4, spelling -> pronunciation on CMUdict, scoring, g2p_en's
  weights.
* :mod:`lmlab.byte_pairs`, :mod:`lmlab.bpe_files`, :mod:`lmlab.bpe`, :mod:`lmlab.hf_tokenizers`,
  :mod:`lmlab.wordpiece`, :mod:`lmlab.display` and :mod:`lmlab.embedding` -- chapter 5, the
  byte-pair primitives, byte-level BPE and its files, Hugging Face's references, WordPiece,
  tokens as HTML, embeddings and the tied language-model head.
* :mod:`lmlab.positions`, :mod:`lmlab.sublayers`, :mod:`lmlab.transformer_config` and
  :mod:`lmlab.transformer` -- chapter 6, positions, multi-head (grouped-query) attention with a
  KV cache, the feed-forward network, the config, blocks, GPT, encoder and encoder-decoder.
* :mod:`lmlab.generation` -- chapters 6-7, greedy, temperature, top-k and top-p decoding.
* :mod:`lmlab.weights`, :mod:`lmlab.gguf_file`, :mod:`lmlab.gguf_tokenizer`,
  :mod:`lmlab.chat_template`, :mod:`lmlab.pretrained` and :mod:`lmlab.llama` -- chapter 7, real
  MiniLM and SmolLM2 weights on lmlab's blocks: loading by table, GGUF files, their tokenizer
  and chat template, BERT sentence embeddings, the Llama family and chat.
* :mod:`lmlab.gqa` -- chapter 8, a trained model moved between multi-head, grouped-query and
  multi-query attention (key/value heads split or averaged).
* :mod:`lmlab.blockwise`, :mod:`lmlab.sparse` and :mod:`lmlab.ring` -- chapter 8, the online
  softmax, sparse patterns and block-sparse attention, ring attention over
  ``torch.distributed``.
* :mod:`lmlab.exercises` -- the checkers of the chapters' exercises.

Shape letters used in every docstring and shape comment:

====  ==========================================
B     batch size
T     query (target) length
S     key / source length
C     model width (``d_model``)
H     attention heads (``num_heads``)
G     key/value heads (``num_kv_heads``)
D     head width (``head_dim``)
V     vocabulary size (``vocab_size``)
N     number of documents / vectors
R     recurrent state width (``hidden_size``)
A     additive attention's score width (``attention_dim``)
K     negatives per window (word2vec)
M     context slots per window (word2vec, ``2 * window``)
====  ==========================================

Boolean masks mean ``True = may attend`` everywhere, as in
:func:`torch.nn.functional.scaled_dot_product_attention`.

Submodules are imported on first use too (``lmlab.bow``), so ``import lmlab`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = ("device", "data", "io", "model_files", "progress", "parallel", "training_state",
               "training", "vocab", "bow", "vectors", "skipgram", "word2vec", "attention", "rnn",
               "batching", "seq2seq", "g2p", "byte_pairs", "bpe_files", "bpe", "hf_tokenizers",
               "wordpiece", "display", "embedding", "positions", "sublayers", "transformer_config",
               "transformer", "generation", "weights", "gguf_file", "gguf_tokenizer",
               "chat_template", "pretrained", "llama", "knockout", "gqa", "blockwise", "sparse",
               "ring", "exercises")

MAIN_NAMES: dict[str, str] = {
    "GPT": "transformer", "Encoder": "transformer", "EncoderDecoder": "transformer",
    "TransformerConfig": "transformer_config", "BPETokenizer": "bpe", "Vocabulary": "vocab",
    "WordVectors": "vectors", "Word2VecConfig": "word2vec", "train_word2vec": "word2vec",
    "Seq2Seq": "seq2seq", "Seq2SeqConfig": "seq2seq", "SentenceEncoder": "pretrained",
    "ChatModel": "llama", "TrainConfig": "training", "train": "training",
    "generate": "generation", "get_device": "device", "seed_everything": "device",
    "load": "model_files", "MissingDataError": "data",
}
"""The package's own names: name -> the module that defines it (``lmlab.GPT`` is
``lmlab.transformer.GPT``)."""

__all__ = ["__version__", "MAIN_NAMES", *MAIN_NAMES, *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in MAIN_NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{MAIN_NAMES[name]}"), name)
        globals()[name] = value  # looked up once
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'lmlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
