"""lmlab: the companion library of the lmlab course.

One module per concept, layered bottom-up:

* :mod:`lmlab.device` -- pick a device (cuda -> mps -> cpu), seed everything, mixed precision.
* :mod:`lmlab.data` -- corpora, evaluation sets, vocabularies and weights, read from installed
  packages (never the network).
* :mod:`lmlab.io` -- atomic files and safetensors checkpoints.
* :mod:`lmlab.progress` -- the one progress bar, without timing fields.
* ``lmlab.parallel`` -- data parallelism: joining the ``torchrun`` group, rank and world size.
* :mod:`lmlab.training` -- the one training loop: schedules, clipping, evaluation, bf16 on
  CUDA, ``torch.compile``, checkpoints that resume bit-exactly, data parallelism (``torchrun``).
* ``lmlab.bow`` -- chapter 1, Bag of Words: tokens, the one vocabulary class, count and TF-IDF
  vectors.
* ``lmlab.vectors`` -- word vectors: neighbours, analogies, gensim-equal evaluation, files.
* ``lmlab.skipgram`` -- chapter 2, the skip-gram task: counts, subsampling, the noise
  distribution, windows and pairs.
* ``lmlab.word2vec`` -- chapter 2, skip-gram with negative sampling, trained for real.
* ``lmlab.attention`` -- chapter 4, dot-product and additive attention, masks.
* ``lmlab.rnn`` -- chapter 3, GRU/LSTM cells by hand, the encoder and the (attention) decoders.
* ``lmlab.batching`` -- chapters 3-4 and 6, (source, target) pairs as padded batches of ids.
* ``lmlab.seq2seq`` -- chapters 3-4, the encoder-decoder model: training, greedy and beam decoding,
  checkpoints.
* ``lmlab.g2p`` -- chapters 3-4, spelling -> pronunciation on CMUdict, scoring, g2p_en's weights.
* ``lmlab.byte_pairs``, ``lmlab.bpe``, ``lmlab.tokenization`` and ``lmlab.embedding`` -- chapter
  5, the byte-pair primitives, byte-level BPE, WordPiece and the real tokenizers, embeddings and
  the tied language-model head.
* ``lmlab.positions``, ``lmlab.sublayers``, ``lmlab.transformer`` and ``lmlab.model_files`` --
  chapter 6, positions, multi-head (grouped-query) attention with a KV cache, the feed-forward
  network, blocks, GPT, encoder and encoder-decoder, and a model with its config in one file.
* ``lmlab.generation`` -- chapters 6-7, greedy, temperature, top-k and top-p decoding.
* ``lmlab.gguf_file``, ``lmlab.pretrained`` and ``lmlab.llama`` -- chapter 7, real MiniLM and
  SmolLM2 weights on lmlab's blocks (loading by table and BERT; the Llama family and chat).
* ``lmlab.gqa`` -- chapter 8, a trained model moved between multi-head, grouped-query and
  multi-query attention (key/value heads split or averaged).
* ``lmlab.blockwise``, ``lmlab.sparse`` and ``lmlab.ring`` -- chapter 8, the online softmax,
  sparse patterns and block-sparse attention, ring attention over ``torch.distributed``.

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

Submodules are imported on first use (``lmlab.bow``), so ``import lmlab`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = ("device", "data", "io", "model_files", "progress", "parallel", "training_state",
               "training", "vocab", "bow", "vectors", "skipgram", "word2vec", "attention", "rnn",
               "batching", "seq2seq", "g2p", "byte_pairs", "bpe_files", "bpe", "hf_tokenizers",
               "wordpiece", "display", "embedding", "positions", "sublayers", "transformer",
               "generation", "weights", "gguf_file", "gguf_tokenizer", "chat_template",
               "pretrained", "llama", "gqa", "blockwise", "sparse", "ring", "exercises")

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'lmlab' has no attribute {name!r}")
