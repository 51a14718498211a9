"""Pipelines of the Transformers classifiers: whole texts (one label, several labels, a score) and tags per word.

They share data preparation's shape, domain adaptation, the model loader, PEFT or freezing and the task losses;
what differs is how texts become model inputs and how a split is scored.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding, Trainer

from tuneforge import artifacts
from tuneforge.data.class_weights import decide_class_weights
from tuneforge.data.conll import TAG_FIELD, TOKEN_FIELD
from tuneforge.data.prepare import LABEL_FIELD, WEIGHT_FIELD, prepare_data
from tuneforge.data.token_data import prepare_token_data
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.calibration import fit_temperature, reliability_diagram, write_temperature
from tuneforge.evaluate.scoring import analyse_predictions
from tuneforge.models.freezing import apply_freezing, count_parameters
from tuneforge.models.loading import load_sequence_model, load_tokenizer
from tuneforge.models.peft import apply_peft, quantized_loading
from tuneforge.models.resolve import resolve_model
from tuneforge.report import plots
from tuneforge.tasks import get_task
from tuneforge.tasks.text import tokenize_dataset
from tuneforge.tasks.token_classification import AlignLabels, decode_words
from tuneforge.train import distributed, finishing
from tuneforge.train.contrastive import contrastive_stage
from tuneforge.train.domain import adapt_to_domain
from tuneforge.train.losses import build_loss
from tuneforge.train.pipelines.base import RunPipeline, RunState, Step, Warnings, length_statistics, split_rows


class TextPipeline(RunPipeline):
    """classification (texts or pairs), regression and multilabel."""

    tagging = False

    def load_data(self, state: RunState) -> Any:
        return prepare_data(state.recipe)

    def domain_texts(self, state: RunState) -> list[str]:
        return state.data.train[state.recipe.data.text_column]

    def prepare(self, state: RunState, on_warnings: Warnings) -> None:
        recipe = state.recipe
        quantization = quantized_loading(recipe.peft, state.device)  # QLoRA where it cannot run fails now
        with distributed.main_process_first(state.device):  # rank 0 fills the datasets cache, the others read it
            state.data = self.load_data(state)
        if on_warnings is not None and state.data.warnings:
            on_warnings(state.data.warnings)
        resolved = resolve_model(recipe.model.name)
        tokenizer = load_tokenizer(recipe.model, resolved)
        domain = adapt_to_domain(recipe, state.layout.root, resolved, tokenizer,  # rules, new words, pretraining
                                 self.domain_texts(state), state.device.type == "cpu")
        state.tokenizer = domain.tokenizer
        state.extras["domain"] = domain
        model = load_sequence_model(recipe.model, recipe.task, state.labels, domain.resolved,
                                    state.tokenizer.pad_token_id, **quantization)
        domain.resize(model)
        if recipe.train.method == "contrastive":  # SetFit-style encoder and head first (train/contrastive.py)
            contrastive_stage(state, model)
        if recipe.peft.enabled:  # the recipe forbids freeze settings with PEFT, which freezes the base itself
            model = apply_peft(model, state.tokenizer, recipe.peft, recipe.train.gradient_checkpointing)
        else:
            apply_freezing(model, recipe.freeze)
        state.model = model
        state.parameters = count_parameters(model)
        state.class_weights = self.class_weights(state)
        state.splits = self.tokenize(state)
        self.write_data_summary(state)

    def class_weights(self, state: RunState) -> Any:
        return state.data.class_weights  # decided once, with the data (data/class_weights.py)

    def tokenize(self, state: RunState) -> dict[str, Any]:
        recipe, spec = state.recipe, state.recipe.data
        rules = state.extras["domain"].rules
        return {role: tokenize_dataset(split, state.tokenizer, spec.text_column, spec.text_pair_column,
                                       recipe.train.max_length, keep=(LABEL_FIELD, WEIGHT_FIELD),
                                       desc=f"tokenizing {role}", rules=rules)
                for role, split in _splits(state.data)}

    def write_data_summary(self, state: RunState) -> None:
        data = state.data
        summary = {
            "sources": data.sources,
            "rows": split_rows(data),
            "labels": data.labels,
            "train_class_counts": data.class_counts() or None,
            "text_lengths": length_statistics(state.splits, state.recipe.train.max_length),
            "mitigation": data.mitigation,
            "augmentation": data.augmentation,
            "imbalance": getattr(data, "imbalance", None),
            "cleaning": ({role: {k: v for k, v in report.items() if k != "rows"}
                          for role, report in data.cleaning.items()} if getattr(data, "cleaning", None) else None),
            "warnings": [str(w) for w in data.warnings],
        }
        artifacts.write_json(state.layout.data_summary, summary)
        if getattr(data, "cleaning", None):  # every row cleaning dropped, flagged or masked, with its reason
            artifacts.write_json(state.layout.root / "data_report.json", data.cleaning)

    def collator(self, state: RunState) -> Any:
        collate = DataCollatorForTokenClassification if self.tagging else DataCollatorWithPadding
        return collate(state.tokenizer, pad_to_multiple_of=8 if state.device.type == "cuda" else None)

    def loss(self, state: RunState) -> Callable[..., Any]:
        return build_loss(state.recipe, state.class_weights.as_list() if state.class_weights else None)

    def trainer_options(self, state: RunState) -> dict[str, Any]:
        return {"optimise_all_parameters": state.recipe.freeze.gradual_unfreeze, "count_tokens": self.tagging}

    def training_metrics(self, trainer: Trainer, state: RunState) -> dict[str, Any]:
        return {"optimizer": state.recipe.train.optimizer, "processes": trainer.args.world_size,
                "method": state.recipe.train.method, "contrastive": state.extras.get("contrastive")}

    def evaluate(self, trainer: Trainer, state: RunState, metrics: dict[str, Any]) -> None:
        domain = state.extras["domain"]
        if domain.report:
            metrics["domain"] = domain.report
        temperature, thresholds = evaluate_texts(trainer, state, metrics)
        recipe, layout, labels = state.recipe, state.layout, state.labels
        multilabel = recipe.task == "multilabel"
        if multilabel and not layout.thresholds.is_file():
            get_task("multilabel").write_thresholds(layout.thresholds, labels, thresholds)
        metrics["training"]["temperature"] = temperature if recipe.task == "classification" else None
        if multilabel:
            metrics["training"]["thresholds"] = dict(zip(labels, thresholds, strict=True))

    def plot(self, trainer: Trainer, state: RunState, metrics: dict[str, Any]) -> None:
        super().plot(trainer, state, metrics)
        if state.recipe.task == "classification" and state.labels is not None:
            confusion_plots(state.layout, metrics, state.labels)

    def finishing_steps(self, state: RunState, predictor: Callable[[], Any]) -> list[Step]:
        recipe, layout, test = state.recipe, state.layout, state.data.test
        steps: list[Step] = []
        if test is None or not len(test):
            return steps
        # A resumed finished run (--force) keeps what the user wrote there since: `tuneforge fairness`, `explain`.
        if finishing.wants_fairness_audit(recipe) and not layout.fairness.exists():
            steps.append(("fairness audit", f"tuneforge fairness {layout.root} --data TEST_FILE",
                          lambda: finishing.audit_test_split(layout, recipe, test, predictor())))
        if recipe.evaluation.explain_examples > 0 and recipe.task in ("classification", "regression") and \
                not layout.explanations.exists():
            steps.append(("example explanations", f"tuneforge explain {layout.root} --data TEST_FILE",
                          lambda: finishing.explain_test_examples(layout, recipe, test, predictor())))
        return steps


class TaggingPipeline(TextPipeline):
    """token classification: one tag per word, scored by entity (seqeval)."""

    tagging = True

    def load_data(self, state: RunState) -> Any:
        return prepare_token_data(state.recipe)

    def domain_texts(self, state: RunState) -> list[str]:
        return []  # rules would move words away from their tags; vocabulary and pretraining still apply

    def class_weights(self, state: RunState) -> Any:
        counts = Counter(tag for row in state.data.train[TAG_FIELD] for tag in row)
        # Tags are always imbalanced (O dominates), so only an explicit ask weights them, never the auto switch.
        return decide_class_weights(state.recipe, state.labels, [counts.get(tag, 0) for tag in state.labels],
                                    auto_switch=False)

    def tokenize(self, state: RunState) -> dict[str, Any]:
        align = AlignLabels(state.tokenizer, {tag: i for i, tag in enumerate(state.labels)},
                            state.recipe.train.max_length)
        return {role: split.map(align, batched=True, remove_columns=split.column_names, desc=f"tokenizing {role}")
                for role, split in _splits(state.data)}

    def evaluate(self, trainer: Trainer, state: RunState, metrics: dict[str, Any]) -> None:
        domain = state.extras["domain"]
        if domain.report:
            metrics["domain"] = domain.report
        for role in ("validation", "test"):
            split = getattr(state.data, role)
            if split is not None:
                path = state.layout.test_predictions_jsonl if role == "test" else None
                metrics[role] = evaluate_tagging(trainer, state, split, role, path)
        metrics["training"]["temperature"] = None

    def finishing_steps(self, state: RunState, predictor: Callable[[], Any]) -> list[Step]:
        return []  # fairness and explanations are about whole-text classes


def _splits(data: Any) -> list[tuple[str, Any]]:
    return [(role, split) for role, split in (("train", data.train), ("validation", data.validation),
                                               ("test", data.test)) if split is not None]


def evaluate_texts(trainer: Trainer, state: RunState, metrics: dict[str, Any]) -> tuple[float, list[float] | None]:
    """Validation and test metrics of a whole-text task, with the temperature (classification) or per-label
    thresholds (multilabel) fitted on validation; returns (temperature, thresholds)."""
    recipe, data, layout = state.recipe, state.data, state.layout
    task = get_task(recipe.task)
    multilabel = recipe.task == "multilabel"
    temperature = 1.0
    thresholds: list[float] | None = [0.5] * len(data.labels) if multilabel else None
    for role in ("validation", "test"):
        split = getattr(data, role)
        if split is None:
            continue
        logits, truth, loss = predict_split(trainer, state.splits[role], split, role)
        if role == "validation" and multilabel:
            thresholds = task.tune_thresholds(logits, truth)
        if multilabel:  # written before the test split is scored, with 0.5 each when nothing was tuned
            task.write_thresholds(layout.thresholds, data.labels, thresholds)
        elif role == "validation" and data.labels is not None and recipe.calibration.temperature_scaling:
            temperature = fit_temperature(logits, truth)
            write_temperature(layout.calibration, temperature)
        texts = split[recipe.data.text_column]
        pairs = split[recipe.data.text_pair_column] if recipe.data.text_pair_column else None
        sensitive = {name: split[name] for name in recipe.fairness.sensitive_columns if name in split.column_names}
        metrics[role] = analyse_predictions(recipe, data.labels, logits, truth, texts, pairs, temperature,
                                            sensitive, thresholds=thresholds)
        metrics[role]["loss"] = loss
        if role == "test":
            write_test_predictions(state, split, texts, logits, temperature, thresholds)
    return temperature, thresholds


def predict_split(trainer: Trainer, tokenized: Any, split: Any, role: str) -> tuple[np.ndarray, np.ndarray, Any]:
    """(logits, true labels, loss) of one split, checked to be in row order."""
    output = trainer.predict(tokenized, metric_key_prefix=role)
    logits = np.asarray(output.predictions)
    truth = np.asarray(split[LABEL_FIELD])
    if not np.array_equal(np.asarray(output.label_ids).reshape(truth.shape), truth):
        raise TuneforgeError(f"predictions on the {role} split came back out of order",
                             fix="report this as a bug; run with train.group_by_length: false meanwhile")
    return logits, truth, output.metrics.get(f"{role}_loss")


def write_test_predictions(state: RunState, split: Any, texts: list[Any], logits: np.ndarray, temperature: float,
                           thresholds: list[float] | None) -> None:
    from tuneforge.predict.io import predictions_frame

    recipe, labels = state.recipe, state.labels
    task = get_task(recipe.task)
    if recipe.task == "multilabel":
        truths = ["|".join(name for name, value in zip(labels, row, strict=True) if value >= 0.5)
                  for row in split[LABEL_FIELD]]
        rows = task.decode(logits, labels, thresholds)
    else:
        truths = split[recipe.data.label_column]
        rows = task.decode(logits / temperature if labels is not None else logits, labels)
    frame = predictions_frame(texts, rows, truths)
    artifacts.write_with(state.layout.test_predictions, lambda target: frame.to_csv(target, index=False))


def evaluate_tagging(trainer: Trainer, state: RunState, split: Any, role: str, predictions_path: Path | None
                     ) -> dict[str, Any]:
    """Entity-level metrics of one split and, for the test split, one JSON line per sentence with its words,
    true and predicted tags and predicted entities."""
    labels = state.labels
    output = trainer.predict(state.splits[role], metric_key_prefix=role)
    logits, label_ids = np.asarray(output.predictions), np.asarray(output.label_ids)
    result = get_task("token-classification").compute_metrics(logits, label_ids, labels)
    result["loss"] = output.metrics.get(f"{role}_loss")
    if predictions_path is not None:
        words, tags = list(split[TOKEN_FIELD]), list(split[TAG_FIELD])
        encoded = state.tokenizer(words, is_split_into_words=True, truncation=True,
                                  max_length=state.recipe.train.max_length)
        rows = []
        for index, (sentence, truth) in enumerate(zip(words, tags, strict=True)):
            word_ids = encoded.word_ids(index)
            decoded = decode_words(logits[index][:len(word_ids)], word_ids, sentence, labels)
            rows.append({"tokens": sentence, "tags": truth, "predicted": decoded["tags"],
                         "entities": decoded["entities"]})
        artifacts.write_text(predictions_path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return result


def confusion_plots(layout: Any, metrics: dict[str, Any], labels: list[str]) -> None:
    """The confusion matrix and reliability diagram of the test split (else validation)."""
    for role in ("test", "validation"):
        if role in metrics:
            matrix = metrics[role]["confusion_matrix"]["matrix"]
            plots.confusion_matrix(matrix, labels, layout.confusion_matrix, f"Confusion matrix ({role})")
            reliability = (metrics[role].get("calibration") or {}).get("reliability")
            if reliability:
                reliability_diagram(reliability, layout.reliability_diagram, f"Reliability ({role})")
            return

