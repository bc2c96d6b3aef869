"""word2vec: skip-gram with negative sampling (SGNS), trained for real.

Bag of Words (:mod:`lmlab.bow`) sees a sentence as a set of word ids with no meaning. word2vec
learns a vector per word by playing a guessing game: given a *center* word, is this other word a
real neighbour from the text (label 1) or a random word drawn from the vocabulary (label 0)?
:mod:`lmlab.skipgram` makes the game's data (counts, subsampling, windows, negatives); this
module holds the model that plays it and the trainer::

    center, context = skipgram_windows(ids, sentence_ids, window=5)  # lmlab.skipgram
    negatives = sample_negatives(noise_distribution(counts), (B, K))  # lmlab.skipgram
    loss = model(center, context, negatives)                # the "are these neighbours?" loss

:func:`train_word2vec` runs it all with a linearly decaying learning rate and returns
:class:`lmlab.vectors.WordVectors` (neighbours, analogies, evaluation, files) and a
:class:`TrainingHistory` to plot.

Letters (the package's table): B windows in a batch, M context slots per window
(``2 * window``), K negatives per window, C width of a vector (``d_model``), V vocabulary size,
N words of a stretch of text (or pairs).
"""

from __future__ import annotations

import logging
import math
import numbers
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmlab._checks import (
    check_bool, check_device, check_float, check_generator, check_int, check_int_values,
    check_same_device, check_same_dtype, check_tensor,
)
from lmlab.device import get_device
from lmlab.model_files import ModelFile, ModelFileMixin
from lmlab.progress import progress
from lmlab.skipgram import (
    MAX_GRID,
    AliasTable,
    as_sentences,
    keep_probabilities,
    noise_distribution,
    skipgram_windows,
    word_counts,
)
from lmlab.vectors import WordVectors

