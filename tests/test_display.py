"""lmlab.display: tokens as escaped, coloured HTML."""

from __future__ import annotations

import html.parser

import pytest

from lmlab.display import tokens_html


def test_tokens_html_escapes_and_colours():
    out = tokens_html(["[CLS]", "<b>", "Ġthe"])
    assert out.count("<span") == 3 and "&lt;b&gt;" in out and "<b>" not in out


def test_bad_tokens_html_input():
    with pytest.raises(TypeError, match="^tokens"):
        tokens_html("abc")
    with pytest.raises(TypeError, match=r"^tokens\[1\]"):
        tokens_html(["a", 1])
    assert tokens_html([]).count("<span") == 0


class _Spans(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.styles: list[str] = []
        self._inside = False

    def handle_starttag(self, tag, attrs):
        if tag == "span":
            self._inside = True
            self.styles.append(dict(attrs)["style"])
            self.texts.append("")

    def handle_endtag(self, tag):
        self._inside = False if tag == "span" else self._inside

    def handle_data(self, data):
        if self._inside:
            self.texts[-1] += data


def test_tokens_html_parses_back_to_the_tokens():
    """Python's own HTML parser reads back every token, as given, one span each, and no two
    neighbours share a colour."""
    tokens = ["[CLS]", "<script>", "Ġthe", "&amp;", "a b", "\"q\"", "##ing", "[SEP]"]
    parser = _Spans()
    parser.feed(tokens_html(tokens))
    assert parser.texts == tokens
    colours = [s.split("background:")[1].split(";")[0] for s in parser.styles]
    assert all(a != b for a, b in zip(colours, colours[1:]))
