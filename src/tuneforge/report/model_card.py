"""A model card for a run: intended use, data, results, limitations and the base model's licence.

The card is built once as plain structured text and rendered twice, into the HTML report and into
`model_card.md`, so the two can never disagree. Every statement is derived from the run directory; where a
check was not run (fairness, calibration) the card says so instead of staying silent, because a reader
cannot tell "no problem found" from "not looked at" otherwise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tuneforge import artifacts
from tuneforge._version import __version__
from tuneforge.models.resolve import BUNDLED, bundled_path
from tuneforge.recipe import GENERATIVE_TASKS
from tuneforge.report.blocks import as_float, fmt_metric, fmt_number, fmt_value, humanize
from tuneforge.report.evaluation import calibration_numbers, splits_with
from tuneforge.report.fairness import fairness_findings
from tuneforge.report.inputs import RunInputs, load_run
from tuneforge.report.sections import EVAL_SPLITS, headline_names, primary_split

MODEL_CARD_FILE = "model_card.md"
UNKNOWN_LICENCE = "see the base model's card"
SMALL_TEST_SET = 200
LICENCE_NAMES = {
    "apache-2.0": "Apache-2.0", "mit": "MIT", "bsd-2-clause": "BSD-2-Clause", "bsd-3-clause": "BSD-3-Clause",
    "cc-by-4.0": "CC-BY-4.0", "cc-by-sa-4.0": "CC-BY-SA-4.0", "cc-by-nc-4.0": "CC-BY-NC-4.0",
    "cc-by-nc-sa-4.0": "CC-BY-NC-SA-4.0", "gpl-3.0": "GPL-3.0", "lgpl-3.0": "LGPL-3.0", "openrail": "OpenRAIL",
    "bigscience-openrail-m": "BigScience OpenRAIL-M", "llama2": "Llama 2 Community License",
    "llama3": "Llama 3 Community License", "gemma": "Gemma Terms of Use", "other": "other (see the model's card)",
}


@dataclass
class CardText:
    text: str
    kind: str = "text"


@dataclass
class CardList:
    items: list[str]
    kind: str = "list"


@dataclass
class CardTable:
    header: list[str]
    rows: list[list[str]]
    kind: str = "table"


@dataclass
class CardSection:
    title: str
    parts: list[CardText | CardList | CardTable] = field(default_factory=list)


@dataclass
class ModelCard:
    title: str
    sections: list[CardSection]


@dataclass(frozen=True)
class BaseModelInfo:
    name: str
    display: str
    licence: str


# ----------------------------------------------------------------------------------------------- base model


def _front_matter_licence(readme: Path) -> str | None:
    """The `license:` field of a Hugging Face model card's YAML front matter."""
    try:
        text = readme.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    match = re.match(r"---\s*\n(.*?)\n---", text, re.DOTALL)
    if not match:
        return None
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return None
    licence = meta.get("license") if isinstance(meta, dict) else None
    if isinstance(licence, list):
        licence = ", ".join(map(str, licence))
    return LICENCE_NAMES.get(str(licence).lower(), str(licence)) if licence else None


def base_model_info(name: str) -> BaseModelInfo:
    """Name and licence of the model a run started from, read from the bundled package's own model card."""
    wanted = name.strip().lower()
    for model in BUNDLED:
        if wanted in {model.alias, model.hub_id.lower(), model.hub_id.split("/")[-1].lower(), model.pip_name}:
            folder = bundled_path(model)
            licence = _front_matter_licence(folder / "README.md") if folder else None
            if licence is None:  # the catalogue entry names the licence too
                licence = next((v for v in LICENCE_NAMES.values() if v in model.description), None)
            return BaseModelInfo(name, f"{model.hub_id} (bundled as `{model.alias}`)", licence or UNKNOWN_LICENCE)
    folder = Path(name).expanduser()
    readme = folder / "README.md"
    licence = _front_matter_licence(readme) if readme.is_file() else None
    return BaseModelInfo(name, name, licence or UNKNOWN_LICENCE)


