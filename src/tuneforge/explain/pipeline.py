"""Explain many texts with several methods and write the results as files: what `tuneforge explain` runs.

Computing (`explain_texts`) and writing (`write_explanations`) are separate so the Python API can inspect
results without touching the disk, and the CLI stays a thin shell.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge import artifacts
from tuneforge.errors import TuneforgeError
from tuneforge.explain.attention import (
    AttentionMaps,
    attention_maps,
    plot_attention_grid,
    plot_rollout,
    rollout_attribution,
)
from tuneforge.explain.attributions import (
    Attribution,
    global_token_importance,
    integrated_gradients,
    lime_attribution,
    shap_attribution,
)
from tuneforge.explain.render import PageSection, explanation_page

METHODS = ("ig", "shap", "lime", "attention")
SCHEMA_VERSION = 1
GLOBAL_FILE = "global_tokens.json"


@dataclass(frozen=True)
class ExplainSettings:
    """Which methods to run and how hard each works; the defaults take about a second per short text on CPU."""

    methods: tuple[str, ...] = METHODS
    label: str | None = None  # explain this class instead of the predicted one
    ig_steps: int = 50
    shap_evals: int = 200
    lime_samples: int = 300
    seed: int = 0


@dataclass
class TextExplanation:
    """Everything computed for one text."""

    text: str
    prediction: dict[str, Any]
    attributions: dict[str, Attribution] = field(default_factory=dict)
    attention: AttentionMaps | None = None
    pair: str | None = None


def parse_methods(values: Sequence[str], task: str = "classification") -> tuple[str, ...]:
    """`["ig,shap"]`, `["all"]` or repeated names → the methods in a fixed order; "all" on a regression run
    means attention only, since the other methods explain class probabilities."""
    names = [name.strip().lower() for value in values for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in (*METHODS, "all")]
    if unknown:
        raise TuneforgeError(f"unknown explanation method(s): {', '.join(unknown)}",
                             fix=f"use one or more of {', '.join(METHODS)}, or all")
    if not names or "all" in names:
        return METHODS if task == "classification" else ("attention",)
    return tuple(method for method in METHODS if method in names)


def explain_text(predictor: Any, text: str, settings: ExplainSettings, pair: str | None = None
                 ) -> TextExplanation:
    rules = getattr(predictor, "rules", None)
    if rules is not None:  # explain the text as the model reads it, after the run's domain rules
        text = rules(text)
        pair = rules(pair) if pair is not None else None
    result = TextExplanation(text, predictor.predict([text], [pair] if pair is not None else None)[0], pair=pair)
    label = settings.label
    for method in settings.methods:
        if method == "ig":
            result.attributions[method] = integrated_gradients(predictor, text, label, pair, n_steps=settings.ig_steps)
        elif method == "shap":
            result.attributions[method] = shap_attribution(predictor, text, label, pair, max_evals=settings.shap_evals)
        elif method == "lime":
            result.attributions[method] = lime_attribution(predictor, text, label, pair,
                                                           num_samples=settings.lime_samples, seed=settings.seed)
        elif method == "attention":
            result.attention = attention_maps(predictor, text, pair)
            if predictor.labels is not None:
                result.attributions[method] = rollout_attribution(predictor, text, label, pair, result.attention)
    return result


def explain_texts(predictor: Any, texts: Sequence[str], settings: ExplainSettings | None = None,
                  pairs: Sequence[str] | None = None, on_text: Callable[[int], None] | None = None
                  ) -> list[TextExplanation]:
    """Explain each text with every method in `settings`; `on_text(i)` is called after text i (progress)."""
    settings = settings or ExplainSettings()
    if settings.label is not None and predictor.labels is not None and settings.label not in predictor.labels:
        raise TuneforgeError(f"label '{settings.label}' is not one of this run's classes",
                             fix=f"pass one of: {', '.join(predictor.labels)}")
    results = []
    for index, text in enumerate(texts):
        results.append(explain_text(predictor, str(text), settings, pairs[index] if pairs is not None else None))
        if on_text is not None:
            on_text(index)
    return results


def global_importance(results: Sequence[TextExplanation], top: int = 20) -> dict[str, Any]:
    """Per method, per class: the tokens with the highest mean score over all texts."""
    methods = sorted({method for result in results for method in result.attributions})
    return {method: {label: [item._asdict() for item in items]
                     for label, items in global_token_importance(
                         [r.attributions[method] for r in results if method in r.attributions], top=top).items()}
            for method in methods}


def _plot_names(index: int) -> dict[str, str]:
    return {"attention_heads": f"attention_{index:03d}_heads.png",
            "attention_rollout": f"attention_{index:03d}_rollout.png"}


def explanations_payload(results: Sequence[TextExplanation], plots: dict[int, dict[str, str]],
                         source: str | None = None) -> dict[str, Any]:
    """The JSON document: one entry per text with its prediction, each method's tokens and scores, plot files."""
    return {
        "schema_version": SCHEMA_VERSION,
        "source": source,
        "methods": sorted({m for r in results for m in r.attributions} | ({"attention"} if plots else set()),
                          key=lambda m: METHODS.index(m) if m in METHODS else len(METHODS)),
        "texts": [{
            "index": index,
            "text": result.text,
            **({"pair": result.pair} if result.pair is not None else {}),
            "prediction": result.prediction,
            "explanations": {method: {key: value for key, value in attribution.to_dict().items() if key != "method"}
                             for method, attribution in result.attributions.items()},
            "plots": plots.get(index, {}),
        } for index, result in enumerate(results)],
    }


