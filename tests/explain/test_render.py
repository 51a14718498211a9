"""Highlighted HTML: escaped, coloured by sign, self-contained."""

from __future__ import annotations

import re

from tuneforge.explain import Attribution
from tuneforge.explain.render import PageSection, explanation_page, highlight_html


def test_highlight_escapes_text_and_colours_by_sign():
    attribution = Attribution("ig", ["<script>", "good", "##ness", "bad"], [0.0, 0.8, 0.2, -0.4], "pos&", 0.9,
                              delta=0.001)
    fragment = highlight_html([attribution])
    assert "<script>" not in fragment and "&lt;script&gt;" in fragment
    assert "pos&amp;" in fragment and "Integrated Gradients" in fragment
    assert "good</span><span" in fragment and ">ness<" in fragment  # the word piece is glued to its word
    assert "rgba(22,163,74,0.800)" in fragment  # largest positive: strongest green
    assert re.search(r"rgba\(220,38,38,0\.4\d+\)[^>]*>bad<", fragment)  # negative: red, half as strong


def test_page_embeds_images_and_links_nothing_outside(tmp_path):
    png = tmp_path / "plot.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    page = explanation_page([PageSection("Text 1", [Attribution("lime", ["a"], [1.0], "x", 0.5, level="word")],
                                         {"attention": png}, note="<b>raw</b>")], title="T")
    assert page.startswith("<!DOCTYPE html>")
    assert "data:image/png;base64," in page
    assert "&lt;b&gt;raw&lt;/b&gt;" in page
    assert "http://" not in page and "https://" not in page
