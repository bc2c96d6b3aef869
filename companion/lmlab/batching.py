"""Batches of ids: sequence pairs for encoder-decoder models, windows of a stream for a GPT.

A pair such as ``("cab", ("K", "AE1", "B"))`` becomes ids of the model's two vocabularies
(:class:`lmlab.vocab.Vocabulary`): the source with the end mark, and the target twice for teacher
forcing, once after the start mark (the decoder's inputs) and once before the end mark (what it
must predict), each padded to the longest in the batch (:func:`make_batch`, :class:`Batch`).
:func:`pair_batches` serves the batches of an epoch-wise shuffled pass as a function of the
step, as :func:`lmlab.training.train` needs. :mod:`lmlab.seq2seq`'s RNN model and
:class:`lmlab.transformer.EncoderDecoder` train on them.

A language model learns from a single stream of token ids instead: :func:`token_windows` cuts
``(inputs, targets)`` windows from it (the targets are the inputs shifted by one token), and
:func:`random_windows` draws a batch of them at random starts, for ``GPT(inputs, targets)``.

Shape letters: ``B`` batch, ``S`` source length, ``T`` target length (a window's length),
``N`` tokens in a stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lmlab._checks import check_generator, check_int, check_int_values, check_tensor
from lmlab.vocab import Vocabulary

__all__ = ["Batch", "check_vocabs", "encode_sources", "make_batch", "pair_batches",
           "token_windows", "random_windows"]

_NEEDS = {"src_vocab": ("pad_token", "eos_token"),
          "tgt_vocab": ("pad_token", "bos_token", "eos_token")}


def check_vocabs(src_vocab: object, tgt_vocab: object | None = None) -> None:
    """Check the two vocabularies of a sequence-to-sequence model.

    The source vocabulary needs a padding and an end token, the target vocabulary padding,
    start and end tokens, and in each the special tokens must be different tokens (a start
    token that is also the end token would end every output before it begins).

    Raises:
        TypeError: a vocabulary is not an :class:`lmlab.vocab.Vocabulary`.
        ValueError: a needed special token is unset, or two special tokens coincide.
    """
    for name, vocab in (("src_vocab", src_vocab), ("tgt_vocab", tgt_vocab)):
        if name == "tgt_vocab" and tgt_vocab is None:
            continue
        if not isinstance(vocab, Vocabulary):
            raise TypeError(f"{name}: expected an lmlab.vocab.Vocabulary, got "
                            f"{type(vocab).__name__}")
        missing = [n for n in _NEEDS[name] if getattr(vocab, n) is None]
        if missing:
            raise ValueError(f"{name}: the vocabulary needs {', '.join(missing)} set")
        specials = [(n, getattr(vocab, n)) for n in ("unk_token", *_NEEDS[name])
                    if getattr(vocab, n) is not None]
        for i, (a, token) in enumerate(specials):
            for b, other in specials[i + 1:]:
                if token == other:
                    raise ValueError(f"{name}: {a} and {b} are both {token!r}; expected "
                                     "different tokens")


@dataclass
class Batch:
    """A padded batch of (source, target) pairs as ids.

    ``src`` holds the source symbols and the end mark; ``tgt_in`` is the start mark + target
    (the decoder's inputs under teacher forcing) and ``tgt_out`` the target + end mark (what it
    must predict).
    """

    src: torch.Tensor  # (B, S) source ids, padded
    src_lengths: torch.Tensor  # (B,) true source lengths, end mark included
    tgt_in: torch.Tensor  # (B, T) start id + target ids, padded
    tgt_out: torch.Tensor  # (B, T) target ids + end id, padded

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on ``device``."""
        from lmlab.device import get_device

        device = get_device(device, name="device")
        return Batch(*(t.to(device) for t in (self.src, self.src_lengths, self.tgt_in,
                                              self.tgt_out)))


def _pad(seqs: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    out = torch.full((len(seqs), max(len(s) for s in seqs)), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return out  # (B, L)


def _symbols(name: str, value: object, vocab: Vocabulary) -> list[int]:
    """Ids of one sequence: a str is read as its characters, a list/tuple as its tokens."""
    if isinstance(value, str):
        tokens: Sequence[str] = list(value)
    elif isinstance(value, (list, tuple)):
        tokens = value
    else:
        raise TypeError(f"{name}: expected a str (its characters) or a list of symbols, got "
                        f"{type(value).__name__}")
    if len(tokens) == 0:
        raise ValueError(f"{name}: empty sequence; expected at least one symbol")
    specials = {vocab.pad_token, vocab.bos_token, vocab.eos_token} - {None}
    for i, t in enumerate(tokens):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}]: expected a str symbol, got {type(t).__name__}")
        if t in specials:
            raise ValueError(f"{name}: contains the special symbol {t!r}")
    try:
        return vocab.encode(list(tokens))
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None


