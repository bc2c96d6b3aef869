"""Rows of the benchmark suite, the machine they were measured on, and the files written.

A :class:`Row` is one comparison: a reference and ours, measured in the same run, the ratio
between them (with what it means: which way is better), and the goal of issue 20 where one is
set. :func:`write_results` writes a run's rows as ``results.json``, ``results.md`` (the table
the book's Performance appendix includes) and ``ratios.png``, each atomically.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from lmlab.io import atomic_write

GOAL_OPS = (">=", "<=")


@dataclass(frozen=True)
class Row:
    """One measured comparison.

    ``ratio`` is computed from the two values by the benchmark and its meaning is spelt out in
    ``ratio_means``; ``met`` is None where no goal is set.
    """

    benchmark: str  # the runner's name for the benchmark (python -m benchmarks NAME)
    what: str  # what was measured, in a few words
    reference: str  # what ours is compared with ("tokenizers BpeTrainer", "1.5 GB budget")
    reference_value: float | None  # the reference's figure, in ``unit``
    ours_value: float  # our figure, in ``unit``
    unit: str  # "s", "MB/s", "words/s", "tokens/s", "MB", "us"
    ratio: float  # the ratio of the two figures, as ``ratio_means`` says
    ratio_means: str  # e.g. "reference time / ours (> 1: ours faster)"
    goal_op: str | None = None  # ">=" or "<=" (issue 20's goal on ``ratio``), or None
    goal_value: float | None = None  # the goal's bound
    threads: str = ""  # threads each side used
    note: str = ""  # anything the figures need to be read right (agreement checks, sizes)

    def __post_init__(self) -> None:
        if self.goal_op not in (None, *GOAL_OPS):
            raise ValueError(f"goal_op: expected one of {GOAL_OPS} or None, got {self.goal_op!r}")
        if (self.goal_op is None) != (self.goal_value is None):
            raise ValueError("goal_op and goal_value: give both or neither")

    @property
    def met(self) -> bool | None:
        if self.goal_op is None:
            return None
        return self.ratio >= self.goal_value if self.goal_op == ">=" else (
            self.ratio <= self.goal_value)

    @property
    def goal(self) -> str:
        return "" if self.goal_op is None else f"{'≥' if self.goal_op == '>=' else '≤'} " \
            f"{self.goal_value:g}×"

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "met": self.met}


def machine_info(note: str = "") -> dict:
    """The machine, CPU model, cores, torch version, device, default thread count and date."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = "cpu"
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name()})"
    return {
        "machine": platform.node(),
        "system": f"{platform.system()} {platform.release()}",
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "torch_threads_default": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "note": note,
    }


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    digits = 3 if abs(value) < 10 else (1 if abs(value) < 1000 else 0)
    return f"{value:,.{digits}f} {unit}"


def markdown(info: dict, runs: list[dict]) -> str:
    """The run as Markdown: the machine, then one table per benchmark with its command."""
    lines = [
        "<!-- written by `python -m benchmarks` (benchmarks/report.py); re-run it to replace "
        "this file, do not edit it by hand -->",
        "",
        f"**Measured** {info['date']} on `{info['machine']}`: {info['cpu']}, {info['cores']} "
        f"cores, {info['system']}, Python {info['python']}, torch {info['torch']}, device "
        f"{info['device']}, torch's default thread count {info['torch_threads_default']} "
        "(each row says the threads it used)."
        + (f" *{info['note']}*" if info["note"] else ""),
        "",
    ]
    goals = [r for run in runs for r in run.get("rows", []) if r["met"] is not None]
    if goals:
        short = [f"{r['benchmark']} ({r['what']}: {r['ratio']:.2f}×, goal "
                 f"{r['goal_op'].replace('>=', '≥').replace('<=', '≤')} {r['goal_value']:g}×)"
                 for r in goals if not r["met"]]
        if any(run.get("quick") for run in runs):
            lines += ["A `--quick` run: tiny sizes, one round; its figures check that the "
                      "benchmarks run and say nothing about the goals.", ""]
        else:
            lines += [f"**Goals met in this run: {len(goals) - len(short)} of {len(goals)}.**"
                      + (f" Not met: {'; '.join(short)}." if short else ""), ""]
    missing = [name for name in info.get("planned", []) if name not in
               {run["benchmark"] for run in runs}]
    if missing:
        lines += [f"Not in this table (the run was stopped before them, or is still going): {', '.join(missing)}.", ""]
    for run in runs:
        command = f"python -m benchmarks {run['benchmark']}{' --quick' if run.get('quick') else ''}"
        if run.get("skipped"):
            lines += [f"**{run['benchmark']}** — `{command}`: skipped ({run['skipped']})", ""]
            continue
        when = f"finished {run['finished']}, " if run.get("finished") else ""
        cpu = f", {run['cpu_seconds']:.0f} s of CPU" if run.get("cpu_seconds") else ""
        lines += [f"**{run['benchmark']}** — `{command}` ({when}{run['seconds']:.0f} s{cpu}, "
                  f"peak resident memory {run['peak_rss_mb']:.0f} MB)", ""]
        if run.get("error"):
            lines += [f"Failed: `{run['error']}`", ""]
            continue
        lines += ["| what | reference | ours | ratio | goal | met | threads |",
                  "|---|---|---|---|---|---|---|"]
        for r in run["rows"]:
            met = {True: "yes", False: "**no**", None: ""}[r["met"]]
            goal = Row(**{k: v for k, v in r.items() if k != "met"}).goal
            lines.append(
                f"| {r['what']} | {r['reference']}: {_figure(r['reference_value'], r['unit'])} "
                f"| {_figure(r['ours_value'], r['unit'])} | {r['ratio']:.2f}× "
                f"({r['ratio_means']}) | {goal} | {met} | {r['threads']} |")
        notes = [f"{r['what']}: {r['note']}" for r in run["rows"] if r["note"]]
        if notes:
            lines += [""] + [f"- {n}" for n in notes]
        lines.append("")
    return "\n".join(lines)


