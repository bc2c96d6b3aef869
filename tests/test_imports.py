"""No module of lmlab imports another module's private names (the package's layering rule).

A name with a leading underscore belongs to its module. Every module of the package is parsed
with ``ast`` and each ``import``/``from ... import`` of an lmlab module, and each attribute read
through an imported lmlab module, is checked. The one exception is ``lmlab._checks``: a private
module of argument checks shared by every module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "companion" / "lmlab"
SHARED = "lmlab._checks"  # the one private module others may import


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _bad_module(module: str, own: str) -> bool:
    """A private lmlab module other than the shared checks, and not the importer itself."""
    if module == SHARED or module == own or not (module == "lmlab" or
                                                 module.startswith("lmlab.")):
        return False
    return any(_private(part) for part in module.split("."))


def private_imports(source: str, own: str) -> list[str]:
    """Every place where module ``own`` (its dotted name) imports or reads another lmlab
    module's private name, as ``"line N: what"``."""
    found = []
    aliases: dict[str, str] = {}  # local name -> the lmlab module it stands for
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _bad_module(alias.name, own):
                    found.append(f"line {node.lineno}: import {alias.name}")
                if alias.name.startswith("lmlab"):
                    aliases[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else "lmlab")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and (node.module == "lmlab" or node.module.startswith("lmlab.")):
            if _bad_module(node.module, own):
                found.append(f"line {node.lineno}: from {node.module} import ...")
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if _private(alias.name) and full != SHARED and node.module != own:
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                aliases[alias.asname or alias.name] = full
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            for alias in node.names:
                if _private(alias.name) or (node.module and any(
                        _private(p) for p in node.module.split("."))):
                    found.append(f"line {node.lineno}: relative import of {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            chain = []
            value: ast.expr = node
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in aliases:
                dotted = ".".join([aliases[value.id], *reversed(chain)])
                owner = dotted.rsplit(".", 1)[0]
                if owner != own and dotted != SHARED and not dotted.startswith(SHARED + "."):
                    found.append(f"line {node.lineno}: {dotted}")
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_another_modules_private_names(path):
    found = private_imports(path.read_text(encoding="utf-8"), _module_name(path))
    assert not found, f"{path.relative_to(PACKAGE)}: " + "; ".join(found)


@pytest.mark.parametrize("source", [
    "from lmlab.pretrained import _fill",
    "from lmlab.skipgram import MAX_GRID, _as_sentences as split",
    "from lmlab import _bpe_files",
    "import lmlab._checkpoint",
    "from lmlab._checkpoint import write",
    "import lmlab.blockwise\nlmlab.blockwise._check_qkv(q, k, v)",
    "from lmlab import blockwise\nblockwise._check_qkv(q, k, v)",
    "import lmlab.blockwise as bw\nbw._check_qkv(q, k, v)",
    "from . import _helpers",
])
def test_the_check_finds_each_kind_of_private_import(source):
    assert private_imports(source, "lmlab.sparse")


@pytest.mark.parametrize("source", [
    "from lmlab._checks import check_int",
    "from lmlab import _checks\n_checks.check_int('n', 1)",
    "import lmlab\nlmlab.__version__",
    "from lmlab.blockwise import check_qkv",
    "from lmlab.sparse import _own_helper",  # a module's own names
    "x = something._private",  # not an lmlab module
])
def test_the_check_allows_public_names_own_names_and_the_shared_checks(source):
    assert private_imports(source, "lmlab.sparse") == []


def test_the_shared_checks_say_they_are_the_one_exception():
    doc = ast.get_docstring(ast.parse((PACKAGE / "_checks.py").read_text(encoding="utf-8")))
    assert doc and "one exception" in doc
