"""The explanations section: token attributions drawn as highlighted text, plus attention maps.

The highlighted text is rebuilt from explanations/explanations.json (so it matches the report's look and
needs no script); explanations.html is only a fallback, and is sanitised first, because anything pasted into
the report must keep it self-contained (no scripts, no links to the network) and must not break its layout.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from tuneforge.report.blocks import (
    Callout,
    Details,
    Figure,
    Gallery,
    Heading,
    Markup,
    Section,
    as_float,
    fmt_number,
    fmt_value,
    humanize,
    is_scalar,
    records_table,
    to_blocks,
    truncate,
)
from tuneforge.report.evaluation import not_computed, run_command
from tuneforge.report.inputs import EXPLANATIONS_DIR, RunInputs

MAX_EXAMPLES = 20
MAX_TOKENS = 400
MAX_ATTENTION_IMAGES = 24
MAX_FRAGMENT = 2_000_000
EXAMPLE_LISTS = ("examples", "explanations", "texts", "items", "results", "records")
METHOD_CONTAINERS = ("methods", "attributions", "explanations", "scores_by_method")
TEXT_KEYS = ("text", "input", "sentence", "document")
PREDICTION_KEYS = ("prediction", "predicted", "predicted_label", "pred")
TRUTH_KEYS = ("true", "true_label", "label_true", "gold", "target", "truth")
SPECIAL_TOKENS = {"[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>", "<cls>", "<sep>"}


METHOD_NAMES = {"ig": "Integrated Gradients", "integrated_gradients": "Integrated Gradients", "shap": "SHAP",
                "lime": "LIME", "attention": "Attention rollout"}


@dataclass
class Attribution:
    method: str
    tokens: list[str]
    scores: list[float]
    detail: str = ""  # e.g. the class explained and its probability


@dataclass
class Example:
    text: str
    prediction: str
    truth: str
    attributions: list[Attribution]
    pair: str = ""
    plots: dict[str, str] = field(default_factory=dict)  # caption -> file name in explanations/


# ----------------------------------------------------------------------------------------------- parsing


def example_records(payload: Any) -> list[Any]:
    """The list of per-text records, wherever the file keeps it."""
    if isinstance(payload, list):
        return payload
    if isinstance(payload, Mapping):
        for key in EXAMPLE_LISTS:
            if isinstance(payload.get(key), list):
                return payload[key]
        values = list(payload.values())
        if values and all(isinstance(v, Mapping) for v in values):
            return values  # keyed by example id
    return []


def _pair_scores(tokens: Any, scores: Any) -> tuple[list[str], list[float]] | None:
    if not isinstance(tokens, list) or not isinstance(scores, list) or not tokens:
        return None
    numbers = [as_float(s) for s in scores]
    if any(n is None for n in numbers):
        return None  # e.g. one score list per class: not drawable as one highlight
    count = min(len(tokens), len(numbers), MAX_TOKENS)
    return [str(t) for t in tokens[:count]], [float(n) for n in numbers[:count]]  # type: ignore[arg-type]


def _attribution(name: str, value: Any) -> Attribution | None:
    pairs = None
    detail = ""
    if isinstance(value, Mapping):
        tokens = value.get("tokens") or value.get("words")
        scores = value.get("scores") or value.get("attributions") or value.get("weights") or value.get("values")
        pairs = _pair_scores(tokens, scores)
        label, probability = value.get("label"), as_float(value.get("probability"))
        if label is not None and not isinstance(label, (Mapping, list)):
            detail = f"towards {fmt_value(label, 60)}" + (f" (p={probability:.3f})" if probability is not None else "")
    elif isinstance(value, list) and value and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        pairs = _pair_scores([p[0] for p in value], [p[1] for p in value])
    return Attribution(name, *pairs, detail=detail) if pairs else None


def attributions(record: Mapping[str, Any]) -> list[Attribution]:
    found: list[Attribution] = []
    for key in METHOD_CONTAINERS:
        container = record.get(key)
        if isinstance(container, Mapping):
            for name, value in container.items():
                attribution = _attribution(str(name), value)
                if attribution:
                    found.append(attribution)
        elif isinstance(container, list):
            for index, value in enumerate(container):
                name = value.get("method") or value.get("name") if isinstance(value, Mapping) else None
                attribution = _attribution(str(name or f"method {index + 1}"), value)
                if attribution:
                    found.append(attribution)
        if found:
            return found
    own = _attribution(str(record.get("method") or "attribution"), record)
    return [own] if own else []


def _first(record: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if key in record and record[key] is not None:
            return record[key]
    return None


def _describe_prediction(value: Any) -> str:
    if isinstance(value, Mapping):
        label = _first(value, ("label", "class", "prediction", "value"))
        score = as_float(_first(value, ("score", "probability", "confidence")))
        if label is None and score is not None:
            return fmt_number(score)
        return f"{fmt_value(label)}" + (f" ({fmt_number(score, 2)})" if score is not None else "")
    return "" if value is None else fmt_value(value, 80)


def parse_examples(payload: Any) -> list[Example]:
    examples = []
    for record in example_records(payload)[:MAX_EXAMPLES]:
        if not isinstance(record, Mapping):
            continue
        found = attributions(record)
        text = _first(record, TEXT_KEYS)
        if not found and text is None:
            continue
        prediction = _first(record, PREDICTION_KEYS)
        if prediction is None and "label" in record and not isinstance(record.get("label"), Mapping):
            prediction = record.get("label")
        plots = record.get("plots")
        examples.append(Example(text="" if text is None else fmt_value(text, 2000),
                                prediction=_describe_prediction(prediction),
                                truth=_describe_prediction(_first(record, TRUTH_KEYS)), attributions=found,
                                pair=fmt_value(record["pair"], 2000) if is_scalar(record.get("pair")) and
                                record.get("pair") is not None else "",
                                plots={str(k): str(v) for k, v in plots.items() if isinstance(v, str)}
                                if isinstance(plots, Mapping) else {}))
    return examples


# ----------------------------------------------------------------------------------------------- rendering


def _token_pieces(tokens: list[str]) -> list[tuple[str, str]]:
    """(space before, visible text) per token: WordPiece `##` pieces join the previous word; SentencePiece
    and byte-level BPE mark word starts instead (▁ or Ġ)."""
    marked = any(t.startswith(("▁", "Ġ")) for t in tokens)
    pieces = []
    for index, token in enumerate(tokens):
        if marked:
            starts = token.startswith(("▁", "Ġ"))
            text = token[1:] if starts else token
            space = " " if starts and index else ""
        elif token.startswith("##"):
            text, space = token[2:], ""
        else:
            text, space = token, " " if index else ""
        pieces.append((space, text))
    return pieces


def highlight(attribution: Attribution) -> str:
    """Escaped HTML: each token shaded by its score (green for, red against), the score in its tooltip."""
    top = max((abs(s) for s in attribution.scores), default=0.0) or 1.0
    parts = []
    for (space, text), score in zip(_token_pieces(attribution.tokens), attribution.scores, strict=True):
        strength = min(1.0, abs(score) / top)
        colour = "22,163,74" if score >= 0 else "220,38,38"
        special = " special" if text in SPECIAL_TOKENS else ""
        parts.append(f'{space}<span class="tok{special}" style="background:rgba({colour},{0.08 + 0.62 * strength:.2f})"'
                     f' title="{html.escape(fmt_number(score))}">{html.escape(text)}</span>')
    return "".join(parts)


def method_name(method: str) -> str:
    return METHOD_NAMES.get(method.lower(), humanize(method))


def render_example(example: Example, images: Mapping[str, str]) -> str:
    """One explained text as escaped HTML; `images` maps plot captions to data URIs already read."""
    head = []
    if example.prediction:
        head.append(f'<span class="pred">predicted <b>{html.escape(example.prediction)}</b></span>')
    if example.truth:
        head.append(f'<span class="truth">true {html.escape(example.truth)}</span>')
    body = [f'<div class="example-head">{"".join(head)}</div>'] if head else []
    if example.text and not example.attributions:
        body.append(f'<p class="example-text">{html.escape(truncate(example.text, 2000))}</p>')
    if example.pair:
        body.append(f'<p class="example-pair">paired with: {html.escape(truncate(example.pair, 600))}</p>')
    for attribution in example.attributions:
        detail = f' <span class="method-detail">{html.escape(attribution.detail)}</span>' if attribution.detail else ""
        body.append(f'<div class="method"><div class="method-name">{html.escape(method_name(attribution.method))}'
                    f'{detail}</div><p class="tokens">{highlight(attribution)}</p></div>')
    if images:
        figures = "".join(f'<figure><img src="{uri}" alt="{html.escape(caption)}"><figcaption>'
                          f"{html.escape(caption)}</figcaption></figure>" for caption, uri in images.items())
        body.append(f'<div class="gallery">{figures}</div>')
    return f'<div class="example">{"".join(body)}</div>'


LEGEND = ('<p class="legend"><span class="tok" style="background:rgba(22,163,74,0.6)">supports</span> '
          '<span class="tok" style="background:rgba(220,38,38,0.6)">opposes</span> the predicted label; '
          'hover a word for its score.</p>')


GLOBAL_TOP = 10


def global_token_blocks(value: Any) -> list[Any]:
    """The global view: per method, one table per class of the tokens with the highest mean score."""
    if not isinstance(value, Mapping) or not value:
        return []
    tables: list[Any] = []
    for method, by_label in value.items():
        if not isinstance(by_label, Mapping):
            continue
        for label, items in by_label.items():
            if isinstance(items, list) and items:
                tables.append(records_table(items[:GLOBAL_TOP], caption=f"{method_name(str(method))}: class "
                                                                        f"{label} (mean score over the texts)"))
    return [Details("Most influential tokens per class (all explained texts)", tables)] if tables else []


def build_explanations(inputs: RunInputs) -> Section:
    section = Section("explanations", "Explanations",
                      lead="Which words drove individual predictions, by attribution method.")
    folder = inputs.root / EXPLANATIONS_DIR
    examples = parse_examples(inputs.explanations)
    if examples:
        rendered = []
        for example in examples:
            images = {}
            for caption, name in example.plots.items():
                path = folder / name
                uri = inputs.image(path, "explanations") if path.resolve().is_relative_to(folder.resolve()) else None
                if uri:
                    images[humanize(caption)] = uri
            rendered.append(render_example(example, images))
        section.blocks.append(Markup(LEGEND + "".join(rendered)))
        records = example_records(inputs.explanations)
        if len(records) > MAX_EXAMPLES:
            section.blocks.append(Callout(f"{len(records) - MAX_EXAMPLES} more examples are in "
                                          "explanations/explanations.json.", "info"))
    elif inputs.explanations_html:
        section.blocks.append(Markup(f'<div class="fragment">{sanitize(inputs.explanations_html)}</div>'))
    elif inputs.explanations is not None:
        section.blocks.append(Callout("explanations.json has no per-token scores this report can draw; "
                                      "its content is shown as is.", "info"))
        section.blocks.append(Details("explanations.json", to_blocks(inputs.explanations)))
    section.blocks.extend(global_token_blocks(inputs.global_tokens))
    attention = []
    for path in sorted(folder.rglob("*.png"))[:MAX_ATTENTION_IMAGES] if folder.is_dir() else []:
        if path.resolve() in inputs.used_images:
            continue
        uri = inputs.image(path, "explanations")
        if uri:
            attention.append(Figure(uri, humanize(path.stem)))
    if attention:
        section.blocks.append(Heading("Attention maps"))
        section.blocks.append(Gallery(attention))
    if not section.blocks:
        section.hint = not_computed("Explanations", run_command(inputs, "explain", "--data FILE"))
    return section


# ----------------------------------------------------------------------------------------------- sanitising

ALLOWED_TAGS = {"div", "span", "p", "b", "strong", "i", "em", "u", "mark", "br", "small", "sub", "sup", "code",
                "pre", "ul", "ol", "li", "table", "thead", "tbody", "tfoot", "tr", "th", "td", "h2", "h3", "h4",
                "h5", "h6", "section", "article", "header", "footer", "figure", "figcaption", "img", "hr",
                "blockquote", "caption"}
RENAMED = {"h1": "h4"}  # a fragment's page title must not outrank the report's own headings
DROPPED_WITH_CONTENT = {"script", "style", "iframe", "object", "embed", "noscript", "template", "svg", "math",
                        "head", "title", "link", "meta", "base", "form", "frame", "frameset", "audio", "video"}
VOID = {"br", "hr", "img"}
ALLOWED_ATTRIBUTES = {"title", "style", "colspan", "rowspan", "alt", "src"}
UNSAFE_STYLE = ("url(", "expression", "@import", "javascript:", "position", "behavior")


class _Sanitizer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROPPED_WITH_CONTENT:
            if tag not in VOID and tag not in ("link", "meta", "base"):
                self.skipping += 1
            return
        tag = RENAMED.get(tag, tag)
        if self.skipping or tag not in ALLOWED_TAGS:
            return
        kept = []
        for name, value in attrs:
            value = value or ""
            if name not in ALLOWED_ATTRIBUTES:
                continue
            if name == "src" and (tag != "img" or not value.startswith("data:image/png;base64,")):
                continue
            if name == "style" and any(bad in value.lower() for bad in UNSAFE_STYLE):
                continue
            kept.append(f' {name}="{html.escape(value, quote=True)}"')
        if tag == "img" and not any(k.startswith(" src=") for k in kept):
            return
        self.out.append(f"<{tag}{''.join(kept)}>")
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in DROPPED_WITH_CONTENT:
            if tag not in VOID and tag not in ("link", "meta", "base"):
                self.skipping = max(0, self.skipping - 1)
            return
        tag = RENAMED.get(tag, tag)
        if self.skipping or tag not in self.open:
            return
        while self.open:
            last = self.open.pop()
            self.out.append(f"</{last}>")
            if last == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(html.escape(data, quote=False))

    def result(self) -> str:
        return "".join(self.out) + "".join(f"</{tag}>" for tag in reversed(self.open))


def sanitize(fragment: str) -> str:
    """Keep text, simple formatting and inline colours; drop scripts, styles sheets, links and external media."""
    parser = _Sanitizer()
    parser.feed(fragment[:MAX_FRAGMENT])
    parser.close()
    return parser.result()
