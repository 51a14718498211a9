"""Prediction and evaluation of generative runs (seq2seq, causal-lm): inputs to token ids the way training built
them, generation with the recipe's settings, text metrics against references, and classification as text.

Shared by training (metrics after the last step), `GenerativePredictor.generate` / `predict`, `tuneforge predict`
and `tuneforge evaluate`, so every path turns an input into the same prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tuneforge import kinds
from tuneforge.data.domain_rules import read_rules
from tuneforge.errors import DataError, Problem, TuneforgeError
from tuneforge.predict import checks
from tuneforge.predict.protocol import LoadRequest
from tuneforge.predict.registry import loads
from tuneforge.predict.text import Predictor, load_model
from tuneforge.recipe import Recipe
from tuneforge.run import RunLayout
from tuneforge.runtime import pick_device
from tuneforge.tasks import causal_lm, seq2seq
from tuneforge.tasks.generation import generate, text_metrics

Chat = list[dict[str, str]]


# ------------------------------------------------------------------------------------------------------
# Inputs as the model saw them in training
# ------------------------------------------------------------------------------------------------------

def is_chat_run(recipe: Recipe) -> bool:
    return recipe.task == "causal-lm" and bool(recipe.data.messages_column) and not recipe.lm.classify


def input_column(recipe: Recipe) -> str:
    """The file column `tuneforge predict` reads by default."""
    spec = recipe.data
    if recipe.task == "seq2seq" or recipe.lm.classify:
        return spec.text_column
    return spec.messages_column if is_chat_run(recipe) else spec.prompt_column


def encode_input(recipe: Recipe, tokenizer: Any, value: str | Chat) -> list[int]:
    """Token ids to generate from: a source (seq2seq), a prompt, a text put in the classification prompt, or a
    chat (list of messages, or a plain text taken as one user message) rendered with the run's chat template."""
    if recipe.task == "seq2seq":
        return seq2seq.source_ids(tokenizer, str(value), recipe.train.max_length)
    if recipe.lm.classify:
        return causal_lm.prompt_ids(tokenizer, recipe.lm.prompt_template.replace("{text}", str(value)))
    if is_chat_run(recipe) or not isinstance(value, str):
        try:
            messages = causal_lm.parse_messages(value)
        except ValueError:
            if not isinstance(value, str):
                raise
            messages = [{"role": "user", "content": value}]  # a plain text is one user message
        return causal_lm.chat_prompt_ids(tokenizer, causal_lm.with_system(messages, recipe.lm.system_prompt))
    return causal_lm.prompt_ids(tokenizer, value)


def _truncate_left(ids: list[int], max_length: int) -> list[int]:
    return ids[-max_length:] if len(ids) > max_length else ids


def model_inputs(recipe: Recipe, tokenizer: Any, split: Any) -> tuple[list[str], list[list[int]], list[str]]:
    """(shown input, token ids to generate from, reference text) of each row of a normalised split
    (see data/generative_data.py)."""
    if recipe.task == "seq2seq":
        texts = list(split["source"])
        ids = [seq2seq.source_ids(tokenizer, text, recipe.train.max_length) for text in texts]
        return texts, ids, list(split["target"])
    limit = recipe.train.max_length
    if "messages" in split.column_names:
        shown, ids, references = [], [], []
        for raw in split["messages"]:
            messages = causal_lm.parse_messages(raw)
            last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
            shown.append(messages[last - 1]["content"] if last else "")
            ids.append(_truncate_left(causal_lm.chat_prompt_ids(tokenizer, messages), limit))
            references.append(messages[last]["content"])
        return shown, ids, references
    prompts = list(split["prompt"])
    return (prompts, [_truncate_left(causal_lm.prompt_ids(tokenizer, p), limit) for p in prompts],
            [r.strip() for r in split["response"]])


# ------------------------------------------------------------------------------------------------------
# Generating, classifying, scoring
# ------------------------------------------------------------------------------------------------------

