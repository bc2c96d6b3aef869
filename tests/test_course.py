"""The chapters as a course: exercises with checkers and shown solutions, an opening that says
what a chapter assumes and teaches, links instead of plain chapter numbers, and references."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

BOOK = Path(__file__).parents[1] / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]-*.ipynb"))
EXERCISE = re.compile(r"^### Exercise (\d+)\.(\d+): \S", re.M)


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def markdown(path: Path) -> str:
    return "\n".join(source(c) for c in cells(path) if c["cell_type"] == "markdown")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_has_three_to_five_exercises_each_with_a_checker(path):
    number = int(path.name[:2])
    found = [(int(n), int(m)) for n, m in EXERCISE.findall(markdown(path))]
    assert 3 <= len(found) <= 5, f"{path.name}: {len(found)} '### Exercise N.M: title' headings"
    assert [n for n, _ in found] == [number] * len(found), f"{path.name}: numbered {found}"
    assert [m for _, m in found] == list(range(1, len(found) + 1)), f"{path.name}: {found}"
    module = importlib.import_module(f"lmlab.exercises.ch{number:02d}")
    for n, m in found:
        assert callable(getattr(module, f"exercise_{n}_{m}", None)), \
            f"lmlab.exercises.ch{number:02d} has no exercise_{n}_{m}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_each_solution_is_collapsed_calls_its_checker_and_is_correct(path):
    """After each exercise heading, the first code cell is its solution: hidden behind a
    "Show the solution" toggle, calling the exercise's checker, whose stored verdict is
    correct (nbval re-checks it on every run)."""
    all_cells = cells(path)
    for i, cell in enumerate(all_cells):
        if cell["cell_type"] != "markdown":
            continue
        for n, m in EXERCISE.findall(source(cell)):
            solution = next(c for c in all_cells[i + 1:] if c["cell_type"] == "code")
            assert "hide-cell" in solution["metadata"].get("tags", []), \
                f"Exercise {n}.{m}: the solution cell is not tagged hide-cell"
            prompt = solution["metadata"].get("mystnb", {}).get("code_prompt_show", "")
            assert prompt == "Show the solution", f"Exercise {n}.{m}: toggle reads {prompt!r}"
            assert f"exercise_{n}_{m}(" in source(solution), \
                f"Exercise {n}.{m}: the solution does not call exercise_{n}_{m}"
            shown = "".join("".join(o.get("text", "")) + "".join(
                o.get("data", {}).get("text/plain", "")) for o in solution.get("outputs", []))
            assert re.search(r"\bcorrect\b", shown, re.I) and not re.search(
                r"\bnot correct\b|\bincorrect\b", shown, re.I), \
                f"Exercise {n}.{m}: the stored verdict is {shown[:200]!r}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_opens_with_what_it_assumes_and_teaches(path):
    opening = "\n".join(source(c) for c in cells(path)[:3] if c["cell_type"] == "markdown")
    assert re.search(r"\bassum", opening, re.I), f"{path.name}: no 'assumes' in the opening"
    assert re.search(r"able to", opening, re.I), f"{path.name}: no 'able to' in the opening"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_ends_with_its_references(path):
    text = markdown(path)
    assert re.search(r"^## References\s*$", text, re.M), f"{path.name}: no '## References'"
    assert re.search(r"```\{bibliography\}\s*\n:filter: docname in docnames", text), \
        f"{path.name}: no filtered bibliography"
    assert re.search(r"\{cite:[pt]\}`", text), f"{path.name}: cites nothing"
    last = [c for c in cells(path) if c["cell_type"] == "markdown"][-1]
    assert "{bibliography}" in source(last), f"{path.name}: references are not the last cell"


# "Chapter 4", "chapters 3–4", "chapter 4's": a mention by number must be a link's text.
NUMBERED = re.compile(r"\b[Cc]hapters? \d")
LINK = re.compile(r"\[[^\]]*\]\([^)]*\)|\{\{ \w+ \}\}|\{(doc|ref|numref)\}`[^`]*`")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_mention_of_a_chapter_is_a_link(path):
    plain = []
    for cell in cells(path):
        if cell["cell_type"] != "markdown":
            continue
        text = LINK.sub("", source(cell))
        text = re.sub(r"`[^`]*`", "", text)  # code spans
        plain += [ln.strip() for ln in text.splitlines() if NUMBERED.search(ln)]
    assert not plain, f"{path.name}: chapter numbers outside links: {plain[:3]}"
