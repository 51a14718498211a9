"""Hand-made evaluation outputs for report tests: plausible schemas, and deliberately malformed ones.

The shapes follow what the evaluate/explain steps write (calibration report, error analysis, fairness audit,
explanations payload), but the report must not depend on them being exact, so tests also feed odd shapes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

CALIBRATION = {
    "temperature": 1.7321, "bins": 3, "examples": 30, "ece_before": 0.1834, "ece_after": 0.0412,
    "nll_before": 0.91, "nll_after": 0.72,
    "reliability": [
        {"lower": 0.0, "upper": 0.33, "confidence": None, "accuracy": None, "count": 0},
        {"lower": 0.33, "upper": 0.67, "confidence": 0.52, "accuracy": 0.47, "count": 17},
        {"lower": 0.67, "upper": 1.0, "confidence": 0.81, "accuracy": 0.85, "count": 13},
    ],
}
ERROR_ANALYSIS = {
    "examples": 30, "errors": 10, "error_rate": 0.3333,
    "confused_pairs": [{"true": "negative", "predicted": "positive", "count": 10, "share": 1.0}],
    "confident_mistakes": [{"index": 4, "text": "the food was rude and dirty <b>really</b>", "true": "negative",
                            "predicted": "positive", "confidence": 0.9123, "true_probability": 0.04}],
    "length_buckets": [{"lower": 4, "upper": 6, "examples": 18, "errors": 5, "error_rate": 0.2778},
                       {"lower": 7, "upper": 9, "examples": 12, "errors": 5, "error_rate": 0.4167}],
}
PLUGINS = {"toxicity_check": {"flagged_share": 0.0321, "checked": 30}, "length_bias": 0.1234}
FAIRNESS = {
    "data": "/data/audit.csv", "examples": 40, "label_names": ["negative", "neutral", "positive"],
    "positive_label": "negative", "group_source": "columns",
    "attributes": {
        "gender": {
            "source": "column", "positive_label": "negative", "examples": 40, "examples_with_group": 38,
            "groups": {
                "female": {"count": 19, "accuracy": 0.7368, "f1_macro": 0.61, "selection_rate": 0.2105,
                           "false_positive_rate": 0.0, "false_negative_rate": 0.5},
                "male": {"count": 19, "accuracy": 0.6316, "f1_macro": 0.55, "selection_rate": 0.4737,
                         "false_positive_rate": 0.2, "false_negative_rate": 0.25},
            },
            "overall": {"count": 38, "accuracy": 0.6842, "f1_macro": 0.58, "selection_rate": 0.3421,
                        "false_positive_rate": 0.1, "false_negative_rate": 0.375},
            "compared_groups": ["female", "male"],
            "gaps": {"accuracy": 0.1052, "selection_rate": 0.2632},
            "demographic_parity_difference": 0.2632, "demographic_parity_ratio": 0.4444,
            "equalized_odds_difference": 0.25, "equalized_odds_ratio": 0.5,
        },
        "religion": {"source": "identity_terms", "examples": 40, "examples_with_group": 0, "groups": {},
                     "overall": None, "compared_groups": [], "gaps": {},
                     "demographic_parity_difference": None},
    },
    "counterfactual": {"positive_label": "negative", "categories": {
        "gender": {"texts_probed": 12, "pairs": 12, "flips": 3, "flip_rate": 0.25, "mean_abs_change": 0.0812,
                   "max_abs_change": 0.4107,
                   "swaps": {"he->she": {"pairs": 6, "flips": 2, "flip_rate": 0.3333, "mean_change": 0.05}},
                   "worst": [{"row": 3, "swap": "he->she", "original": "he was rude to the waiter",
                              "variant": "she was rude to the waiter", "original_label": "negative",
                              "variant_label": "neutral", "original_probability": 0.71,
                              "variant_probability": 0.2993, "change": -0.4107, "flipped": True}]},
    }},
    "thresholds": {"max_demographic_parity_difference": 0.1, "max_equalized_odds_difference": None,
                   "max_counterfactual_flip_rate": None},
    "breaches": ["demographic parity difference 0.263 on 'gender' exceeds 0.1 "
                 "(fairness.max_demographic_parity_difference)"],
    "passed": False,
}
EXPLANATIONS = {
    "schema_version": 1, "source": "test.csv", "methods": ["ig", "lime", "attention"],
    "texts": [{
        "index": 0, "text": "the service was awful",
        "prediction": {"label": "negative", "score": 0.8731,
                       "probabilities": {"negative": 0.8731, "neutral": 0.1, "positive": 0.0269}},
        "explanations": {
            "ig": {"tokens": ["the", "service", "was", "aw", "##ful"], "scores": [0.01, -0.05, 0.02, 0.61, 0.33],
                   "label": "negative", "probability": 0.8731, "level": "token", "delta": 0.002},
            "lime": {"tokens": ["the", "service", "was", "awful"], "scores": [0.0, -0.1, 0.01, 0.7],
                     "label": "negative", "probability": 0.8731, "level": "word", "delta": None},
        },
        "plots": {"attention_rollout": "attention_000_rollout.png"},
    }],
}


def png(path: Path, title: str = "figure") -> Path:
    figure = Figure(figsize=(3, 2))
    figure.subplots().plot([0, 1, 2], [1, 0, 1])
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=60)
    return path


def edit_metrics(run_dir: Path, **per_split: Any) -> None:
    """Add keys to the validation and test dicts of metrics.json, as the evaluation steps will."""
    path = run_dir / "metrics.json"
    metrics = json.loads(path.read_text())
    for role in ("validation", "test"):
        if role in metrics:
            metrics[role].update(per_split)
    path.write_text(json.dumps(metrics))


def add_extras(run_dir: Path) -> None:
    """Every optional input, with plausible schemas."""
    edit_metrics(run_dir, calibration=CALIBRATION, error_analysis=ERROR_ANALYSIS, plugins=PLUGINS)
    (run_dir / "calibration.json").write_text(json.dumps({"temperature": 1.7321}))
    png(run_dir / "reliability_diagram.png", "reliability")
    (run_dir / "fairness.json").write_text(json.dumps(FAIRNESS))
    folder = run_dir / "explanations"
    shutil.rmtree(folder, ignore_errors=True)  # replace what training wrote with this known sample
    folder.mkdir()
    (folder / "explanations.json").write_text(json.dumps(EXPLANATIONS))
    (folder / "explanations.html").write_text("<p>fallback fragment</p>")
    png(folder / "attention_000_rollout.png", "rollout")
    png(folder / "attention_000_heads.png", "heads")


def add_malformed(run_dir: Path) -> None:
    """Every optional input in a shape the report does not expect, or broken outright."""
    edit_metrics(run_dir, calibration="temperature scaling failed", error_analysis=[1, 2, [3, {"x": None}]],
                 plugins={"broken": [{"deep": {"deeper": {"deepest": {"x": [1, 2]}}}}], "nan": float("nan")},
                 per_class={"negative": "n/a", "neutral": {"f1": None}}, surprise={"nested": {"a": [1, {"b": 2}]}})
    data = json.loads((run_dir / "data.json").read_text())
    data.update(text_lengths="unknown", warnings="one warning, not a list", sources=["a.csv"])
    (run_dir / "data.json").write_text(json.dumps(data))
    (run_dir / "calibration.json").write_text("{not json")
    (run_dir / "fairness.json").write_text(json.dumps([{"group": "a", "gap": 0.5}, "stray string", 3]))
    (run_dir / "reliability_diagram.png").write_bytes(b"this is not a png")
    folder = run_dir / "explanations"
    shutil.rmtree(folder, ignore_errors=True)  # replace what training wrote with this known sample
    folder.mkdir()
    (folder / "explanations.json").write_text(json.dumps({"texts": [
        {"text": "scores per class", "explanations": {"ig": {"tokens": ["a", "b"], "scores": [[0.1, 0.2], [0.3]]}}},
        {"text": 42, "prediction": ["odd"], "explanations": {"lime": {"tokens": ["x", "y", "z"], "scores": [1]}}},
        "not a record",
    ]}))
    (folder / "explanations.html").write_text(
        '<script>alert(1)</script><img src="http://example.com/x.png"><p onclick="x()">kept text</p>')