def encode_sources(sources: Sequence[str | Sequence[str]], src_vocab: Vocabulary, *,
                   name: str = "sources") -> tuple[torch.Tensor, torch.Tensor]:
    """Source ids + the end mark as a padded tensor, and the lengths.

    Args:
        sources: sequences of symbols (a str is read as its characters).
        src_vocab: the model's input vocabulary.
        name: how error messages name ``sources`` (a caller passes its own parameter's name).

    Returns:
        ``(src, src_lengths)``.

    Shape:
        ``(B, S)``, ``(B,)``
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name: expected a non-empty str, got {name!r}")
    if isinstance(sources, str) or not isinstance(sources, Sequence):
        raise TypeError(f"{name}: expected a list of sequences, got {type(sources).__name__} "
                        "(wrap a single one in a list)")
    if len(sources) == 0:
        raise ValueError(f"{name}: expected at least one sequence, got none")
    check_vocabs(src_vocab)
    return _source_ids(sources, src_vocab, name + "[{}]")


def _source_ids(sources: Sequence[str | Sequence[str]], src_vocab: Vocabulary,
                name: str) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [_symbols(name.format(i), s, src_vocab) + [src_vocab.eos_id]  # type: ignore[list-item]
           for i, s in enumerate(sources)]
    return _pad(ids, src_vocab.pad_id), torch.tensor([len(s) for s in ids])  # type: ignore[arg-type]


def make_batch(pairs: Sequence[tuple[str | Sequence[str], str | Sequence[str]]],
               src_vocab: Vocabulary, tgt_vocab: Vocabulary) -> Batch:
    """Encode and pad ``(source, target)`` pairs (a str is read as its characters).

    Args:
        pairs: the pairs, e.g. ``("cab", ("K", "AE1", "B"))``.
        src_vocab: input vocabulary (with pad and end tokens).
        tgt_vocab: output vocabulary (with pad, start and end tokens).

    Returns:
        The padded :class:`Batch`.

    Example:
        >>> src = Vocabulary(("<pad>", "</s>", "a", "b"), pad_token="<pad>", eos_token="</s>")
        >>> tgt = Vocabulary(("<pad>", "<s>", "</s>", "X", "Y"), pad_token="<pad>",
        ...                  bos_token="<s>", eos_token="</s>")
        >>> b = make_batch([("ab", ["X", "Y"]), ("b", ["Y"])], src, tgt)
        >>> b.src.tolist(), b.tgt_in.tolist(), b.tgt_out.tolist()
        ([[2, 3, 1], [3, 1, 0]], [[1, 3, 4], [1, 4, 0]], [[3, 4, 2], [4, 2, 0]])
    """
    if isinstance(pairs, str) or not isinstance(pairs, Sequence):
        raise TypeError(f"pairs: expected a list of (source, target) pairs, got "
                        f"{type(pairs).__name__}")
    if len(pairs) == 0:
        raise ValueError("pairs: expected at least one pair, got none")
    for i, p in enumerate(pairs):
        if not isinstance(p, (tuple, list)) or len(p) != 2:
            raise TypeError(f"pairs[{i}]: expected a (source, target) pair, got {p!r:.60}")
    check_vocabs(src_vocab, tgt_vocab)
    src, src_lengths = _source_ids([s for s, _ in pairs], src_vocab, "pairs[{}][0]")
    tgt = [_symbols(f"pairs[{i}][1]", t, tgt_vocab) for i, (_, t) in enumerate(pairs)]
    tgt_in = _pad([[tgt_vocab.bos_id, *t] for t in tgt], tgt_vocab.pad_id)
    tgt_out = _pad([[*t, tgt_vocab.eos_id] for t in tgt], tgt_vocab.pad_id)
    return Batch(src, src_lengths, tgt_in, tgt_out)


def pair_batches(pairs: Sequence[tuple[str | Sequence[str], str | Sequence[str]]],
                 src_vocab: Vocabulary, tgt_vocab: Vocabulary, batch_size: int,
                 seed: int = 0) -> Callable[[int, torch.Generator], Batch]:
    """The batches of an epoch-wise shuffled pass over ``pairs``, as a function of the step.

    Epoch ``e`` visits the pairs in the order ``torch.randperm(len(pairs))`` seeded with
    ``seed + e``; batch ``step`` takes the next ``batch_size`` pairs of the epochs laid end to
    end (a batch may straddle two epochs). It depends on the step alone, as
    :func:`lmlab.training.train` needs for a run that resumes bit-exactly.

    Args:
        pairs: ``(source, target)`` pairs.
        src_vocab: input vocabulary.
        tgt_vocab: output vocabulary.
        batch_size: pairs per batch (>= 1).
        seed: seed of the first epoch's order (>= 0).

    Returns:
        ``batches(step, generator) -> Batch`` (the generator is not used).
    """
    if isinstance(pairs, str) or not isinstance(pairs, Sequence):
        raise TypeError(f"pairs: expected a list of (source, target) pairs, got "
                        f"{type(pairs).__name__}")
    if len(pairs) == 0:
        raise ValueError("pairs: expected at least one training pair, got none")
    check_int("batch_size", batch_size)
    check_int("seed", seed, minimum=0)
    make_batch(pairs[:1], src_vocab, tgt_vocab)  # fail early on a malformed pair or vocabulary
    n = len(pairs)
    orders: dict[int, list[int]] = {}

    def order(epoch: int) -> list[int]:
        if epoch not in orders:
            if len(orders) > 4:  # keep a few epochs' orders, not all of them
                orders.clear()
            g = torch.Generator().manual_seed(seed + epoch)
            orders[epoch] = torch.randperm(n, generator=g).tolist()
        return orders[epoch]

    def batches(step: int, generator: torch.Generator | None = None) -> Batch:
        step = check_int("step", step, minimum=0)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator or None, got "
                            f"{type(generator).__name__}")
        start = step * batch_size
        chosen = [pairs[order(i // n)[i % n]] for i in range(start, start + batch_size)]
        return make_batch(chosen, src_vocab, tgt_vocab)

    return batches


# --------------------------------------------------------------------------- token streams


def _check_stream(stream: object, context_length: int) -> torch.Tensor:
    stream = check_tensor("stream", stream, ndim=1, dtype="int")
    check_int("context_length", context_length)
    if stream.shape[0] < context_length + 1:
        raise ValueError(f"stream: a window of context_length={context_length} needs "
                         f"{context_length + 1} tokens (inputs and the next token), got "
                         f"{stream.shape[0]}")
    return stream


def token_windows(stream: torch.Tensor, starts: torch.Tensor | Sequence[int],
                  context_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(inputs, targets)`` windows of a token stream that start at ``starts``.

    Window ``b`` reads ``stream[s : s + T]`` and must predict ``stream[s + 1 : s + T + 1]``,
    the same tokens shifted by one: the language model's task at every position at once.

    Args:
        stream: token ids, e.g. a whole corpus encoded.
        starts: where each window starts, ``0 <= s <= N - T - 1`` (a tensor or ints; checked
            without a host sync on a GPU).
        context_length: ``T``, the tokens a window reads (>= 1).

    Returns:
        ``(inputs, targets)``, on the stream's device.

    Shape:
        ``stream``: ``(N,)``, ``starts``: ``(B,)`` -> ``(B, T)``, ``(B, T)``

    Example:
        >>> x, y = token_windows(torch.arange(10, 20), [0, 5], 3)
        >>> x.tolist(), y.tolist()
        ([[10, 11, 12], [15, 16, 17]], [[11, 12, 13], [16, 17, 18]])
    """
    stream = _check_stream(stream, context_length)
    if not isinstance(starts, torch.Tensor):
        if isinstance(starts, (str, bytes)) or not isinstance(starts, Sequence):
            raise TypeError(f"starts: expected a 1-D integer tensor or a list of ints, got "
                            f"{type(starts).__name__}")
        for i, s in enumerate(starts):
            check_int(f"starts[{i}]", s, minimum=0)
        starts = torch.tensor(list(starts), dtype=torch.long).reshape(-1)
    check_int_values("starts", starts, 0, stream.shape[0] - context_length, ndim=1,
                     what="window starts")
    offsets = torch.arange(context_length + 1, device=stream.device)  # (T + 1,)
    rows = stream[starts.to(stream.device)[:, None] + offsets]  # (B, T + 1)
    return rows[:, :-1], rows[:, 1:]


def random_windows(stream: torch.Tensor, batch_size: int, context_length: int,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of :func:`token_windows` at starts drawn uniformly from every possible one.

    Args:
        stream: token ids.
        batch_size: ``B``, windows to draw (>= 1).
        context_length: ``T``, the tokens a window reads (>= 1).
        generator: the random generator (on the stream's device), for a reproducible batch;
            ``None`` uses PyTorch's global one.

    Returns:
        ``(inputs, targets)``, each ``(B, T)`` on the stream's device.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = random_windows(torch.arange(100), 4, 8, g)
        >>> x.shape, bool((y == x + 1).all())
        (torch.Size([4, 8]), True)
    """
    stream = _check_stream(stream, context_length)
    check_int("batch_size", batch_size)
    check_generator("generator", generator, stream.device)
    starts = torch.randint(0, stream.shape[0] - context_length, (batch_size,),
                           generator=generator, device=stream.device)  # (B,)
    return token_windows(stream, starts, context_length)
