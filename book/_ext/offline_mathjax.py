"""Serves MathJax from the built book, so that math renders without a network.

Sphinx loads MathJax from a CDN by default; a reader offline (or opening the book from disk
without a connection) then sees raw ``\\(q = x W_Q\\)``. This extension copies MathJax 3 from the
pinned PyPI package ``django-static-mathjax`` (MathJax 3.2.2 as released, Apache-2.0, its
LICENSE included) into ``_static/mathjax/`` of the HTML build, and ``_config.yml`` points
``mathjax_path`` at that copy.

Copied: the combined component the page loads (``tex-mml-svg.js``) and the folders it loads
from on demand (TeX extensions through ``autoload``, the menu, the accessibility and speech
modules, the other output jax the menu can switch to), so every feature of the CDN version works
offline too.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util.fileutil import copy_asset, copy_asset_file

DISTRIBUTION = "django-static-mathjax"
VERSION = "3.2.2.1"  # pinned in pyproject.toml's book extra
ES5 = "mathjax/static/mathjax/es5"
COMPONENT = "tex-mml-svg.js"
ON_DEMAND = ("input", "output", "ui", "a11y", "sre", "adaptors")
TARGET = "mathjax"  # under _static/


def mathjax_files() -> Path:
    """The folder of MathJax's ``es5`` build inside the installed distribution."""
    hint = f"pip install {DISTRIBUTION}=={VERSION} (lmlab's book extra)"
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ExtensionError(f"{DISTRIBUTION} is not installed: {hint}") from None
    if dist.version != VERSION:
        raise ExtensionError(f"{DISTRIBUTION} {dist.version} is installed, the book pins "
                             f"{VERSION}: {hint}")
    es5 = Path(dist.locate_file(ES5))
    missing = [p for p in (COMPONENT, *ON_DEMAND) if not (es5 / p).exists()]
    if missing:
        raise ExtensionError(f"{DISTRIBUTION} at {es5} lacks {missing}: reinstall it ({hint})")
    return es5


def _check_config(app: Sphinx, config) -> None:
    expected = f"{TARGET}/{COMPONENT}"
    if config.mathjax_path != expected:
        raise ExtensionError(f"mathjax_path is {config.mathjax_path!r}: set it to {expected!r} "
                             "(sphinx: config: in book/_config.yml) to use the local copy")
    mathjax_files()  # fails early, before any page is read


def _copy(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source = mathjax_files()
    target = Path(app.outdir) / "_static" / TARGET
    target.mkdir(parents=True, exist_ok=True)
    copy_asset_file(str(source / COMPONENT), str(target))
    copy_asset_file(str(source.parent / "LICENSE"), str(target))
    for folder in ON_DEMAND:
        copy_asset(str(source / folder), str(target / folder))


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _check_config)
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
