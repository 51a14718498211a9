"""The recipe: the one schema every entry point (YAML, CLI flags, Python) is validated against.

Every field has a default and a description; `tuneforge init` and the `--set` overrides are generated from
this module, so a new option appears everywhere by being added here once.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tuneforge.errors import Problem, RecipeError

TaskName = Literal["classification", "regression", "token-classification", "multilabel"]
TASK_ALIASES = {"ner": "token-classification", "token_classification": "token-classification",
                "multi-label": "multilabel", "multi_label": "multilabel", "multilabel-classification": "multilabel"}
# Task names that are classification plus a required second text column.
PAIR_TASKS = {"pair-classification": "classification", "pair_classification": "classification",
              "sentence-pair-classification": "classification"}
LABEL_SEPARATORS = ("|", ";", ",")
DEFAULT_MODEL = "minilm"


class Section(BaseModel):
    """Strict base: an unknown key is an error that names the closest known one."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSpec(Section):
    name: str = Field(
        DEFAULT_MODEL,
        description="Bundled alias (see `tuneforge models`), a local Transformers folder, or a hub id when online.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) for hub ids.")
    trust_remote_code: bool = Field(
        False,
        description="Run modelling code shipped with a hub model. Off by default: only enable it for code you trust.",
    )


class DataSpec(Section):
    train: str | None = Field(
        None, description="Training file: CSV, TSV, JSONL/JSON, Parquet, or a `datasets` save folder."
    )
    validation: str | None = Field(None, description="Validation file; carved from train when empty.")
    test: str | None = Field(None, description="Test file; carved from train when empty and test_split > 0.")
    text_column: str = Field("text", description="Column with the input text.")
    text_pair_column: str | None = Field(None, description="Optional second text column (sentence pairs).")
    label_column: str = Field("label", description="Column with the label (class name/id, or a number for regression).")
    label_separator: str | None = Field(
        None,
        description="multilabel: separator of the labels in one text cell, e.g. 'a|b'; empty: auto-detect among "
        "'|', ';' and ','. Lists (JSONL/Parquet) need none; an empty cell means no label.",
    )
    validation_split: float = Field(
        0.1, ge=0.0, lt=1.0, description="Fraction of train held out for validation when no validation file is given."
    )
    test_split: float = Field(
        0.0, ge=0.0, lt=1.0, description="Fraction of train held out for testing when no test file is given."
    )
    stratify: bool = Field(True, description="Keep class proportions in carved splits (classification).")
    split_seed: int = Field(42, description="Seed of the split, so the same data always splits the same way.")
    min_examples_per_class: int = Field(
        2, ge=1, description="A class with fewer training examples than this is an error."
    )
    cache_dir: str | None = Field(
        None, description="Cache for loaded and tokenized data (default: the datasets cache)."
    )

    @field_validator("label_separator")
    @classmethod
    def _separator_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("label_separator cannot be blank; leave it empty to auto-detect '|', ';' or ','")
        return value

    @model_validator(mode="after")
    def _splits_leave_training_data(self) -> DataSpec:
        if self.validation_split + self.test_split >= 0.9:
            raise ValueError("validation_split + test_split must leave at least 10% of the data for training")
        return self


class TrainSpec(Section):
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate of AdamW.")
    batch_size: int = Field(16, ge=1, description="Examples per device per optimisation micro-step.")
    eval_batch_size: int = Field(64, ge=1, description="Examples per device per evaluation step.")
    epochs: float = Field(3.0, gt=0, description="Passes over the training data (ignored when max_steps > 0).")
    max_steps: int = Field(0, ge=0, description="Stop after this many optimisation steps; 0 means use epochs.")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="Fraction of steps with linear learning-rate warm-up.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "linear", description="Learning-rate schedule after warm-up."
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm; 0 turns clipping off.")
    gradient_accumulation_steps: int = Field(
        1, ge=1, description="Micro-steps per optimiser step; the loss is normalised so it does not depend on it."
    )
    max_length: int = Field(128, ge=8, description="Longest input in tokens; longer texts are truncated.")
    seed: int = Field(42, description="Seed for weights of new layers, shuffling and dropout.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto uses a GPU when one is visible.")
    group_by_length: bool = Field(
        True, description="Batch texts of similar length together so less compute goes to padding."
    )
    logging_steps: int = Field(1, ge=1, description="Log loss and learning rate every this many steps (1: every step).")
    save_checkpoints: bool = Field(True, description="Save a checkpoint per epoch so `--resume` can continue a run.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept on disk (the best one is always kept).")
    dataloader_workers: int = Field(0, ge=0, description="Worker processes loading batches.")
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: much less memory for about 30% more time."
    )


