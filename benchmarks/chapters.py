"""Peak resident memory of each chapter's execution, against the course's 1.5 GB budget.

Each chapter runs the way ``scripts/run_chapter.py`` runs it (a fresh kernel, on the CPU, from
the ``book/`` folder, ``PYTHONHASHSEED=0``), in a process of its own, and nothing is written
back: the notebook is left as it is. The figure is the kernel's peak resident set
(``ru_maxrss`` of the worker's children, read after the kernel has exited).

Run one chapter: ``python -m benchmarks.chapters book/02-word2vec.ipynb`` (prints a JSON line);
every chapter: ``python -m benchmarks chapter_memory``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_MB = 1500.0


def chapters() -> list[Path]:
    """The book's chapter notebooks, in order."""
    return sorted((ROOT / "book").glob("[0-9][0-9]-*.ipynb"))


def execute(path: Path, timeout: int = 600) -> tuple[float, float]:
    """Run ``path`` in a fresh kernel without saving it: (the kernel's peak MB, wall seconds)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    os.environ.update(LMLAB_DEVICE="cpu", PYTHONHASHSEED="0")  # the kernel inherits them
    start = time.perf_counter()
    client.execute()
    wall = time.perf_counter() - start
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, wall


def peak_memory(path: Path, timeout: int = 900) -> tuple[float, float]:
    """:func:`execute` in a new process (so that one chapter's peak is not another's)."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.chapters", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"{path.name} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["peak_mb"], result["seconds"]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].endswith(".ipynb") or not Path(args[0]).is_file():
        raise SystemExit(f"usage: python -m benchmarks.chapters book/NN-name.ipynb (got {args})")
    peak, wall = execute(Path(args[0]).resolve())
    print(json.dumps({"peak_mb": peak, "seconds": wall}))


if __name__ == "__main__":
    main()
