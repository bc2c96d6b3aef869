"""lmlab: the companion library of the lmlab course.

One module per concept, layered bottom-up:

* :mod:`lmlab.device` -- pick a device (cuda -> mps -> cpu), seed everything, mixed precision.
* :mod:`lmlab.data` -- corpora, evaluation sets, vocabularies and weights, read from installed
  packages (never the network).
* :mod:`lmlab.io` -- atomic files and safetensors checkpoints.
* :mod:`lmlab.progress` -- the one progress bar, without timing fields.
* :mod:`lmlab.training` -- the one training loop: schedules, clipping, evaluation, bf16 on
  CUDA, ``torch.compile``, checkpoints that resume bit-exactly, data parallelism (``torchrun``).
* ``lmlab.bow`` -- chapter 1, Bag of Words: tokens, vocabulary, count and TF-IDF vectors.
* ``lmlab.word2vec`` -- chapter 2, skip-gram with negative sampling and word vectors.
* ``lmlab.rnn`` -- chapter 3, GRU/LSTM encoder-decoder with greedy and beam decoding.
* ``lmlab.attention`` -- chapter 4, dot-product and additive attention, masks.
* ``lmlab.tokenization`` and ``lmlab.embedding`` -- chapter 5, BPE and WordPiece tokenizers,
  embeddings and the tied language-model head.
* ``lmlab.positions``, ``lmlab.transformer`` and ``lmlab.generation`` -- chapter 6, learned,
  sinusoidal and rotary positions; transformer blocks, GPT, encoder, encoder-decoder; decoding.
* ``lmlab.gguf_file`` and ``lmlab.pretrained`` -- chapter 7, GGUF files (dequantised weights,
  tokenizer, chat template); MiniLM and SmolLM2 loaded into lmlab's own encoder and GPT.
* ``lmlab.blockwise`` -- chapter 8, blockwise attention with the online softmax; partials merge.
* ``lmlab.sparse`` -- chapter 8, sliding-window, strided and global patterns; block-sparse
  attention.
* ``lmlab.ring`` -- chapter 8, ring attention over ``torch.distributed`` and simulated.

Transformer blocks (chapter 6) and attention variants (chapter 7) build on these.

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
E     embedding width (``dim``)
====  ==========================================

Boolean masks mean ``True = may attend`` everywhere, as in
:func:`torch.nn.functional.scaled_dot_product_attention`.

Submodules are imported on first use (``lmlab.bow``), so ``import lmlab`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = ("device", "data", "io", "progress", "training", "bow", "word2vec", "rnn",
               "attention", "tokenization", "embedding", "positions", "transformer",
               "generation", "gguf_file", "pretrained", "blockwise", "sparse", "ring")

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'lmlab' has no attribute {name!r}")