# ----------------------------------------------------------------------------------------------- sections


def wilson_interval(share: float, count: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of an accuracy measured on `count` examples: how much a small test set can mislead."""
    denominator = 1 + z * z / count
    centre = (share + z * z / (2 * count)) / denominator
    half = z * math.sqrt(share * (1 - share) / count + z * z / (4 * count * count)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _labels_phrase(labels: list[str], limit: int = 8) -> str:
    shown = ", ".join(f"`{label}`" for label in labels[:limit])
    return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


def _details(inputs: RunInputs, base: BaseModelInfo) -> CardSection:
    training = inputs.metrics.get("training") if isinstance(inputs.metrics.get("training"), Mapping) else {}
    rows = [["Run", inputs.name], ["Task", inputs.task]]
    if inputs.labels:
        rows.append(["Labels", ", ".join(inputs.labels)])
    rows += [["Base model", base.display], ["Base model licence", base.licence],
             ["Parameters", fmt_value(training.get("parameters"))],
             ["Trained", inputs.created.strftime("%Y-%m-%d")], ["Trained with", f"tuneforge {__version__}"]]
    return CardSection("Model details", [CardTable(["", ""], rows)])


def _intended_use(inputs: RunInputs) -> CardSection:
    data = inputs.section("data")
    pair = " (a pair of texts)" if data.get("text_pair_column") else ""
    generative = _generative_purpose(inputs)
    if generative:
        purpose = generative
    elif inputs.task == "regression":
        target = data.get("label_column") or "a score"
        purpose = f"Predicts a number (`{target}`) for a text{pair}."
    elif inputs.labels:
        purpose = f"Assigns one of {len(inputs.labels)} labels ({_labels_phrase(inputs.labels)}) to a text{pair}."
    else:
        purpose = f"A fine-tuned {inputs.task} model."
    purpose += (" It is meant for texts like those it was trained on (see Training data), with a person reviewing "
                "what it writes before it is used." if generative else
                " It is meant for texts like those it was trained on (see Training data), for example to sort or "
                "triage them, with a person reviewing decisions that matter.")
    max_length = inputs.section("train").get("max_length")
    out_of_scope = [
        "Texts from another domain, language, register or time than the training data: quality may drop "
        "without any warning sign.",
        "Decisions with legal or similarly significant effects on people without human review.",
    ]
    if max_length:
        out_of_scope.append(f"Long documents: input beyond {max_length} tokens is cut off, so only the beginning "
                            "is read.")
    return CardSection("Intended use", [CardText(purpose), CardText("Out of scope:"), CardList(out_of_scope)])


def _generative_purpose(inputs: RunInputs) -> str | None:
    """What a seq2seq or causal-lm model does, in a sentence; None for the classifiers."""
    data = inputs.section("data")
    if inputs.task == "seq2seq":
        return (f"Writes an output text (`{data.get('target_column', 'target')}`) from an input text "
                f"(`{data.get('text_column', 'text')}`): a summary, translation or rewrite like its training data.")
    if inputs.task != "causal-lm":
        return None
    if (inputs.section("lm") or {}).get("classify"):
        labels = inputs.labels or []
        return (f"A decoder that names one of {len(labels)} labels ({_labels_phrase(labels)}) for a text, by "
                "scoring each label's text after the prompt.")
    if data.get("messages_column"):
        return "A decoder fine-tuned on chats: it writes the assistant's next reply to a conversation."
    return "A decoder fine-tuned to write a response to a prompt."


def _generations(inputs: RunInputs) -> list[CardSection]:
    """A few test (or validation) inputs with their reference and generated texts, as metrics.json keeps them."""
    samples = inputs.metrics.get("samples")
    if not isinstance(samples, list) or not samples:
        return []
    rows = [[fmt_value(row.get("input", ""), 200), fmt_value(row.get("reference", ""), 200),
             fmt_value(row.get("generated", row.get("predicted", "")), 200)]
            for row in samples if isinstance(row, Mapping)]
    return [CardSection("Sample generations", [CardTable(["Input", "Reference", "Generated"], rows)])]


def _training_data(inputs: RunInputs) -> CardSection:
    data = inputs.data
    parts: list[CardText | CardList | CardTable] = []
    sources = data.get("sources") if isinstance(data.get("sources"), Mapping) else {}
    rows = data.get("rows") if isinstance(data.get("rows"), Mapping) else {}
    if not data:
        return CardSection("Training data", [CardText("No data summary (data.json) was found in the run.")])
    source = sources.get("train")
    parts.append(CardText(f"{fmt_value(rows.get('train'))} training rows"
                          + (f" from `{Path(str(source)).name}`." if source else ".")))
    counts = data.get("train_class_counts")
    if isinstance(counts, Mapping) and counts:
        total = sum(as_float(v) or 0 for v in counts.values()) or 1
        parts.append(CardTable(["Class", "Training rows", "Share"],
                               [[str(k), fmt_value(v), f"{100 * (as_float(v) or 0) / total:.1f}%"]
                                for k, v in counts.items()]))
    weights = data.get("class_weights")
    if isinstance(weights, Mapping) and weights:
        parts.append(CardText("The loss was weighted by class to counter the imbalance."))
    return CardSection("Training data", parts)


def _evaluation(inputs: RunInputs) -> CardSection:
    parts: list[CardText | CardList | CardTable] = []
    sources = inputs.data.get("sources") if isinstance(inputs.data.get("sources"), Mapping) else {}
    roles = [role for role in EVAL_SPLITS if inputs.split(role)]
    if not roles:
        return CardSection("Evaluation data and results", [CardText("The run has no evaluation split.")])
    described = []
    for role in roles:
        source = sources.get(role)
        origin = f"`{Path(str(source)).name}`" if source else "held out from the training file"
        described.append(f"{role}: {fmt_value(inputs.split(role).get('examples'))} rows, {origin}")
    parts.append(CardList(described))
    names = headline_names(inputs) or [k for k, v in inputs.split(roles[0]).items() if as_float(v) is not None]
    rows = [[humanize(name)] + [fmt_metric(inputs.split(role).get(name)) for role in roles]
            for name in names if any(name in inputs.split(role) for role in roles)]
    parts.append(CardTable(["Metric"] + [humanize(r) for r in roles], rows))
    role = primary_split(inputs)
    accuracy, count = as_float(inputs.split(role).get("accuracy")), as_float(inputs.split(role).get("examples"))
    if accuracy is not None and count:
        low, high = wilson_interval(accuracy, int(count))
        parts.append(CardText(f"With {int(count)} {role} examples, the {role} accuracy of {accuracy:.4f} "
                              f"has a 95% interval of {low:.3f}–{high:.3f}."))
    return CardSection("Evaluation data and results", parts)


def _limitations(inputs: RunInputs) -> CardSection:
    items: list[str] = []
    warnings = inputs.data.get("warnings")
    for warning in warnings if isinstance(warnings, list) else []:
        items.append(f"Data warning: {fmt_value(warning, 400)}")
    role = primary_split(inputs)
    count = as_float(inputs.split(role).get("examples")) if role else None
    if count is not None and count < SMALL_TEST_SET:
        items.append(f"The {role} split has only {int(count)} examples, so the scores above are rough estimates.")
    per_class = inputs.split(role).get("per_class") if role else None
    if isinstance(per_class, Mapping):
        scored = {k: as_float(v.get("f1")) for k, v in per_class.items() if isinstance(v, Mapping)}
        weak = sorted((f1, name) for name, f1 in scored.items() if f1 is not None and f1 < 0.5)
        if weak:
            items.append("Weak classes (F1 below 0.5 on the " + f"{role} split): "
                         + ", ".join(f"`{name}` ({f1:.2f})" for f1, name in weak) + ".")
    counts = inputs.data.get("train_class_counts")
    if isinstance(counts, Mapping):
        values = [v for v in (as_float(c) for c in counts.values()) if v]
        if len(values) >= 2 and max(values) / min(values) >= 3:
            items.append(f"The training classes are imbalanced (largest / smallest = "
                         f"{max(values) / min(values):.1f}); rare classes are likely to be predicted less well.")
    if inputs.task in GENERATIVE_TASKS:
        items.append("Generated text can read fluently and still be wrong, invented or incomplete; automatic "
                     "scores (BLEU, chrF, ROUGE) measure overlap with references, not correctness.")
    else:
        items.extend(_calibration_limits(inputs))
        items.extend(_fairness_limits(inputs))
    items.append("The model inherits the biases and blind spots of its base model's pretraining data.")
    return CardSection("Limitations and risks", [CardList(items)])


def _calibration_limits(inputs: RunInputs) -> list[str]:
    if inputs.task == "regression":
        return []
    for role, value in splits_with(inputs, "calibration").items():
        numbers = calibration_numbers(value)
        ece = next((v for v in (numbers.after, numbers.plain, numbers.before) if v is not None), None)
        if ece is not None:
            verdict = "can be read as confidence" if ece < 0.05 else "should not be read as exact confidence"
            return [f"Calibration: expected calibration error {fmt_number(ece)} on the {role} split; predicted "
                    f"probabilities {verdict}."]
    return ["Calibration was not measured: predicted probabilities may be over- or under-confident."]


def _fairness_limits(inputs: RunInputs) -> list[str]:
    if inputs.fairness is None:
        return ["Fairness was not assessed for this model: run `tuneforge fairness RUN --data FILE` before using "
                "it on texts about people."]
    findings = fairness_findings(inputs.fairness, inputs.section("fairness"))
    if not findings:
        return ["A fairness check was run (fairness.json); it reported no headline disparity figures."]
    flagged = [f.text for f in findings if f.tone == "danger"]
    shown = flagged or [f.text for f in findings[:4]]
    lead = "Fairness findings above the recipe's limits" if flagged else "Fairness findings"
    return [f"{lead}: " + "; ".join(shown) + "."]


def _base_model(base: BaseModelInfo) -> CardSection:
    text = (f"Fine-tuned from {base.display}, licence: {base.licence}. The fine-tuned weights derive from the "
            "base model, so its licence and usage terms apply to them too.")
    return CardSection("Base model and licence", [CardText(text)])


def build_model_card(inputs: RunInputs) -> ModelCard:
    base = base_model_info(inputs.model_name)
    sections = [_details(inputs, base), _intended_use(inputs), _training_data(inputs), _evaluation(inputs),
                *_generations(inputs), _limitations(inputs), _base_model(base)]
    return ModelCard(f"Model card: {inputs.name}", sections)


# ----------------------------------------------------------------------------------------------- markdown


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(card: ModelCard) -> str:
    lines = [f"# {card.title}", ""]
    for section in card.sections:
        lines += [f"## {section.title}", ""]
        for part in section.parts:
            if isinstance(part, CardText):
                lines += [part.text, ""]
            elif isinstance(part, CardList):
                lines += [f"- {item}" for item in part.items] + [""]
            else:
                header = part.header if any(part.header) else ["Field", "Value"]
                lines.append("| " + " | ".join(_cell(h) for h in header) + " |")
                lines.append("|" + "|".join(" --- " for _ in header) + "|")
                lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in part.rows]
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_model_card(run_dir: str | Path) -> Path:
    """Write `model_card.md` into the run directory (atomically) and return its path."""
    inputs = load_run(Path(run_dir))
    path = inputs.root / MODEL_CARD_FILE
    artifacts.write_text(path, to_markdown(build_model_card(inputs)))
    return path
