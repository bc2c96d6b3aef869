"""The book: table of contents, chapter hygiene and configuration."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
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


# One rule for code and outputs: at most 88 columns, which the rendered code box shows in full
# at 1280 px (book/_static/lmlab.css; tests/test_browser.py checks the rendered pages).
MAX_COLUMNS = 88
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
RICH_OUTPUTS = ("text/html", "text/markdown", "text/latex", "image/png", "image/jpeg",
                "image/svg+xml")


def columns(line: str) -> int:
    """Display width of a line in a monospace font: East Asian wide characters take two
    columns, combining marks none."""
    line = ANSI.sub("", line)
    return sum(0 if unicodedata.combining(ch) else
               2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)


def shown_text(out: dict) -> str:
    """The text an output shows on the page: a stream, or the plain-text form of a result
    that has no richer form (a richer one, HTML or an image, is rendered instead)."""
    if out["output_type"] == "stream":
        return "".join(out["text"])
    data = out.get("data", {})
    if any(kind in data for kind in RICH_OUTPUTS):
        return ""
    return "".join(data.get("text/plain", ""))


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
        wide = [ln for ln in "".join(c["source"]).splitlines() if columns(ln) > MAX_COLUMNS]
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


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_outputs_fit_the_code_box(path):
    """Stored outputs follow the code's rule: no line wider than 88 columns (wrap long text,
    print fewer items per line, or narrow a table)."""
    nb = json.loads(path.read_text())
    wide = []
    for i, c in enumerate(nb["cells"]):
        for out in c.get("outputs", []):
            for ln in shown_text(out).splitlines():
                if columns(ln) > MAX_COLUMNS:
                    wide.append(f"cell {i}: {columns(ln)} columns: {ln[:70]!r}")
    assert not wide, f"{len(wide)} output line(s) wider than {MAX_COLUMNS} columns:\n" + \
        "\n".join(wide)


def test_columns_counts_display_width():
    assert columns("abc") == 3
    assert columns("词元") == 4  # wide characters take two columns
    assert columns("e\u0301") == 1  # a combining accent takes none
    assert columns("\x1b[31mred\x1b[0m") == 3  # colour codes take none


# ---------------------------------------------------------------- the course's reference pages

def _glossary_entries() -> dict[str, str]:
    """Glossary term -> its definition line, from book/glossary.md's {glossary} block."""
    text = (BOOK / "glossary.md").read_text()
    block = re.search(r"```\{glossary\}\n(.*?)```", text, re.S)
    assert block, "glossary.md needs a ```{glossary} block"
    entries: dict[str, str] = {}
    terms: list[str] = []
    for line in block.group(1).splitlines():
        if not line.strip() or line.startswith(":"):
            continue
        if line.startswith("  "):
            for term in terms:
                entries[term] = line.strip()
            terms = []
        else:
            terms.append(line.strip())
    return entries


# The terms the issue asks for, with the Chinese term the study notes use.
NOTES_TERMS = {
    "Bag of Words": "词袋", "tokenizer": "分词器", "token": "词元", "token id": "token id",
    "vocabulary": "词汇表", "embedding": "嵌入", "input embedding layer": "输入嵌入层",
    "language model head": "语言模型头", "semantics": "语义", "representation": "表征",
    "encoder": "编码器", "decoder": "解码器", "autoregressive": "自回归",
    "hidden state": "隐藏状态", "attention": "注意力机制", "self-attention": "自注意力机制",
    "attention head": "注意力头", "query": "查询", "key": "键", "value": "值",
    "projection matrix": "投影矩阵", "feed-forward network": "前馈神经网络",
    "grouped-query attention": "分组查询注意力", "sparse attention": "稀疏注意力机制",
    "ring attention": "环形注意力", "context length": "上下文长度",
    "decoding strategy": "解码策略", "temperature": "温度", "top-p": "top-p",
    "subword": "子词", "KV cache": "KV cache",
}


def test_glossary_has_the_notes_terms_with_chinese_and_a_link():
    entries = _glossary_entries()
    missing = [t for t in NOTES_TERMS if t not in entries]
    assert not missing, f"glossary.md lacks {missing}"
    for term, chinese in NOTES_TERMS.items():
        assert entries[term].startswith(("**" + chinese, chinese)), \
            f"{term!r} should start with its Chinese term {chinese!r}: {entries[term][:40]!r}"