class LossSpec(Section):
    name: Literal["auto", "cross_entropy", "weighted_cross_entropy", "focal", "mse", "mae", "huber", "bce"] = Field(
        "auto", description="auto: cross_entropy for classification, mse for regression, bce (binary cross-entropy "
        "with logits, one per label) for multilabel."
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing for cross-entropy losses.")
    focal_gamma: float = Field(2.0, ge=0, description="Focusing parameter of the focal loss.")
    huber_delta: float = Field(1.0, gt=0, description="Where the Huber loss turns from quadratic to linear.")
    class_weights: Literal["balanced"] | dict[str, float] | None = Field(
        None,
        description="Per-class loss weights: 'balanced' (inverse frequency) or {label: weight}. "
        "weighted_cross_entropy uses 'balanced' when this is empty. multilabel: weights of each label's positive "
        "term (pos_weight); 'balanced' gives negatives / positives per label.",
    )


class FreezeSpec(Section):
    embeddings: bool = Field(False, description="Freeze the embedding layer.")
    layers: int = Field(0, ge=0, description="Freeze the first N transformer layers.")
    all_but_head: bool = Field(False, description="Train only the task head (linear probing).")
    gradual_unfreeze: bool = Field(
        False,
        description="Start with only the head trainable and unfreeze one more layer from the top at each epoch "
        "(the embeddings open last, unless `embeddings` keeps them frozen).",
    )


PeftMethod = Literal["none", "lora", "qlora", "ia3", "prompt_tuning", "prefix_tuning"]


class PeftSpec(Section):
    method: PeftMethod = Field(
        "none",
        description="Parameter-efficient fine-tuning: train a small adapter (and the task head) instead of every "
        "weight. qlora is LoRA on a 4-bit base and needs a CUDA GPU with bitsandbytes.",
    )
    r: int = Field(8, ge=1, description="LoRA rank: size of the low-rank update matrices (lora, qlora).")
    alpha: float = Field(16, gt=0, description="LoRA scaling; the update is multiplied by alpha / r (lora, qlora).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA branch's input (lora, qlora).")
    target_modules: Literal["auto"] | list[str] = Field(
        "auto",
        description="Layers that get an adapter (lora, qlora, ia3): auto detects the attention projections of the "
        "architecture, or list module names, e.g. [query, value].",
    )
    num_virtual_tokens: int = Field(
        20, ge=1, description="Trained virtual tokens put before every input (prompt_tuning, prefix_tuning)."
    )
    modules_to_save: Literal["auto"] | list[str] = Field(
        "auto",
        description="Modules trained in full and saved with the adapter; auto: the task head (e.g. classifier, "
        "score), which is new and must train.",
    )

    @field_validator("target_modules", "modules_to_save")
    @classmethod
    def _not_empty(cls, value: Any, info: Any) -> Any:
        if isinstance(value, list) and not [name for name in value if str(name).strip()]:
            raise ValueError(f"an empty {info.field_name} list trains nothing; use auto, or name at least one module")
        return value

    @property
    def enabled(self) -> bool:
        return self.method != "none"


class EarlyStoppingSpec(Section):
    enabled: bool = Field(True, description="Stop when the validation metric stops improving.")
    metric: str = Field("auto", description="Metric to watch; auto: f1_macro (classification), rmse (regression), "
                                             "f1 (token-classification) or f1_micro (multilabel).")
    mode: Literal["auto", "max", "min"] = Field("auto", description="Whether larger or smaller is better.")
    patience: int = Field(2, ge=1, description="Evaluations without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as an improvement.")
    restore_best: bool = Field(True, description="Keep the best checkpoint's weights rather than the last ones.")


class ImbalanceSpec(Section):
    class_weights: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Weight the loss by inverse class frequency: auto turns it on when the largest class is "
        "at least `ratio_threshold` times the smallest.",
    )
    ratio_threshold: float = Field(1.5, ge=1, description="Imbalance ratio above which auto weighting starts.")
    oversample: bool = Field(False, description="Repeat minority-class training rows until classes are even.")


