"""The predictor of text, multilabel and token-classification runs (and of one task of a multi-task run), and
the loading of a run's Transformers model that the generative predictor shares."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuneforge import kinds
from tuneforge.data.domain_rules import read_rules
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.calibration import check_temperature, scaled_probabilities
from tuneforge.kinds import RunKind, kind_of
from tuneforge.models.peft import load_run_model
from tuneforge.predict import checks
from tuneforge.predict.onnx import load_onnx
from tuneforge.predict.protocol import LoadRequest, RunPredictor
from tuneforge.predict.registry import load, loads
from tuneforge.recipe import Recipe
from tuneforge.runtime import cpu_bf16_native, pick_device
from tuneforge.tasks import get_task
from tuneforge.trust import RunCodeTrust


class Predictor:
    """A fine-tuned model with its tokenizer and task, ready to score texts.

    `temperature` divides classification logits before they become probabilities (temperature scaling; the run's
    calibration.json). It never changes the predicted label, only how confident the probabilities are.
    """

    def __init__(self, model: Any, tokenizer: Any, recipe: Recipe, device: torch.device,
                 temperature: float = 1.0, thresholds: Sequence[float] | None = None) -> None:
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.recipe = recipe
        self.device = device
        self.task = get_task(recipe.task)
        names = label_names(model)
        self.labels: list[str] | None = names if recipe.task == "classification" else None
        self.temperature = check_temperature(temperature, "Predictor") if self.labels is not None else 1.0
        # Token classification: tag names in id order; `labels` stays None because every whole-text consumer
        # (calibration, fairness, attributions) reads it as "one class per text".
        self.tags: list[str] | None = names if recipe.task == "token-classification" else None
        # Multilabel: label names in id order and one decision threshold each (the run's thresholds.json); like
        # `tags`, kept apart from `labels`, which whole-text single-label consumers read.
        self.multilabels: list[str] | None = names if recipe.task == "multilabel" else None
        self.thresholds: list[float] | None = None
        self.rules: Any = None  # domain preprocessing (data/domain_rules.py), applied before tokenising
        self.run_dir: Path | None = None  # set by its loader; a classification-as-text run reads its labels there
        self.trust = RunCodeTrust(allow_all=True)  # its loader narrows it; a predictor built in code is the caller's
        self.precision = "fp32"  # "bf16": autocast on a GPU or a CPU with native bf16 (see use_precision)
        self.kind: RunKind = kind_of(recipe)  # a loader sets the kind the run directory was written as
        if self.multilabels is not None:
            self.thresholds = [float(t) for t in thresholds] if thresholds is not None else \
                [0.5] * len(self.multilabels)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "auto", backend: str = "torch",
                 task_name: str | None = None, trust_run_code: bool | RunCodeTrust = False) -> RunPredictor:
        """The predictor of any run directory, dispatched on the run's kind (`tuneforge.predict.load`): this
        class for text, multilabel and token-classification runs, and for one task of a multi-task run
        (`task_name`); the generative, multimodal and ensemble predictors, with this interface, for the others.
        `backend="onnx"` scores with ONNX Runtime on the CPU from the run's onnx/ export.

        A run whose recipe names code (domain functions, evaluation plugins, remote model code) is refused unless
        `trust_run_code` is True or the user's settings file allows each path (see `tuneforge.trust`)."""
        return load(run_dir, device, backend=backend, task_name=task_name, trust_run_code=trust_run_code)

    def bind(self, request: LoadRequest, rules: Any = None) -> Predictor:
        """Tie a predictor built by a loader to its run: kind, folder, trust and domain rules. Returns self."""
        self.kind = request.kind
        self.run_dir = request.root
        self.trust = request.trust
        self.rules = rules
        return self

    def use_precision(self, precision: str) -> Predictor:
        """`bf16` scores under bf16 autocast (about 1.5x faster on CPUs with AVX-512 BF16 or AMX; labels rarely
        change, probabilities move in the third decimal); `fp32` is exact. Returns self."""
        if precision not in ("fp32", "bf16"):
            raise TuneforgeError(f"unknown precision '{precision}'", fix="use fp32 or bf16")
        if precision == "bf16" and self.device.type == "cpu":
            if not cpu_bf16_native():
                raise TuneforgeError("bf16 prediction needs a GPU or a CPU with AVX-512 BF16 or AMX; this CPU has "
                                     "neither, so bf16 would be emulated and slower", fix="use precision fp32")
        self.precision = precision
        return self

    @torch.inference_mode()
    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 64) -> np.ndarray:
        """Raw model outputs in input order; batches are sorted by length so little goes to padding."""
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts; wrap a single text in a list")
        texts = [str(t) for t in texts]
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError("pairs must have one entry per text")
        if self.rules is not None:
            texts = self.rules.apply(texts)
            pairs = self.rules.apply([str(p) for p in pairs]) if pairs is not None else None
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        outputs: list[np.ndarray] = [np.empty(0)] * len(texts)
        max_length = self.recipe.train.max_length
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            encoded = self.tokenizer(
                [texts[i] for i in chunk],
                [str(pairs[i]) for i in chunk] if pairs is not None else None,
                truncation=True, max_length=max_length, padding=True, return_tensors="pt",
            ).to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                logits = self.model(**encoded).logits.float().cpu().numpy()
            for position, index in enumerate(chunk):
                outputs[index] = logits[position]
        width = self.model.config.num_labels
        return np.stack(outputs) if outputs else np.zeros((0, width))

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 64
                ) -> list[dict[str, Any]]:
        """One dict per text: `label`, `score` and `probabilities` (classification), `score` (regression), or
        `tokens`, `tags`, `scores` and `entities` (token classification; a text is split on whitespace unless
        it is already a list of words), or `labels` (those at or above their threshold) and `probabilities`
        (multilabel). A generative run's predictor (`GenerativePredictor`) returns `generated` instead."""
        if self.tags is not None:
            return self.tag(texts, batch_size)
        if self.multilabels is not None:
            return self.task.decode(self.logits(texts, pairs, batch_size), self.multilabels, self.thresholds)
        return self.task.decode(self.scale_logits(self.logits(texts, pairs, batch_size)), self.labels)

    def generate(self, prompts: Sequence[Any], batch_size: int | None = None, **settings: Any) -> list[str]:
        """Only a generative run writes text; its predictor overrides this."""
        raise TuneforgeError(f"generate needs a seq2seq or causal-lm run; this is a {self.recipe.task} run",
                             fix="use predict() for this run")

    @torch.inference_mode()
    def tag(self, texts: Sequence[str | Sequence[str]], batch_size: int = 64) -> list[dict[str, Any]]:
        """Tags per word and entity spans, for a token-classification run."""
        from tuneforge.tasks.token_classification import decode_words

        if self.tags is None:
            raise TuneforgeError(f"tagging needs a token-classification run; this is a {self.recipe.task} run",
                                 fix="use predict() for whole-text predictions")
        if isinstance(texts, str):
            raise TypeError("tag takes a list of texts; wrap a single text in a list")
        sentences = [text.split() if isinstance(text, str) else [str(word) for word in text] for text in texts]
        results: list[dict[str, Any]] = []
        for start in range(0, len(sentences), batch_size):
            chunk = sentences[start:start + batch_size]
            encoded = self.tokenizer(chunk, is_split_into_words=True, truncation=True,
                                     max_length=self.recipe.train.max_length, padding=True, return_tensors="pt")
            logits = self.model(**encoded.to(self.device)).logits.float().cpu().numpy()
            for index, words in enumerate(chunk):
                decoded = decode_words(logits[index], encoded.word_ids(index), words, self.tags)
                results.append({"tokens": words, **decoded})
        return results

    def scale_logits(self, logits: np.ndarray) -> np.ndarray:
        """Logits divided by the run's temperature (classification); regression outputs pass through unchanged."""
        if self.labels is None or self.temperature == 1.0:
            return logits
        return np.asarray(logits, dtype=np.float64) / self.temperature

    def probabilities(self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 64
                      ) -> np.ndarray:
        """Calibrated class probabilities, softmax(logits / T), shaped (texts, classes); classification only."""
        if self.multilabels is not None:
            from tuneforge.tasks.multilabel import probabilities

            return probabilities(self.logits(texts, pairs, batch_size))
        if self.labels is None:
            raise TuneforgeError("probabilities exist for classification runs only; this run is regression",
                                 fix="use Predictor.predict (or .logits) for regression scores")
        return scaled_probabilities(self.logits(texts, pairs, batch_size), self.temperature)


