"""The exercise checkers: the shared wording, and every checker against a right and a wrong answer.

Each chapter's answers live in ``tests/test_exercises_chNN.py`` as ``ANSWERS = {"N.M": (right,
[wrong, ...])}``, where ``right`` and each ``wrong`` are zero-argument functions returning the
answer to give the checker. The tests below find every checker in ``lmlab.exercises`` and fail
when one has no right and wrong answer, so no checker can pass everything unnoticed.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from pathlib import Path
from typing import Any

import pytest
import torch

import lmlab.exercises
from lmlab.exercises import AnswerError, Verdict, call, compare, first_failure, mismatch, verdict

HERE = Path(__file__).resolve().parent


def _checkers() -> dict[str, Any]:
    """``{"N.M": checker}`` for every ``exercise_N_M`` in ``lmlab.exercises.chNN``."""
    found = {}
    for info in pkgutil.iter_modules(lmlab.exercises.__path__):
        if not re.fullmatch(r"ch\d\d", info.name):
            continue
        module = importlib.import_module(f"lmlab.exercises.{info.name}")
        for name in dir(module):
            match = re.fullmatch(r"exercise_(\d+)_(\d+)", name)
            if match:
                found[f"{match[1]}.{match[2]}"] = getattr(module, name)
    return found


def _answers() -> dict[str, tuple[Any, list[Any]]]:
    answers: dict[str, tuple[Any, list[Any]]] = {}
    for path in sorted(HERE.glob("test_exercises_ch*.py")):
        spec = importlib.util.spec_from_file_location(f"_answers_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        answers.update(module.ANSWERS)
    return answers


CHECKERS = _checkers()
ANSWERS = _answers()


def test_every_checker_has_a_right_and_a_wrong_answer() -> None:
    missing = sorted(set(CHECKERS) - set(ANSWERS))
    unknown = sorted(set(ANSWERS) - set(CHECKERS))
    assert not missing, f"checkers without answers in tests/test_exercises_chNN.py: {missing}"
    assert not unknown, f"answers for checkers that do not exist: {unknown}"
    assert all(wrongs for _, wrongs in ANSWERS.values())


@pytest.mark.parametrize("number", sorted(CHECKERS))
def test_checker_accepts_the_right_answer_and_explains_a_wrong_one(number: str) -> None:
    checker = CHECKERS[number]
    right, wrongs = ANSWERS[number]
    ok = checker(right())
    assert isinstance(ok, Verdict) and ok.correct, ok
    assert ok.exercise == number and str(ok).startswith(f"Exercise {number}: correct")
    for wrong in wrongs:
        bad = checker(wrong())
        assert isinstance(bad, Verdict) and not bad.correct, (number, bad)
        hint = bad.message.removeprefix("not yet. ")
        # a specific hint: what was expected and what came back, or what the answer raised
        assert re.search(r"expected|raised|got", hint), bad
        assert len(hint) > 25, bad


def test_compare_numbers_tensors_and_values() -> None:
    assert compare("1.1", 0.25, 0.25, what="x").correct
    assert str(compare("1.1", 0.5, 0.25, what="the cosine")) == \
        "Exercise 1.1: not yet. the cosine: expected 0.25, got 0.5"
    assert mismatch("0.25", 0.25, what="x") == "x: expected a number, got str '0.25'"
    assert mismatch(True, 1, what="x") == "x: expected a number, got bool True"
    assert mismatch(torch.ones(2, 3), torch.ones(2, 3), what="w") is None
    assert mismatch(torch.ones(3, 2), torch.ones(2, 3), what="w") == \
        "w: expected shape (2, 3), got (3, 2)"
    got = torch.ones(2, 3)
    got[1, 2] = 5
    assert mismatch(got, torch.ones(2, 3), what="w") == \
        "w: at index (1, 2) expected 1, got 5 (1 of 6 entries differ)"
    assert mismatch([1, 2], torch.ones(2), what="w") == \
        "w: expected a tensor of shape (2,), got list"
    assert mismatch(["a"], ["b"], what="tokens") == "tokens: expected ['b'], got ['a']"


def test_call_reports_what_the_answer_raised() -> None:
    def broken(x: torch.Tensor, k: int = 1) -> torch.Tensor:
        raise IndexError("out of range")

    with pytest.raises(AnswerError, match=r"your function raised IndexError: out of range "
                                          r"\(called with tensor\(\[1, 2\]\), k=3\)"):
        call(broken, torch.tensor([1, 2]), k=3)
    with pytest.raises(AnswerError, match="expected a function, got int"):
        call(3)
    assert call(lambda x: x + 1, 1) == 2


def test_first_failure_and_verdict() -> None:
    def raises() -> str | None:
        raise AnswerError("your function raised KeyError: 'x'")

    assert first_failure([("a", lambda: None), ("b", lambda: None)]) is None
    assert first_failure([("a", lambda: None), ("on 'cat'", lambda: "expected 1, got 2"),
                          ("c", raises)]) == "on 'cat': expected 1, got 2"
    assert first_failure([("on []", raises)]) == "on []: your function raised KeyError: 'x'"
    v = verdict("2.3", None, "The cosine is scale-free.")
    assert v and str(v) == "Exercise 2.3: correct. The cosine is scale-free."
    assert repr(verdict("2.3", "expected 1, got 2")) == "Exercise 2.3: not yet. expected 1, got 2"