AugmentMethod = Literal["synonym", "eda", "shuffle", "back_translation"]
# Which options belong to which method, so an option given to the wrong method is an error, not ignored.
AUGMENT_OPTIONS = {
    "synonym": ("fraction", "wordnet_dir"),
    "eda": ("alpha_sr", "alpha_ri", "alpha_rs", "alpha_rd", "wordnet_dir"),
    "shuffle": ("words",),
    "back_translation": ("pivots", "source_language", "models", "batch_size", "timeout"),
}


class AugmentMethodSpec(Section):
    method: AugmentMethod = Field(description="The augmenter.")
    ratio: float = Field(
        1.0, gt=0, le=20, description="New examples per original; a fraction augments that share of the rows."
    )
    fraction: float = Field(
        0.15, gt=0, le=1, description="synonym: share of the eligible words replaced (at least one)."
    )
    alpha_sr: float = Field(0.1, ge=0, le=1, description="eda: share of words replaced by synonyms (0: off).")
    alpha_ri: float = Field(0.1, ge=0, le=1, description="eda: share of words inserted as synonyms (0: off).")
    alpha_rs: float = Field(0.1, ge=0, le=1, description="eda: share of words swapped (0: off).")
    alpha_rd: float = Field(0.1, ge=0, le=1, description="eda: probability of deleting each word (0: off).")
    wordnet_dir: str | None = Field(None, description="synonym, eda: WordNet dict folder (default: the installed one).")
    words: bool = Field(False, description="shuffle: also shuffle the words inside each sentence.")
    pivots: list[str] = Field(
        default_factory=lambda: ["spa"], description="back_translation: pivot languages, one per variant."
    )
    source_language: str = Field("eng", description="back_translation: language of the texts (Apertium code).")
    models: dict[str, list[str]] = Field(
        default_factory=dict,
        description="back_translation: {pivot: [to-pivot model, back model]} Transformers translation models; "
        "pivots not listed go through Apertium.",
    )
    batch_size: int = Field(64, ge=1, description="back_translation: texts per translation call.")
    timeout: float = Field(120.0, gt=0, description="back_translation: seconds one batch may take.")

    @model_validator(mode="after")
    def _options_fit_method(self) -> AugmentMethodSpec:
        own = set(AUGMENT_OPTIONS[self.method])
        for name in sorted(self.model_fields_set - own - {"method", "ratio"}):
            owners = [m for m, options in AUGMENT_OPTIONS.items() if name in options]
            raise ValueError(f"{name} is an option of {' and '.join(owners)}, not of {self.method}; remove it "
                             "from this method")
        if self.method == "eda" and not any((self.alpha_sr, self.alpha_ri, self.alpha_rs, self.alpha_rd)):
            raise ValueError("eda with every alpha at 0 changes nothing; give at least one of alpha_sr, alpha_ri, "
                             "alpha_rs, alpha_rd a value above 0")
        if self.method == "back_translation":
            if not self.pivots or len(set(self.pivots)) != len(self.pivots):
                raise ValueError("pivots must name at least one language, each once, e.g. [spa]")
            if self.ratio > len(self.pivots):
                raise ValueError(f"back_translation gives one variant per pivot, so ratio {self.ratio:g} needs at "
                                 f"least {int(-(-self.ratio // 1))} pivots; add pivots or lower the ratio")
            for pivot, names in self.models.items():
                if pivot not in self.pivots or len(names) != 2:
                    raise ValueError(f"models.{pivot} must be a pivot listed in pivots with two model names, "
                                     "[to-pivot model, back model]")
        return self


class AugmentSpec(Section):
    methods: list[AugmentMethodSpec] = Field(
        default_factory=list,
        description="Augmenters applied to the training split, e.g. [{method: synonym, ratio: 1}]; each item takes "
        "method (synonym, eda, shuffle, back_translation), ratio and that method's options (see the README). "
        "Empty: no augmentation.",
    )
    seed: int = Field(0, description="Seed of every augmenter, so the same data always gets the same variants.")

    @field_validator("methods")
    @classmethod
    def _each_method_once(cls, value: list[AugmentMethodSpec]) -> list[AugmentMethodSpec]:
        names = [spec.method for spec in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} is listed more than once; list each method once (raise its "
                             "ratio for more variants)")
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.methods)


class CalibrationSpec(Section):
    temperature_scaling: bool = Field(
        True, description="Fit a softmax temperature on the validation split and use it for every prediction."
    )
    bins: int = Field(15, ge=2, description="Confidence bins for calibration error and the reliability diagram.")


