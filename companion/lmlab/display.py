"""Teaching displays: tokens as coloured HTML for a notebook.

Kept apart from the tokenizers, which never render anything.
"""

from __future__ import annotations

from collections.abc import Sequence

from lmlab._checks import check_strings

__all__ = ["tokens_html"]

_COLOURS = ("#fde2a7", "#c9e7f8", "#d5f0c8", "#f8d0dc", "#e2d6f5", "#fbd3b0")


def tokens_html(tokens: Sequence[str]) -> str:
    """Tokens as HTML, each on its own coloured background, for ``IPython.display.HTML``.

    Args:
        tokens: token strings (``"Ġthe"``, ``"##ing"``, ``"[CLS]"``), shown as they are.

    Returns:
        One HTML ``<div>``; neighbouring tokens get different colours.

    Example:
        >>> tokens_html(["a", "<b>"]).count("<span"), "&lt;b&gt;" in tokens_html(["<b>"])
        (2, True)
    """
    import html

    tokens = check_strings("tokens", tokens, allow_empty=True)
    spans = [f'<span style="background:{_COLOURS[i % len(_COLOURS)]};padding:2px 3px;'
             f'margin:1px;border-radius:3px;white-space:pre">{html.escape(t)}</span>'
             for i, t in enumerate(tokens)]
    # flex-wrap: a long text breaks between tokens (never inside one) instead of running out
    # of its box; each span keeps its own spaces (white-space:pre)
    return ('<div style="font-family:monospace;line-height:2.2;display:flex;flex-wrap:wrap">'
            + "".join(spans) + "</div>")
