"""Report sections about the run itself: header, data card, training and metrics.

Each builder takes the leniently loaded `RunInputs` and returns view objects from `blocks`; formatting
decisions live here, markup lives in the template.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.report import figures
from tuneforge.report.blocks import (
    Callout,
    Cell,
    Columns,
    Details,
    Figure,
    Heading,
    KeyValues,
    Section,
    Stat,
    Stats,
    Table,
    as_float,
    fmt_duration,
    fmt_metric,
    fmt_number,
    fmt_value,
    humanize,
    is_scalar,
    records_table,
    to_blocks,
)
from tuneforge.report.data_cleaning import cleaning_blocks, imbalance_blocks
from tuneforge.report.inputs import RunInputs, png_uri

SPLITS = ("train", "validation", "test")
EVAL_SPLITS = ("validation", "test")
HEADLINE = {
    "classification": ("accuracy", "f1_macro", "f1_weighted"),
    "regression": ("rmse", "mae", "r2", "pearson", "spearman", "mse"),
    "multilabel": ("f1_micro", "f1_macro", "f1_weighted", "precision_micro", "recall_micro", "subset_accuracy",
                   "hamming_loss"),
    "seq2seq": ("chrf", "bleu", "rouge1", "rouge2", "rougeL", "exact_match", "perplexity"),
    "causal-lm": ("accuracy", "f1_macro", "chrf", "bleu", "rougeL", "exact_match", "perplexity"),
}
# Keys that have their own view; every other key of the same dict is shown generically.
STRUCTURED_METRIC_KEYS = {"per_class", "confusion_matrix", "calibration", "error_analysis", "plugins"}
DATA_KEYS = {"sources", "rows", "labels", "train_class_counts", "class_weights", "warnings", "text_lengths",
             "cleaning", "imbalance"}
TRAINING_KEYS = {"runtime_seconds", "train_samples_per_second", "global_steps", "epochs_completed", "stopped_early",
                 "best_checkpoint", "best_metric", "parameters", "trainable_parameters", "device", "precision",
                 "train_examples", "class_weights", "temperature"}
HYPERPARAMETERS = {
    "train": ("learning_rate", "batch_size", "gradient_accumulation_steps", "epochs", "max_steps", "max_length",
              "lr_scheduler", "warmup_ratio", "weight_decay", "seed"),
    "loss": ("name", "label_smoothing"),
    "freeze": ("embeddings", "layers", "all_but_head", "gradual_unfreeze"),
    "early_stopping": ("enabled", "metric", "patience"),
}
ALWAYS_SHOWN = {"learning_rate", "batch_size", "warmup_ratio", "weight_decay", "seed"}


@dataclass
class Header:
    run_name: str
    task: str
    model: str
    date: str
    directory: str
    stats: list[Stat] = field(default_factory=list)


def primary_split(inputs: RunInputs) -> str | None:
    """The split whose numbers headline the report: test when there is one, else validation."""
    for role in ("test", "validation"):
        if inputs.split(role):
            return role
    return None


def headline_names(inputs: RunInputs) -> list[str]:
    return list(HEADLINE.get(inputs.task, ()))


def build_header(inputs: RunInputs) -> Header:
    header = Header(run_name=inputs.name, task=inputs.task, model=inputs.model_name,
                    date=inputs.created.strftime("%Y-%m-%d %H:%M"), directory=str(inputs.root.resolve()))
    role = primary_split(inputs)
    if role is not None:
        metrics = inputs.split(role)
        names = headline_names(inputs)[:3] or [k for k, v in metrics.items() if as_float(v) is not None][:3]
        for name in names:
            value = as_float(metrics.get(name))
            if value is not None:
                header.stats.append(Stat(humanize(name), fmt_number(value, fixed=True), f"{role} split"))
    training = inputs.metrics.get("training") if isinstance(inputs.metrics.get("training"), dict) else {}
    rows = inputs.data.get("rows") if isinstance(inputs.data.get("rows"), dict) else {}
    train_rows = training.get("train_examples") or rows.get("train")
    if train_rows is not None:
        header.stats.append(Stat("Training rows", fmt_value(train_rows), "after cleaning"))
    return header


# ----------------------------------------------------------------------------------------------- data card


def build_data(inputs: RunInputs) -> Section:
    data = inputs.data
    section = Section("data", "Data card", lead="What the model was trained and evaluated on.")
    if not data:
        section.hint = Callout("data.json is missing: this run directory has no data summary.", "hint")
        return section
    sources = data.get("sources")
    rows = data.get("rows") if isinstance(data.get("rows"), Mapping) else {}
    if isinstance(sources, Mapping) or rows:
        section.blocks.append(_splits_table(sources if isinstance(sources, Mapping) else {}, rows))
    elif sources is not None:
        section.blocks.append(KeyValues([("Sources", fmt_value(sources))]))
    section.blocks.extend(_class_balance(inputs))
    section.blocks.extend(imbalance_blocks(data) + cleaning_blocks(data))
    lengths = data.get("text_lengths")
    if lengths:
        section.blocks.append(Heading("Text length"))
        if isinstance(lengths, Mapping) and all(isinstance(v, Mapping) for v in lengths.values()):
            table = records_table(list(lengths.values()), key_column="Split", keys=[humanize(k) for k in lengths])
            max_length = inputs.section("train").get("max_length")
            table.caption = "Tokens per text, by split" + (f" (texts longer than max_length {max_length} are cut)."
                                                           if max_length else ".")
            section.blocks.append(table)
            section.blocks.extend(_truncation_warning(lengths, max_length))
        else:
            section.blocks.extend(to_blocks(lengths))
    section.blocks.append(Heading("Data warnings"))
    warnings = data.get("warnings")
    if isinstance(warnings, list) and warnings:
        section.blocks.extend(Callout(fmt_value(w, 1000), "warning") for w in warnings)
    elif warnings:
        section.blocks.append(Callout(fmt_value(warnings, 1000), "warning"))
    else:
        section.blocks.append(Callout("No data warnings: no duplicates across splits or other problems found.",
                                      "ok"))
    extra = {k: v for k, v in data.items() if k not in DATA_KEYS}
    if extra:
        section.blocks.append(Details("Other data facts", to_blocks(extra)))
    return section


def _truncation_warning(lengths: Mapping[str, Any], max_length: Any) -> list[Callout]:
    """Texts cut at max_length lose words the model never sees: worth saying when it is more than a few."""
    cut = {role: as_float(v.get("truncated_share")) for role, v in lengths.items() if isinstance(v, Mapping)}
    worst = max(((share, role) for role, share in cut.items() if share is not None), default=None)
    if worst is None or worst[0] < 0.05:
        return []
    return [Callout(f"{worst[0]:.0%} of the {worst[1]} texts were cut at max_length {fmt_value(max_length)}; "
                    "consider a larger `train.max_length`.", "warning")]


def _splits_table(sources: Mapping[str, Any], rows: Mapping[str, Any]) -> Table:
    names = [s for s in SPLITS if s in sources or s in rows] + [s for s in {**sources, **rows} if s not in SPLITS]
    total = sum(v for v in (as_float(rows.get(s)) for s in names) if v is not None) or None
    table_rows = []
    for name in names:
        count = as_float(rows.get(name))
        share = f"{100 * count / total:.1f}%" if count is not None and total else "—"
        source = sources.get(name)
        table_rows.append([Cell(humanize(name), tone="strong"), Cell(fmt_value(rows.get(name))), Cell(share),
                           Cell(fmt_value(source) if source else "carved from train", tone="" if source else "muted")])
    return Table(["Split", "Rows", "Share", "Source"], table_rows, numeric=[False, True, True, False],
                 caption="Rows per split after cleaning.")


def _class_balance(inputs: RunInputs) -> list[Any]:
    counts = inputs.data.get("train_class_counts")
    if not isinstance(counts, Mapping) or not counts:
        return []
    numbers = {str(k): as_float(v) for k, v in counts.items()}
    total = sum(v for v in numbers.values() if v is not None) or None
    weights = inputs.data.get("class_weights") if isinstance(inputs.data.get("class_weights"), Mapping) else {}
    supports = {role: inputs.split(role).get("per_class") for role in EVAL_SPLITS}
    supports = {role: v for role, v in supports.items() if isinstance(v, Mapping)}
    columns = ["Class", "Train rows", "Share"] + (["Loss weight"] if weights else [])
    columns += [f"{humanize(role)} rows" for role in supports]
    rows = []
    for name, count in numbers.items():
        share = count / total if count is not None and total else None
        row = [Cell(name, tone="strong"), Cell(fmt_value(counts.get(name))),
               Cell(f"{100 * share:.1f}%" if share is not None else "—", bar=share)]
        if weights:
            row.append(Cell(fmt_value(weights.get(name))))
        for per_class in supports.values():
            entry = per_class.get(name)
            row.append(Cell(fmt_value(entry.get("support") if isinstance(entry, Mapping) else None)))
        rows.append(row)
    table = Table(columns, rows, caption="Class balance (validation and test rows are the per-class support).")
    present = [v for v in numbers.values() if v]
    blocks: list[Any] = [Heading("Class balance")]
    left: list[Any] = [table]
    if len(present) >= 2:
        ratio = max(present) / min(present)
        if ratio < 1.5:
            left.append(Callout(f"Balanced classes (largest / smallest = {ratio:.1f}).", "ok"))
        else:
            left.append(Callout(f"Imbalance ratio (largest / smallest class): {ratio:.1f}",
                                "warning" if ratio >= 3 else "info"))
    chart = [Figure(png_uri(figures.class_balance({k: v or 0 for k, v in numbers.items()})), "Training rows per class")]
    blocks.append(Columns(left, chart))
    return blocks


# ----------------------------------------------------------------------------------------------- training


def build_training(inputs: RunInputs) -> Section:
    training = inputs.metrics.get("training")
    training = training if isinstance(training, Mapping) else {}
    section = Section("training", "Training", lead="How the fine-tuning went.")
    stats = []
    steps = training.get("global_steps")
    if steps is not None:
        stats.append(Stat("Steps", fmt_value(steps), f"{fmt_value(training.get('epochs_completed'))} epochs"))
    if training.get("runtime_seconds") is not None:
        speed = as_float(training.get("train_samples_per_second"))
        stats.append(Stat("Runtime", fmt_duration(training.get("runtime_seconds")),
                          f"{speed:,.1f} samples/s" if speed is not None else ""))
    if "stopped_early" in training:
        early = bool(training.get("stopped_early"))
        stats.append(Stat("Early stopping", "stopped early" if early else "ran to the end",
                          _best_metric(training.get("best_metric")), "good" if early else ""))
    total, trainable = as_float(training.get("parameters")), as_float(training.get("trainable_parameters"))
    if total:
        share = f"{100 * trainable / total:.1f}% trainable" if trainable is not None else ""
        stats.append(Stat("Parameters", _compact(total), share))
    if stats:
        section.blocks.append(Stats(stats))
    curve = inputs.image(inputs.layout.training_curve, "training")
    if curve:
        section.blocks.append(Figure(curve, "Training and validation loss, and the watched validation metric.",
                                     wide=True))
    else:
        section.blocks.append(Callout("No training curve (training_curve.png is missing).", "hint"))
    facts = [
        ("Device", fmt_value(training.get("device"))),
        ("Precision", fmt_value(training.get("precision"))),
        ("Parameters", fmt_value(training.get("parameters"))),
        ("Trainable parameters", fmt_value(training.get("trainable_parameters"))),
        ("Training examples", fmt_value(training.get("train_examples"))),
        ("Best checkpoint", Path(str(training["best_checkpoint"])).name if training.get("best_checkpoint") else "—"),
        ("Best validation metric", _best_metric(training.get("best_metric")) or "—"),
    ]
    if as_float(training.get("temperature")) is not None:
        facts.append(("Softmax temperature", fmt_number(training["temperature"], 3)))
    weights = training.get("class_weights")
    if isinstance(weights, Mapping) and weights:
        facts.append(("Class weights", ", ".join(f"{k}: {fmt_value(v)}" for k, v in weights.items())))
    hyper = _hyperparameters(inputs)
    section.blocks.append(Columns([Heading("Run facts"), KeyValues(facts)],
                                  [Heading("Recipe settings"), KeyValues(hyper)] if hyper else []))
    extra = {k: v for k, v in training.items() if k not in TRAINING_KEYS}
    if extra:
        section.blocks.append(Details("Other training facts", to_blocks(extra)))
    return section


def _best_metric(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{humanize(k)} {fmt_value(v)}" for k, v in value.items() if v is not None)
    return "" if value is None else fmt_value(value)


def _compact(number: float) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= size:
            return f"{number / size:.1f}{suffix}"
    return f"{number:,.0f}"


def _hyperparameters(inputs: RunInputs) -> list[tuple[str, str]]:
    """The recipe settings that shape a run; options left off (0, false) are skipped to keep the list short."""
    train = inputs.section("train")
    found = [(humanize(key), fmt_value(train[key])) for key in HYPERPARAMETERS["train"]
             if key in train and is_scalar(train[key]) and (train[key] or key in ALWAYS_SHOWN)]
    loss = inputs.section("loss")
    if loss.get("name"):
        smoothing = as_float(loss.get("label_smoothing"))
        found.append(("Loss", fmt_value(loss["name"]) + (f", label smoothing {fmt_number(smoothing)}"
                                                         if smoothing else "")))
    freeze = inputs.section("freeze")
    frozen = [key.replace("_", " ") + ("" if value is True else f" {fmt_value(value)}")
              for key, value in freeze.items() if key in HYPERPARAMETERS["freeze"] and value]
    if freeze:
        found.append(("Freezing", ", ".join(frozen) or "none"))
    early = inputs.section("early_stopping")
    if early:
        found.append(("Early stopping", f"metric {fmt_value(early.get('metric'))}, patience "
                                        f"{fmt_value(early.get('patience'))}" if early.get("enabled") else "off"))
    return found


# ----------------------------------------------------------------------------------------------- metrics


def metric_columns(inputs: RunInputs) -> dict[str, dict[str, Any]]:
    """Split name -> metrics, in display order: validation, test, then later `tuneforge evaluate` files."""
    columns = {role: inputs.split(role) for role in EVAL_SPLITS if inputs.split(role)}
    for stem, values in inputs.evaluations.items():
        columns[f"evaluate: {stem}"] = values
    return columns


def build_metrics(inputs: RunInputs) -> Section:
    section = Section("metrics", "Metrics", lead="Scores on the held-out splits.")
    columns = metric_columns(inputs)
    if not columns:
        section.hint = Callout("No evaluation split: the run has neither validation nor test metrics.", "hint")
        return section
    section.blocks.append(_summary_table(inputs, columns))
    role = primary_split(inputs)
    per_class = inputs.split(role).get("per_class") if role else None
    if isinstance(per_class, Mapping) and per_class:
        section.blocks.append(Heading(f"Per class ({role})"))
        left: list[Any] = [_per_class_table(per_class)]
        other = "validation" if role == "test" else None
        other_table = inputs.split(other).get("per_class") if other else None
        if isinstance(other_table, Mapping) and other_table:
            left.append(Details("Per class (validation)", [_per_class_table(other_table)]))
        section.blocks.append(Columns(left, _confusion(inputs, role)))
    elif inputs.task == "regression" or not inputs.labels:
        scatter = _regression_scatter(inputs)
        if scatter is not None:
            section.blocks.append(Heading("Predictions on the test split"))
            section.blocks.append(scatter)
    extra = {name: {c: v[name] for c, v in columns.items() if name in v}
             for values in columns.values() for name, value in values.items()
             if not is_scalar(value) and name not in STRUCTURED_METRIC_KEYS}
    if extra:
        section.blocks.append(Details("Other metric details", to_blocks(extra)))
    return section


def _ordered_metric_names(inputs: RunInputs, columns: Mapping[str, Mapping[str, Any]]) -> list[str]:
    names = list(headline_names(inputs))
    for values in columns.values():
        for key, value in values.items():
            if key not in names and key not in ("examples", "loss", "data") and is_scalar(value) \
                    and key not in STRUCTURED_METRIC_KEYS:
                names.append(key)
    return names + ["loss", "examples"]


def _summary_table(inputs: RunInputs, columns: Mapping[str, Mapping[str, Any]]) -> Table:
    best = inputs.metrics.get("training", {}).get("best_metric") if isinstance(
        inputs.metrics.get("training"), Mapping) else None
    watched = set(best) if isinstance(best, Mapping) else set()
    rows = []
    for name in _ordered_metric_names(inputs, columns):
        if not any(name in values for values in columns.values()):
            continue
        label = humanize(name) + (" ★" if name in watched else "")
        rows.append([Cell(label, tone="strong")] + [Cell(fmt_metric(values.get(name))) for values in columns.values()])
    caption = "★ the metric early stopping watched." if watched else ""
    return Table(["Metric"] + [humanize(c) if c in EVAL_SPLITS else c for c in columns], rows,
                 numeric=[False] + [True] * len(columns), caption=caption)


def _per_class_table(per_class: Mapping[str, Any]) -> Table:
    rows = []
    for name, entry in per_class.items():
        entry = entry if isinstance(entry, Mapping) else {}
        f1 = as_float(entry.get("f1"))
        rows.append([Cell(str(name), tone="strong"), Cell(fmt_metric(entry.get("precision"))),
                     Cell(fmt_metric(entry.get("recall"))),
                     Cell(fmt_metric(entry.get("f1")), bar=max(0.0, min(1.0, f1)) if f1 is not None else None,
                          tone="bad" if f1 is not None and f1 < 0.5 else ""),
                     Cell(fmt_value(entry.get("support")))])
    return Table(["Class", "Precision", "Recall", "F1", "Support"], rows, numeric=[False, True, True, True, True])


def _confusion(inputs: RunInputs, role: str | None) -> list[Any]:
    uri = inputs.image(inputs.layout.confusion_matrix, "metrics")
    if uri:
        return [Figure(uri, f"Confusion matrix ({role}): rows are true classes, columns predictions.")]
    matrix = inputs.split(role).get("confusion_matrix") if role else None
    if not isinstance(matrix, Mapping):
        return []
    values, labels = matrix.get("matrix"), matrix.get("labels") or inputs.labels
    if not isinstance(values, list) or not all(isinstance(r, list) for r in values):
        return []
    top = max((as_float(v) or 0 for row in values for v in row), default=0) or 1
    rows = [[Cell(str(labels[i]) if i < len(labels) else str(i), tone="strong")]
            + [Cell(fmt_value(v), heat=(as_float(v) or 0) / top) for v in row] for i, row in enumerate(values)]
    return [Table(["true \\ predicted"] + [str(x) for x in labels], rows, caption=f"Confusion matrix ({role}).")]


def _regression_scatter(inputs: RunInputs) -> Figure | None:
    path = inputs.layout.test_predictions
    if not path.is_file():
        return None
    import pandas as pd

    try:
        frame = pd.read_csv(path, usecols=["true", "score"]).apply(pd.to_numeric, errors="coerce").dropna()
    except (OSError, ValueError) as error:
        inputs.note("metrics", f"predictions_test.csv could not be read for the scatter plot ({error})")
        return None
    frame = frame[frame.map(math.isfinite).all(axis=1)]
    if len(frame) < 2:
        return None
    png = figures.predicted_vs_true(frame["true"].tolist(), frame["score"].tolist())
    return Figure(png_uri(png), f"Predicted against true values ({len(frame)} test rows); the dashed line is "
                                "a perfect prediction.")


def notes_blocks(inputs: RunInputs, section_id: str) -> list[Any]:
    return [Callout(note, "warning") for note in inputs.notes.get(section_id, [])]