class FairnessSpec(Section):
    sensitive_columns: list[str] = Field(
        default_factory=list, description="Columns of the evaluation data that name each row's group (e.g. gender)."
    )
    identity_categories: list[str] = Field(
        default_factory=lambda: ["gender", "race_ethnicity", "religion", "nationality", "immigration_status", "age",
                                 "sexual_orientation", "disability"],
        description="Identity-term lists used to infer groups from the text when no sensitive column exists, "
        "and for counterfactual probes.",
    )
    identity_terms_file: str | None = Field(
        None, description="YAML file extending the shipped identity-term lists ({category: {group: [terms]}})."
    )
    positive_label: str | None = Field(
        None, description="Class whose selection rate is compared across groups; default: the minority class."
    )
    counterfactual: bool = Field(True, description="Swap identity terms in the texts and measure how predictions move.")
    max_demographic_parity_difference: float | None = Field(
        None, ge=0, description="Fail (non-zero exit) when the demographic-parity difference exceeds this."
    )
    max_equalized_odds_difference: float | None = Field(
        None, ge=0, description="Fail when the equalised-odds difference exceeds this."
    )
    max_counterfactual_flip_rate: float | None = Field(
        None, ge=0, le=1, description="Fail when more than this share of counterfactual swaps flip the prediction."
    )
    mitigation: Literal["none", "reweight", "counterfactual_augmentation"] = Field(
        "none", description="Training-time mitigation: reweight examples by group, or add identity-swapped copies."
    )


class EvaluationSpec(Section):
    plugins: list[str] = Field(
        default_factory=list,
        description="Dotted paths of callables (texts, labels, predictions, probabilities, label_names) -> dict of "
        "extra metrics/checks; their results appear beside the built-in metrics.",
    )
    explain_examples: int = Field(3, ge=0, description="Test examples explained in the run's report.")


class OutputSpec(Section):
    dir: str | None = Field(None, description="Run directory; default runs/<task>-<timestamp>.")
    overwrite: bool = Field(False, description="Replace an existing finished run in `dir`.")
    tensorboard: Literal["auto", "on", "off"] = Field(
        "auto", description="TensorBoard logs in <dir>/tensorboard; auto writes them when tensorboard is installed."
    )