def test_every_glossary_entry_has_chinese_and_links_a_section():
    substitutions = yaml.safe_load((BOOK / "_config.yml").read_text())["parse"][
        "myst_substitutions"]
    for term, definition in _glossary_entries().items():
        assert re.search(r"[\u4e00-\u9fff]", definition) or definition.startswith("**"), \
            f"{term!r} has no Chinese term"
        links = re.findall(r"\{\{ (\w+) \}\}", definition)
        assert links, f"{term!r} links no section"
        unknown = [name for name in links if name not in substitutions]
        assert not unknown, f"{term!r} uses undefined link targets {unknown}"


def test_link_targets_point_at_listed_chapters():
    """The link targets in _config.yml (the one place to edit when chapters move) name
    chapters of the table of contents; the build checks that each #anchor exists."""
    substitutions = yaml.safe_load((BOOK / "_config.yml").read_text())["parse"][
        "myst_substitutions"]
    listed = set(toc_files())
    for name, value in substitutions.items():
        target = re.fullmatch(r"\[[^\]]+\]\(([\w-]+)\.(?:ipynb|md)(#[\w-]+)?\)", value)
        assert target, f"{name}: {value!r} is not [text](NN-chapter.ipynb#anchor) or a page.md"
        assert target.group(1) in listed, f"{name} points at {target.group(1)}, not in _toc.yml"
    chapters = [f for f in toc_files() if re.match(r"\d\d-", f)]
    linked = {m.group(1) for v in substitutions.values()
              if (m := re.search(r"\(([\w-]+)\.ipynb", v))}
    assert set(chapters) <= linked, f"chapters without a link target: {set(chapters) - linked}"


def test_landing_page_maps_every_chapter():
    intro = (BOOK / "intro.md").read_text()
    table = intro[intro.index("## The map"):]
    substitutions = yaml.safe_load((BOOK / "_config.yml").read_text())["parse"][
        "myst_substitutions"]
    chapters = [f for f in toc_files() if re.match(r"\d\d-", f)]
    rows = re.findall(r"^\| (\d+)\. \{\{ (\w+) \}\} \|", table, re.M)
    assert [int(n) for n, _ in rows] == list(range(1, len(chapters) + 1)), \
        "the map lists chapters 1..N in order"
    targets = [re.search(r"\(([\w-]+)\.ipynb\)", substitutions[name]).group(1)
               for _, name in rows]
    assert targets == chapters, f"the map links {targets}, _toc.yml lists {chapters}"
    assert "(next)" not in intro


def test_notes_map_covers_every_section_of_the_notes():
    text = (BOOK / "notes-map.md").read_text()
    headings = re.findall(r"^## (.+)$", text, re.M)
    for section in ("Bag of Words", "Word2Vec", "RNN", "Attention", "Tokenizer", "架构概述",
                    "Transformers", "Self-attention"):
        assert any(h.startswith(section) for h in headings), f"notes-map.md lacks {section!r}"
    points = re.findall(r"^- .*?(?=\n- |\n\n|\Z)", text, re.M | re.S)  # with their continuations
    assert points and all("→ {{" in p for p in points), "every point links a section"
    corrections = [p for p in points if p.startswith("- **Correction")]
    for topic in ("T5", "−1 and 1", "bert-base-cased"):  # the notes' three slips
        assert any(topic in p for p in corrections), f"no correction about {topic!r}"


def _bib_entries() -> dict:
    from pybtex.database import parse_file

    return parse_file(str(BOOK / "references.bib")).entries


REQUIRED_REFERENCES = [
    "mikolov2013efficient", "mikolov2013distributed", "cho2014learning",
    "sutskever2014sequence", "bahdanau2015neural", "luong2015effective", "sennrich2016neural",
    "schuster2012japanese", "vaswani2017attention", "devlin2019bert", "radford2019language",
    "press2017using", "su2024roformer", "holtzman2020curious", "fan2018hierarchical",
    "shazeer2019fast", "ainslie2023gqa", "child2019generating", "beltagy2020longformer",
    "milakov2018online", "rabe2021self", "dao2022flashattention", "liu2023ring",
    "geva2021transformer", "reimers2019sentence", "wang2020minilm", "allal2025smollm2",
    "ba2016layer", "he2016deep", "xiong2020layer", "zhang2019root", "shazeer2020glu",
    "hendrycks2016gaussian", "salton1988term", "sparckjones1972statistical",
    "levy2014neural", "kingma2015adam", "loshchilov2019decoupled", "gage1994new",
    "alammar2024hands", "wu2016google", "rehurek2010software", "touvron2023llama",
]


