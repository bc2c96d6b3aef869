"""The benchmark runner (``python -m benchmarks``): its files, its errors, its rounds.

Timings are never checked here (they belong to the runner's printed ratios); a ``--quick`` run
of two benchmarks checks that they run and that the JSON and Markdown hold what they promise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.report import Row, markdown  # noqa: E402
from benchmarks.suite import BENCHMARKS, interleaved_best  # noqa: E402

ROW_KEYS = {"benchmark", "what", "reference", "reference_value", "ours_value", "unit", "ratio",
            "ratio_means", "goal_op", "goal_value", "threads", "note", "met"}


def run_benchmarks(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "companion"), *sys.path])}
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("bench") / "out"
    return run_benchmarks("gqa", "bpe_training", "chapter_memory", "--quick", "--out",
                          str(out), "--note", "a test run"), out


def test_quick_run_writes_json_markdown_plot_and_logs(quick_run) -> None:
    done, out = quick_run
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((out / "results.json").read_text())
    machine = result["machine"]
    for key in ("machine", "cpu", "cores", "torch", "device", "torch_threads_default", "date"):
        assert machine[key] not in (None, ""), key
    assert machine["note"] == "a test run"
    runs = result["benchmarks"]
    assert [r["benchmark"] for r in runs] == ["gqa", "bpe_training", "chapter_memory"]
    assert runs[2]["skipped"] and runs[2]["rows"] == []  # --quick skips the chapters
    for run in runs[:2]:
        assert run["quick"] is True and run["seconds"] > 0 and run["peak_rss_mb"] > 0
        assert run["rows"] and "error" not in run
        log = (out / "logs" / f"{run['benchmark']}.log").read_text()
        assert all(row["what"] in log for row in run["rows"])  # the log holds the rows
        for row in run["rows"]:
            assert set(row) == ROW_KEYS
            assert row["benchmark"] == run["benchmark"]
            assert row["ours_value"] > 0 and row["reference_value"] > 0 and row["ratio"] > 0
            # met is the goal applied to the ratio
            assert row["met"] == Row(**{k: v for k, v in row.items() if k != "met"}).met
    bpe = runs[1]["rows"][0]
    assert bpe["ratio"] == pytest.approx(bpe["ours_value"] / bpe["reference_value"])
    assert (bpe["goal_op"], bpe["goal_value"]) == ("<=", 1.5)

    table = (out / "results.md").read_text()
    assert machine["cpu"] in table and machine["torch"] in table and "a test run" in table
    assert "`python -m benchmarks gqa --quick`" in table
    header = "| what | reference | ours | ratio | goal | met | threads |"
    assert table.count(header) == 2
    body = [line for line in table.splitlines() if line.startswith("| ") and line != header]
    assert len(body) == sum(len(r["rows"]) for r in runs)
    assert "**chapter_memory** — `python -m benchmarks chapter_memory --quick`: skipped" in table
    assert (out / "ratios.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ratio" in done.stdout and "wrote" in done.stdout
    assert not (out / "runs").exists()  # only a full run joins the spread


@pytest.mark.parametrize("args, message", [
    (["no_such_benchmark", "--out", "x"], "NAME: unknown benchmark(s) 'no_such_benchmark'"),
    (["gqa", "gqa", "--out", "x"], "NAME: a benchmark is named twice"),
    (["--quick"], "--out: required with --quick"),
    (["gqa"], "--out: required"),
    (["gqa", "--out", "benchmarks/__init__.py"], "is not a folder"),
])
def test_bad_arguments_are_clear_errors(args: list[str], message: str) -> None:
    done = run_benchmarks(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_list_names_every_benchmark() -> None:
    done = run_benchmarks("--list")
    assert done.returncode == 0
    assert [line.split()[0] for line in done.stdout.splitlines()] == list(BENCHMARKS)


def test_interleaved_best_alternates_sides_and_keeps_each_fastest() -> None:
    calls: list[str] = []
    best, last = interleaved_best({"a": lambda: calls.append("a") or 1,
                                   "b": lambda: calls.append("b") or 2}, 3)
    assert calls == ["a", "b"] * 4  # one warm-up round, then three interleaved rounds
    assert last == {"a": 1, "b": 2} and set(best) == {"a", "b"}
    assert all(0 <= t < 1 for t in best.values())
    with pytest.raises(ValueError, match="repeats"):
        interleaved_best({"a": lambda: None}, 0)


def test_row_goals() -> None:
    row = dict(benchmark="x", what="w", reference="r", reference_value=2.0, ours_value=3.0,
               unit="s", ratio=1.5, ratio_means="ours / reference")
    assert Row(**row, goal_op="<=", goal_value=1.5).met is True
    assert Row(**row, goal_op="<=", goal_value=1.4).met is False
    assert Row(**row, goal_op=">=", goal_value=1.6).met is False
    assert Row(**row).met is None and Row(**row).goal == ""
    with pytest.raises(ValueError, match="goal_op"):
        Row(**row, goal_op="<", goal_value=1.0)
    with pytest.raises(ValueError, match="goal_op and goal_value"):
        Row(**row, goal_op=">=")


def test_markdown_shows_a_failed_benchmark() -> None:
    info = {"date": "d", "machine": "m", "cpu": "c", "cores": 2, "system": "s",
            "python": "3", "torch": "t", "device": "cpu", "torch_threads_default": 2,
            "note": ""}
    text = markdown(info, [{"benchmark": "gqa", "seconds": 1.0, "peak_rss_mb": 1.0,
                            "rows": [], "error": "SystemExit: ids differ"}])
    assert "Failed: `SystemExit: ids differ`" in text


def test_report_merges_runs_replacing_same_names(tmp_path) -> None:
    from benchmarks.report import merge

    def result(date: str, names: list[str], cpu: str = "c") -> dict:
        machine = {"machine": "m", "cpu": cpu, "cores": 2, "torch": "t", "device": "cpu",
                   "date": date, "planned": names}
        return {"machine": machine, "benchmarks": [
            {"benchmark": n, "seconds": 1.0, "peak_rss_mb": 1.0, "rows": [], "tag": date}
            for n in names]}

    merged = merge(result("d1", ["gqa", "sparse"]), result("d2", ["sparse", "kv_cache"]))
    assert [(r["benchmark"], r["tag"]) for r in merged["benchmarks"]] == [
        ("gqa", "d1"), ("sparse", "d2"), ("kv_cache", "d2")]
    assert merged["machine"]["planned"] == ["gqa", "sparse", "kv_cache"]
    assert merged["machine"]["date"] == "d1 to d2"
    with pytest.raises(SystemExit, match="cpu differs"):
        merge(result("d1", ["gqa"]), result("d2", ["gqa"], cpu="other"))


def test_spread_counts_each_goal_over_the_runs(tmp_path) -> None:
    from benchmarks.spread import archive, write_spread

    def result(date: str, sparse_ratio: float, tile: int, with_bpe: bool) -> dict:
        rows = [Row("sparse", f"doubling T, the better tile size ({tile})", "linear", 2.0,
                    sparse_ratio, "x", sparse_ratio, "2T / T", "<=", 2.2).as_dict(),
                Row("sparse", "no goal", "dense", 1.0, 2.0, "s", 2.0, "x").as_dict()]
        runs = [{"benchmark": "sparse", "rows": rows}]
        if with_bpe:
            runs.append({"benchmark": "bpe_training", "rows": [Row(
                "bpe_training", "8k", "tokenizers", 2.0, 3.0, "s", 1.5, "ours / ref", "<=",
                1.5).as_dict()]})
        return {"machine": {"date": date}, "benchmarks": runs}

    archive(tmp_path, result("2026-12-03 09:00 UTC to 2026-12-03 09:30 UTC", 2.1, 64, True))
    archive(tmp_path, result("2026-12-02 10:00 UTC", 2.3, 128, False))  # older, listed first
    table = write_spread(tmp_path).read_text()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "2026-12-02-1000.json", "2026-12-03-0900.json"]
    header = next(line for line in table.splitlines() if line.startswith("| benchmark"))
    assert header.index("2026-12-02 10:00") < header.index("2026-12-03 09:00")
    # the same goal whichever tile won; a miss in bold; a run without the row gets a dash
    assert "| sparse | doubling T, the better tile size | ≤ 2.2× | **2.30×** | 2.10× | 1 of 2 |" \
        in table
    assert "| bpe_training | 8k | ≤ 1.5× | — | 1.50× | 1 of 1 |" in table
    assert "no goal" not in table
    assert "2026-12-03 09:00 UTC (to 2026-12-03 09:30 UTC)" in table
