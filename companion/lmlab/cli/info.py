"""``lmlab info``: versions, the device commands will use, and which extras and weights are
installed (found without importing them)."""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import platform
import re
from pathlib import Path
from typing import Any

from lmlab.cli.common import add_device_option, echo, resolve_device

CORE = ("torch", "numpy", "tokenizers", "safetensors", "regex", "tqdm")
EXTRAS = ("pretrained", "data")

EXAMPLE = """example:
  lmlab info
  lmlab info --device cuda    # is this GPU usable?"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("info", help="versions, the device, installed weights",
                       description="Versions, the device that commands will use, and whether "
                       "the extras and the pretrained weights are installed.",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_option(p)
    p.set_defaults(handler=run)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _extra_requirements(extra: str) -> list[str]:
    """The distributions an extra of the installed lmlab asks for (lmlab[...] expanded)."""
    try:
        requires = metadata.requires("lmlab") or []
    except metadata.PackageNotFoundError:
        return []
    names = []
    for req in requires:
        marker = re.search(r"extra\s*==\s*['\"]([\w-]+)['\"]", req)
        if marker and marker.group(1) == extra:
            names.append(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0])
    return names


def _weights() -> list[tuple[str, str, str]]:
    """``(name, what uses it, state)`` for each set of pretrained weights."""
    from lmlab.data import MissingDataError, gpt2_files, minilm_dir
    from lmlab.gguf_file import smollm2_gguf_file

    rows = []
    for name, use, find in (("all-MiniLM-L6-v2", "lmlab embed", minilm_dir),
                            ("SmolLM2-135M-Instruct", "lmlab chat", smollm2_gguf_file),
                            ("GPT-2 tokenizer", "BPETokenizer.from_pretrained", gpt2_files)):
        try:
            find()
            state = "installed"
        except MissingDataError as err:
            state = f"missing: {err}"
        rows.append((name, use, state))
    return rows


def run(args: argparse.Namespace) -> int:
    import torch

    import lmlab

    echo(f"lmlab {lmlab.__version__} ({Path(lmlab.__file__).parent})")
    versions = [f"python {platform.python_version()}"]
    versions += [f"{dist} {_version(dist) or 'missing'}" for dist in CORE]
    for start in range(0, len(versions), 4):
        echo(", ".join(versions[start:start + 4]))
    device = resolve_device(args.device)
    if device.type == "cuda":
        where = (f"{torch.cuda.get_device_name(device)} ({torch.cuda.device_count()} "
                 f"CUDA device{'s' * (torch.cuda.device_count() != 1)}, CUDA "
                 f"{torch.version.cuda})")
    elif device.type == "mps":
        where = "Apple GPU (Metal)"
    else:
        where = ("no CUDA or MPS device found" if args.device == "auto"
                 else "as asked")
    echo(f"device: {device} ({where}; --device {args.device})")
    for extra in EXTRAS:
        dists = _extra_requirements(extra)
        if not dists:
            echo(f"lmlab[{extra}]: unknown (lmlab's metadata is not installed)")
            continue
        missing = [d for d in dists if _version(d) is None]
        state = ("installed" if not missing else
                 f"missing {', '.join(missing)}: pip install 'lmlab[{extra}]'")
        echo(f"lmlab[{extra}]: {state}")
    for name, use, state in _weights():
        echo(f"{name} ({use}): {state}")
    return 0
