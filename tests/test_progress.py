"""lmlab.progress: bars carry no timing fields, redraw on steps, and can be silenced."""

from __future__ import annotations

import re

import pytest

from lmlab.progress import progress, progress_enabled, set_progress


class Captured:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def getvalue(self) -> str:
        return self.capsys.readouterr().err


@pytest.fixture
def stderr(capsys):
    """What the bars draw on stderr; the global switch is restored afterwards."""
    yield Captured(capsys)
    set_progress(None)


def run_bar(steps: int, desc: str = "train") -> None:
    bar = progress(range(steps), desc=desc)
    for i in bar:
        bar.set_postfix(loss=f"{i:.1f}")
    bar.close()


def test_bar_has_counts_and_postfix_but_no_time(stderr):
    set_progress(True)
    run_bar(3)
    final = stderr.getvalue().split("\r")[-1]
    assert "train: 100%" in final and "3/3" in final and "loss=2.0" in final
    assert not re.search(r"\d+:\d\d|it/s|s/it", stderr.getvalue())


def test_redraws_follow_steps_not_the_clock(stderr):
    set_progress(True)
    run_bar(1000, desc="steps")
    draws = [d for d in stderr.getvalue().split("\r") if d.strip()]
    assert 20 <= len(draws) <= 23  # initial draw, every 5%, and the final state
    assert "1000/1000" in draws[-1] and "loss=999.0" in draws[-1]


def test_bars_can_be_silenced(stderr):
    set_progress(False)
    assert not progress_enabled()
    run_bar(3)
    assert stderr.getvalue() == ""


def test_environment_variable_silences(monkeypatch):
    monkeypatch.setenv("LMLAB_PROGRESS", "0")
    assert not progress_enabled()
    monkeypatch.setenv("LMLAB_PROGRESS", "1")
    assert progress_enabled()


def test_a_resumed_bar_starts_where_it_left_off(stderr):
    set_progress(True)
    bar = progress(total=10, desc="resumed", initial=6)
    for _ in range(4):
        bar.update(1)
    bar.close()
    draws = [d for d in stderr.getvalue().split("\r") if d.strip()]
    assert "6/10" in draws[0] and "10/10" in draws[-1]


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(iterable=3), TypeError, "iterable"), (dict(total=-1), ValueError, "total"),
    (dict(total=2.5), TypeError, "total"), (dict(desc=None), TypeError, "desc"),
    (dict(enabled=1), TypeError, "enabled"), (dict(total=5, initial=6), ValueError, "initial"),
    (dict(initial=-1), ValueError, "initial"),
])
def test_progress_rejects_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=f"^{name}"):
        progress(**kwargs)


def test_set_progress_rejects_non_bools():
    with pytest.raises(TypeError, match="^enabled"):
        set_progress("no")  # type: ignore[arg-type]
    set_progress(None)
