"""word2vec: skip-gram with negative sampling (SGNS), trained for real and evaluated.

Bag of Words (:mod:`lmlab.bow`) sees a sentence as a set of word ids with no meaning. word2vec
learns a vector per word by playing a guessing game: given a *center* word, is this other word a
real neighbour from the text (label 1) or a random word drawn from the vocabulary (label 0)? The
pipeline, one function a step::

    vocab_words, counts = word_counts(sentences, min_count=5)
    keep = keep_probabilities(counts, sample=1e-3)          # frequent-word subsampling
    center, context = skipgram_windows(ids, sentence_ids, window=5)  # (B,), (B, M)
    negatives = sample_negatives(noise_distribution(counts), (B, K))
    loss = model(center, context, negatives)                # the "are these neighbours?" loss

:func:`train_word2vec` runs it all with a linearly decaying learning rate and returns
:class:`WordVectors` (``most_similar``, ``analogy``, evaluation on the analogy set and on
WordSim-353 / SimLex-999, sentence and sub-word vectors, save/load) and a
:class:`TrainingHistory` to plot.

Letters: B windows (or pairs) in a batch, M context slots per window, K negatives, E embedding
width, V vocabulary size, N words of the corpus, P (context, center) pairs.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmlab._checks import check_int
from lmlab.bow import Vocabulary, cosine_similarity, tokenize
from lmlab.device import resolve_device
from lmlab.io import atomic_write, load_tensors, save_tensors
from lmlab.progress import progress

__all__ = [
    "Word2VecConfig", "word_counts", "keep_probabilities", "noise_distribution",
    "sample_negatives", "skipgram_windows", "skipgram_pairs", "sgns_loss", "SkipGramNegativeSampling",
    "TrainingHistory", "train_word2vec", "WordVectors", "AnalogyResult", "SimilarityResult",
    "spearman", "similarity_matrix",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Word2VecConfig:
    """Hyper-parameters of skip-gram with negative sampling (names follow gensim's in comments).

    The defaults are gensim's ``Word2Vec(sg=1)`` defaults, except the batch size, which gensim
    does not have (it updates after every pair).
    """

    dim: int = 100  # E, width of a word vector (gensim: vector_size)
    window: int = 5  # largest distance between center and context; each center draws 1..window
    negatives: int = 5  # K, random "non-neighbours" per (center, context) pair (gensim: negative)
    min_count: int = 5  # drop words seen fewer times than this
    sample: float = 1e-3  # subsampling threshold t: words more frequent than t are dropped at random; 0 = off
    ns_exponent: float = 0.75  # negatives are drawn from unigram counts ** ns_exponent
    epochs: int = 1  # passes over the corpus
    lr: float = 0.025  # starting learning rate (gensim: alpha)
    min_lr: float = 1e-4  # learning rate at the end, reached linearly (gensim: min_alpha)
    batch_size: int = 1024  # B, windows (a center with its contexts) per update, split between workers
    chunk_words: int = 65536  # corpus words turned into pairs at once (bounds memory)
    workers: int = 1  # CPU threads training at once (lock-free, like gensim); 1 is reproducible
    seed: int = 0  # seed of the initial vectors, subsampling, windows and negatives

    def __post_init__(self) -> None:
        for name in ("dim", "window", "negatives", "min_count", "epochs", "batch_size",
                     "chunk_words", "workers"):
            check_int(name, getattr(self, name))
        if not isinstance(self.sample, (int, float)) or self.sample < 0:
            raise ValueError(f"sample: expected a float >= 0 (0 turns subsampling off), got {self.sample!r}")
        if not isinstance(self.ns_exponent, (int, float)) or not math.isfinite(self.ns_exponent):
            raise ValueError(f"ns_exponent: expected a finite float, got {self.ns_exponent!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr: expected a float > 0, got {self.lr!r}")
        if not isinstance(self.min_lr, (int, float)) or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr: expected a float with 0 <= min_lr <= lr={self.lr}, got {self.min_lr!r}")
        check_int("seed", self.seed, minimum=0)


# --------------------------------------------------------------------------- the data side


def _as_sentences(sentences: Iterable[str | Sequence[str]]) -> list[Sequence[str]]:
    if isinstance(sentences, str):
        raise TypeError("sentences: expected a list of sentences, got a single string (wrap it in a list)")
    out = [tokenize(s) if isinstance(s, str) else s for s in sentences]
    if not any(len(s) for s in out):
        raise ValueError("sentences: the corpus is empty (no sentence contains a word)")
    return out


def word_counts(sentences: Iterable[str | Sequence[str]], min_count: int = 5
                ) -> tuple[tuple[str, ...], torch.Tensor]:
    """The vocabulary of a corpus: words seen at least ``min_count`` times, most frequent first.

    Counting is :class:`lmlab.bow.Vocabulary`'s (ties sorted alphabetically); its unknown token is
    dropped, because word2vec skips rare words instead of mapping them to one id.

    Args:
        sentences: strings (split with :func:`lmlab.bow.tokenize`) or lists of words.
        min_count: keep words seen at least this often (>= 1).

    Returns:
        ``(words, counts)``: the words by descending count and their counts (int64).

    Shape:
        ``counts``: ``(V,)``

    Raises:
        ValueError: an empty corpus, ``min_count < 1``, or no word seen ``min_count`` times.

    Example:
        >>> words, counts = word_counts(["the dog saw the cat", "the cat ran"], min_count=2)
        >>> words, counts.tolist()
        (('the', 'cat'), [3, 2])
    """
    check_int("min_count", min_count)
    vocab = Vocabulary.from_documents(_as_sentences(sentences), min_count=min_count)
    return vocab.tokens[1:], torch.tensor(vocab.counts[1:], dtype=torch.long)


def keep_probabilities(counts: torch.Tensor, sample: float = 1e-3) -> torch.Tensor:
    """Probability of keeping each occurrence of a word under frequent-word subsampling.

    With ``f = count / total`` and threshold ``t = sample``, word2vec's C code and gensim keep a
    word with probability ``(sqrt(f / t) + 1) * t / f`` (capped at 1), so "the" is mostly dropped
    and rare words are always kept. ``sample = 0`` keeps everything.

    Args:
        counts: corpus count of each vocabulary word.
        sample: the threshold ``t`` (>= 0).

    Returns:
        Probabilities in ``(0, 1]`` (float32).

    Shape:
        ``(V,)`` -> ``(V,)``

    Example:
        >>> keep_probabilities(torch.tensor([900, 90, 10]), sample=0.01)
        tensor([0.1165, 0.4444, 1.0000])
    """
    if not isinstance(sample, (int, float)) or sample < 0:
        raise ValueError(f"sample: expected a float >= 0, got {sample!r}")
    counts = counts.double()
    if sample == 0:
        return torch.ones_like(counts, dtype=torch.float32)
    threshold = sample * counts.sum()
    keep = ((counts / threshold).sqrt() + 1) * threshold / counts
    return keep.clamp(max=1.0).float()


def noise_distribution(counts: torch.Tensor, exponent: float = 0.75) -> torch.Tensor:
    """The distribution negatives are drawn from: unigram counts raised to ``exponent``, normalised.

    The 3/4 power flattens the distribution: frequent words are still drawn more often, rare
    words more often than their raw frequency.

    Shape:
        ``(V,)`` -> ``(V,)``

    Example:
        >>> noise_distribution(torch.tensor([16, 1]), exponent=0.75)
        tensor([0.8889, 0.1111])
    """
    weights = counts.double().pow(exponent)
    return (weights / weights.sum()).float()


def sample_negatives(probs: torch.Tensor, shape: tuple[int, ...],
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw word ids from ``probs`` with replacement (on ``probs.device``).

    Args:
        probs: a distribution over the vocabulary (:func:`noise_distribution`).
        shape: the shape of the result, e.g. ``(B, K)``.
        generator: a generator on ``probs.device`` for reproducible draws.

    Shape:
        ``probs``: ``(V,)`` -> ``shape``
    """
    n = math.prod(shape)
    return torch.multinomial(probs, n, replacement=True, generator=generator).view(shape)


def skipgram_windows(ids: torch.Tensor, sentence_ids: torch.Tensor, window: int,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each center word with its context words, using word2vec's dynamic window.

    Each center position draws its own window ``b`` uniformly from ``1..window`` (so near
    neighbours are used more often than far ones); its contexts are the words at most ``b``
    positions away in the same sentence. Built with tensor operations on one
    ``(N, 2 * window)`` grid of candidate positions. Each row lists the contexts in text order
    and is padded with ``-1`` at the end. Centers without any context (one-word sentences) are
    dropped.

    Args:
        ids: word ids of consecutive words (already subsampled).
        sentence_ids: the sentence each word belongs to (windows never cross sentences).
        window: the largest window (>= 1).
        generator: for reproducible windows (on ``ids.device``).

    Returns:
        ``(center, context)``: center ids in text order and their context ids, ``-1`` = none.

    Shape:
        ``ids``, ``sentence_ids``: ``(N,)`` -> ``(B,)`` and ``(B, 2 * window)``

    Example:
        >>> c, o = skipgram_windows(torch.tensor([7, 8, 9]), torch.tensor([0, 0, 1]), window=1)
        >>> c.tolist(), o.tolist()
        ([7, 8], [[8, -1], [7, -1]])
    """
    check_int("window", window)
    if ids.shape != sentence_ids.shape or ids.dim() != 1:
        raise ValueError(f"ids, sentence_ids: expected two (N,) tensors, got {tuple(ids.shape)} "
                         f"and {tuple(sentence_ids.shape)}")
    N, device = ids.shape[0], ids.device
    offsets = torch.cat([torch.arange(-window, 0, device=device),
                         torch.arange(1, window + 1, device=device)])  # (2W,)
    spans = torch.randint(1, window + 1, (N, 1), generator=generator, device=device)  # (N, 1)
    positions = torch.arange(N, device=device).unsqueeze(1)  # (N, 1)
    target = positions + offsets  # (N, 2W)
    inside = (target >= 0) & (target < N) & (offsets.abs() <= spans)  # (N, 2W)
    target = target.clamp(0, max(N - 1, 0))
    inside &= sentence_ids[target] == sentence_ids.unsqueeze(1)
    context = torch.where(inside, ids[target], -1)  # (N, 2W)
    first = torch.sort((~inside).to(torch.uint8), dim=1, stable=True).indices  # (N, 2W)
    context = context.gather(1, first)  # real contexts first, in text order, then the -1 pads
    has_context = inside.any(dim=1)  # (N,)
    return ids[has_context], context[has_context]


def skipgram_pairs(ids: torch.Tensor, sentence_ids: torch.Tensor, window: int,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (center, context) pair of a stretch of text: :func:`skipgram_windows`, flattened.

    Shape:
        ``ids``, ``sentence_ids``: ``(N,)`` -> two ``(P,)`` tensors, P pairs.

    Example:
        >>> c, o = skipgram_pairs(torch.tensor([7, 8, 9]), torch.tensor([0, 0, 1]), window=1)
        >>> c.tolist(), o.tolist()
        ([7, 8], [8, 7])
    """
    center, context = skipgram_windows(ids, sentence_ids, window, generator)
    mask = context >= 0  # (B, 2W)
    return center.unsqueeze(1).expand_as(context)[mask], context[mask]


# --------------------------------------------------------------------------- the model


def sgns_loss(input_vecs: torch.Tensor, target_vecs: torch.Tensor,
              negative_vecs: torch.Tensor) -> torch.Tensor:
    """The negative-sampling loss of each pair: ``-log s(v . u_t) - sum_k log s(-v . u_k)``.

    ``s`` is the sigmoid: the model's probability that two words are neighbours. The loss is
    small when the real neighbour scores high and the K random words score low.

    Args:
        input_vecs: input vectors ``v`` (the word vectors one keeps).
        target_vecs: output vectors ``u_t`` of the real neighbours.
        negative_vecs: output vectors ``u_k`` of the negatives.

    Returns:
        The loss of every pair.

    Shape:
        ``(B, E)``, ``(B, E)``, ``(B, K, E)`` -> ``(B,)``

    Example:
        >>> v = torch.zeros(1, 2)  # every score 0: probability 1/2 for each of 1 + K guesses
        >>> sgns_loss(v, v, torch.zeros(1, 3, 2))  # 4 * log 2
        tensor([2.7726])
    """
    positive = (input_vecs * target_vecs).sum(-1)  # (B,)
    negative = torch.bmm(negative_vecs, input_vecs.unsqueeze(2)).squeeze(2)  # (B, K)
    return -(F.logsigmoid(positive) + F.logsigmoid(-negative).sum(-1))


class SkipGramNegativeSampling(nn.Module):
    """Two embedding tables: ``input`` (the word vectors one keeps) and ``output``.

    Initialised like word2vec: input rows uniform in ``±0.5 / E``, output rows zero.

    A batch is B windows: a center word, up to M context words around it (``-1`` pads) and K
    negatives. Every (context, center) pair is one example of :func:`sgns_loss`: the context
    word's input vector must score its center's output vector high and the negatives' output
    vectors low (gensim's orientation; over a corpus the pairs are the same either way). The K
    negatives are shared by the pairs of a window (Ji et al., 2016, "Parallelizing Word2Vec in
    Shared and Distributed Memory"), which keeps each pair's loss the same in expectation and
    turns the scores into one batched matrix product per batch.

    Args:
        vocab_size: V, number of words.
        dim: E, width of a vector.
        generator: for a reproducible initialisation.
    """

    def __init__(self, vocab_size: int, dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size)
        check_int("dim", dim)
        self.input = nn.Embedding(vocab_size, dim)
        self.output = nn.Embedding(vocab_size, dim)
        with torch.no_grad():
            init = torch.rand(vocab_size, dim, generator=generator)
            self.input.weight.copy_((init - 0.5) / dim)
            self.output.weight.zero_()

    def forward(self, center: torch.Tensor, context: torch.Tensor,
                negatives: torch.Tensor) -> torch.Tensor:
        """Mean loss per (context, center) pair of a batch of windows (see :func:`sgns_loss`).

        Shape:
            ``center``: ``(B,)``, ``context``: ``(B, M)`` (``-1`` = no word),
            ``negatives``: ``(B, K)`` -> scalar
        """
        mask = context >= 0  # (B, M)
        rows = torch.arange(center.shape[0], device=center.device).unsqueeze(1).expand_as(mask)[mask]  # (P,)
        return sgns_loss(self.input(context[mask]), self.output(center)[rows],
                         self.output(negatives)[rows]).mean()

    @torch.no_grad()
    def sgd_step(self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor,
                 lr: float) -> torch.Tensor:
        """One plain SGD step on the summed loss of the batch, gradients written out by hand.

        The gradient of the loss with respect to a score ``s`` is ``sigmoid(s) - label``; each
        table row moves by ``lr`` times the sum of its gradients, added in place with
        ``index_add_`` (as word2vec's C code does pair by pair). No autograd graph, no optimizer
        state, only the touched rows. Equal to ``lr`` times the gradient of ``forward(...) * P``.

        Returns:
            The mean loss per pair before the step.

        Shape:
            ``center``: ``(B,)``, ``context``: ``(B, M)`` (``-1`` = no word),
            ``negatives``: ``(B, K)`` -> scalar
        """
        W_in, W_out = self.input.weight, self.output.weight
        E = W_in.shape[1]
        mask = (context >= 0).unsqueeze(2)  # (B, M, 1)
        rows = context.clamp(min=0)  # (B, M) pads read row 0 and get a zero gradient
        targets = torch.cat([center.unsqueeze(1), negatives], dim=1)  # (B, 1+K)
        v = W_in[rows]  # (B, M, E)
        u = W_out[targets]  # (B, 1+K, E)
        scores = torch.bmm(v, u.transpose(1, 2))  # (B, M, 1+K)
        sign = torch.full_like(scores[0, 0], -1.0)
        sign[0] = 1.0  # (1+K,) +1 for the real center, -1 for the negatives
        g = (sign.clamp(min=0) - torch.sigmoid(scores)) * mask  # (B, M, 1+K) label - s
        grad_v = torch.bmm(g, u)  # (B, M, E)
        grad_u = torch.bmm(g.transpose(1, 2), v)  # (B, 1+K, E)
        W_in.index_add_(0, rows.reshape(-1), grad_v.reshape(-1, E), alpha=lr)
        W_out.index_add_(0, targets.reshape(-1), grad_u.reshape(-1, E), alpha=lr)
        loss = -(F.logsigmoid(scores * sign) * mask).sum()
        pairs = mask.sum()
        return loss / pairs.clamp(min=1)


# --------------------------------------------------------------------------- training


@dataclass
class TrainingHistory:
    """What :func:`train_word2vec` records, for plotting and for throughput figures."""

    words: list[int] = field(default_factory=list)  # effective words trained on at each record
    loss: list[float] = field(default_factory=list)  # mean pair loss since the previous record
    lr: list[float] = field(default_factory=list)  # learning rate at each record
    raw_words: int = 0  # corpus words (in the vocabulary) times epochs
    effective_words: int = 0  # words left after subsampling, summed over epochs
    pairs: int = 0  # (center, context) pairs trained on


def _encode(sentences: list[Sequence[str]], words: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    index = {w: i for i, w in enumerate(words)}
    lengths = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
    flat = np.fromiter((index.get(w, -1) for s in sentences for w in s), dtype=np.int64,
                       count=int(lengths.sum()))
    sent = np.repeat(np.arange(len(sentences), dtype=np.int64), lengths)
    known = flat >= 0  # words below min_count are skipped, as in gensim
    return torch.from_numpy(flat[known]), torch.from_numpy(sent[known])


class _Run:
    """The shared state of one training run (read and written by every worker thread)."""

    def __init__(self, model: SkipGramNegativeSampling, ids: torch.Tensor, sentence_ids: torch.Tensor,
                 keep: torch.Tensor, noise: torch.Tensor, config: Word2VecConfig,
                 record_every: int, bar: object) -> None:
        self.model, self.ids, self.sentence_ids = model, ids, sentence_ids
        self.keep, self.noise, self.config = keep, noise, config
        self.record_every, self.bar = record_every, bar
        N = ids.shape[0]
        self.starts = list(range(0, N, config.chunk_words))
        self.total = config.epochs * len(self.starts)
        self.history = TrainingHistory(raw_words=N * config.epochs)
        self.done = 0  # chunks finished
        self.lock = threading.Lock()

    def work(self, worker: int, workers: int) -> None:
        cfg, device = self.config, self.ids.device
        gen = torch.Generator(device).manual_seed(cfg.seed + 1 + worker)
        running, steps = torch.zeros((), device=device), 0
        # the workers share batch_size: twice the windows in flight at once made SGD diverge
        size = max(1, cfg.batch_size // workers)
        for job in range(worker, self.total, workers):
            start = self.starts[job % len(self.starts)]
            chunk = slice(start, start + cfg.chunk_words)
            ids, sents = self.ids[chunk], self.sentence_ids[chunk]
            kept = torch.rand(ids.shape[0], generator=gen, device=device) < self.keep[ids]
            n_kept = int(kept.sum())
            center, context = skipgram_windows(ids[kept], sents[kept], cfg.window, generator=gen)
            order = torch.randperm(center.shape[0], generator=gen, device=device)
            center, context = center[order], context[order]
            B = center.shape[0]
            for b in range(0, B, size):
                frac = (self.done + b / max(B, 1)) / self.total  # share of training done
                lr = cfg.lr - (cfg.lr - cfg.min_lr) * frac
                c, o = center[b:b + size], context[b:b + size]
                negatives = sample_negatives(self.noise, (c.shape[0], cfg.negatives), generator=gen)
                running += self.model.sgd_step(c, o, negatives, lr)
                steps += 1
                if steps % self.record_every == 0:
                    loss = running.item() / self.record_every
                    running.zero_()
                    with self.lock:
                        h = self.history
                        h.loss.append(loss)
                        h.lr.append(lr)
                        h.words.append(h.effective_words + int(n_kept * min(1.0, (b + size) / B)))
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
    subsample (:func:`keep_probabilities`), build every center's window
    (:func:`skipgram_windows`), shuffle the windows, and take SGD steps on batches of
    ``config.batch_size`` windows with ``config.negatives`` fresh negatives each
    (:meth:`SkipGramNegativeSampling.sgd_step`). The learning rate falls linearly from ``lr`` to
    ``min_lr`` over all epochs.

    On the CPU, ``config.workers`` threads train at once on different chunks, each running
    single-threaded PyTorch operations (``torch.set_num_threads(1)`` during training, restored
    afterwards), and update the shared tables without locks, as word2vec's C code and gensim
    do; each worker then takes ``batch_size // workers`` windows per step. Only ``workers=1``
    is reproducible. On a GPU one worker runs.

    Args:
        sentences: strings (split with :func:`lmlab.bow.tokenize`) or lists of words.
        config: hyper-parameters (default :class:`Word2VecConfig`).
        device: where to train (default: the best available).
        show_progress: show a progress bar over chunks with the loss (default: the global switch).
        record_every: record the mean loss in the history every this many steps (per worker).

    Returns:
        ``(vectors, history)``: the trained input vectors with their vocabulary (on the CPU)
        and the loss curve.

    Raises:
        ValueError: an empty corpus or no word seen ``min_count`` times (before any training).
    """
    config = Word2VecConfig() if config is None else config
    if not isinstance(config, Word2VecConfig):
        raise TypeError(f"config: expected a Word2VecConfig, got {type(config).__name__}")
    check_int("record_every", record_every)
    device = resolve_device(device)
    sents = _as_sentences(sentences)
    words, counts = word_counts(sents, config.min_count)
    ids, sentence_ids = _encode(sents, words)
    model = SkipGramNegativeSampling(len(words), config.dim,
                                     generator=torch.Generator().manual_seed(config.seed)).to(device)
    keep = keep_probabilities(counts, config.sample).to(device)  # (V,)
    noise = noise_distribution(counts, config.ns_exponent).to(device)  # (V,)
    bar = progress(total=config.epochs * math.ceil(ids.shape[0] / config.chunk_words),
                   desc="word2vec", enabled=show_progress)
    run = _Run(model, ids.to(device), sentence_ids.to(device), keep, noise, config, record_every, bar)
    if device.type != "cpu":
        run.work(0, 1)
    else:
        threads_before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            if config.workers == 1:
                run.work(0, 1)
            else:
                pool = [threading.Thread(target=run.work, args=(w, config.workers))
                        for w in range(config.workers)]
                for t in pool:
                    t.start()
                for t in pool:
                    t.join()
        finally:
            torch.set_num_threads(threads_before)
    bar.close()
    if run.done != run.total:
        raise RuntimeError("train_word2vec: a worker thread failed (see the traceback above)")
    logger.info("trained on %d effective words, %d pairs", run.history.effective_words, run.history.pairs)
    return WordVectors(words, model.input.weight.detach().cpu(), counts), run.history

# --------------------------------------------------------------------------- evaluation helpers


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks (ties get their mean rank).

    Matches ``scipy.stats.spearmanr``.

    Shape:
        ``(N,)``, ``(N,)`` -> float

    Example:
        >>> spearman(torch.tensor([1., 2., 3., 4.]), torch.tensor([10., 20., 20., 40.]))
        0.9486832980505138
    """
    if x.dim() != 1 or x.shape != y.shape or x.shape[0] < 2:
        raise ValueError(f"x, y: expected two 1-D tensors of the same length >= 2, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    rx, ry = _ranks(x.double()), _ranks(y.double())
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / (rx.norm() * ry.norm()))


def _ranks(x: torch.Tensor) -> torch.Tensor:
    sorted_x, order = torch.sort(x, stable=True)
    _, inverse, tie_counts = torch.unique_consecutive(sorted_x, return_inverse=True, return_counts=True)
    ends = tie_counts.cumsum(0).double()  # 1-based rank of the last member of each tie group
    mean_rank = ends - (tie_counts.double() - 1) / 2  # (groups,)
    ranks = torch.empty_like(x)
    ranks[order] = mean_rank[inverse]
    return ranks


@dataclass(frozen=True)
class AnalogyResult:
    """Accuracy on analogy questions "a is to b as c is to d"."""

    accuracy: float  # correct / evaluated (0 when nothing could be evaluated)
    correct: int  # questions whose best answer was d
    evaluated: int  # questions with all four words in the restricted vocabulary
    skipped: int  # questions with a word outside it
    sections: dict[str, tuple[int, int]]  # section -> (correct, evaluated)


@dataclass(frozen=True)
class SimilarityResult:
    """Agreement of cosine similarities with human similarity judgements."""

    spearman: float  # Spearman's rho between human scores and cosine similarities
    pearson: float  # Pearson's r between the same
    evaluated: int  # pairs with both words in the restricted vocabulary
    oov_ratio: float  # percentage of pairs skipped (gensim's oov_ratio)


# --------------------------------------------------------------------------- word vectors


class WordVectors:
    """Trained word vectors with their vocabulary (most frequent word first).

    Args:
        words: the vocabulary, in row order (unique, no tabs or line breaks).
        vectors: one row per word.
        counts: corpus counts, kept for reference (optional).

    Shape:
        ``vectors``: ``(V, E)``, ``counts``: ``(V,)``
    """

    def __init__(self, words: Sequence[str], vectors: torch.Tensor,
                 counts: torch.Tensor | Sequence[int] | None = None) -> None:
        words = tuple(words)
        if vectors.dim() != 2 or vectors.shape[0] != len(words):
            raise ValueError(f"vectors: expected shape ({len(words)}, E), got {tuple(vectors.shape)}")
        if not words:
            raise ValueError("words: expected at least one word")
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}
        if len(self.index) != len(words):
            raise ValueError("words: every word must be unique")
        if any(not w or "\t" in w or "\n" in w or "\r" in w for w in words):
            raise ValueError("words: words must be non-empty and contain no tabs or line breaks")
        self.vectors = vectors.detach().float()
        self.counts = (torch.zeros(len(words), dtype=torch.long) if counts is None
                       else torch.as_tensor(counts, dtype=torch.long))
        if self.counts.shape != (len(words),):
            raise ValueError(f"counts: expected shape ({len(words)},), got {tuple(self.counts.shape)}")
        self._unit = self.vectors / self.vectors.norm(dim=1, keepdim=True).clamp(min=1e-12)  # (V, E)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    @property
    def dim(self) -> int:
        """E, the width of a vector."""
        return self.vectors.shape[1]

    def id(self, word: str) -> int:
        """The row of ``word``; ``KeyError`` naming the word when it is not in the vocabulary."""
        try:
            return self.index[word]
        except KeyError:
            hint = (f"; try {word.lower()!r}" if word.lower() in self.index else
                    "; it was below min_count or never seen (check `word in vectors`, or embed it "
                    "from sub-word pieces with embed_pieces)")
            raise KeyError(f"word {word!r} is not in the vocabulary of {len(self)} words{hint}") from None

    def __getitem__(self, word: str) -> torch.Tensor:
        """The vector of ``word``. Shape: ``(E,)``."""
        return self.vectors[self.id(word)]

    def similarity(self, w1: str, w2: str) -> float:
        """Cosine similarity of two words' vectors."""
        return float(self._unit[self.id(w1)] @ self._unit[self.id(w2)])

    def _nearest(self, query: torch.Tensor, k: int, exclude: Iterable[int],
                 restrict_vocab: int | None = None) -> list[tuple[str, float]]:
        check_int("k", k)
        unit = self._unit[:restrict_vocab]
        sims = unit @ (query / query.norm().clamp(min=1e-12))  # (V,)
        for i in exclude:
            if i < sims.shape[0]:
                sims[i] = -math.inf
        scores, rows = sims.topk(min(k, sims.shape[0]))
        return [(self.words[r], float(s)) for s, r in zip(scores.tolist(), rows.tolist())
                if s != -math.inf]

    def most_similar(self, word: str | torch.Tensor, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` words with the highest cosine similarity to ``word`` (itself left out).

        Args:
            word: a word, or a vector of shape ``(E,)``.
            k: how many neighbours.

        Returns:
            ``(word, cosine)`` pairs, best first.
        """
        if isinstance(word, str):
            return self._nearest(self._unit[self.id(word)], k, [self.id(word)])
        if word.shape != (self.dim,):
            raise ValueError(f"word: expected a word or a vector of shape ({self.dim},), got {tuple(word.shape)}")
        return self._nearest(word.float(), k, [])

    def analogy(self, a: str, b: str, c: str, k: int = 1) -> list[tuple[str, float]]:
        """a is to b as c is to ?: the words closest to ``b - a + c`` (3CosAdd, unit vectors).

        ``a``, ``b`` and ``c`` are never answers, as in gensim's
        ``most_similar(positive=[b, c], negative=[a])``.

        Example:
            ``vectors.analogy("man", "king", "woman")`` -> ``[("queen", 0.7...)]`` on good vectors.
        """
        ia, ib, ic = self.id(a), self.id(b), self.id(c)
        query = self._unit[ib] - self._unit[ia] + self._unit[ic]
        return self._nearest(query, k, [ia, ib, ic])

    def evaluate_analogies(self, questions: Sequence[tuple[str, str, str, str, str]] | None = None,
                           restrict_vocab: int = 30000) -> AnalogyResult:
        """Accuracy on analogy questions, computed like gensim's ``evaluate_word_analogies``.

        Only the ``restrict_vocab`` most frequent words take part: questions with a word outside
        them are skipped, and answers are searched among them. Words are compared lower-cased.

        Args:
            questions: ``(section, a, b, c, d)`` tuples (default:
                :func:`lmlab.data.load_analogies`, Google's 19,544 questions).
            restrict_vocab: how many of the most frequent words to use (>= 1).
        """
        check_int("restrict_vocab", restrict_vocab)
        if questions is None:
            from lmlab.data import load_analogies
            questions = load_analogies()
        R = min(restrict_vocab, len(self))
        ok: dict[str, int] = {}
        for i in reversed(range(R)):  # the most frequent case variant wins, as in gensim
            ok[self.words[i].lower()] = i
        sections: dict[str, list[int]] = {}
        rows, names = [], []
        for section, *quad in questions:
            sections.setdefault(section, [0, 0])
            ids = [ok.get(w.lower()) for w in quad]
            if None in ids:
                continue
            rows.append(ids)
            names.append(section)
        correct_flags: list[bool] = []
        if rows:
            q = torch.tensor(rows)  # (Q, 4): a, b, c, d
            unit = self._unit[:R]
            for s in range(0, q.shape[0], 2048):
                part = q[s:s + 2048]
                query = unit[part[:, 1]] + unit[part[:, 2]] - unit[part[:, 0]]  # (Q', E)
                query = query / query.norm(dim=1, keepdim=True).clamp(min=1e-12)
                sims = query @ unit.T  # (Q', R)
                sims.scatter_(1, part[:, :3], -math.inf)  # a, b and c are never answers
                correct_flags += (sims.argmax(dim=1) == part[:, 3]).tolist()
        for section, hit in zip(names, correct_flags):
            sections[section][0] += int(hit)
            sections[section][1] += 1
        correct, evaluated = sum(correct_flags), len(correct_flags)
        return AnalogyResult(correct / evaluated if evaluated else 0.0, correct, evaluated,
                             len(questions) - evaluated,
                             {k: (v[0], v[1]) for k, v in sections.items()})

    def evaluate_word_similarity(self, pairs: str | Sequence[tuple[str, str, float]] = "wordsim353",
                                 restrict_vocab: int = 300000) -> SimilarityResult:
        """Spearman's rho between human similarity scores and cosine similarities.

        Computed like gensim's ``evaluate_word_pairs``: pairs with a word outside the
        ``restrict_vocab`` most frequent words are skipped and counted in ``oov_ratio``.

        Args:
            pairs: ``"wordsim353"``, ``"simlex999"`` (see :func:`lmlab.data.load_word_similarity`)
                or ``(word1, word2, score)`` tuples.
            restrict_vocab: how many of the most frequent words to use (>= 1).
        """
        check_int("restrict_vocab", restrict_vocab)
        if isinstance(pairs, str):
            from lmlab.data import load_word_similarity
            pairs = load_word_similarity(pairs)
        R = min(restrict_vocab, len(self))
        ok: dict[str, int] = {}
        for i in reversed(range(R)):
            ok[self.words[i].lower()] = i
        gold, model = [], []
        for w1, w2, score in pairs:
            i, j = ok.get(w1.lower()), ok.get(w2.lower())
            if i is None or j is None:
                continue
            gold.append(float(score))
            model.append(float(self._unit[i] @ self._unit[j]))
        n = len(gold)
        oov = 100.0 * (len(pairs) - n) / len(pairs) if len(pairs) else 0.0
        if n < 2:
            return SimilarityResult(math.nan, math.nan, n, oov)
        g, m = torch.tensor(gold, dtype=torch.float64), torch.tensor(model, dtype=torch.float64)
        gc, mc = g - g.mean(), m - m.mean()
        pearson = float((gc * mc).sum() / (gc.norm() * mc.norm()))
        return SimilarityResult(spearman(g, m), pearson, n, oov)

    def embed_pieces(self, word: str, split: Callable[[str], Sequence[str]]) -> torch.Tensor:
        """A word's vector as the mean of its pieces' vectors (for vectors trained on pieces).

        Args:
            word: any word, in the vocabulary or not.
            split: a tokenizer turning text into pieces that are in this vocabulary, e.g. a
                WordPiece tokenizer's ``lambda w: tok.encode(w, add_special_tokens=False).tokens``.

        Returns:
            The mean of the known pieces' vectors.

        Shape:
            ``(E,)``

        Raises:
            KeyError: none of the pieces is in the vocabulary.
        """
        pieces = list(split(word))
        known = [self.index[p] for p in pieces if p in self.index]
        if not known:
            raise KeyError(f"word {word!r}: none of its pieces {pieces} is in the vocabulary")
        return self.vectors[known].mean(dim=0)

    def embed_sentence(self, text: str | Sequence[str],
                       split: Callable[[str], Sequence[str]] = tokenize) -> torch.Tensor:
        """A sentence's vector as the mean of its known words' vectors (word order is lost).

        Args:
            text: a string (split with ``split``) or a list of words.
            split: the tokenizer for strings (default :func:`lmlab.bow.tokenize`).

        Shape:
            ``(E,)``; the zero vector when no word is known.
        """
        words = split(text) if isinstance(text, str) else text
        known = [self.index[w] for w in words if w in self.index]
        if not known:
            return torch.zeros(self.dim)
        return self.vectors[known].mean(dim=0)

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write ``vectors.safetensors`` and ``vocab.txt`` (``word<TAB>count`` lines) to ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_tensors({"vectors": self.vectors}, folder / "vectors.safetensors")
        with atomic_write(folder / "vocab.txt") as f:
            for w, c in zip(self.words, self.counts.tolist()):
                f.write(f"{w}\t{c}\n")

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> WordVectors:
        """Read vectors written by :meth:`save`."""
        folder = Path(folder)
        vectors = load_tensors(folder / "vectors.safetensors")["vectors"]
        words, counts = [], []
        for line in (folder / "vocab.txt").read_text(encoding="utf-8").splitlines():
            w, c = line.split("\t")
            words.append(w)
            counts.append(int(c))
        return cls(words, vectors, counts)


def similarity_matrix(vectors: WordVectors, words: Sequence[str]) -> torch.Tensor:
    """Cosine similarities between the vectors of ``words`` (uses :func:`lmlab.bow.cosine_similarity`).

    Shape:
        ``(N, N)`` for N words.
    """
    return cosine_similarity(torch.stack([vectors[w] for w in words]))
