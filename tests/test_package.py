"""The package's top level: ``import lmlab`` imports neither torch nor a submodule, and each of
its main names resolves, on first use, to the object its module defines."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import lmlab

COMPANION = str(Path(__file__).resolve().parent.parent / "companion")


def _run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter that sees this checkout's lmlab; return its JSON."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": COMPANION, "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout)


def test_import_lmlab_imports_neither_torch_nor_a_submodule():
    got = _run("import json, sys, lmlab\n"
               "print(json.dumps({'torch': 'torch' in sys.modules, 'lmlab': sorted(\n"
               "    m for m in sys.modules if m.startswith('lmlab.')), 'file': lmlab.__file__}))")
    assert got == {"torch": False, "lmlab": [], "file": got["file"]}
    assert got["file"].startswith(COMPANION)


def test_a_main_name_imports_only_its_own_module_chain():
    got = _run("import json, sys, lmlab\n"
               "lmlab.Vocabulary\n"
               "print(json.dumps(sorted(m for m in sys.modules if m.startswith('lmlab.'))))")
    assert "lmlab.vocab" in got and "lmlab.transformer" not in got and "lmlab.bpe" not in got


@pytest.mark.parametrize("name", sorted(lmlab.MAIN_NAMES))
def test_each_main_name_is_its_modules_object(name):
    module = importlib.import_module(f"lmlab.{lmlab.MAIN_NAMES[name]}")
    assert getattr(lmlab, name) is getattr(module, name)
    assert name in dir(lmlab) and name in lmlab.__all__
    assert name in module.__all__  # a public name of the module that owns it


def test_every_submodule_is_listed_and_an_unknown_name_is_an_attribute_error():
    package = Path(lmlab.__file__).parent
    modules = {p.stem for p in package.glob("*.py") if not p.stem.startswith("_")}
    modules |= {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert modules - {"__main__"} <= set(lmlab.__all__)
    with pytest.raises(AttributeError, match="no attribute 'GPT2'"):
        lmlab.GPT2  # noqa: B018
    assert lmlab.load is importlib.import_module("lmlab.model_files").load
