"""`report.html`: one self-contained page that tells a reader everything about a run.

Self-contained means one file with every figure inlined as a base64 PNG, inline CSS and no script, so it can
be mailed, archived or opened offline years later and look the same; a Content-Security-Policy in the page
makes the browser refuse any outside fetch, should a future section ever try one. The page is assembled from
sections that each read their own inputs; a section that fails to draw is replaced by a message, because one
odd file written by another step must not cost the reader the rest of the report.
"""

from __future__ import annotations

import html as htmlescape
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from tuneforge import artifacts
from tuneforge._version import __version__
from tuneforge.errors import TuneforgeError
from tuneforge.report.auto import build_auto
from tuneforge.report.blocks import Callout, Section
from tuneforge.report.evaluation import (
    build_calibration,
    build_error_analysis,
    build_other_figures,
    build_plugins,
)
from tuneforge.report.explanations import build_explanations
from tuneforge.report.fairness import build_fairness
from tuneforge.report.inputs import RunInputs, load_run
from tuneforge.report.model_card import (
    MODEL_CARD_FILE,
    CardSection,
    CardText,
    ModelCard,
    build_model_card,
    to_markdown,
)
from tuneforge.report.sections import Header, build_data, build_header, build_metrics, build_training
from tuneforge.run import RunLayout, read_kind

TEMPLATE = "report.html.j2"

Builder = Callable[[RunInputs], "Section | None"]
SECTIONS: tuple[tuple[str, str, Builder], ...] = (
    ("data", "Data card", build_data),
    ("training", "Training", build_training),
    ("metrics", "Metrics", build_metrics),
    ("plugins", "Plugin metrics", build_plugins),
    ("calibration", "Calibration", build_calibration),
    ("errors", "Error analysis", build_error_analysis),
    ("fairness", "Fairness", build_fairness),
    ("explanations", "Explanations", build_explanations),
    ("auto", "Auto", build_auto),
    ("figures", "Other figures", build_other_figures),  # last: it shows the PNGs no other section claimed
)


@dataclass
class ReportPage:
    header: Header
    sections: list[Section]
    card: ModelCard
    notes: list[str]
    generated: str
    version: str


def _failure(title: str, error: Exception) -> str:
    return f"The {title.lower()} could not be drawn ({type(error).__name__}: {error})."


def _build_sections(inputs: RunInputs) -> list[Section]:
    """The sections the run's kind declares (kinds.py), each drawn from its own inputs."""
    try:
        wanted = set(read_kind(inputs.root).report_sections)
    except TuneforgeError:  # an unreadable kind costs the reader no section
        wanted = {section_id for section_id, _, _ in SECTIONS}
    sections = []
    for section_id, title, builder in SECTIONS:
        if section_id not in wanted:
            continue
        try:
            section = builder(inputs)
        except Exception as error:  # noqa: BLE001 - one section's failure must not cost the whole report
            section = Section(section_id, title, [Callout(_failure(f"{title} section", error), "danger")])
        if section is not None:
            sections.append(section)
    for section in sections:
        notes = [Callout(note, "warning") for note in inputs.notes.pop(section.id, [])]
        section.blocks[:0] = notes
    return sections


def _build_card(inputs: RunInputs) -> ModelCard:
    try:
        return build_model_card(inputs)
    except Exception as error:  # noqa: BLE001 - the rest of the report is still worth writing
        return ModelCard(f"Model card: {inputs.name}",
                         [CardSection("Model card", [CardText(_failure("model card", error))])])


def _build_header(inputs: RunInputs) -> Header:
    try:
        return build_header(inputs)
    except Exception:  # noqa: BLE001 - fall back to what needs no parsing
        return Header(inputs.name, inputs.task, inputs.model_name, inputs.created.strftime("%Y-%m-%d %H:%M"),
                      str(inputs.root))


def inline_code(text: Any) -> Markup:
    """Escape, then show `backticked` parts as code: the model card's text is shared with Markdown."""
    escaped = htmlescape.escape(str(text), quote=False)
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


def _environment() -> Environment:
    environment = Environment(loader=PackageLoader("tuneforge.report", "templates"), autoescape=True,
                              undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters["code"] = inline_code
    environment.filters["safe_markup"] = Markup  # only for Markup blocks, built escaped or sanitised
    return environment


def render_report(inputs: RunInputs) -> tuple[str, ModelCard]:
    """The page's HTML and the model card it shows, without writing anything."""
    header = _build_header(inputs)
    sections = _build_sections(inputs)
    card = _build_card(inputs)
    notes = [note for group in inputs.notes.values() for note in group]
    page = ReportPage(header, sections, card, notes, datetime.now().strftime("%Y-%m-%d %H:%M"), __version__)
    return _environment().get_template(TEMPLATE).render(page=page), card


def build_report(run_dir: str | Path) -> Path:
    """Write `report.html` and `model_card.md` into the run directory (atomically); returns the report's path."""
    inputs = load_run(Path(run_dir))
    page, card = render_report(inputs)
    path = RunLayout(inputs.root).report
    artifacts.write_text(inputs.root / MODEL_CARD_FILE, to_markdown(card))
    artifacts.write_text(path, page)
    return path