def classify(recipe: Recipe, model: Any, tokenizer: Any, prompts: list[list[int]], labels: list[str],
             device: torch.device) -> list[dict[str, Any]]:
    """Classification as text: a label (with probabilities when scored by likelihood) per prompt."""
    if recipe.lm.label_scoring == "likelihood":
        scores = causal_lm.label_log_likelihoods(model, tokenizer, prompts, labels, recipe.lm.prompt_template,
                                                 device, recipe.generation.batch_size)
        return causal_lm.decode_scores(scores, labels)
    texts = generate(model, tokenizer, prompts, recipe.generation, device, decoder_only=True)
    return [{"label": causal_lm.closest_label(text, labels), "generated": text} for text in texts]


def _limit(split: Any, count: int) -> Any:
    return split if count <= 0 or len(split) <= count else split.select(range(count))


def evaluate_split(recipe: Recipe, model: Any, tokenizer: Any, split: Any, labels: list[str] | None,
                   device: torch.device, limit: int | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Text metrics (or accuracy and macro-F1) of a normalised split's first `limit` rows (default
    `generation.eval_examples`), and one row per example: input, reference and generated text (or label)."""
    rows = _limit(split, recipe.generation.eval_examples if limit is None else limit)
    shown, ids, references = model_inputs(recipe, tokenizer, rows)
    if labels is not None:
        decoded = classify(recipe, model, tokenizer, ids, labels, device)
        predicted = [row["label"] for row in decoded]
        result = causal_lm.classification_metrics(predicted, list(rows["label"]), labels)
        return result, [{"input": s, "reference": t, "predicted": row["label"], **_probabilities(row)}
                        for s, t, row in zip(shown, rows["label"], decoded, strict=True)]
    generated = generate(model, tokenizer, ids, recipe.generation, device, decoder_only=recipe.task == "causal-lm")
    return text_metrics(generated, references), [{"input": s, "reference": r, "generated": g}
                                                 for s, r, g in zip(shown, references, generated, strict=True)]


def _probabilities(row: dict[str, Any]) -> dict[str, Any]:
    return {f"prob_{name}": value for name, value in (row.get("probabilities") or {}).items()}


def run_labels(run_dir: Path | None) -> list[str]:
    """The label set of a classification-as-text run, as metrics.json records it."""
    if run_dir is None:
        raise TuneforgeError("the labels of this classification-as-text run are unknown (it was not loaded from a "
                             "run directory)", fix="load the predictor from a finished run directory "
                                                   "(tuneforge.load(RUN))")
    path = RunLayout(run_dir).metrics
    labels = checks.read_json(path).get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise checks.RunDamaged(f"{path} names no labels", fix=f"{checks.RESTORE} (with lm.classify: true)")
    return list(labels)


def generate_texts(predictor: Any, inputs: Sequence[str | Chat], batch_size: int | None = None,
                   **settings: Any) -> list[str]:
    """What `Predictor.generate` returns: one generated text per input; `settings` override the recipe's
    generation section for this call (e.g. max_new_tokens=20, do_sample=True)."""
    recipe: Recipe = predictor.recipe
    if isinstance(inputs, str):
        raise TypeError("generate takes a list of prompts; wrap a single prompt in a list")
    known = type(recipe.generation).model_fields
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise TuneforgeError(f"unknown generation settings {unknown}",
                             fix=f"use fields of the generation section: {', '.join(known)}")
    spec = recipe.generation.model_copy(update={k: v for k, v in settings.items() if v is not None})
    if batch_size is not None:
        spec.batch_size = batch_size
    ids = [encode_input(recipe, predictor.tokenizer, value) for value in inputs]
    return generate(predictor.model, predictor.tokenizer, ids, spec, predictor.device,
                    decoder_only=recipe.task == "causal-lm")


def predict_rows(predictor: Any, inputs: Sequence[str | Chat], batch_size: int | None = None
                 ) -> list[dict[str, Any]]:
    """What `Predictor.predict` returns for a generative run: {"generated": text} per input, or for
    classification as text {"label", "score", "probabilities"} (likelihood scoring) or {"label", "generated"}."""
    recipe: Recipe = predictor.recipe
    if recipe.lm.classify:
        labels = run_labels(getattr(predictor, "run_dir", None))
        ids = [encode_input(recipe, predictor.tokenizer, value) for value in inputs]
        return classify(recipe, predictor.model, predictor.tokenizer, ids, labels, predictor.device)
    return [{"generated": text} for text in generate_texts(predictor, inputs, batch_size)]


# ------------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------------

def read_inputs(path: str | Path, recipe: Recipe, column: str | None = None) -> list[str | Chat]:
    """The inputs of a file for `tuneforge predict`: the run's input column (or `column`); chats stay lists."""
    from tuneforge.data import validation as checks
    from tuneforge.data.loading import read_table

    table = read_table(path, "test")
    name = column or input_column(recipe)
    problems = checks.check_columns(str(path), table.column_names, [name],
                                    fix="name the input column with --text-column")
    if problems:
        raise DataError(problems)
    values: list[str | Chat] = []
    for index, value in enumerate(table[name]):
        if isinstance(value, list):
            try:
                values.append(causal_lm.parse_messages(value))
            except ValueError as error:
                raise DataError([Problem(where=f"{path}: row {index + 1}", message=f"the chat in '{name}' {error}",
                                         fix="write each chat as a list of {role, content}")]) from None
        else:
            values.append("" if value is None else str(value))
    return values


