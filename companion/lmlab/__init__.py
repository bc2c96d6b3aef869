"""lmlab: the companion library of the lmlab course.

One module per concept, layered bottom-up:

* :mod:`lmlab.device` -- pick a device (cuda -> mps -> cpu), seed everything, mixed precision.
* :mod:`lmlab.data` -- corpora, evaluation sets, vocabularies and weights, read from installed
  packages (never the network).
* :mod:`lmlab.bow` -- Bag of Words: tokens, vocabulary, count and TF-IDF vectors, similarity.

Later chapters add ``word2vec``, ``rnn``, ``attention``, ``tokenization``, and after them
transformer blocks and attention variants.

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

_SUBMODULES = ("device", "data", "bow", "progress", "io", "word2vec", "rnn", "attention",
               "tokenization")

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'lmlab' has no attribute {name!r}")