def test_references_hold_every_required_entry_with_its_facts():
    entries = _bib_entries()
    missing = [k for k in REQUIRED_REFERENCES if k not in entries]
    assert not missing, f"references.bib lacks {missing}"
    for key, entry in entries.items():
        assert entry.persons.get("author"), f"{key}: no author"
        for field in ("title", "year"):
            assert entry.fields.get(field), f"{key}: no {field}"
        year = entry.fields["year"]
        assert year in key, f"{key}: the key's year is not the entry's year {year}"
        venue = ("journal", "booktitle", "publisher", "institution", "eprint")
        assert any(f in entry.fields for f in venue), f"{key}: no venue or arXiv id"
        if "eprint" in entry.fields:
            assert re.fullmatch(r"\d{4}\.\d{4,5}", entry.fields["eprint"]), \
                f"{key}: arXiv id {entry.fields['eprint']!r}"
        if "doi" in entry.fields:
            assert entry.fields["doi"].startswith("10."), f"{key}: DOI {entry.fields['doi']!r}"


def test_every_citation_names_a_reference():
    keys = set(_bib_entries())
    sources = [p.read_text() for p in BOOK.glob("*.md")]
    for nb in notebooks():
        cells = json.loads(nb.read_text())["cells"]
        sources += ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    cited = set()
    for text in sources:
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text):
            cited |= {k.strip() for k in group.split(",")}
    assert cited, "nothing is cited"
    assert not cited - keys, f"cited but not in references.bib: {sorted(cited - keys)}"


def test_config_serves_math_and_citations_from_the_build():
    config = yaml.safe_load((BOOK / "_config.yml").read_text())
    sphinx = config["sphinx"]["config"]
    assert not sphinx["mathjax_path"].startswith(("http:", "https:", "//")), \
        "MathJax must load from the build, not a CDN"
    assert set(config["sphinx"]["local_extensions"]) >= {"offline_mathjax", "citations"}
    assert config["bibtex_bibfiles"] == ["references.bib"]
    assert "bibtex.duplicate_citation" in sphinx["suppress_warnings"]


# ------------------------------------------------------------ the book's extensions (book/_ext)

@pytest.fixture
def book_ext(monkeypatch):
    monkeypatch.syspath_prepend(str(BOOK / "_ext"))
    import importlib

    return importlib.import_module


def test_mathjax_files_come_from_the_pinned_package(book_ext):
    mathjax = book_ext("offline_mathjax")
    es5 = mathjax.mathjax_files()
    assert (es5 / mathjax.COMPONENT).stat().st_size > 1_000_000
    assert (es5 / "output" / "svg.js").exists()  # what the menu's "SVG" choice loads
    assert "Apache License" in (es5.parent / "LICENSE").read_text()


def test_mathjax_files_name_the_install_when_missing_or_wrong(book_ext, monkeypatch):
    import importlib.metadata

    from sphinx.errors import ExtensionError

    mathjax = book_ext("offline_mathjax")

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ExtensionError, match=r"pip install django-static-mathjax==3\.2\.2\.1"):
        mathjax.mathjax_files()

    class Other:
        version = "3.2.0"

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Other())
    with pytest.raises(ExtensionError, match=r"3\.2\.0 is installed, the book pins 3\.2\.2\.1"):
        mathjax.mathjax_files()


def _run_python(code: str) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter (codec registrations last for a process), with
    book/_ext importable."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(BOOK / "_ext"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)


def test_latex_codec_decodes_next_to_the_data_extra():
    """With the data extra installed, future-typing's start-up codec search function answers
    every codec name; after put_latexcodec_first, pybtex's ``ulatex`` is latexcodec's."""
    done = _run_python(
        "import codecs, citations\n"
        "citations.put_latexcodec_first()\n"
        "print(codecs.decode('Sp{\\\\\"a}rck Jones', 'ulatex'))\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "Sp{ä}rck Jones"


def test_latex_codec_names_an_unknown_catch_all():
    done = _run_python(
        "import codecs\n"
        "codecs.register(lambda name: codecs.lookup('utf-8') if name == 'ulatex' else None)\n"
        "import citations\n"
        "from sphinx.errors import ExtensionError\n"
        "try:\n"
        "    citations.put_latexcodec_first()\n"
        "except ExtensionError as error:\n"
        "    print(error)\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "answered by 'utf-8', not by latexcodec" in done.stdout


def test_citations_read_as_in_the_prose(book_ext):
    from pybtex.database import parse_string

    citations = book_ext("citations")
    style = citations.RoundAuthorYearStyle()
    assert (style.bracket_parenthetical.left, style.bracket_parenthetical.right) == ("(", ")")
    assert parse_string("@misc{k, author={A, B}, title={T}, year={2020}}", "bibtex").entries