__all__ = ["Word2VecConfig", "sgns_loss", "SkipGramNegativeSampling", "TrainingHistory",
           "train_word2vec"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Word2VecConfig:
    """Hyper-parameters of skip-gram with negative sampling (gensim's names in comments).

    The defaults are gensim's ``Word2Vec(sg=1)`` defaults, except the batch size, which gensim
    does not have (it updates after every pair), and ``epochs`` (gensim: 5). Every field is
    checked on creation: a wrong type raises ``TypeError``, a value out of range (NaN and
    infinity included) ``ValueError``, naming the field.

    Example:
        >>> Word2VecConfig.small().d_model
        50
        >>> Word2VecConfig(sample=float("nan"))
        Traceback (most recent call last):
        ...
        ValueError: sample: expected a finite number, got nan
    """

    d_model: int = 100  # C, width of a word vector, 1..65536 (gensim: vector_size)
    window: int = 5  # largest center-context distance (>= 1); each center draws 1..window
    negatives: int = 5  # K, random "non-neighbours" per window, 1..1000 (gensim: negative)
    min_count: int = 5  # drop words seen fewer times than this (>= 1)
    sample: float = 1e-3  # subsampling threshold t (>= 0): commoner words drop at random; 0 = off
    ns_exponent: float = 0.75  # negatives are drawn from unigram counts ** ns_exponent (finite)
    epochs: int = 1  # passes over the corpus (>= 1; gensim: 5)
    lr: float = 0.025  # starting learning rate (> 0; gensim: alpha)
    min_lr: float = 1e-4  # learning rate at the end, reached linearly, 0..lr (gensim: min_alpha)
    batch_size: int = 1024  # B, windows (a center with its contexts) per update (>= 1)
    chunk_words: int = 65536  # corpus words turned into windows at once; bounds memory (>= 1)
    workers: int = 1  # CPU threads training at once, 1..256 (lock-free); only 1 is reproducible
    seed: int = 0  # seed of the initial vectors, subsampling, windows and negatives (>= 0)

    def __post_init__(self) -> None:
        check_int("d_model", self.d_model, maximum=65536)
        check_int("window", self.window)
        check_int("negatives", self.negatives, maximum=1000)
        check_int("min_count", self.min_count)
        check_int("epochs", self.epochs)
        check_int("batch_size", self.batch_size)
        check_int("chunk_words", self.chunk_words)
        check_int("workers", self.workers, maximum=256)
        check_int("seed", self.seed, minimum=0)
        check_float("sample", self.sample, minimum=0.0)
        check_float("ns_exponent", self.ns_exponent)
        check_float("lr", self.lr, minimum=0.0, min_inclusive=False)
        check_float("min_lr", self.min_lr, minimum=0.0, maximum=self.lr)
        if 2 * self.window * self.chunk_words > MAX_GRID:
            raise ValueError(f"window: 2 * window * chunk_words must be at most {MAX_GRID:,} (the "
                             f"window grid of one chunk), got window={self.window}, "
                             f"chunk_words={self.chunk_words}; lower chunk_words")

    @classmethod
    def tiny(cls) -> Word2VecConfig:
        """For tests and examples: 16-wide vectors, window 2, every word kept, one epoch."""
        return cls(d_model=16, window=2, negatives=3, min_count=1, epochs=1, batch_size=64,
                   chunk_words=4096)

    @classmethod
    def small(cls) -> Word2VecConfig:
        """A short live run (chapter 2): 50-wide vectors and one epoch, gensim's other defaults."""
        return cls(d_model=50, epochs=1)

    @classmethod
    def base(cls) -> Word2VecConfig:
        """Chapter 2's checkpoints: gensim's skip-gram defaults (100 wide) with three epochs."""
        return cls(d_model=100, epochs=3)


# --------------------------------------------------------------------------- the model


def sgns_loss(input_vecs: torch.Tensor, target_vecs: torch.Tensor,
              negative_vecs: torch.Tensor) -> torch.Tensor:
    """The negative-sampling loss of each pair: ``-log s(v . u_t) - sum_k log s(-v . u_k)``.

    ``s`` is the sigmoid: the model's probability that two words are neighbours. The loss is
    small when the real neighbour scores high and the K random words score low. In
    :class:`SkipGramNegativeSampling`, ``v`` is the *context* word's input vector and ``u_t``
    the *center* word's output vector (word2vec.c's and gensim's orientation).

    Args:
        input_vecs: input vectors ``v`` (the word vectors one keeps).
        target_vecs: output vectors ``u_t`` of the real neighbours.
        negative_vecs: output vectors ``u_k`` of the negatives.

    Returns:
        The loss of every pair.

    Shape:
        ``(B, C)``, ``(B, C)``, ``(B, K, C)`` -> ``(B,)``

    Example:
        >>> v = torch.zeros(1, 2)  # every score 0: probability 1/2 for each of 1 + K guesses
        >>> sgns_loss(v, v, torch.zeros(1, 3, 2))  # 4 * log 2
        tensor([2.7726])
    """
    check_tensor("input_vecs", input_vecs, ndim=2, dtype="float")
    check_tensor("target_vecs", target_vecs, ndim=2, dtype="float")
    check_tensor("negative_vecs", negative_vecs, ndim=3, dtype="float")
    B, C = input_vecs.shape
    if target_vecs.shape != (B, C) or negative_vecs.shape[0] != B or negative_vecs.shape[2] != C:
        raise ValueError(f"input_vecs, target_vecs, negative_vecs: expected (B, C), (B, C), "
                         f"(B, K, C), got {tuple(input_vecs.shape)}, {tuple(target_vecs.shape)}, "
                         f"{tuple(negative_vecs.shape)}")
    vecs = dict(input_vecs=input_vecs, target_vecs=target_vecs, negative_vecs=negative_vecs)
    check_same_device(**vecs)
    check_same_dtype(**vecs)
    positive = (input_vecs * target_vecs).sum(-1)  # (B,)
    negative = torch.bmm(negative_vecs, input_vecs.unsqueeze(2)).squeeze(2)  # (B, K)
    return -(F.logsigmoid(positive) + F.logsigmoid(-negative).sum(-1))


class SkipGramNegativeSampling(ModelFileMixin, nn.Module):
    """Two embedding tables: ``input`` (the word vectors one keeps) and ``output``.

    Initialised like word2vec: input rows uniform in ``±0.5 / C``, output rows zero.

    A batch is B windows: a center word, up to M context words around it (``-1`` pads) and K
    negatives. Every (context, center) pair is one example of :func:`sgns_loss`: the context
    word's input vector must score its center's output vector high and the negatives' output
    vectors low. That is word2vec.c's and gensim's orientation; many texts (d2l among them)
    write the center's input vector against the context's output vector instead. Over a corpus
    the pairs are the same either way, but which word's input vector a step moves differs. The
    K negatives are shared by the pairs of a window (Ji et al., 2016, "Parallelizing Word2Vec in
    Shared and Distributed Memory"), which keeps each pair's loss the same in expectation and
    turns the scores into one batched matrix product per batch.

    Args:
        vocab_size: V, number of words (>= 1).
        d_model: C, width of a vector (>= 1).
        generator: for a reproducible initialisation.

    ``save``/``load`` write and read one model file (:mod:`lmlab.model_files`); the vectors
    with their words are :class:`lmlab.vectors.WordVectors`.

    Shape:
        ``input.weight``, ``output.weight``: ``(V, C)``
    """

    kind = "SkipGramNegativeSampling"

    def __init__(self, vocab_size: int, d_model: int,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size)
        check_int("d_model", d_model, maximum=65536)
        check_generator("generator", generator, torch.device("cpu"))  # the init runs on the CPU
        self.input = nn.Embedding(vocab_size, d_model)
        self.output = nn.Embedding(vocab_size, d_model)
        with torch.no_grad():
            init = torch.rand(vocab_size, d_model, generator=generator)
            self.input.weight.copy_((init - 0.5) / d_model)
            self.output.weight.zero_()

    def file_config(self) -> dict[str, Any]:
        """The config :meth:`~lmlab.model_files.ModelFileMixin.save` writes: ``{"vocab_size": V, "d_model": C}``."""
        return {"vocab_size": self.input.weight.shape[0], "d_model": self.input.weight.shape[1]}

    @classmethod
    def from_file_config(cls, file: ModelFile) -> SkipGramNegativeSampling:
        """A model of a model file's shape (:meth:`~lmlab.model_files.ModelFileMixin.load` fills its tables)."""
        try:
            return cls(file.field("vocab_size"), file.field("d_model"))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{file.path}: the {cls.kind} config is invalid: {err}") from None

    def _check_batch(self, center: object, context: object, negatives: object) -> None:
        V, device = self.input.weight.shape[0], self.input.weight.device
        check_tensor("center", center, ndim=1, dtype="int")
        check_tensor("context", context, ndim=2, dtype="int")
        check_tensor("negatives", negatives, ndim=2, dtype="int")
        B = center.shape[0]
        if context.shape[0] != B or negatives.shape[0] != B:
            raise ValueError(f"center, context, negatives: expected (B,), (B, M), (B, K), got "
                             f"{tuple(center.shape)}, {tuple(context.shape)}, "
                             f"{tuple(negatives.shape)}")
        for name, t, low in (("center", center, 0), ("context", context, -1),
                             ("negatives", negatives, 0)):
            if t.device != device:
                raise ValueError(f"{name}: expected a tensor on the model's device {device}, "
                                 f"got {t.device}")
            # no host sync on a GPU: the range check is queued on the device there
            check_int_values(name, t, low, V, what="ids")

    def forward(self, center: torch.Tensor, context: torch.Tensor,
                negatives: torch.Tensor) -> torch.Tensor:
        """Mean loss per (context, center) pair of a batch of windows (see :func:`sgns_loss`).

        Args:
            center: the center word of each window.
            context: its context words, ``-1`` = no word.
            negatives: the window's negatives, shared by its pairs.

        Returns:
            The mean loss per pair (NaN for a batch without pairs).

        Shape:
            ``center``: ``(B,)``, ``context``: ``(B, M)``, ``negatives``: ``(B, K)`` -> scalar
        """
        self._check_batch(center, context, negatives)
        mask = context >= 0  # (B, M)
        rows = torch.arange(center.shape[0], device=center.device)
        rows = rows.unsqueeze(1).expand_as(mask)[mask]  # (N,) the window of each pair
        return sgns_loss(self.input(context[mask]), self.output(center)[rows],
                         self.output(negatives)[rows]).mean()

    @torch.no_grad()
    def sgd_step(self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor,
                 lr: float) -> torch.Tensor:
        """One plain SGD step on the summed loss of the batch, gradients written out by hand.

        The gradient of the loss with respect to a score ``s`` is ``sigmoid(s) - label``; each
        table row moves by ``lr`` times the sum of its gradients, added in place with
        ``scatter_add_`` (as word2vec's C code does pair by pair). No autograd graph, no optimizer
        state, only the touched rows. Equal to ``lr`` times the gradient of ``forward(...)``
        times the number of pairs.

        Args:
            center: the center word of each window.
            context: its context words, ``-1`` = no word.
            negatives: the window's negatives.
            lr: the learning rate (> 0, finite).

        Returns:
            The mean loss per pair before the step (0 for a batch without pairs).

        Shape:
            ``center``: ``(B,)``, ``context``: ``(B, M)``, ``negatives``: ``(B, K)`` -> scalar
        """
        self._check_batch(center, context, negatives)
        lr = check_float("lr", lr, minimum=0.0, min_inclusive=False)
        rows, weight, targets = _step_inputs(center, context, negatives)
        return self._step(rows, weight, targets, _signs(targets.shape[1], self.input.weight), lr)

    @torch.no_grad()
    def _step(self, rows: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
              sign: torch.Tensor, lr: float) -> torch.Tensor:
        """:meth:`sgd_step` without the checks, on batches the trainer built itself.

        ``rows``: ``(B, M)`` context ids (a pad may hold any valid id), ``weight``: ``(B, M, 1)``
        1 for a real context and 0 for a pad, ``targets``: ``(B, 1+K)`` the center, then the
        negatives, ``sign``: ``(1+K,)`` from :func:`_signs`.
        """
        W_in, W_out = self.input.weight.data, self.output.weight.data
        C = W_in.shape[1]
        # index_select copies the same rows as W[rows] does, about 4x faster on a CPU
        v = W_in.index_select(0, rows.reshape(-1)).view(*rows.shape, C)  # (B, M, C)
        u = W_out.index_select(0, targets.reshape(-1)).view(*targets.shape, C)  # (B, 1+K, C)
        scores = torch.bmm(v, u.transpose(1, 2))  # (B, M, 1+K)
        g = (sign.clamp(min=0) - torch.sigmoid(scores)) * weight  # (B, M, 1+K) label - s
        grad_v = torch.bmm(g, u)  # (B, M, C)
        grad_u = torch.bmm(g.transpose(1, 2), v)  # (B, 1+K, C)
        # scatter_add_ adds rows as index_add_ does, about 2x faster on a CPU
        W_in.scatter_add_(0, rows.reshape(-1, 1).expand(-1, C), grad_v.reshape(-1, C).mul_(lr))
        W_out.scatter_add_(0, targets.reshape(-1, 1).expand(-1, C),
                           grad_u.reshape(-1, C).mul_(lr))
        loss = -(F.logsigmoid(scores * sign) * weight).sum()
        return loss / weight.sum().clamp(min=1)


def _step_inputs(center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What :meth:`SkipGramNegativeSampling._step` reads: ``rows`` ``(B, M)`` (pads read row 0),
    ``weight`` ``(B, M, 1)`` (0 for a pad: a zero gradient) and ``targets`` ``(B, 1+K)`` (the
    center, then the negatives). Sliced along B (and M for rows and weight), they stay valid."""
    targets = torch.cat([center.unsqueeze(1), negatives], dim=1)
    return context.clamp(min=0), (context >= 0).unsqueeze(2), targets


def _signs(n_targets: int, like: torch.Tensor) -> torch.Tensor:
    """``(1+K,)``: +1 for the real center, -1 for each negative (dtype and device of ``like``)."""
    sign = torch.full((n_targets,), -1.0, dtype=like.dtype, device=like.device)
    sign[0] = 1.0
    return sign


# --------------------------------------------------------------------------- training


@dataclass
class TrainingHistory:
    """What :func:`train_word2vec` records, for plotting and for throughput figures.

    Plain lists and ints, so ``TrainingHistory(**dataclasses.asdict(h))`` rebuilds one (the
    chapter's checkpoints keep it as JSON).
    """

    words: list[int] = field(default_factory=list)  # effective words trained on at each record
    loss: list[float] = field(default_factory=list)  # mean pair loss since the previous record
    lr: list[float] = field(default_factory=list)  # learning rate at each record
    raw_words: int = 0  # corpus words (in the vocabulary) times epochs
    effective_words: int = 0  # words left after subsampling, summed over epochs
    pairs: int = 0  # (center, context) pairs trained on

    def __post_init__(self) -> None:
        for name in ("words", "loss", "lr"):
            values = getattr(self, name)
            if not isinstance(values, list):
                raise TypeError(f"{name}: expected a list, got {type(values).__name__}")
            for i, v in enumerate(values):
                if name == "words":
                    check_int(f"words[{i}]", v, minimum=0)
                elif name == "lr":
                    check_float(f"lr[{i}]", v, minimum=0.0)
                elif isinstance(v, bool) or not isinstance(v, numbers.Real):
                    raise TypeError(f"loss[{i}]: expected a number, got {type(v).__name__}")
        if not len(self.words) == len(self.loss) == len(self.lr):
            raise ValueError(f"words, loss, lr: expected one entry each per record, got "
                             f"{len(self.words)}, {len(self.loss)} and {len(self.lr)}")
        for name in ("raw_words", "effective_words", "pairs"):
            check_int(name, getattr(self, name), minimum=0)


def _encode(sentences: list[Sequence[str]], words: Sequence[str]
            ) -> tuple[torch.Tensor, torch.Tensor]:
    index = {w: i for i, w in enumerate(words)}
    lengths = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
    # map over two iterables is index.get(word, -1) for every word, in a C loop
    flat = np.fromiter(map(index.get, chain.from_iterable(sentences), repeat(-1)),
                       dtype=np.int64, count=int(lengths.sum()))
    sent = np.repeat(np.arange(len(sentences), dtype=np.int64), lengths)
    known = flat >= 0  # words below min_count are skipped, as in gensim
    return torch.from_numpy(flat[known]), torch.from_numpy(sent[known])


def _batches_by_width(center: torch.Tensor, context: torch.Tensor, size: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor,
                                                          list[tuple[int, int, int]]]:
    """Shuffled windows regrouped so that a batch needs few ``-1`` pad columns.

    A window of a center with ``b`` drawn has at most ``2 b`` contexts, yet every row of
    ``context`` is ``2 * window`` wide; a step on the full width spends about 40% of its work
    on pads. Here the windows are ordered by their number of contexts (stably, so they stay
    shuffled within a width), cut into batches of ``size``, each cut to its widest row, and the
    batches are shuffled. Every window is still trained on once per epoch.

    Returns:
        ``(center, context, batches)``: the windows reordered and ``(start, end, width)`` of
        each batch in training order (one host sync, once per chunk).
    """
    n_context = (context >= 0).sum(dim=1)  # (B,) real contexts first, then pads
    order = torch.sort(n_context, stable=True).indices
    center, context = center.index_select(0, order), context.index_select(0, order)
    n_context = n_context.index_select(0, order)
    B = center.shape[0]
    ends = torch.arange(size, B + size, size, device=center.device).clamp(max=B)
    widths = n_context[ends - 1].tolist() if B else []
    spans = [(b, e) for b, e in zip(range(0, B, size), ends.tolist())]
    shuffle = torch.randperm(len(spans), generator=generator, device=center.device).tolist()
    return center, context, [(*spans[i], widths[i]) for i in shuffle]


class _Run:
    """The shared state of one training run (read and written by every worker thread)."""

    def __init__(self, model: SkipGramNegativeSampling, ids: torch.Tensor,
                 sentence_ids: torch.Tensor, keep: torch.Tensor, noise: AliasTable,
                 config: Word2VecConfig, record_every: int, bar: object) -> None:
        self.model, self.ids, self.sentence_ids = model, ids, sentence_ids
        self.keep, self.noise, self.config = keep, noise, config
        self.record_every, self.bar = record_every, bar
        N = ids.shape[0]
        self.starts = list(range(0, N, config.chunk_words))
        self.total = config.epochs * len(self.starts)
        self.history = TrainingHistory(raw_words=N * config.epochs)
        self.done = 0  # chunks finished
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()

    def work(self, worker: int, workers: int) -> None:
        try:
            self._work(worker, workers)
        except BaseException as err:  # re-raised by train_word2vec in the caller's thread
            with self.lock:
                self.errors.append(err)

    def _work(self, worker: int, workers: int) -> None:
        cfg, device = self.config, self.ids.device
        gen = torch.Generator(device).manual_seed(cfg.seed + 1 + worker)
        running, steps = torch.zeros((), device=device), 0
        sign = _signs(1 + cfg.negatives, self.model.input.weight)
        # the workers share batch_size: twice the windows in flight at once made SGD diverge
        size = max(1, cfg.batch_size // workers)
        for job in range(worker, self.total, workers):
            if self.errors:
                return
            start = self.starts[job % len(self.starts)]
            chunk = slice(start, start + cfg.chunk_words)
            ids, sents = self.ids[chunk], self.sentence_ids[chunk]
            kept = torch.rand(ids.shape[0], generator=gen, device=device) < self.keep[ids]
            n_kept = int(kept.sum())
            center, context = skipgram_windows(ids[kept], sents[kept], cfg.window, generator=gen)
            order = torch.randperm(center.shape[0], generator=gen, device=device)
            center, context = center.index_select(0, order), context.index_select(0, order)
            center, context, batches = _batches_by_width(center, context, size, gen)
            # what every step needs, made once for the chunk and sliced per batch
            negatives = self.noise.sample((center.shape[0], cfg.negatives), generator=gen)
            rows, weight, targets = _step_inputs(center, context, negatives)
            B, seen = center.shape[0], 0
            for b, e, width in batches:
                frac = (self.done + seen / max(B, 1)) / self.total  # share of training done
                lr = cfg.lr - (cfg.lr - cfg.min_lr) * frac
                running += self.model._step(rows[b:e, :width], weight[b:e, :width],
                                            targets[b:e], sign, lr)
                steps, seen = steps + 1, seen + e - b
                if steps % self.record_every == 0:
                    loss = running.item() / self.record_every
                    running.zero_()
                    with self.lock:
                        h = self.history
                        h.loss.append(loss)
                        h.lr.append(lr)
                        h.words.append(h.effective_words + int(n_kept * seen / B))
                        self.bar.set_postfix(loss=f"{loss:.3f}")
            with self.lock:
                self.history.effective_words += n_kept
                self.history.pairs += int((context >= 0).sum())
                self.done += 1
                self.bar.update(1)


def train_word2vec(sentences: Iterable[str | Sequence[str]],
                   config: Word2VecConfig | None = None,
                   device: str | torch.device | None = None,
                   show_progress: bool | None = None,
                   record_every: int = 20,
                   ) -> tuple[WordVectors, TrainingHistory]:
    """Train skip-gram with negative sampling on a corpus.

    The corpus is cut into chunks of ``config.chunk_words`` words. For each chunk of each epoch:
    subsample (:func:`~lmlab.skipgram.keep_probabilities`), build every center's window
    (:func:`~lmlab.skipgram.skipgram_windows`), shuffle the windows, and take SGD steps on
    batches of ``config.batch_size`` windows with ``config.negatives`` fresh negatives each
    (:meth:`SkipGramNegativeSampling.sgd_step`, negatives drawn with
    :class:`~lmlab.skipgram.AliasTable`). The windows of a batch have similar numbers of
    contexts, so that a step carries few pad columns; the batches themselves come in random
    order. The learning rate falls linearly from ``lr`` to ``min_lr`` over all epochs.

    With ``config.workers = 1`` (the default) training runs in the caller's thread with the
    caller's PyTorch thread count, and the same call gives the same vectors on the same machine
    and thread count. With ``workers > 1`` (CPU only), that many threads train at once on
    different chunks and update the shared tables without locks, as word2vec's C code and gensim
    do, each taking ``batch_size // workers`` windows per step; so that they do not compete for
    cores, ``torch.set_num_threads(1)`` is in force *during the call* (it is process-wide) and
    the caller's thread count is restored afterwards, also when training fails. On a GPU one
    worker runs.

    Args:
        sentences: strings (split with :func:`lmlab.vocab.tokenize`) or lists of words.
        config: hyper-parameters (default :class:`Word2VecConfig`).
        device: where to train (default: the best available, :func:`lmlab.device.get_device`).
        show_progress: show a progress bar over chunks with the loss (default: the global switch).
        record_every: record the mean loss in the history every this many steps (per worker).

    Returns:
        ``(vectors, history)``: the trained input vectors with their vocabulary and counts (on
        the CPU) and the loss curve.

    Raises:
        TypeError, ValueError: bad arguments, an empty corpus or no word seen ``min_count``
            times (all before any training).

    Example:
        >>> corpus = ["the cat sat on the mat", "the dog sat on the rug"] * 20
        >>> vectors, history = train_word2vec(corpus, Word2VecConfig.tiny(), device="cpu",
        ...                                   show_progress=False)
        >>> len(vectors), vectors.d_model, history.raw_words
        (7, 16, 240)
    """
    config = Word2VecConfig() if config is None else config
    if not isinstance(config, Word2VecConfig):
        raise TypeError(f"config: expected a Word2VecConfig, got {type(config).__name__}")
    check_int("record_every", record_every)
    if show_progress is not None:
        check_bool("show_progress", show_progress)
    wanted = check_device("device", device)
    if wanted is not None and wanted.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device: expected 'cpu', 'cuda' or 'mps' (or None: the best "
                         f"available), got {device!r}")
    device = get_device(wanted, name="device")
    sents = as_sentences(sentences)
    words, counts = word_counts(sents, config.min_count)
    ids, sentence_ids = _encode(sents, words)
    generator = torch.Generator().manual_seed(config.seed)
    model = SkipGramNegativeSampling(len(words), config.d_model, generator=generator).to(device)
    keep = keep_probabilities(counts, config.sample).to(device)  # (V,)
    noise = AliasTable(noise_distribution(counts, config.ns_exponent).to(device))
    bar = progress(total=config.epochs * math.ceil(ids.shape[0] / config.chunk_words),
                   desc="word2vec", enabled=show_progress)
    run = _Run(model, ids.to(device), sentence_ids.to(device), keep, noise, config,
               record_every, bar)
    try:
        if device.type != "cpu" or config.workers == 1:
            run.work(0, 1)
        else:
            threads_before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                pool = [threading.Thread(target=run.work, args=(w, config.workers))
                        for w in range(config.workers)]
                for t in pool:
                    t.start()
                for t in pool:
                    t.join()
            finally:
                torch.set_num_threads(threads_before)
    finally:
        bar.close()
    if run.errors:
        raise run.errors[0]
    logger.info("trained on %d effective words, %d pairs", run.history.effective_words,
                run.history.pairs)
    return (WordVectors(words, model.input.weight.detach().cpu(), counts), run.history)