def load_model(request: LoadRequest, labelled: bool) -> tuple[Any, Any]:
    """The run's model and its own tokenizer (model/, or base + adapter), each file checked before it is read."""
    layout = request.layout
    checks.trained_model(layout, labelled)
    folder = layout.model if layout.has_model() else layout.adapter
    with checks.loading(folder):
        model, tokenizer = load_run_model(layout.root, request.trust)
    checks.tokenizer_fits(tokenizer, model.config, folder)
    return model, tokenizer


@loads(kinds.TEXT, kinds.MULTILABEL, kinds.TAGGING)
def load_text(request: LoadRequest) -> Predictor:
    """A text, multilabel or token-classification run: its model (PyTorch, or the ONNX export), the temperature
    (classification) or thresholds (multilabel) it was tuned with, and its domain rules."""
    recipe, layout = request.recipe, request.layout
    rules = read_rules(layout.root, request.trust)  # names code? refused here, before any model is read
    temperature = checks.calibration(layout) if recipe.task == "classification" else 1.0
    if request.backend == "onnx":
        model, tokenizer = load_onnx(request)
        device = "cpu"
    else:
        model, tokenizer = load_model(request, labelled=recipe.task != "regression")
        device = request.device
    thresholds = checks.thresholds(layout, label_names(model)) if recipe.task == "multilabel" else None
    predictor = Predictor(model, tokenizer, recipe, pick_device(device), temperature=temperature,
                          thresholds=thresholds)
    return predictor.bind(request, rules)


def label_names(model: Any) -> list[str]:
    id2label = getattr(model.config, "id2label", None) or {}
    return [id2label[i] for i in sorted(id2label)]
