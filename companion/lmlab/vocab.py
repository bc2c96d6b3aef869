"""Vocabularies: words out of text, and the one token <-> id mapping of the package.

:func:`tokenize` cuts text into words (runs of letters and digits, inner apostrophes kept);
:class:`Vocabulary` maps tokens to ids and back, with optional special tokens (unknown,
padding, start and end marks). Bag of Words (:mod:`lmlab.bow`) counts words in it, the
sequence-to-sequence models (:mod:`lmlab.seq2seq`, :mod:`lmlab.g2p`) spell letters and
phonemes with it. A vocabulary is saved to one JSON file (:meth:`Vocabulary.save`).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from lmlab._checks import check_bool, check_int, check_not_meta, check_str, check_tensor

__all__ = ["tokenize", "as_documents", "Vocabulary"]

_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Split text into words: runs of letters and digits, keeping inner apostrophes.

    Args:
        text: any string.
        lowercase: lower-case the words (so "The" and "the" are one word).

    Returns:
        The words in order.

    Example:
        >>> tokenize("The dog doesn't bite; the man-bites-dog story is 100% news.")
        ['the', 'dog', "doesn't", 'bite', 'the', 'man', 'bites', 'dog', 'story', 'is', '100', 'news']
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    check_bool("lowercase", lowercase)
    words = _WORD.findall(text)
    return [w.lower() for w in words] if lowercase else words


def as_documents(documents: Iterable[str | Sequence[str]], name: str = "documents"
                 ) -> list[Sequence[str]]:
    """A corpus as lists of words: each string split with :func:`tokenize`, word lists kept.

    Args:
        documents: strings, or sequences of word strings (already split).
        name: how error messages name the argument (``"sentences"`` for a corpus of sentences).

    Returns:
        One sequence of words per document (at least one document).

    Raises:
        TypeError: a single string (wrap it in a list), not an iterable, or a document that is
            neither a string nor a sequence of strings.
        ValueError: no documents.

    Example:
        >>> as_documents(["The dog.", ["a", "cat"]])
        [['the', 'dog'], ['a', 'cat']]
    """
    if isinstance(documents, (str, bytes)):
        raise TypeError(f"{name}: expected a list of documents, got a single string "
                        "(wrap it in a list)")
    if not isinstance(documents, Iterable) or isinstance(documents, torch.Tensor):
        raise TypeError(f"{name}: expected a list of strings or of word lists, got "
                        f"{type(documents).__name__}")
    docs: list[Sequence[str]] = []
    for i, doc in enumerate(documents):
        if isinstance(doc, str):
            docs.append(tokenize(doc))
        elif isinstance(doc, Sequence) and not isinstance(doc, bytes) and all(
                isinstance(w, str) for w in doc):
            docs.append(doc)
        else:
            raise TypeError(f"{name}[{i}]: expected a string or a sequence of word strings, "
                            f"got {type(doc).__name__}")
    if not docs:
        raise ValueError(f"{name}: expected at least one document, got none")
    return docs


_SPECIALS = ("unk_token", "pad_token", "bos_token", "eos_token")
_FORMAT = "lmlab.Vocabulary"  # the "format" entry of a saved file


@dataclass(frozen=True, repr=False)
class Vocabulary:
    """A fixed mapping between tokens and ids, with optional special tokens.

    The one vocabulary class of the package: words for a bag of words (build it with
    :meth:`from_documents`), letters and phonemes for :mod:`lmlab.g2p`. The method names are those
    of Hugging Face ``tokenizers`` (``token_to_id``, ``id_to_token``, ``encode``, ``decode``).

    Args:
        tokens: id -> token, every token unique.
        counts: id -> corpus count (set by :meth:`from_documents`), or ``None``.
        unk_token: the token every out-of-vocabulary token maps to; ``None``: an
            out-of-vocabulary token is an error.
        pad_token: the padding token, or ``None``.
        bos_token: the start-of-sequence token, or ``None``.
        eos_token: the end-of-sequence token, or ``None``.

    Example:
        >>> v = Vocabulary(("<pad>", "</s>", "a", "b"), unk_token=None, pad_token="<pad>",
        ...                eos_token="</s>")
        >>> v.encode(list("abba"), add_special_tokens=True)
        [2, 3, 3, 2, 1]
        >>> v.decode([2, 3, 1, 0])
        ['a', 'b']
    """

    tokens: tuple[str, ...]  # id -> token
    counts: tuple[int, ...] | None = None  # id -> corpus count; unk counts the dropped words
    unk_token: str | None = None  # out-of-vocabulary tokens map to it; None: they are errors
    pad_token: str | None = None  # fills the end of shorter sequences in a batch
    bos_token: str | None = None  # starts a sequence (a decoder's first input)
    eos_token: str | None = None  # ends a sequence
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.tokens, str) or not isinstance(self.tokens, Sequence):
            raise TypeError(f"tokens: expected a tuple of str, got {type(self.tokens).__name__}")
        object.__setattr__(self, "tokens", tuple(self.tokens))
        if not self.tokens:
            raise ValueError("tokens: expected at least one token, got none")
        for i, t in enumerate(self.tokens):
            if not isinstance(t, str):
                raise TypeError(f"tokens[{i}]: expected a non-empty str, got {t!r}")
            if not t:
                raise ValueError(f"tokens[{i}]: expected a non-empty str, got ''")
        index = {t: i for i, t in enumerate(self.tokens)}
        if len(index) != len(self.tokens):
            dup = sorted({t for t in self.tokens if self.tokens.count(t) > 1})
            raise ValueError(f"tokens: every token must be unique, repeated: {dup[:5]}")
        if self.counts is not None:
            if isinstance(self.counts, (str, bytes)) or not isinstance(self.counts, Sequence):
                raise TypeError(f"counts: expected a tuple of ints or None, got "
                                f"{type(self.counts).__name__}")
            object.__setattr__(self, "counts", tuple(self.counts))
            if len(self.counts) != len(self.tokens):
                raise ValueError(f"counts: expected {len(self.tokens)} counts, got {len(self.counts)}")
            for i, c in enumerate(self.counts):
                check_int(f"counts[{i}]", c, minimum=0)
        for name in _SPECIALS:
            value = getattr(self, name)
            if value is not None and value not in index:
                raise ValueError(f"{name}: {value!r} is not one of the tokens")
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_documents(cls, documents: Iterable[str | Sequence[str]], min_count: int = 1,
                       max_size: int | None = None, unk_token: str = "<unk>") -> Vocabulary:
        """Count the words of a corpus and keep the frequent ones.

        Args:
            documents: strings (tokenized with :func:`tokenize`) or lists of words.
            min_count: keep words seen at least this often (>= 1).
            max_size: keep at most this many words besides the unknown token (None: all).
            unk_token: the token for every word left out; it gets id 0.

        Returns:
            A vocabulary ordered by count (descending), ties alphabetically.

        Raises:
            ValueError: no documents, ``min_count < 1``, ``max_size < 1``, or no word survives.

        Example:
            >>> v = Vocabulary.from_documents(["dog bites man", "man bites dog", "dog"])
            >>> v.tokens
            ('<unk>', 'dog', 'bites', 'man')
        """
        check_int("min_count", min_count)
        if max_size is not None:
            check_int("max_size", max_size)
        check_str("unk_token", unk_token, allow_empty=False)
        docs = as_documents(documents)
        counter = Counter(w for d in docs for w in d)
        if not counter:
            raise ValueError("documents: the corpus contains no words to build a vocabulary from")
        counter.pop(unk_token, None)
        kept = sorted(((w, c) for w, c in counter.items() if c >= min_count),
                      key=lambda wc: (-wc[1], wc[0]))
        if max_size is not None:
            kept = kept[:max_size]
        if not kept:
            raise ValueError(f"min_count: no word occurs at least {min_count} times "
                             f"(the most frequent occurs {max(counter.values())} times)")
        dropped = sum(counter.values()) - sum(c for _, c in kept)
        return cls((unk_token, *(w for w, _ in kept)), (dropped, *(c for _, c in kept)), unk_token)

    def __repr__(self) -> str:
        specials = ", ".join(f"{name}={getattr(self, name)!r}" for name in _SPECIALS
                             if getattr(self, name) is not None)
        return f"Vocabulary(size={len(self.tokens)}{', ' if specials else ''}{specials})"

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def _special_id(self, name: str) -> int | None:
        token = getattr(self, name)
        return None if token is None else self._index[token]

    @property
    def unk_id(self) -> int | None:
        """Id of ``unk_token`` (``None`` if there is none)."""
        return self._special_id("unk_token")

    @property
    def pad_id(self) -> int | None:
        """Id of ``pad_token`` (``None`` if there is none)."""
        return self._special_id("pad_token")

    @property
    def bos_id(self) -> int | None:
        """Id of ``bos_token`` (``None`` if there is none)."""
        return self._special_id("bos_token")

    @property
    def eos_id(self) -> int | None:
        """Id of ``eos_token`` (``None`` if there is none)."""
        return self._special_id("eos_token")

    def token_to_id(self, token: str) -> int | None:
        """The id of ``token``, or ``None`` when it is not in the vocabulary (as in ``tokenizers``).

        Example:
            >>> v = Vocabulary.from_documents(["dog bites man"])
            >>> v.token_to_id("dog"), v.token_to_id("zebra")
            (2, None)
        """
        check_str("token", token)
        return self._index.get(token)

    def id_to_token(self, id: int) -> str:  # noqa: A002 (the tokenizers name)
        """The token with id ``id``.

        Raises:
            ValueError: ``id`` is outside ``0 .. len(self) - 1``.
        """
        check_int("id", id, minimum=0)
        if id >= len(self.tokens):
            raise ValueError(f"id: expected 0 <= id < {len(self.tokens)}, got {id}")
        return self.tokens[id]

    def encode(self, tokens: str | Sequence[str], add_special_tokens: bool = False) -> list[int]:
        """Ids of a sequence of tokens.

        Tokens outside the vocabulary get ``unk_id``; without an ``unk_token`` they raise.

        Args:
            tokens: a list of tokens, or a string, which is split into words with
                :func:`tokenize` first (use ``list(word)`` for a word's letters).
            add_special_tokens: frame the ids with ``bos_token`` and ``eos_token`` (those set).

        Returns:
            One id per token (plus the frame).

        Raises:
            ValueError: a token is out of the vocabulary and there is no ``unk_token``.

        Example:
            >>> Vocabulary.from_documents(["dog bites man"]).encode("the dog")
            [0, 2]
        """
        words = tokenize(tokens) if isinstance(tokens, str) else tokens
        if not isinstance(words, Sequence):
            raise TypeError(f"tokens: expected a str or a list of str, got {type(tokens).__name__}")
        unk = self.unk_id
        ids = []
        for i, w in enumerate(words):
            if not isinstance(w, str):
                raise TypeError(f"tokens[{i}]: expected a str, got {type(w).__name__}")
            idx = self._index.get(w, unk)
            if idx is None:
                unknown = sorted({x for x in words if x not in self._index})
                raise ValueError(f"tokens: {unknown} not in the vocabulary (and it has no "
                                 f"unk_token); known: {list(self.tokens)[:40]}")
            ids.append(idx)
        check_bool("add_special_tokens", add_special_tokens)
        if add_special_tokens:
            ids = ([self.bos_id] if self.bos_id is not None else []) + ids + (
                [self.eos_id] if self.eos_id is not None else [])
        return ids

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True,
               ) -> list[str]:
        """The tokens of ``ids`` (a list, not a joined string: tokens may be words or letters).

        Args:
            ids: token ids (a list or a 1-d integer tensor).
            skip_special_tokens: leave out the pad, bos and eos tokens (the unknown token stays:
                it stands for a real token).

        Returns:
            One token per kept id.
        """
        if isinstance(ids, torch.Tensor):
            check_tensor("ids", ids, ndim=1, dtype="int")
            ids = check_not_meta("ids", ids).tolist()
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
            raise TypeError(f"ids: expected a list of int, got {type(ids).__name__}")
        check_bool("skip_special_tokens", skip_special_tokens)
        skip = {self.pad_id, self.bos_id, self.eos_id} - {None} if skip_special_tokens else set()
        out = []
        for i, idx in enumerate(ids):
            check_int(f"ids[{i}]", idx, minimum=0, maximum=len(self.tokens) - 1)
            if idx not in skip:
                out.append(self.tokens[idx])
        return out

    def to_dict(self) -> dict[str, object]:
        """The vocabulary as JSON-able data (tokens, counts and special tokens)."""
        return {"tokens": list(self.tokens),
                "counts": None if self.counts is None else list(self.counts),
                **{name: getattr(self, name) for name in _SPECIALS}}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Vocabulary:
        """The inverse of :meth:`to_dict`."""
        if not isinstance(data, dict) or "tokens" not in data:
            raise ValueError("data: expected a dict with 'tokens', as written by to_dict()")
        unexpected = set(data) - {"tokens", "counts", *_SPECIALS}
        if unexpected:
            raise ValueError(f"data: unexpected keys {sorted(unexpected)}")
        return cls(data["tokens"], data.get("counts"),  # type: ignore[arg-type]
                   **{name: data.get(name) for name in _SPECIALS})  # type: ignore[arg-type]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the vocabulary to one JSON file (:meth:`to_dict`), atomically.

        Example:
            >>> import tempfile, pathlib
            >>> path = pathlib.Path(tempfile.mkdtemp()) / "vocab.json"
            >>> v = Vocabulary(("<pad>", "a", "b"), pad_token="<pad>")
            >>> v.save(path)
            >>> Vocabulary.load(path) == v
            True
        """
        from lmlab.io import save_json

        save_json({"format": _FORMAT, **self.to_dict()}, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is not JSON, not a vocabulary file, or holds an invalid
                vocabulary; the message names the file.
        """
        from lmlab.io import load_json

        data = load_json(path)  # names the file when it is not JSON
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"path: {str(path)!r} is not a vocabulary file written by "
                             f"Vocabulary.save (format {found!r}, expected {_FORMAT!r})")
        try:
            return cls.from_dict({k: v for k, v in data.items() if k != "format"})
        except (TypeError, ValueError) as err:
            raise ValueError(f"path: {str(path)!r} holds an invalid vocabulary: {err}") from None


