"""Fine-tuning a multimodal run: the recipe's typed feature columns fused with the text encoder.

The loop is the same Trainer (runner.TuneforgeTrainer) with the same arguments, losses, class weights, early
stopping and logs as a text run; what differs is the data (tables with typed columns, preprocessing fitted on
the training split), the model (models/multimodal.py) and how it is saved (model/ plus features.json).
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from transformers import EarlyStoppingCallback, TrainerCallback, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from tuneforge import artifacts
from tuneforge.data.features import (
    FEATURES_FILE,
    FeatureColumns,
    FeatureSpecFile,
    MultimodalCollator,
    TabularPreprocessor,
    encode_rows,
)
from tuneforge.data.multimodal import MultimodalData, RowsDataset, prepare_multimodal_data, targets
from tuneforge.errors import Problem, TuneforgeError
from tuneforge.evaluate.calibration import fit_temperature, write_temperature
from tuneforge.evaluate.scoring import analyse_predictions
from tuneforge.models.freezing import apply_freezing, count_parameters, set_trainable
from tuneforge.models.loading import load_tokenizer
from tuneforge.models.multimodal import MultimodalConfig, MultimodalModel, load_encoder
from tuneforge.models.resolve import resolve_model
from tuneforge.recipe import Recipe
from tuneforge.run import Run, RunLayout
from tuneforge.runtime import pick_device, resolve_precision
from tuneforge.tasks import get_task
from tuneforge.train.callbacks import JsonlLogCallback
from tuneforge.train.losses import build_loss, resolve_class_weights
from tuneforge.train.runner import (
    TrainingInterrupted,
    TuneforgeTrainer,
    _prepare_run_dir,
    _scalar_metrics,
    _training_arguments,
    _write_plots,
    _write_predictions,
    tensorboard_callback,
)


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


def fine_tune_multimodal(recipe: Recipe, *, resume: bool = False, callbacks: Sequence[TrainerCallback] = (),
                         on_warnings: Callable[[list[Problem]], None] | None = None) -> Run:
    """Train, evaluate and write a multimodal run directory; `runner.fine_tune` hands recipes with features here."""
    recipe = recipe.model_copy(deep=True)
    layout, checkpoint = _prepare_run_dir(recipe, resume)
    recipe.output.dir = str(layout.root)
    artifacts.write_text(layout.recipe, recipe.to_yaml())
    device = pick_device(recipe.train.device)
    set_seed(recipe.train.seed)
    data = prepare_multimodal_data(recipe)
    if on_warnings is not None and data.warnings:
        on_warnings(data.warnings)
    columns = FeatureColumns.from_recipe(recipe)
    spec = FeatureSpecFile(columns, TabularPreprocessor.fit(data.train.frame, columns, data.train.source),
                           recipe.features.audio_max_seconds)
    model, processors = build_model(recipe, spec, data.labels)
    total_parameters, trainable_parameters = count_parameters(model)
    separator = text_separator(processors["text"])
    encoded = {role: encode_rows(split.frame, spec, separator, split.source, split.base_dir,
                                 targets(split, recipe, data.labels)) for role, split in data.splits()}
    if not any(p.requires_grad for p in model.text_encoder.parameters()):
        resolved = resolve_model(recipe.model.name)
        key = (resolved.path, recipe.model.revision, recipe.train.max_length)
        for rows in encoded.values():
            rows.text_vectors = frozen_text_vectors(model, processors["text"], rows.texts, key,
                                                    recipe.train.max_length, recipe.train.eval_batch_size, device)
    counts = Counter(encoded["train"].labels) if data.labels else Counter()
    class_weights = (resolve_class_weights(recipe, data.labels, [counts.get(i, 0) for i in range(len(data.labels))],
                                           rows=len(encoded["train"])) if data.labels else None)
    artifacts.write_json(layout.data_summary, {
        "sources": {role: split.source for role, split in data.splits()},
        "rows": {role: len(rows) for role, rows in encoded.items()},
        "labels": data.labels, "features": spec.to_dict()["columns"],
        "train_class_counts": {name: counts.get(i, 0) for i, name in enumerate(data.labels)} if data.labels else None,
        "warnings": [str(w) for w in data.warnings]})

    has_eval = "validation" in encoded
    metric, greater_is_better = recipe.early_stopping_metric()
    # Rows have no token ids to group by length before collation; batches are shuffled plainly.
    args_recipe = recipe.model_copy(deep=True)
    args_recipe.train.group_by_length = False
    args = _training_arguments(args_recipe, layout, device, has_eval, metric, greater_is_better)
    run_callbacks: list[TrainerCallback] = [JsonlLogCallback(layout.log)]
    if has_eval and recipe.early_stopping.enabled:
        run_callbacks.append(EarlyStoppingCallback(recipe.early_stopping.patience, recipe.early_stopping.min_delta))
    tensorboard = tensorboard_callback(recipe.output.tensorboard, layout.root / "tensorboard")
    if tensorboard is not None:
        run_callbacks.append(tensorboard)
    run_callbacks.extend(callbacks)
    collator = MultimodalCollator(processors["text"], recipe.train.max_length, processors.get("image"),
                                  processors.get("audio"), spec.audio_max_seconds, recipe.task == "regression")
    task = get_task(recipe.task)
    trainer = TuneforgeTrainer(
        model=model, args=args, train_dataset=RowsDataset(encoded["train"]),
        eval_dataset=RowsDataset(encoded["validation"]) if has_eval else None, data_collator=collator,
        compute_metrics=_scalar_metrics(task, data.labels), compute_loss_func=build_loss(recipe, class_weights),
        callbacks=run_callbacks)
    for noisy in (ProgressCallback, PrinterCallback):
        trainer.remove_callback(noisy)

    started = time.time()
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except KeyboardInterrupt:
        raise TrainingInterrupted(f"training was interrupted at step {trainer.state.global_step}; "
                                  f"checkpoints are in {layout.checkpoints}",
                                  fix=f"resume with the same command plus --resume (output: {layout.root})") from None
    trained = trainer.accelerator.unwrap_model(trainer.model)
    spec.save(layout.root / FEATURES_FILE)
    artifacts.write_directory(layout.model, functools.partial(trained.save, processors=processors))

    metrics: dict[str, Any] = {
        "task": recipe.task, "model": recipe.model.name, "labels": data.labels,
        "multimodal": {"combiner": recipe.features.combiner, "modalities": trained.config_data.modalities(),
                       "columns": spec.to_dict()["columns"]},
        "training": {
            "runtime_seconds": round(time.time() - started, 2),
            "train_samples_per_second": result.metrics.get("train_samples_per_second"),
            "global_steps": trainer.state.global_step, "epochs_completed": trainer.state.epoch,
            "stopped_early": trainer.state.global_step < trainer.state.max_steps,
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "best_metric": {metric: trainer.state.best_metric} if has_eval else None,
            "parameters": total_parameters, "trainable_parameters": trainable_parameters,
            "device": device.type, "precision": resolve_precision(recipe.train.precision, device),
            "train_examples": len(encoded["train"]),
            "class_weights": dict(zip(data.labels, class_weights, strict=True)) if class_weights else None,
        },
    }
    temperature = 1.0
    for role in ("validation", "test"):
        if role not in encoded:
            continue
        rows = encoded[role]
        output = trainer.predict(RowsDataset(rows), metric_key_prefix=role)
        logits = np.asarray(output.predictions)
        truth = np.asarray(rows.labels)
        if role == "validation" and data.labels and recipe.calibration.temperature_scaling:
            temperature = fit_temperature(logits, truth)
            write_temperature(layout.calibration, temperature)
        metrics[role] = analyse_predictions(recipe, data.labels, logits, truth, rows.texts, None, temperature)
        metrics[role]["loss"] = output.metrics.get(f"{role}_loss")
        if role == "test":
            scaled = logits / temperature if data.labels else logits
            split = data.test
            assert split is not None
            _write_predictions(layout.test_predictions, rows.texts, split.frame[recipe.data.label_column].tolist(),
                               task.decode(scaled, data.labels))
    metrics["training"]["temperature"] = temperature if data.labels else None
    artifacts.write_json(layout.metrics, metrics)
    _write_plots(layout, trainer.state.log_history, metrics, metric, data.labels)
    del trainer, model
    _finish(layout, recipe, data, on_warnings)
    return Run(layout.root, recipe, metrics)


def _finish(layout: RunLayout, recipe: Recipe, data: MultimodalData,
            on_warnings: Callable[[list[Problem]], None] | None) -> None:
    """Modality contributions on the test (else validation) split, then the report; a failure is a warning."""
    from tuneforge.explain.modality import explain_split
    from tuneforge.report.html import build_report

    steps: list[tuple[str, str, Callable[[], Any]]] = []
    split = data.test or data.validation
    if split is not None and recipe.evaluation.explain_examples > 0:
        steps.append(("modality contributions", f"tuneforge explain {layout.root} --data FILE",
                      lambda: explain_split(layout.root, split, recipe.train.device)))
    steps.append(("report", f"tuneforge report {layout.root}", lambda: build_report(layout.root)))
    failures = []
    for name, command, step in steps:
        try:
            step()
        except Exception as error:  # noqa: BLE001 - the trained model is safe on disk; say what failed, go on
            failures.append(Problem(where=str(layout.root), severity="warning",
                                    message=f"the {name} after training failed: {error}",
                                    fix=f"run it again with `{command}`"))
    if failures and on_warnings is not None:
        on_warnings(failures)


