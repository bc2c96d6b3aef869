"""lmlab's benchmarks: one suite (``python -m benchmarks``) and the scripts it draws on.

Each ``bench_*.py`` script still runs on its own (``python benchmarks/bench_gqa.py``) and prints
its full table; :mod:`benchmarks.suite` runs their measurements as named benchmarks that return
rows (reference, ours, the ratio measured in the same run, the goal), and
:mod:`benchmarks.report` writes them as JSON, a Markdown table and a plot of the ratios.
"""
