"""Run lmlab's benchmark suite: every benchmark, or the named ones.

    python -m benchmarks                      # the whole CPU suite -> benchmarks/results/cpu
    python -m benchmarks bpe_training encoding --out /tmp/bench
    python -m benchmarks --list
    python -m benchmarks gqa --quick --out /tmp/smoke   # tiny sizes: a smoke test, not timings

Each benchmark runs in a process of its own (its thread settings, imports and memory stay its
own; the runner records its wall time and peak resident memory), prints reference, ours and
their ratio as it finishes, and its full output, its rows last, goes to
``<out>/logs/<name>.log``. The run is
written to ``<out>/results.json``, ``<out>/results.md`` and ``<out>/ratios.png``; a full run
also to ``<out>/runs/`` and ``<out>/spread.md`` (:mod:`benchmarks.spread`). Without
``--out`` only the full suite may run (it replaces the committed ``benchmarks/results/cpu``,
or ``benchmarks/results/gpu`` where CUDA is available).

Run from the repository root, with lmlab importable (``PYTHONPATH=companion`` or installed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse(argv: list[str] | None) -> argparse.Namespace:
    from benchmarks.suite import BENCHMARKS

    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, one round: checks that they run (needs --out)")
    parser.add_argument("--out", type=Path, help="folder for results.json/.md, ratios.png, logs")
    parser.add_argument("--note", default="", help="a line about the machine, for the table "
                        "(for example that other work shared it)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [n for n in args.names + ([args.worker] if args.worker else [])
               if n not in BENCHMARKS]
    if unknown:
        parser.error(f"NAME: unknown benchmark(s) {', '.join(map(repr, unknown))}; expected "
                     f"some of {', '.join(BENCHMARKS)} (see --list)")
    if len(set(args.names)) != len(args.names):
        parser.error(f"NAME: a benchmark is named twice in {args.names}")
    if args.worker and args.result is None:
        parser.error("--worker needs --result")
    if not args.worker and not args.list and args.out is None and (args.quick or args.names):
        parser.error("--out: required with --quick or named benchmarks (without --out the "
                     "full suite replaces the committed benchmarks/results/)")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        parser.error(f"--out: {str(args.out)!r} exists and is not a folder")
    return args


def worker(name: str, quick: bool, result: Path) -> None:
    """Run one benchmark here and write its rows to ``result`` (JSON, atomically)."""
    from benchmarks.suite import BENCHMARKS
    from lmlab.io import atomic_write

    rows = [row.as_dict() for row in BENCHMARKS[name](quick)]
    print(f"\n{name}: rows", flush=True)  # the log then holds every benchmark's rows
    show_rows(rows)
    with atomic_write(result) as f:
        json.dump(rows, f)


def run_one(name: str, quick: bool, logs: Path) -> dict:
    """``name`` in a new process: its rows, wall seconds, peak resident MB, and error if any."""
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "rows.json"
        log = Path(folder) / "log.txt"
        command = [sys.executable, "-m", "benchmarks", "--worker", name, "--result", str(result)]
        start = time.perf_counter()
        with open(log, "w") as out:
            process = subprocess.Popen(command + (["--quick"] if quick else []), cwd=ROOT,
                                       stdout=out, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        os.replace(log, logs / f"{name}.log")
        finished = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        run = {"benchmark": name, "quick": quick, "seconds": seconds, "finished": finished,
               "cpu_seconds": usage.ru_utime + usage.ru_stime,  # its processes', all cores
               "peak_rss_mb": usage.ru_maxrss / 1024, "rows": []}
        if process.returncode != 0:
            tail = (logs / f"{name}.log").read_text(errors="replace").strip().splitlines()
            run["error"] = tail[-1] if tail else f"exit code {process.returncode}"
        else:
            run["rows"] = json.loads(result.read_text())
    return run


def show(run: dict) -> None:
    print(f"\n{run['benchmark']}  ({run['seconds']:.0f} s, peak {run['peak_rss_mb']:.0f} MB)",
          flush=True)
    if run.get("error"):
        print(f"  FAILED: {run['error']}")
    if run.get("skipped"):
        print(f"  skipped: {run['skipped']}")
    show_rows(run["rows"])


def show_rows(rows: list[dict]) -> None:
    """Each row: what, reference, ours, ratio and goal, one row in two lines."""
    for r in rows:
        ref = "-" if r["reference_value"] is None else f"{r['reference_value']:.4g}"
        met = {True: "goal met", False: "goal NOT met", None: ""}[r["met"]]
        goal = f"goal {r['goal_op']} {r['goal_value']:g}" if r["goal_op"] else ""
        print(f"  {r['what']}\n    {r['reference']} {ref} {r['unit']} | ours "
              f"{r['ours_value']:.4g} {r['unit']} | ratio {r['ratio']:.2f}x "
              f"({r['ratio_means']}) {goal} {met}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from benchmarks.suite import BENCHMARKS, SKIPPED_WHEN_QUICK

    if args.list:
        for name, fn in BENCHMARKS.items():
            print(f"{name:<18} {(fn.__doc__ or '').splitlines()[0]}")
        return 0
    if args.worker:
        worker(args.worker, args.quick, args.result)
        return 0
    from benchmarks.report import machine_info, write_results

    import torch

    out = args.out or ROOT / "benchmarks" / "results" / ("gpu" if torch.cuda.is_available()
                                                         else "cpu")
    names = args.names or list(BENCHMARKS)
    info = {**machine_info(args.note), "planned": names}
    print(f"{info['date']}, {info['cpu']} ({info['cores']} cores), torch {info['torch']}, "
          f"{info['device']}; writing to {out}", flush=True)
    runs = []
    for name in names:
        if args.quick and name in SKIPPED_WHEN_QUICK:
            run = {"benchmark": name, "quick": True, "seconds": 0.0, "peak_rss_mb": 0.0,
                   "rows": [], "skipped": SKIPPED_WHEN_QUICK[name]}
        else:
            run = run_one(name, args.quick, out / "logs")
        runs.append(run)
        show(run)
        written = write_results(out, info, runs)  # after each: a stopped run keeps what it did
    if not args.quick and not args.names:  # a full run joins the spread over runs
        from benchmarks.spread import archive, write_spread

        written += [archive(out, {"machine": info, "benchmarks": runs}), write_spread(out)]
    for path in written:
        print(f"wrote {path}")
    failed = [r["benchmark"] for r in runs if r.get("error")]
    if failed:
        print(f"failed: {', '.join(failed)} (see {out / 'logs'})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
