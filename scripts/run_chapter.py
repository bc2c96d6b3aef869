"""Execute chapters top to bottom in a fresh kernel and store clean outputs.

    python scripts/run_chapter.py book/07-gpt.ipynb [more.ipynb ...]

Each notebook runs in a new kernel on the CPU (``LMLAB_DEVICE=cpu``), from the ``book/``
folder, with the same environment as this process. Afterwards its stored outputs are tidied the
way a reader's screen shows them: the outputs of each stream of a cell are merged into one (as nbval does), and text a
progress bar overwrote with a carriage return is dropped, so a finished bar is one line. The
notebook is written back atomically, and the wall time and peak memory of the kernel are
printed (for the closing notes; never stored in the notebook).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "companion"))
from lmlab.io import atomic_write  # noqa: E402


def _resolve_carriage_returns(text: str) -> str:
    """What a terminal shows: on each line, only the text after its last ``\\r``."""
    lines = text.split("\n")
    return "\n".join(re.sub(r"^.*\r(?=.)", "", line, flags=re.S).rstrip("\r") for line in lines)


def tidy_outputs(nb: nbformat.NotebookNode) -> None:
    """Merge each cell's outputs of one stream into one and resolve carriage returns, in place.

    This is what nbval does before comparing, so stored and fresh outputs line up, and a finished
    progress bar becomes one line on the page.
    """
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        merged: list[nbformat.NotebookNode] = []
        streams: dict[str, nbformat.NotebookNode] = {}
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.name in streams:
                streams[out.name].text += out.text
            else:
                merged.append(out)
                if out.output_type == "stream":
                    streams[out.name] = out
        for out in streams.values():
            out.text = _resolve_carriage_returns(out.text)
        cell.outputs = [o for o in merged if not (o.output_type == "stream" and not o.text)]


def run(path: Path, timeout: int) -> tuple[float, float]:
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ, LMLAB_DEVICE="cpu", PYTHONHASHSEED="0")
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    old_env = os.environ.copy()
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old_env)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    tidy_outputs(nb)
    for cell in nb.cells:  # no execution timestamps (older runs recorded them)
        cell.metadata.pop("execution", None)
    with atomic_write(path, "w") as f:
        nbformat.write(nb, f)
    return wall, max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args()
    for path in args.notebooks:
        if not path.is_file() or path.suffix != ".ipynb":
            raise SystemExit(f"notebooks: {str(path)!r} is not an .ipynb file")
    for path in args.notebooks:
        wall, peak_mb = run(path, args.timeout)
        print(f"{path}: {wall:.1f} s wall, peak kernel RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
