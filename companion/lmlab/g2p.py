"""Grapheme-to-phoneme: spelling in, pronunciation out, on the CMU Pronouncing Dictionary.

The task of chapters 3 and 4::

    splits = cmudict_splits()                                # train / validation / test, by word
    model  = Seq2Seq(Seq2SeqConfig.base(GRAPHEME_VOCAB, PHONEME_VOCAB))
    losses = train_seq2seq(model, splits["train"], steps=1000)
    hyps   = transcribe(model, ["spelling"])                 # [('S', 'P', 'EH1', 'L', 'IH0', 'NG')]
    scores = evaluate(model, splits["test"], references=cmudict_pronunciations())

The symbol lists are those of the pretrained ``g2p_en`` model, so :func:`load_g2p_en` runs its
weights in :class:`lmlab.seq2seq.Seq2Seq`. :func:`transcribe` and :func:`evaluate` read and
write symbols with the model's own vocabularies (``model.config``).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmlab._checks import check_float, check_int, check_strings
from lmlab.batching import encode_sources
from lmlab.vocab import Vocabulary
from lmlab.seq2seq import Seq2Seq, Seq2SeqConfig

__all__ = [
    "GRAPHEMES", "PHONEMES", "GRAPHEME_VOCAB", "PHONEME_VOCAB", "cmudict_splits",
    "cmudict_pronunciations", "encode_words", "transcribe", "edit_distance", "evaluate",
    "load_g2p_en",
]

logger = logging.getLogger(__name__)

#: The input symbols, g2p_en's grapheme list (padding, unknown, end mark, then a to z).
GRAPHEMES: tuple[str, ...] = ("<pad>", "<unk>", "</s>", *"abcdefghijklmnopqrstuvwxyz")
#: The output symbols, g2p_en's phoneme list (padding, unknown, start, end, 70 ARPAbet phonemes).
PHONEMES: tuple[str, ...] = ("<pad>", "<unk>", "<s>", "</s>", *(
    "AA0 AA1 AA2 AE0 AE1 AE2 AH0 AH1 AH2 AO0 AO1 AO2 AW0 AW1 AW2 AY0 AY1 AY2 B CH D DH EH0 EH1 "
    "EH2 ER0 ER1 ER2 EY0 EY1 EY2 F G HH IH0 IH1 IH2 IY0 IY1 IY2 JH K L M N NG OW0 OW1 OW2 OY0 OY1 "
    "OY2 P R S SH T TH UH0 UH1 UH2 UW UW0 UW1 UW2 V W Y Z ZH").split())
#: :data:`GRAPHEMES` as a vocabulary. A letter outside a-z is an error, not ``<unk>``.
GRAPHEME_VOCAB = Vocabulary(GRAPHEMES, pad_token="<pad>", eos_token="</s>")
#: :data:`PHONEMES` as a vocabulary, with the decoder's start and end marks.
PHONEME_VOCAB = Vocabulary(PHONEMES, pad_token="<pad>", bos_token="<s>", eos_token="</s>")

Pair = tuple[str, tuple[str, ...]]


# --------------------------------------------------------------------------- data


@functools.cache
def _cmudict(variants: bool) -> tuple[Pair, ...]:
    from lmlab.data import load_cmudict

    phonemes = set(PHONEMES[4:])
    return tuple((w, p) for w, p in load_cmudict(variants=variants)
                 if re.fullmatch("[a-z]+", w) and all(x in phonemes for x in p))


def cmudict_splits(seed: int = 0, validation_fraction: float = 0.05,
                   test_fraction: float = 0.1) -> dict[str, list[Pair]]:
    """CMUdict's words of letters a-z with their first pronunciation, split into
    train/validation/test.

    The split is by word: the sorted word list is shuffled with ``seed`` and cut, so it is the
    same on every machine. Words with apostrophes, digits or dots are left out, and so are
    phonemes outside :data:`PHONEMES` (none in cmudict 1.1.3). A word's other pronunciations
    are in :func:`cmudict_pronunciations`.

    Args:
        seed: seed of the permutation (>= 0).
        validation_fraction: share of words for validation, in (0, 0.5).
        test_fraction: share of words for the test split, in (0, 0.5).

    Returns:
        ``{"train": [...], "validation": [...], "test": [...]}``, each a list of
        ``(word, phonemes)`` pairs, sorted by word.
    """
    check_int("seed", seed, minimum=0)
    for name, value in (("validation_fraction", validation_fraction),
                        ("test_fraction", test_fraction)):
        check_float(name, value, 0.0, 0.5, min_inclusive=False, max_inclusive=False)
    pairs = sorted(_cmudict(False))
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_test = round(test_fraction * len(pairs))
    n_val = round(validation_fraction * len(pairs))
    parts = {"test": order[:n_test], "validation": order[n_test:n_test + n_val],
             "train": order[n_test + n_val:]}
    return {name: [pairs[i] for i in sorted(parts[name])]
            for name in ("train", "validation", "test")}


def cmudict_pronunciations() -> dict[str, tuple[tuple[str, ...], ...]]:
    """Every pronunciation CMUdict lists for each word of letters a-z, the first one first.

    About 7% of the words have more than one (``either``: ``IY1 DH ER0`` and ``AY1 DH ER0``).

    Returns:
        ``{word: (phonemes, ...)}``.
    """
    out: dict[str, list[tuple[str, ...]]] = {}
    for w, p in _cmudict(True):
        if p not in out.setdefault(w, []):
            out[w].append(p)
    return {w: tuple(ps) for w, ps in out.items()}


def encode_words(words: Sequence[str], src_vocab: Vocabulary = GRAPHEME_VOCAB,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Letters + end mark of each word as a padded id tensor, and the lengths.

    Args:
        words: words (lower-case a-z for :data:`GRAPHEME_VOCAB`).
        src_vocab: the model's input vocabulary.

    Returns:
        ``(src, src_lengths)``.

    Shape:
        ``(B, S)``, ``(B,)``

    Example:
        >>> src, lengths = encode_words(["cab", "ox"])
        >>> src.tolist(), lengths.tolist()
        ([[5, 3, 4, 2], [17, 26, 2, 0]], [4, 3])
    """
    check_strings("words", words)
    return encode_sources(words, src_vocab, name="words")


