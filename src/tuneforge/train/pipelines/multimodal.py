"""The pipeline of multimodal runs: the recipe's typed feature columns fused with the text encoder.

Same loop, arguments, losses, class weights, early stopping and logs as a text run; what differs is the data
(tables with typed columns, preprocessing fitted on the training split), the model (models/multimodal.py), how it
is saved (model/ plus features.json) and its after-training step (modality contributions).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainingArguments

from tuneforge import artifacts
from tuneforge.data.class_weights import decide_class_weights
from tuneforge.data.features import (
    FEATURES_FILE,
    FeatureColumns,
    FeatureSpecFile,
    MultimodalCollator,
    TabularPreprocessor,
    encode_rows,
)
from tuneforge.data.multimodal import RowsDataset, prepare_multimodal_data, targets
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.calibration import fit_temperature, write_temperature
from tuneforge.evaluate.scoring import analyse_predictions
from tuneforge.explain.modality import explain_held_out
from tuneforge.models.freezing import apply_freezing, count_parameters, set_trainable
from tuneforge.models.loading import load_tokenizer
from tuneforge.models.multimodal import MultimodalConfig, MultimodalModel, load_encoder
from tuneforge.models.resolve import resolve_model
from tuneforge.recipe import Recipe
from tuneforge.tasks import get_task
from tuneforge.train.losses import build_loss
from tuneforge.train.pipelines.base import RunPipeline, RunState, Step, Warnings
from tuneforge.train.pipelines.classifier import confusion_plots


class MultimodalPipeline(RunPipeline):
    """classification or regression over text plus tabular, image or audio columns."""

    def prepare(self, state: RunState, on_warnings: Warnings) -> None:
        recipe = state.recipe
        data = state.data = prepare_multimodal_data(recipe)
        if on_warnings is not None and data.warnings:
            on_warnings(data.warnings)
        columns = FeatureColumns.from_recipe(recipe)
        spec = FeatureSpecFile(columns, TabularPreprocessor.fit(data.train.frame, columns, data.train.source),
                               recipe.features.audio_max_seconds)
        model, processors = build_model(recipe, spec, data.labels)
        state.model, state.tokenizer = model, None
        state.extras.update(spec=spec, processors=processors)
        state.parameters = count_parameters(model)
        separator = text_separator(processors["text"])
        encoded = {role: encode_rows(split.frame, spec, separator, split.source, split.base_dir,
                                     targets(split, recipe, data.labels)) for role, split in data.splits()}
        if not any(p.requires_grad for p in model.text_encoder.parameters()):
            resolved = resolve_model(recipe.model.name)
            key = (resolved.path, recipe.model.revision, recipe.train.max_length)
            for rows in encoded.values():
                rows.text_vectors = frozen_text_vectors(model, processors["text"], rows.texts, key,
                                                        recipe.train.max_length, recipe.train.eval_batch_size,
                                                        state.device)
        state.extras["encoded"] = encoded
        state.splits = {role: RowsDataset(rows) for role, rows in encoded.items()}
        counts = Counter(encoded["train"].labels) if data.labels else Counter()
        if data.labels:
            state.class_weights = decide_class_weights(recipe, data.labels,
                                                       [counts.get(i, 0) for i in range(len(data.labels))],
                                                       rows=len(encoded["train"]))
        artifacts.write_json(state.layout.data_summary, {
            "sources": {role: split.source for role, split in data.splits()},
            "rows": {role: len(rows) for role, rows in encoded.items()},
            "labels": data.labels, "features": spec.to_dict()["columns"],
            "train_class_counts": {name: counts.get(i, 0) for i, name in enumerate(data.labels)}
            if data.labels else None,
            "warnings": [str(w) for w in data.warnings]})

    def collator(self, state: RunState) -> Any:
        processors = state.extras["processors"]
        return MultimodalCollator(processors["text"], state.recipe.train.max_length, processors.get("image"),
                                  processors.get("audio"), state.extras["spec"].audio_max_seconds,
                                  state.recipe.task == "regression")

    def loss(self, state: RunState) -> Callable[..., torch.Tensor]:
        return build_loss(state.recipe, state.class_weights.as_list() if state.class_weights else None)

    def adjust_arguments(self, args: TrainingArguments, state: RunState) -> None:
        args.train_sampling_strategy = "random"  # rows have no token ids to group by length before collation

    def sizing_model(self, state: RunState) -> Any:
        return state.model.text_encoder

    def probe_inputs(self, state: RunState) -> None:
        return None  # typed columns cannot be made up: the batch is estimated from the text encoder

    def save(self, trainer: Trainer, state: RunState) -> None:
        trained = trainer.accelerator.unwrap_model(trainer.model)
        state.extras["spec"].save(state.layout.root / FEATURES_FILE)
        artifacts.write_directory(state.layout.model,
                                  functools.partial(trained.save, processors=state.extras["processors"]))

    def training_metrics(self, trainer: Trainer, state: RunState) -> dict[str, Any]:
        return {"train_examples": len(state.extras["encoded"]["train"])}

    def evaluate(self, trainer: Trainer, state: RunState, metrics: dict[str, Any]) -> None:
        recipe, labels = state.recipe, state.labels
        trained = trainer.accelerator.unwrap_model(trainer.model)
        metrics["multimodal"] = {"combiner": recipe.features.combiner, "modalities": trained.config_data.modalities(),
                                 "columns": state.extras["spec"].to_dict()["columns"]}
        temperature = 1.0
        for role in ("validation", "test"):
            rows = state.extras["encoded"].get(role)
            if rows is None:
                continue
            output = trainer.predict(RowsDataset(rows), metric_key_prefix=role)
            logits, truth = np.asarray(output.predictions), np.asarray(rows.labels)
            if role == "validation" and labels and recipe.calibration.temperature_scaling:
                temperature = fit_temperature(logits, truth)
                write_temperature(state.layout.calibration, temperature)
            metrics[role] = analyse_predictions(recipe, labels, logits, truth, rows.texts, None, temperature)
            metrics[role]["loss"] = output.metrics.get(f"{role}_loss")
            if role == "test":
                _write_test_predictions(state, rows.texts, logits, temperature)
        metrics["training"]["temperature"] = temperature if labels else None

    def plot(self, trainer: Trainer, state: RunState, metrics: dict[str, Any]) -> None:
        super().plot(trainer, state, metrics)
        if state.labels:
            confusion_plots(state.layout, metrics, state.labels)

    def finishing_steps(self, state: RunState, predictor: Callable[[], Any]) -> list[Step]:
        recipe, layout = state.recipe, state.layout
        split = state.data.test or state.data.validation
        if split is None or recipe.evaluation.explain_examples <= 0:
            return []
        return [("modality contributions", f"tuneforge explain {layout.root} --data FILE",
                 lambda: explain_held_out(predictor(), split, layout.explanations))]


def _write_test_predictions(state: RunState, texts: list[Any], logits: np.ndarray, temperature: float) -> None:
    from tuneforge.predict.io import predictions_frame

    labels = state.labels
    scaled = logits / temperature if labels else logits
    rows = get_task(state.recipe.task).decode(scaled, labels)
    frame = predictions_frame(texts, rows, state.data.test.frame[state.recipe.data.label_column].tolist())
    artifacts.write_with(state.layout.test_predictions, lambda target: frame.to_csv(target, index=False))


def text_separator(tokenizer: Any) -> str:
    return tokenizer.sep_token or tokenizer.eos_token or "|"


def build_model(recipe: Recipe, spec: FeatureSpecFile, labels: list[str] | None
                ) -> tuple[MultimodalModel, dict[str, Any]]:
    """Pretrained encoders (text from model.name, image/audio from the features section) and new fusion layers."""
    from transformers import AutoFeatureExtractor, AutoImageProcessor

    features = recipe.features
    resolved = resolve_model(recipe.model.name)
    tokenizer = load_tokenizer(recipe.model, resolved)
    text = load_encoder(resolved.path, "text", recipe.model.trust_remote_code, resolved.offline)
    processors: dict[str, Any] = {"text": tokenizer}
    image = audio = None
    audio_input = "input_values"
    if features.image:
        found = resolve_model(features.image_encoder or "")
        image = load_encoder(found.path, "image", recipe.model.trust_remote_code, found.offline)
        processors["image"] = _processor(AutoImageProcessor, found.path, "image")
    if features.audio:
        found = resolve_model(features.audio_encoder or "")
        audio = load_encoder(found.path, "audio", recipe.model.trust_remote_code, found.offline)
        processors["audio"] = _processor(AutoFeatureExtractor, found.path, "audio")
        audio_input = processors["audio"].model_input_names[0]
    config = MultimodalConfig(
        task=recipe.task, num_labels=len(labels) if labels else 1, labels=labels, combiner=features.combiner,
        fusion_hidden=features.fusion_hidden, dropout=features.fusion_dropout,
        numeric_width=spec.tabular.numeric_width, vocabulary_sizes=spec.tabular.vocabulary_sizes(),
        categorical_embedding_dim=features.categorical_embedding_dim,
        categorical_columns=list(spec.tabular.vocabularies), image_columns=list(features.image),
        audio_columns=list(features.audio), audio_input_name=audio_input)
    torch.manual_seed(recipe.train.seed)  # the new fusion layers start the same in every run of a recipe
    model = MultimodalModel(config, text, image, audio)
    if recipe.freeze.gradual_unfreeze:
        raise TuneforgeError("freeze.gradual_unfreeze is not available for multimodal runs",
                             fix="use freeze.all_but_head (text encoder fixed) or freeze.layers")
    apply_freezing(text, recipe.freeze)  # all_but_head keeps the whole text encoder fixed
    for encoder in (image, audio):
        if encoder is not None:
            set_trainable(encoder, not features.freeze_encoders)
    return model, processors


# Pooled states of frozen text encoders, keyed by (checkpoint, revision, max_length) and text: a frozen encoder
# gives every text the same vector in every epoch and in every run of the same checkpoint (several combiners
# compared on one data set, a hyperparameter search), so each text goes through it once per process.
_TEXT_VECTORS: dict[tuple[Any, ...], dict[str, np.ndarray]] = {}
_CACHE_LIMIT = 200_000


def frozen_text_vectors(model: MultimodalModel, tokenizer: Any, texts: list[str], key: tuple[Any, ...],
                        max_length: int, batch_size: int, device: torch.device) -> np.ndarray:
    """The frozen text encoder's pooled vector of every text, computed once (batches sorted by length)."""
    cache = _TEXT_VECTORS.setdefault(key, {})
    if len(cache) > _CACHE_LIMIT:
        cache.clear()
    missing = sorted({t for t in texts if t not in cache}, key=len)
    encoder = model.text_encoder.to(device).eval()
    with torch.inference_mode():
        for start in range(0, len(missing), batch_size):
            chunk = missing[start:start + batch_size]
            batch = tokenizer(chunk, truncation=True, max_length=max_length, padding=True,
                              return_tensors="pt").to(device)
            vectors = model.text_vector(**batch).float().cpu().numpy()
            cache.update(zip(chunk, vectors, strict=True))
    del encoder
    return np.stack([cache[t] for t in texts]) if texts else np.zeros((0, 1), dtype=np.float32)


def _processor(auto_class: Any, path: str, what: str) -> Any:
    try:
        return auto_class.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise TuneforgeError(f"the {what} encoder '{path}' has no usable processor: {str(error).splitlines()[0]}",
                             fix=f"save the encoder's {'image processor' if what == 'image' else 'feature extractor'}"
                                 " (preprocessor_config.json) in its folder") from None


