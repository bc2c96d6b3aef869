"""``lmlab word2vec train|similar|analogy``: chapter 2's skip-gram word vectors on your text."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from lmlab.cli.common import (RUN_FILE, CLIError, OutputFolder, add_device_option,
                              check_inputs, echo, model_file, read_documents, resolve_device,
                              write_json)

PRESETS = ("tiny", "small", "base")  # lmlab.word2vec.Word2VecConfig's presets
COMMAND = "lmlab word2vec train"

TRAIN_EXAMPLE = """example:
  lmlab word2vec train my_texts/ --out vectors --epochs 5 --min-count 3
  (sentences: each file cut at . ! ? and blank lines; words: lower-cased runs of letters
  and digits; writes vectors/model.safetensors and vectors/run.json)"""
SIMILAR_EXAMPLE = """example:
  lmlab word2vec similar vectors king queen -k 5"""
ANALOGY_EXAMPLE = """example:
  lmlab word2vec analogy vectors man king woman   # man is to king as woman is to ?"""


def add_parser(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    group = sub.add_parser("word2vec", help="train word vectors and query them",
                           description="Skip-gram with negative sampling (lmlab.word2vec).",
                           epilog=TRAIN_EXAMPLE, formatter_class=fmt)
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    train = actions.add_parser("train", help="learn word vectors from text files",
                               description="Learn word vectors from UTF-8 text files or "
                                           "folders.", epilog=TRAIN_EXAMPLE, formatter_class=fmt)
    train.add_argument("inputs", nargs="+", metavar="TEXT",
                       help="UTF-8 text files, or folders (every *.txt under them)")
    train.add_argument("--out", required=True, help="the folder to write (must not exist)")
    train.add_argument("--preset", choices=PRESETS, default="small",
                       help="Word2VecConfig preset the options below change (default small: "
                            "50-wide vectors, gensim's defaults)")
    train.add_argument("--d-model", type=int, help="width of a vector")
    train.add_argument("--epochs", type=int, help="passes over the text")
    train.add_argument("--window", type=int, help="largest distance to a context word")
    train.add_argument("--min-count", type=int, help="drop words seen fewer times")
    train.add_argument("--negatives", type=int, help="random non-neighbours per window")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_device_option(train)
    train.add_argument("--force", action="store_true", help="replace --out if it exists")
    train.set_defaults(handler=run_train)

    similar = actions.add_parser("similar", help="nearest words by cosine similarity",
                                 description="The nearest words to each word given.",
                                 epilog=SIMILAR_EXAMPLE, formatter_class=fmt)
    similar.add_argument("vectors", help="a folder of 'lmlab word2vec train' (or its file)")
    similar.add_argument("words", nargs="+", metavar="WORD")
    similar.add_argument("-k", type=int, default=10, help="how many neighbours (default 10)")
    similar.set_defaults(handler=run_similar)

    analogy = actions.add_parser("analogy", help="a is to b as c is to ?",
                                 description="Answer 'a is to b as c is to ?' (b - a + c).",
                                 epilog=ANALOGY_EXAMPLE, formatter_class=fmt)
    analogy.add_argument("vectors", help="a folder of 'lmlab word2vec train' (or its file)")
    analogy.add_argument("a")
    analogy.add_argument("b")
    analogy.add_argument("c")
    analogy.add_argument("-k", type=int, default=5, help="how many answers (default 5)")
    analogy.set_defaults(handler=run_analogy)


def _config(args: argparse.Namespace) -> Any:
    from lmlab.word2vec import Word2VecConfig

    config = getattr(Word2VecConfig, args.preset)()
    changes = {name: getattr(args, name) for name in
               ("d_model", "epochs", "window", "min_count", "negatives")
               if getattr(args, name) is not None}
    changes["seed"] = args.seed
    try:
        return dataclasses.replace(config, **changes)
    except (TypeError, ValueError) as err:
        field, _, rest = str(err).partition(":")
        raise CLIError(f"--{field.replace('_', '-')}:{rest}") from None


def run_train(args: argparse.Namespace) -> int:
    from lmlab.data import split_sentences

    config = _config(args)
    device = resolve_device(args.device)
    files = check_inputs(args.inputs)
    out = OutputFolder(args.out, args.force)
    docs = read_documents(files)
    sentences = [s for d in docs for s in split_sentences(d.text)]
    from lmlab.vocab import tokenize
    from lmlab.word2vec import train_word2vec

    words = sum(len(tokenize(s)) for s in sentences)
    if not words:
        raise CLIError(f"{', '.join(map(str, args.inputs))}: no words (runs of letters or "
                       "digits) to learn from")
    echo(f"read {len(docs)} file{'s' * (len(docs) != 1)}: {len(sentences):,} sentences, "
         f"{words:,} words")
    try:
        vectors, history = train_word2vec(sentences, config, device=device)
    except ValueError as err:
        if "min_count" in str(err):
            raise CLIError(f"no word occurs {config.min_count} times; lower --min-count or "
                           "give more text") from None
        raise
    with out:
        vectors.save(out.path("model.safetensors"),
                     metadata={"command": COMMAND, "config": _json(dataclasses.asdict(config))})
        write_json(out.path(RUN_FILE), {
            "command": COMMAND, "kind": "WordVectors", "config": dataclasses.asdict(config),
            "files": [str(d.path) for d in docs], "sentences": len(sentences), "words": words,
            "vocabulary": len(vectors), "device": str(device),
            "final_loss": history.loss[-1] if history.loss else None})
        where = out.commit()
    echo(f"vocabulary: {len(vectors):,} words seen at least {config.min_count} "
         f"time{'s' * (config.min_count != 1)}; vectors {vectors.d_model} wide")
    echo(f"wrote {where / 'model.safetensors'}")
    return 0


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, sort_keys=True)


def _load(path: str) -> Any:
    from lmlab.vectors import WordVectors

    return WordVectors.load(model_file(path, COMMAND))


def _word(vectors: Any, word: str, path: str) -> str:
    """``word`` as training saw it (lower case), checked to be in the vocabulary."""
    from lmlab.vocab import tokenize

    pieces = tokenize(word)
    if len(pieces) != 1:
        raise CLIError(f"{word!r}: expected one word (letters and digits), got "
                       f"{len(pieces)}: {pieces}")
    if pieces[0] not in vectors:
        raise CLIError(f"{word!r} is not in the vocabulary of {path} ({len(vectors):,} words "
                       "seen at least min-count times)")
    return pieces[0]


def run_similar(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise CLIError(f"-k {args.k}: expected at least 1")
    vectors = _load(args.vectors)
    words = [_word(vectors, w, args.vectors) for w in args.words]
    for i, word in enumerate(words):
        if i:
            echo()
        echo(f"nearest to {word!r}:")
        for other, cosine in vectors.most_similar(word, k=args.k):
            echo(f"  {other:<20} {cosine:.3f}")
    return 0


def run_analogy(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise CLIError(f"-k {args.k}: expected at least 1")
    vectors = _load(args.vectors)
    a, b, c = (_word(vectors, w, args.vectors) for w in (args.a, args.b, args.c))
    echo(f"{a} is to {b} as {c} is to:")
    for word, cosine in vectors.analogy(a, b, c, k=args.k):
        echo(f"  {word:<20} {cosine:.3f}")
    return 0
