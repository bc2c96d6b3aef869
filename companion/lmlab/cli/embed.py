"""``lmlab embed``: all-MiniLM-L6-v2 sentence vectors (chapter 8) of your text, or how similar
a few sentences are."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lmlab.cli.common import (RUN_FILE, CLIError, OutputFolder, add_device_option,
                              check_inputs, echo, read_documents, resolve_device, write_json)

MODEL = "all-MiniLM-L6-v2"
MAX_SHOWN = 20  # the most texts whose similarity matrix is printed

EXAMPLE = """examples:
  lmlab embed --sentence "A cat sat on the mat." --sentence "A dog lay on the rug."
  lmlab embed my_texts/ --out vectors        # one vector per non-empty line
  lmlab embed my_texts/ --by file --out doc_vectors
  (writes vectors/embeddings.safetensors, (N, 384), unit length; vectors/texts.jsonl, the
  N texts in order with where they came from; and vectors/run.json)"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("embed", help="sentence vectors with all-MiniLM-L6-v2",
                       description="Unit-length sentence vectors from all-MiniLM-L6-v2 "
                       "(lmlab.pretrained.SentenceEncoder): written to a folder, or, without "
                       "--out, the cosine similarity of every pair printed.",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", metavar="TEXT",
                   help="UTF-8 text files, or folders (every *.txt under them)")
    p.add_argument("--sentence", "-s", action="append", default=[], metavar="TEXT",
                   help="a text to embed (repeat the option for more)")
    p.add_argument("--by", choices=("line", "file"), default="line",
                   help="one vector per non-empty line (default) or per file")
    p.add_argument("--out", help="write the vectors to this folder (must not exist)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass")
    add_device_option(p)
    p.set_defaults(handler=run)


def _texts(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``(source, text)`` of every text to embed, in order."""
    texts: list[tuple[str, str]] = []
    if args.inputs:
        for doc in read_documents(check_inputs(args.inputs)):
            if args.by == "file":
                texts.append((str(doc.path), doc.text.strip()))
                continue
            texts += [(f"{doc.path}:{n}", line.strip())
                      for n, line in enumerate(doc.text.split("\n"), 1) if line.strip()]
    for i, s in enumerate(args.sentence, 1):
        if not s.strip():
            raise CLIError(f"--sentence number {i}: empty")
        texts.append((f"--sentence {i}", s))
    if not texts:
        raise CLIError("nothing to embed: name text files or folders, or give --sentence")
    return texts


def run(args: argparse.Namespace) -> int:
    import torch

    from lmlab.io import save_tensors
    from lmlab.pretrained import SentenceEncoder
    from lmlab.progress import progress

    if args.batch_size < 1:
        raise CLIError(f"--batch-size {args.batch_size}: expected at least 1")
    device = resolve_device(args.device)
    if args.inputs:
        check_inputs(args.inputs)
    out = None if args.out is None else OutputFolder(args.out, args.force)
    if args.inputs and out is None:
        raise CLIError("--out: needed to write the vectors of files (without it, give a few "
                       "--sentence to compare)")
    texts = _texts(args)
    if out is None and len(texts) > MAX_SHOWN:
        raise CLIError(f"{len(texts)} texts: a similarity matrix is printed for at most "
                       f"{MAX_SHOWN}; write the vectors with --out")
    encoder = SentenceEncoder.from_pretrained(MODEL, device=device)
    rows = []
    batches = range(0, len(texts), args.batch_size)
    with progress(batches, desc="embed", enabled=None if len(batches) > 1 else False) as bar:
        for start in bar:
            chunk = [t for _source, t in texts[start:start + args.batch_size]]
            rows.append(encoder.encode(chunk, batch_size=args.batch_size).float().cpu())
    vectors = torch.cat(rows)  # (N, C), unit length
    if out is None:
        _show(vectors, [t for _source, t in texts])
        return 0
    with out:
        save_tensors({"embeddings": vectors.contiguous()}, out.path("embeddings.safetensors"),
                     metadata={"model": MODEL, "texts": "texts.jsonl"})
        with open(out.path("texts.jsonl"), "w", encoding="utf-8") as f:
            for source, text in texts:
                f.write(json.dumps({"source": source, "text": text}, ensure_ascii=False) + "\n")
        write_json(out.path(RUN_FILE), {"command": "lmlab embed", "kind": "embeddings",
                                        "model": MODEL, "by": args.by, "count": len(texts),
                                        "width": vectors.shape[1]})
        where = out.commit()
    echo(f"embedded {len(texts):,} text{'s' * (len(texts) != 1)} with {MODEL}: "
         f"{len(texts)} x {vectors.shape[1]} unit vectors")
    echo(f"wrote {where / 'embeddings.safetensors'} and texts.jsonl")
    return 0


def _show(vectors: Any, texts: list[str]) -> None:
    """The cosine similarity of every pair (the vectors have unit length: dot products)."""
    sims = (vectors @ vectors.T).tolist()
    n = len(texts)
    width = max(6, len(str(n)) + 1)
    echo(f"cosine similarity ({MODEL}):")
    echo(" " * (len(str(n)) + 1) + "".join(f"{j:>{width + 1}}" for j in range(1, n + 1)))
    for i, row in enumerate(sims, 1):
        echo(f"{i:>{len(str(n))}} " + "".join(f"{s:>{width + 1}.3f}" for s in row))
    for i, text in enumerate(texts, 1):
        echo(f"{i}: {text}")