# --------------------------------------------------------------------------- decoding, scoring


def transcribe(model: Seq2Seq, words: Sequence[str], beam_size: int = 1, max_len: int = 30,
               batch_size: int = 1024) -> list[tuple[str, ...]]:
    """Pronounce ``words`` with ``model``, greedily or with a beam, in the model's own symbols.

    Args:
        model: a trained model; its ``config.src_vocab`` reads the letters and its
            ``config.tgt_vocab`` names the output symbols.
        words: the words to pronounce.
        beam_size: 1 for greedy decoding, more for beam search.
        max_len: the most symbols per word.
        batch_size: words decoded together (sorted by length first).

    Returns:
        One tuple of output symbols per word, in the order of ``words``.

    Example:
        >>> transcribe(load_g2p_en(), ["attention"])
        [('AH0', 'T', 'EH1', 'N', 'SH', 'AH0', 'N')]
    """
    if not isinstance(model, Seq2Seq):
        raise TypeError(f"model: expected a Seq2Seq, got {type(model).__name__}")
    check_strings("words", words)
    check_int("beam_size", beam_size)
    check_int("max_len", max_len)
    check_int("batch_size", batch_size)
    src_vocab, tgt_vocab = model.config.src_vocab, model.config.tgt_vocab
    encode_sources(words, src_vocab, name="words")  # every word checked before any decoding
    device = next(model.parameters()).device
    model.eval()
    order = sorted(range(len(words)), key=lambda i: len(words[i]))  # similar lengths together
    out: list[tuple[str, ...] | None] = [None] * len(words)
    for start in range(0, len(words), batch_size):
        chunk = order[start:start + batch_size]
        src, lengths = encode_sources([words[i] for i in chunk], src_vocab)
        src, lengths = src.to(device), lengths.to(device)
        if beam_size == 1:
            ids, _ = model.greedy_decode(src, lengths, max_len=max_len)
        else:
            ids = model.beam_search(src, lengths, beam_size=beam_size, max_len=max_len)
        for i, seq in zip(chunk, ids):
            out[i] = tuple(tgt_vocab.decode(seq))
    assert all(o is not None for o in out)
    return out  # type: ignore[return-value]


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions turning a into b.

    Args:
        a: a sequence of symbols.
        b: another.

    Returns:
        The distance.

    Example:
        >>> edit_distance(["K", "AE1", "T"], ["K", "AA1", "T", "S"])
        2
    """
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, (list, tuple)):
            raise TypeError(f"{name}: expected a list or tuple of symbols, got {type(x).__name__}")
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _pronunciation(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{name}: expected a list or tuple of phonemes, got "
                        f"{type(value).__name__} {value!r:.40} (split a string with .split())")
    if not value:
        raise ValueError(f"{name}: empty pronunciation")
    for i, p in enumerate(value):
        if not isinstance(p, str):
            raise TypeError(f"{name}[{i}]: expected a str phoneme, got {type(p).__name__}")
    return tuple(value)


def evaluate(model: Seq2Seq, pairs: Sequence[tuple[str, Sequence[str]]], beam_size: int = 1,
             max_len: int = 30, long_from: int = 10,
             references: Mapping[str, Sequence[Sequence[str]]] | None = None) -> dict[str, Any]:
    """Exact-word accuracy and phoneme error rate, overall, on long words and by word length.

    A prediction is exact when it equals one accepted pronunciation: the pair's own, or, with
    ``references``, any one listed for the word (CMUdict lists several for about 7% of words).
    Its phoneme errors are its edit distance to the closest accepted pronunciation; the phoneme
    error rate (PER) is the total of those distances divided by the total length of those
    closest pronunciations.

    Args:
        model: the model to score.
        pairs: ``(word, phonemes)`` pairs to pronounce; phonemes as a list or tuple.
        beam_size: 1 for greedy decoding, more for beam search.
        max_len: the longest output allowed.
        long_from: words with at least this many letters count as long.
        references: all accepted pronunciations per word (e.g. :func:`cmudict_pronunciations`);
            ``None``: only each pair's own.

    Returns:
        ``{"word_accuracy", "per", "long_word_accuracy", "long_per", "n", "n_long",
        "by_length": {length: {"n", "word_accuracy", "per"}}, "predictions"}``.
    """
    if isinstance(pairs, str) or not isinstance(pairs, Sequence):
        raise TypeError(f"pairs: expected a list of (word, phonemes) pairs, got "
                        f"{type(pairs).__name__}")
    if len(pairs) == 0:
        raise ValueError("pairs: expected at least one pair, got none")
    check_int("long_from", long_from)
    if references is not None and not isinstance(references, Mapping):
        raise TypeError(f"references: expected a dict word -> pronunciations, got "
                        f"{type(references).__name__}")
    words, accepted = [], []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not isinstance(pair[0], str):
            raise TypeError(f"pairs[{i}]: expected a (word, phonemes) pair, got {pair!r:.60}")
        own = _pronunciation(f"pairs[{i}][1]", pair[1])
        options = [own]
        if references is not None and pair[0] in references:
            listed = references[pair[0]]
            if isinstance(listed, str) or not isinstance(listed, Sequence):
                raise TypeError(f"references[{pair[0]!r}]: expected a list of pronunciations, "
                                f"got {type(listed).__name__}")
            for j, p in enumerate(listed):
                p = _pronunciation(f"references[{pair[0]!r}][{j}]", p)
                if p not in options:
                    options.append(p)
        words.append(pair[0])
        accepted.append(options)
    hyps = transcribe(model, words, beam_size=beam_size, max_len=max_len)
    rows = []
    for w, options, hyp in zip(words, accepted, hyps):
        dist, ref = min((edit_distance(list(r), list(hyp)), r) for r in options)
        rows.append((len(w), hyp in options, dist, len(ref)))

    def summary(sel: list[tuple[int, bool, int, int]]) -> dict[str, float]:
        return {"n": len(sel), "word_accuracy": sum(r[1] for r in sel) / max(len(sel), 1),
                "per": sum(r[2] for r in sel) / max(sum(r[3] for r in sel), 1)}

    overall, long = summary(rows), summary([r for r in rows if r[0] >= long_from])
    by_length = {n: summary([r for r in rows if r[0] == n]) for n in sorted({r[0] for r in rows})}
    return {"word_accuracy": overall["word_accuracy"], "per": overall["per"], "n": overall["n"],
            "long_word_accuracy": long["word_accuracy"], "long_per": long["per"],
            "n_long": long["n"], "by_length": by_length, "predictions": hyps}


# --------------------------------------------------------------------------- g2p_en


def load_g2p_en(path: str | Path | None = None) -> Seq2Seq:
    """The pretrained GRU encoder-decoder of ``g2p_en`` 2.1.0, running in :class:`lmlab.seq2seq.Seq2Seq`.

    The checkpoint (``checkpoint20.npz``, read with NumPy; ``g2p_en`` itself is never
    imported) holds a 256-wide GRU encoder and decoder over :data:`GRAPHEMES` and
    :data:`PHONEMES`, with no attention. g2p_en decodes greedily for at most 20 steps.

    Args:
        path: the ``.npz`` file; defaults to :func:`lmlab.data.g2p_checkpoint`.

    Returns:
        The model on the CPU, in evaluation mode.

    Raises:
        ValueError: the file is not g2p_en's checkpoint (corrupted, truncated or other
            arrays); the message names the file.
    """
    from lmlab.io import load_npz

    if path is None:
        from lmlab.data import g2p_checkpoint

        path = g2p_checkpoint()
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path: expected a path (str or pathlib.Path), got {type(path).__name__}")
    path = Path(path)
    arrays = load_npz(path)  # errors name the file
    names = [f"{side}_{w}" for side in ("enc", "dec") for w in ("emb", "w_ih", "w_hh", "b_ih",
                                                               "b_hh")] + ["fc_w", "fc_b"]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ValueError(f"{path}: not g2p_en's checkpoint, no arrays {missing}")
    w = {k: torch.from_numpy(arrays[k].astype(np.float32)) for k in names}
    C = w["enc_emb"].shape[1]
    R = w["enc_w_hh"].shape[1]
    if (w["enc_emb"].shape[0], w["dec_emb"].shape[0]) != (len(GRAPHEMES), len(PHONEMES)):
        raise ValueError(f"{path}: has vocabularies of {w['enc_emb'].shape[0]} and "
                         f"{w['dec_emb'].shape[0]} symbols, expected {len(GRAPHEMES)} and "
                         f"{len(PHONEMES)}")
    model = Seq2Seq(Seq2SeqConfig(GRAPHEME_VOCAB, PHONEME_VOCAB, d_model=C, hidden_size=R))
    state = {
        "encoder.embedding.weight": w["enc_emb"], "decoder.embedding.weight": w["dec_emb"],
        "decoder.out.weight": w["fc_w"], "decoder.out.bias": w["fc_b"],
    }
    for side, prefix in (("encoder", "enc"), ("decoder", "dec")):
        for ours, theirs in (("weight_ih_l0", "w_ih"), ("weight_hh_l0", "w_hh"),
                             ("bias_ih_l0", "b_ih"), ("bias_hh_l0", "b_hh")):
            state[f"{side}.rnn.{ours}"] = w[f"{prefix}_{theirs}"]
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path}: arrays of unexpected shapes ({err})") from None
    logger.info("loaded g2p_en checkpoint: C=%d, R=%d", C, R)
    return model.eval()