def evaluate_file(predictor: Any, path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`tuneforge evaluate` of a generative run: the run's columns read from `path`, every row scored."""
    from tuneforge.data import validation as checks
    from tuneforge.data.generative_data import input_columns, normalise_table
    from tuneforge.data.loading import read_table

    recipe: Recipe = predictor.recipe
    table = read_table(path, "test")
    problems = checks.check_columns(str(path), table.column_names, input_columns(recipe))
    if problems:
        raise DataError(problems)
    problems = []
    split = normalise_table(recipe, str(path), table, problems)
    if problems:
        raise DataError(problems)
    labels = run_labels(getattr(predictor, "run_dir", None)) if recipe.lm.classify else None
    metrics, rows = evaluate_split(recipe, predictor.model, predictor.tokenizer, split, labels, predictor.device,
                                   limit=0)
    return {"task": recipe.task, **metrics}, rows


# ------------------------------------------------------------------------------------------------------
# The predictor
# ------------------------------------------------------------------------------------------------------

class GenerativePredictor(Predictor):
    """A seq2seq or causal-LM run: `generate` writes text per input, `predict` gives {"generated": text} rows (a
    label per input for classification as text). It has no class logits."""

    def predict(self, texts: Sequence[str | Chat], pairs: Sequence[str] | None = None, batch_size: int = 64
                ) -> list[dict[str, Any]]:
        return predict_rows(self, texts, batch_size)

    def generate(self, prompts: Sequence[Any], batch_size: int | None = None, **settings: Any) -> list[str]:
        """Generated text per prompt (seq2seq: source text; causal-lm: prompt, or a chat as a list of
        {role, content}); `settings` override the run's generation section, e.g. max_new_tokens=20."""
        return generate_texts(self, prompts, batch_size, **settings)

    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 64) -> Any:
        raise TuneforgeError(f"a {self.recipe.task} run writes text; it has no class logits or probabilities",
                             fix="use predict() (a label per input for classification as text) or generate()")

    probabilities = logits


@loads(kinds.GENERATIVE)
def load_generative(request: LoadRequest) -> GenerativePredictor:
    """A seq2seq or causal-LM run: its model (or base + adapter) and tokenizer, and for classification as text
    the label set in metrics.json, checked now rather than on the first prediction."""
    rules = read_rules(request.root, request.trust)
    model, tokenizer = load_model(request, labelled=False)
    if request.recipe.lm.classify:
        run_labels(request.root)
    predictor = GenerativePredictor(model, tokenizer, request.recipe, pick_device(request.device))
    return predictor.bind(request, rules)  # type: ignore[return-value]
