"""Self-contained HTML: texts with tokens highlighted by their scores, and a page that embeds the plots.

Inline styles and base64 images only, so the file can be mailed or attached to a ticket and still render;
every piece of user text is escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.explain.attributions import Attribution

POSITIVE = (22, 163, 74)  # green: pushes towards the explained class
NEGATIVE = (220, 38, 38)  # red: pushes away from it
METHOD_NAMES = {"ig": "Integrated Gradients", "shap": "SHAP", "lime": "LIME", "attention": "Attention rollout"}


@dataclass
class PageSection:
    """One text on the page: its heading, its highlighted attributions and its plots (caption → PNG)."""

    heading: str
    attributions: list[Attribution]
    images: dict[str, Path] = field(default_factory=dict)
    note: str = ""


def _colour(score: float, scale: float) -> str:
    if scale <= 0 or score == 0:
        return "transparent"
    strength = min(1.0, abs(score) / scale)
    red, green, blue = POSITIVE if score > 0 else NEGATIVE
    return f"rgba({red},{green},{blue},{0.08 + 0.72 * strength:.3f})"


def _piece(token: str) -> tuple[str, bool]:
    """The visible text of a token and whether it continues the previous word (WordPiece '##')."""
    if token.startswith("##") and len(token) > 2:
        return token[2:], True
    if token[:1] in ("\u2581", "\u0120"):  # SentencePiece / byte-level BPE mark a word start
        return token[1:], False
    return token, False


def highlight_tokens(attribution: Attribution) -> str:
    """One line of spans, each shaded by its score relative to the largest |score| of this attribution."""
    scale = max((abs(s) for s in attribution.scores), default=0.0)
    parts = []
    for index, (token, score) in enumerate(zip(attribution.tokens, attribution.scores, strict=True)):
        text, glued = _piece(token) if attribution.level == "token" else (token, False)
        if index and not glued:
            parts.append(" ")
        parts.append(f'<span title="{html.escape(token)}: {score:+.4f}" style="background:{_colour(score, scale)};'
                     f'padding:1px 2px;border-radius:3px">{html.escape(text)}</span>')
    return "".join(parts)


def highlight_html(attributions: Sequence[Attribution]) -> str:
    """An HTML fragment: per attribution, the method, the class explained and the highlighted tokens."""
    blocks = []
    for attribution in attributions:
        name = METHOD_NAMES.get(attribution.method, attribution.method)
        detail = f"class <b>{html.escape(attribution.label)}</b> (p={attribution.probability:.3f})"
        if attribution.delta is not None:
            detail += f", convergence delta {attribution.delta:+.4f}"
        blocks.append(
            '<div style="margin:6px 0">'
            f'<div style="font-size:12px;color:#555">{html.escape(name)}: {detail}</div>'
            f'<div style="font-family:monospace;font-size:14px;line-height:1.9">{highlight_tokens(attribution)}</div>'
            "</div>")
    return "\n".join(blocks)


def _image(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure style="margin:8px 0"><img alt="{html.escape(caption)}" style="max-width:100%" '
            f'src="data:image/png;base64,{data}"><figcaption style="font-size:12px;color:#555">'
            f"{html.escape(caption)}</figcaption></figure>")


def global_tokens_html(global_tokens: Mapping[str, Mapping[str, Sequence[Mapping[str, object]]]], top: int = 10
                       ) -> str:
    """Per method, per class: the tokens with the highest mean score over all explained texts."""
    cell = 'style="padding:2px 8px;border-bottom:1px solid #eee"'
    parts = ['<h2 style="font-size:16px">Most influential tokens per class (mean score over all texts)</h2>']
    for method, by_label in global_tokens.items():
        columns = []
        for label, items in by_label.items():
            rows = "".join(f"<tr><td {cell}>{html.escape(str(item['token']))}</td>"
                           f"<td {cell} align=\"right\">{float(item['mean_score']):+.4f}</td>"
                           f"<td {cell} align=\"right\">{int(item['count'])}</td></tr>" for item in items[:top])
            columns.append(f'<table style="border-collapse:collapse;font-size:13px;margin:0 16px 8px 0">'
                           f'<caption style="text-align:left;font-weight:bold">{html.escape(label)}</caption>'
                           f"<tr><th {cell}>token</th><th {cell}>mean</th><th {cell}>texts</th></tr>{rows}</table>")
        parts.append(f'<h3 style="font-size:14px">{html.escape(METHOD_NAMES.get(method, method))}</h3>'
                     f'<div style="display:flex;flex-wrap:wrap">{"".join(columns)}</div>')
    return '<section style="border-top:1px solid #ddd;padding:8px 0">' + "\n".join(parts) + "</section>"


def explanation_page(sections: Sequence[PageSection], title: str = "Explanations", intro: str = "",
                     global_tokens: Mapping[str, Mapping[str, Sequence[Mapping[str, object]]]] | None = None) -> str:
    """A whole HTML page: the global token view, then one section per text, plots embedded, readable offline."""
    legend = (f'<span style="background:{_colour(1, 1)};padding:1px 4px">supports the class</span> '
              f'<span style="background:{_colour(-1, 1)};padding:1px 4px">speaks against it</span> '
              "(shade: share of the largest score of that method; hover a token for its score)")
    body = []
    for section in sections:
        parts = [f"<h2 style=\"font-size:16px\">{html.escape(section.heading)}</h2>"]
        if section.note:
            parts.append(f"<p>{html.escape(section.note)}</p>")
        parts.append(highlight_html(section.attributions))
        parts.extend(_image(path, caption) for caption, path in section.images.items() if path.is_file())
        body.append('<section style="border-top:1px solid #ddd;padding:8px 0">' + "\n".join(parts) + "</section>")
    if global_tokens:
        body.insert(0, global_tokens_html(global_tokens))
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title></head>\n"
            '<body style="font-family:sans-serif;max-width:1100px;margin:20px auto;padding:0 12px">\n'
            f"<h1 style=\"font-size:20px\">{html.escape(title)}</h1>\n"
            + (f"<p>{html.escape(intro)}</p>\n" if intro else "")
            + f"<p style=\"font-size:13px\">{legend}</p>\n" + "\n".join(body) + "\n</body></html>\n")
