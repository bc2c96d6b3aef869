"""lmlab.progress: bars carry no timing fields and can be silenced."""

from __future__ import annotations

import io
import re

from lmlab.progress import progress, progress_enabled, set_progress


def test_bar_has_counts_and_postfix_but_no_time(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr("sys.stderr", buf)
    set_progress(True)
    try:
        bar = progress(range(3), desc="train")
        for _ in bar:
            bar.set_postfix(loss="1.234")
        bar.close()
    finally:
        set_progress(None)
    final = buf.getvalue().split("\r")[-1]
    assert "train: 100%" in final and "3/3" in final and "loss=1.234" in final
    assert not re.search(r"\d+:\d\d|it/s|s/it", buf.getvalue())


def test_bars_can_be_silenced(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr("sys.stderr", buf)
    set_progress(False)
    try:
        assert not progress_enabled()
        for _ in progress(range(3)):
            pass
    finally:
        set_progress(None)
    assert buf.getvalue() == ""


def test_environment_variable_silences(monkeypatch):
    monkeypatch.setenv("LMLAB_PROGRESS", "0")
    assert not progress_enabled()
    monkeypatch.setenv("LMLAB_PROGRESS", "1")
    assert progress_enabled()