def plot_ratios(runs: list[dict]) -> bytes | None:
    """A PNG of every ratio that has a goal, as a multiple of its goal (>= 1: met)."""
    rows = [Row(**{k: v for k, v in r.items() if k != "met"})
            for run in runs for r in run.get("rows", [])]
    rows = [r for r in rows if r.goal_op is not None and r.ratio > 0]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    scores = [r.ratio / r.goal_value if r.goal_op == ">=" else r.goal_value / r.ratio
              for r in rows]
    labels = [f"{r.benchmark}: {r.what}"[:64] for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(rows) + 1.2))
    # bars from the goal (1) to the score: right of the line met, left not met
    ax.barh(range(len(rows)), [s - 1 for s in scores], left=1,
            color=["tab:green" if s >= 1 else "tab:red" for s in scores])
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}×"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    low, high = min(min(scores), 0.5) / 1.2, max(max(scores), 2.0) * 1.2
    ax.set_xlim(low, high)
    ax.set_xticks([t for t in (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 10, 20) if low <= t <= high])
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ratio as a multiple of its goal (right of the line: goal met)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def write_results(out: Path, info: dict, runs: list[dict]) -> list[Path]:
    """Write ``results.json``, ``results.md`` and ``ratios.png`` into ``out`` (atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.json", out / "results.md"]
    with atomic_write(written[0]) as f:
        json.dump({"machine": info, "benchmarks": runs}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with atomic_write(written[1]) as f:
        f.write(markdown(info, runs))
    png = plot_ratios(runs)
    if png is not None:
        written.append(out / "ratios.png")
        with atomic_write(written[-1], "wb") as f:
            f.write(png)
    return written


def merge(first: dict, other: dict) -> dict:
    """``first``'s results with ``other``'s benchmarks added, or replacing those of the same
    name; both must come from the same machine, torch and device."""
    for key in ("machine", "cpu", "cores", "torch", "device"):
        if first["machine"][key] != other["machine"][key]:
            raise SystemExit(f"cannot merge: {key} differs ({first['machine'][key]!r} and "
                             f"{other['machine'][key]!r})")
    names = [run["benchmark"] for run in other["benchmarks"]]
    runs = [run for run in first["benchmarks"] if run["benchmark"] not in names]
    runs += other["benchmarks"]
    info = dict(first["machine"])
    info["planned"] = list(dict.fromkeys(info.get("planned", []) + other["machine"].get(
        "planned", [])))
    stamps = sorted({*first["machine"]["date"].split(" to "),
                     *other["machine"]["date"].split(" to ")})  # "YYYY-MM-DD HH:MM UTC"
    info["date"] = f"{stamps[0]} to {stamps[-1]}" if len(stamps) > 1 else stamps[0]
    order = {name: i for i, name in enumerate(info["planned"])}
    runs.sort(key=lambda run: order.get(run["benchmark"], len(order)))
    return {"machine": info, "benchmarks": runs}


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.report FOLDER [MORE ...]``: write ``results.md`` and
    ``ratios.png`` again from the folder's ``results.json``; with more folders, first add
    their benchmarks to it (replacing those of the same name) and copy their logs."""
    import shutil
    import sys

    args = sys.argv[1:] if argv is None else argv
    bad = [a for a in args if not (Path(a) / "results.json").is_file()]
    if not args or bad:
        raise SystemExit(f"usage: python -m benchmarks.report FOLDER [MORE ...], each a "
                         f"folder holding results.json; not such a folder: {bad or 'none given'}")
    out = Path(args[0])
    result = json.loads((out / "results.json").read_text())
    for folder in map(Path, args[1:]):
        result = merge(result, json.loads((folder / "results.json").read_text()))
        for log in (folder / "logs").glob("*.log"):
            (out / "logs").mkdir(exist_ok=True)
            shutil.copyfile(log, out / "logs" / log.name)
    from benchmarks.suite import BENCHMARKS  # merged runs in the suite's order

    order = {name: i for i, name in enumerate(BENCHMARKS)}
    result["machine"].get("planned", []).sort(key=lambda name: order.get(name, len(order)))
    result["benchmarks"].sort(key=lambda run: order.get(run["benchmark"], len(order)))
    for path in write_results(out, result["machine"], result["benchmarks"]):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
