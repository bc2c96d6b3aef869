"""The book: table of contents, chapter hygiene and configuration."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
BOOK = ROOT / "book"


def toc_files() -> list[str]:
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part.get("chapters", [])]
    return files


def notebooks() -> list[Path]:
    return sorted(p for p in BOOK.glob("*.ipynb"))


def test_every_toc_entry_exists():
    for name in toc_files():
        matches = [p for p in BOOK.glob(f"{name}.*") if p.suffix in (".md", ".ipynb")]
        assert len(matches) == 1, f"_toc.yml lists {name!r} but book/ has {matches}"


def test_every_notebook_is_listed():
    listed = set(toc_files())
    unlisted = [p.name for p in notebooks() if p.stem not in listed]
    assert not unlisted, f"notebooks missing from _toc.yml: {unlisted}"


def test_chapters_are_numbered_in_toc_order():
    chapters = [f for f in toc_files() if re.match(r"\d\d-", f)]
    assert chapters, "no chapters listed"
    assert chapters == sorted(chapters)
    for f in chapters:
        assert re.fullmatch(r"\d\d-[a-z0-9]+(-[a-z0-9]+)*", f), f"{f} is not NN-kebab-case"


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_notebook_hygiene(path):
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown"
    assert "".join(cells[0]["source"]).startswith("# "), "first cell must be '# Title'"
    code = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1)), \
        "execute the chapter top to bottom in a fresh kernel"
    for c in code:
        src = "".join(c["source"])
        assert "execution" not in c["metadata"], f"execution timestamps stored: {src[:60]!r}"
        for out in c.get("outputs", []):
            assert out["output_type"] != "error", f"stored error in cell: {src[:60]!r}"
            text = "".join(out.get("text", "")) + json.dumps(out.get("data", {}).get("text/plain", ""))
            assert not re.search(r" at 0x[0-9a-f]{6,}", text), "memory address in an output"
            assert "/work/" not in text and "/home/" not in text and "site-packages" not in text, \
                "absolute path in an output"
            assert "Warning" not in text, f"a warning in a stored output: {text[:200]!r}"
            assert not re.search(r"\b\d+(\.\d+)?\s?(it/s|s/it)\b|\[\d\d:\d\d", text), \
                "timing in an output"
    for c in code:
        wide = [ln for ln in "".join(c["source"]).splitlines() if len(ln) > 88]
        assert not wide, f"code wider than 88 columns scrolls sideways on the page: {wide[0]!r}"
        streams = [o["name"] for o in c.get("outputs", []) if o["output_type"] == "stream"]
        assert len(streams) == len(set(streams)), \
            "one stored output per stream and cell (re-run with scripts/run_chapter.py)"
        for out in c.get("outputs", []):
            if out["output_type"] == "stream":
                assert "\r" not in "".join(out["text"]), \
                    "a progress bar's redraws are stored: re-run with scripts/run_chapter.py"
    sources = "\n".join("".join(c["source"]) for c in code)
    assert re.search(r"^\s*(from lmlab|import lmlab)", sources, re.M), "chapters import lmlab"
    assert "allow_errors" not in json.dumps(nb.get("metadata", {}))


def test_config_has_launch_buttons_and_repository():
    config = yaml.safe_load((BOOK / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["launch_buttons"]["binderhub_url"].startswith("https://")
    assert config["launch_buttons"]["colab_url"].startswith("https://")
    assert config["html"]["use_repository_button"] is True
    assert "sphinx.ext.autodoc" in config["sphinx"]["extra_extensions"]


def test_repository_url_is_one_setting_mirrored():
    import tomllib

    url = yaml.safe_load((BOOK / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert urls["Repository"].rstrip("/") == url
    readme = (ROOT / "README.md").read_text()
    slug = url.removeprefix("https://github.com/")
    assert f"mybinder.org/v2/gh/{slug}/" in readme
    assert url in readme


def test_readme_quick_start_has_exactly_two_commands():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert block, "README.md needs a ```bash Quick start block"
    commands = [ln for ln in block.group(1).splitlines() if ln.strip()]
    assert len(commands) == 2
    assert "jupyter-book build" in commands[0] and "pytest" in commands[1]


def test_api_page_documents_every_module():
    api = (BOOK / "api.md").read_text()
    modules = sorted(p.stem for p in (ROOT / "companion" / "lmlab").glob("*.py")
                     if not p.stem.startswith("_"))
    for module in modules:
        assert f"automodule:: lmlab.{module}" in api, f"lmlab.{module} missing from api.md"
