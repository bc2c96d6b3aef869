"""The spread of each goal's ratio over several full runs of the suite on one machine.

One run is an anecdote: on a shared machine a ratio near its goal can fall on either side of it
from one run to the next. The runner keeps a copy of every full run's ``results.json`` in
``<out>/runs/`` and writes ``<out>/spread.md``: one row per goal, its ratio in each of the last
:data:`LAST` runs and in how many it was met.

    python -m benchmarks.spread benchmarks/results/cpu     # spread.md again from runs/
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from lmlab.io import atomic_write

LAST = 5  # runs in the table


def _key(row: dict) -> tuple[str, str]:
    # "the better tile size (128)": the same goal whichever tile size won in a run
    return row["benchmark"], re.sub(r" \(\d+\)$", "", row["what"])


def archive(out: Path, result: dict) -> Path:
    """Copy a full run's results into ``out/runs/`` under its start time; return the path."""
    stamp = result["machine"]["date"].split(" to ")[0]  # "YYYY-MM-DD HH:MM UTC"
    path = out / "runs" / (stamp.replace(" UTC", "").replace(" ", "-").replace(":", "") + ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return path


def markdown(results: list[dict]) -> str:
    """The table of goals (rows) by runs (columns), oldest run first."""
    dates = [r["machine"]["date"].split(" to ")[0].removesuffix(" UTC") for r in results]
    merged = [f"{r['machine']['date'].split(' to ')[0]} (to {r['machine']['date'].split(' to ')[1]})"
              for r in results if " to " in r["machine"]["date"]]
    goals: dict[tuple[str, str], dict] = {}  # first seen, in the suite's order
    ratios: dict[tuple[str, str], list[dict | None]] = {}
    for i, result in enumerate(results):
        for run in result["benchmarks"]:
            for row in run.get("rows", []):
                if row["met"] is None:
                    continue
                key = _key(row)
                goals.setdefault(key, row)
                ratios.setdefault(key, [None] * len(results))[i] = row
    lines = [
        "<!-- written by `python -m benchmarks.spread` (benchmarks/spread.py) from the runs in "
        "runs/; do not edit it by hand -->",
        "",
        f"Each goal's ratio in the last {len(results)} full runs of the suite on this machine "
        "(a miss in bold), and in how many runs it was met. Columns: each run's start (UTC)."
        + (f" Some benchmarks re-measured later and merged into the run: "
           f"{', '.join(merged)}." if merged else ""),
        "",
        "| benchmark | what | goal | " + " | ".join(dates) + " | met |",
        "|---|---|---|" + "---|" * len(dates) + "---|",
    ]
    for key, row in goals.items():
        cells, met = [], 0
        for found in ratios[key]:
            if found is None:
                cells.append("—")
                continue
            met += bool(found["met"])
            cells.append(f"{found['ratio']:.2f}×" if found["met"] else
                         f"**{found['ratio']:.2f}×**")
        op = "≥" if row["goal_op"] == ">=" else "≤"
        measured = sum(found is not None for found in ratios[key])
        lines.append(f"| {key[0]} | {key[1]} | {op} {row['goal_value']:g}× | "
                     + " | ".join(cells) + f" | {met} of {measured} |")
    lines.append("")
    return "\n".join(lines)


def write_spread(out: Path) -> Path | None:
    """Write ``out/spread.md`` from the last :data:`LAST` runs in ``out/runs/`` (None if none)."""
    paths = sorted((out / "runs").glob("*.json"))[-LAST:]
    if not paths:
        return None
    results = [json.loads(p.read_text()) for p in paths]
    target = out / "spread.md"
    with atomic_write(target) as f:
        f.write(markdown(results))
    return target


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not (Path(args[0]) / "runs").is_dir():
        raise SystemExit("usage: python -m benchmarks.spread FOLDER, a results folder holding "
                         f"runs/ (got {args})")
    written = write_spread(Path(args[0]))
    if written is None:
        raise SystemExit(f"FOLDER: no runs in {Path(args[0]) / 'runs'}")
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