class Recipe(Section):
    """A complete, validated description of one fine-tuning run."""

    task: TaskName = Field("classification", description="classification, regression, token-classification "
                                                         "(alias ner: one tag per word, CoNLL files or token lists), "
                                                         "multilabel (several labels per text) or pair-classification "
                                                         "(classification of text pairs; needs data.text_pair_column).")
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    loss: LossSpec = Field(default_factory=LossSpec)
    freeze: FreezeSpec = Field(default_factory=FreezeSpec)
    peft: PeftSpec = Field(default_factory=PeftSpec)
    early_stopping: EarlyStoppingSpec = Field(default_factory=EarlyStoppingSpec)
    imbalance: ImbalanceSpec = Field(default_factory=ImbalanceSpec)
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)
    fairness: FairnessSpec = Field(default_factory=FairnessSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)

    @model_validator(mode="before")
    @classmethod
    def _pair_task(cls, data: Any) -> Any:
        """pair-classification is classification that must have a second text column; checked before the name
        is folded into classification, which would forget that pairs were asked for."""
        if not isinstance(data, dict) or not isinstance(data.get("task"), str):
            return data
        name = data["task"].strip().lower()
        if name not in PAIR_TASKS:
            return data
        section = data.get("data")
        pair = section.get("text_pair_column") if isinstance(section, dict) else \
            getattr(section, "text_pair_column", None)
        if not pair:
            raise ValueError("task pair-classification needs data.text_pair_column, the column with the second text "
                             "of each pair; set it (`--text-pair-column` or `--set data.text_pair_column=COLUMN`), or "
                             "use task: classification for single texts")
        return {**data, "task": PAIR_TASKS[name]}

    @field_validator("task", mode="before")
    @classmethod
    def _normalise_task(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        name = value.strip().lower()
        return TASK_ALIASES.get(name, name)

    @model_validator(mode="after")
    def _loss_fits_task(self) -> Recipe:
        regression_losses = {"mse", "mae", "huber"}
        name = self.loss.name
        if name == "auto":
            return self
        if self.task == "multilabel" and name != "bce":
            raise ValueError(f"loss.name '{name}' does not apply to multilabel; it takes bce (or auto)")
        if self.task != "multilabel" and name == "bce":
            raise ValueError(f"loss.name 'bce' is the multilabel loss; {self.task} does not take it, use auto")
        if self.task == "regression" and name not in regression_losses:
            raise ValueError(f"loss.name '{name}' is a classification loss; regression takes mse, mae or huber")
        if self.task == "token-classification" and name not in ("cross_entropy", "weighted_cross_entropy"):
            raise ValueError(f"loss.name '{name}' does not apply to token classification; it takes cross_entropy "
                             "or weighted_cross_entropy")
        if self.task == "classification" and name in regression_losses:
            raise ValueError(
                f"loss.name '{name}' is a regression loss; classification takes cross_entropy, "
                "weighted_cross_entropy or focal"
            )
        return self

    @model_validator(mode="after")
    def _peft_fits_task(self) -> Recipe:
        if self.task == "token-classification" and self.peft.enabled:
            raise ValueError(f"peft.method '{self.peft.method}' is not available for token classification yet "
                             "(adapters are saved with a sequence-classification head); set peft.method: none, "
                             "or freeze layers with freeze.layers to train fewer parameters")
        return self

    @model_validator(mode="after")
    def _multilabel_options(self) -> Recipe:
        # Oversampling and group mitigation balance one class per row; several labels per row have no such class.
        if self.task != "multilabel":
            return self
        if self.imbalance.oversample:
            raise ValueError("imbalance.oversample repeats rows of one class, which multilabel rows do not have; "
                             "set it to false and use imbalance.class_weights (a pos_weight per label) instead")
        if self.fairness.mitigation != "none":
            raise ValueError(f"fairness.mitigation '{self.fairness.mitigation}' needs one class per text; set "
                             "fairness.mitigation: none for multilabel")
        return self

    @model_validator(mode="after")
    def _peft_owns_freezing(self) -> Recipe:
        # PEFT freezes the whole pretrained model itself; layer freezing on top would either do nothing or
        # silently fight it (gradual unfreezing would reopen base weights the adapter is meant to leave alone).
        if not self.peft.enabled:
            return self
        changed = [f"freeze.{name}" for name, field in FreezeSpec.model_fields.items()
                   if getattr(self.freeze, name) != field.default]
        if changed:
            raise ValueError(
                f"{', '.join(changed)} cannot be combined with peft.method '{self.peft.method}': PEFT already "
                "freezes every pretrained weight and trains only the adapter and the task head; remove the freeze "
                "settings, or set peft.method: none to freeze layers in a full fine-tune"
            )
        return self

    # --- derived settings, in one place so every consumer agrees ---------------------------------------
    def loss_name(self) -> str:
        if self.loss.name != "auto":
            return self.loss.name
        return {"regression": "mse", "multilabel": "bce"}.get(self.task, "cross_entropy")

    def early_stopping_metric(self) -> tuple[str, bool]:
        """(metric name, greater_is_better)."""
        metric = self.early_stopping.metric.removeprefix("eval_")
        if metric == "auto":
            metric = {"regression": "rmse", "token-classification": "f1", "multilabel": "f1_micro"}.get(
                self.task, "f1_macro")
        mode = self.early_stopping.mode
        if mode == "auto":
            lower_better = {"rmse", "mse", "mae", "loss"}
            mode = "min" if metric in lower_better or metric.endswith("loss") else "max"
        return metric, mode == "max"

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


# ------------------------------------------------------------------------------------------------------
# Loading, overrides and error reporting
# ------------------------------------------------------------------------------------------------------

def _problems_from_validation(error: ValidationError, source: str) -> list[Problem]:
    problems = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"]) or "(top level)"
        fix = ""
        if item["type"] == "extra_forbidden":
            fix = _suggest_field(item["loc"])
        elif item["type"] == "literal_error":
            fix = f"use one of {item.get('ctx', {}).get('expected', '')}"
        msg = item["msg"].removeprefix("Value error, ")
        problems.append(Problem(where=f"{source}: {path}", message=msg, fix=fix))
    return problems


def _section_model(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Recipe
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


def _suggest_field(loc: tuple[Any, ...]) -> str:
    model = _section_model(loc)
    if model is None:
        return "remove this key"
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"remove it; known keys here: {', '.join(model.model_fields)}"


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def parse_override(assignment: str) -> tuple[list[str], Any]:
    """`train.epochs=5` -> (["train", "epochs"], 5); the value is read as YAML (numbers, booleans, lists).

    Text fields keep the raw text, so `--set data.label_column=1` names column "1" rather than the number 1;
    `3e-5`, which YAML 1.1 leaves a string, is read as a number.
    """
    if "=" not in assignment:
        raise RecipeError(
            [Problem(where=f"--set {assignment}", message="an override needs KEY=VALUE",
                     fix="e.g. --set train.epochs=5")]
        )
    key, raw = assignment.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)
    path = [part for part in key.strip().split(".") if part]
    if path and not isinstance(value, str) and value is not None and _is_text_field(path):
        value = raw.strip()
    return path, value


def _is_text_field(path: list[str]) -> bool:
    model = _section_model(tuple(path))
    field = model.model_fields.get(path[-1]) if model is not None else None
    if field is None:
        return False
    annotation = field.annotation
    if get_origin(annotation) in (list, dict):  # list[str] holds texts but is written as a YAML list
        return False
    allowed = set(get_args(annotation)) or {annotation}
    return str in allowed and not allowed & {int, float, bool}


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    problems: list[Problem] = []
    for assignment in overrides or []:
        path, value = parse_override(assignment)
        if not path:
            problems.append(Problem(where=f"--set {assignment}", message="empty key", fix="e.g. --set train.epochs=5"))
            continue
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                problems.append(Problem(where=f"--set {assignment}", message=f"'{part}' is not a section"))
                break
            node = child
        else:
            node[path[-1]] = value
    if problems:
        raise RecipeError(problems)
    return data


def _resolve_data_paths(recipe: Recipe, base_dir: Path) -> Recipe:
    """Relative data and identity-term paths in a recipe are relative to its file, as a reader of the YAML expects."""
    for split in ("train", "validation", "test"):
        value = getattr(recipe.data, split)
        if value and not Path(value).is_absolute() and not value.startswith(("hf://", "http://", "https://")):
            setattr(recipe.data, split, str((base_dir / value).resolve()))
    terms = recipe.fairness.identity_terms_file
    if terms and not Path(terms).is_absolute():
        recipe.fairness.identity_terms_file = str((base_dir / terms).resolve())
    return recipe


def recipe_from_dict(
    data: dict[str, Any], overrides: list[str] | None = None, source: str = "recipe", base_dir: Path | None = None
) -> Recipe:
    data = apply_overrides(dict(data or {}), overrides)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as error:
        raise RecipeError(_problems_from_validation(error, source)) from None
    return _resolve_data_paths(recipe, base_dir) if base_dir is not None else recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(
            [Problem(where=str(path), message="recipe file not found", fix="check the path, or write one with "
                     "`tuneforge init > recipe.yaml`")]
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise RecipeError(
            [Problem(where=where, message=f"not valid YAML ({getattr(error, 'problem', error)})",
                     fix="check indentation and quoting on that line")]
        ) from None
    if not isinstance(data, dict):
        raise RecipeError([Problem(where=str(path), message="a recipe must be a YAML mapping of sections",
                                   fix="start from `tuneforge init`")])
    return recipe_from_dict(data, overrides, source=str(path), base_dir=path.parent)


# ------------------------------------------------------------------------------------------------------
# The commented template behind `tuneforge init`
# ------------------------------------------------------------------------------------------------------

def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _choices(annotation: Any) -> list[Any]:
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    choices: list[Any] = []
    for arg in get_args(annotation):
        choices += _choices(arg)
    return choices


def commented_template(task: str = "classification", **top: Any) -> str:
    """A complete recipe with every field, its default and its help text as comments."""
    recipe = recipe_from_dict({"task": task}, source="--task")
    for dotted, value in top.items():
        section, _, key = dotted.partition("__")
        setattr(getattr(recipe, section), key, value)
    lines = [
        "# tuneforge recipe: every field with its default. Delete what you do not change.",
        "# Check it with `tuneforge validate recipe.yaml`, run it with `tuneforge train recipe.yaml`.",
    ]
    for name, field in Recipe.model_fields.items():
        value = getattr(recipe, name)
        if isinstance(value, BaseModel):
            lines.append("")
            lines.append(f"{name}:")
            for sub_name, sub_field in type(value).model_fields.items():
                choices = _choices(sub_field.annotation)
                note = sub_field.description or ""
                if choices and len(choices) > 1:
                    note += f" [{' | '.join(str(c) for c in choices)}]"
                lines.append(f"  # {note}")
                lines.append(f"  {sub_name}: {_yaml_scalar(getattr(value, sub_name))}")
        else:
            lines.append(f"# {field.description}")
            lines.append(f"{name}: {_yaml_scalar(value)}")
    return "\n".join(lines) + "\n"