def write_explanations(results: Sequence[TextExplanation], output: Path, source: str | None = None,
                       title: str = "Explanations") -> dict[str, Path]:
    """Write explanations.json, explanations.html, attention PNGs per text and, for several texts,
    global_tokens.json into `output`; returns what was written, by name."""
    output.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    plots: dict[int, dict[str, str]] = {}
    sections = []
    for index, result in enumerate(results):
        images: dict[str, Path] = {}
        if result.attention is not None:
            names = _plot_names(index)
            plot_attention_grid(result.attention, output / names["attention_heads"],
                                title=f"Text {index + 1}: attention per layer and head")
            plot_rollout(result.attention, output / names["attention_rollout"],
                         title=f"Text {index + 1}: attention rollout")
            plots[index] = names
            images = {"attention per layer (rows) and head (columns)": output / names["attention_heads"],
                      "attention rollout": output / names["attention_rollout"]}
            written.update({f"{key}_{index:03d}": output / name for key, name in names.items()})
        prediction = result.prediction
        heading = f"Text {index + 1}: predicted {prediction.get('label', prediction.get('score'))}"
        if "label" in prediction:
            heading += f" (p={prediction['score']:.3f})"
        sections.append(PageSection(heading, list(result.attributions.values()), images, note=result.text))
    written["json"] = output / "explanations.json"
    artifacts.write_json(written["json"], explanations_payload(results, plots, source))
    global_tokens = None
    if len(results) > 1 and any(result.attributions for result in results):
        global_tokens = global_importance(results)
        written["global"] = output / GLOBAL_FILE
        artifacts.write_json(written["global"], global_tokens)
    written["html"] = output / "explanations.html"
    artifacts.write_text(written["html"], explanation_page(sections, title=title, global_tokens=global_tokens,
                                                            intro=f"Source: {source}" if source else ""))
    _remove_stale(output, set(written.values()))
    return written


def _remove_stale(output: Path, written: set[Path]) -> None:
    """Files of an earlier explanation in the same folder would otherwise be read as part of this one."""
    stale = [*output.glob("attention_*_heads.png"), *output.glob("attention_*_rollout.png"), output / GLOBAL_FILE]
    for path in stale:
        if path not in written:
            path.unlink(missing_ok=True)
