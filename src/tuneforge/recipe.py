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

TaskName = Literal["classification", "regression", "token-classification", "multilabel", "seq2seq", "causal-lm"]
TASK_ALIASES = {"ner": "token-classification", "token_classification": "token-classification",
                "multi-label": "multilabel", "multi_label": "multilabel", "multilabel-classification": "multilabel",
                "text2text": "seq2seq", "sequence-to-sequence": "seq2seq", "causal_lm": "causal-lm",
                "clm": "causal-lm", "sft": "causal-lm"}
GENERATIVE_TASKS = ("seq2seq", "causal-lm")  # tasks whose model writes text (see train/generative.py)
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
    head: Literal["auto", "new", "keep"] = Field(
        "auto",
        description="When model.name is an earlier run (or any checkpoint with a task head): new starts a freshly "
        "initialised head on its encoder, keep continues with its head (same task and labels required), auto "
        "keeps it only when the task and labels are the same.",
    )


class DataSpec(Section):
    train: str | None = Field(
        None, description="Training file: CSV, TSV, JSONL/JSON, Parquet, or a `datasets` save folder."
    )
    validation: str | None = Field(None, description="Validation file; carved from train when empty.")
    test: str | None = Field(None, description="Test file; carved from train when empty and test_split > 0.")
    text_column: str = Field("text", description="Column with the input text.")
    text_pair_column: str | None = Field(None, description="Optional second text column (sentence pairs).")
    language: str | None = Field(
        None, description="ISO 639-1 code of the texts (e.g. en, id, jv); a warning is shown when the training "
        "texts look like another language."
    )
    label_column: str = Field("label", description="Column with the label (class name/id, or a number for regression).")
    target_column: str = Field("target", description="seq2seq: column with the output text to generate from "
                               "text_column (summary, translation, rewrite).")
    prompt_column: str = Field("prompt", description="causal-lm: column with the prompt (no loss on its tokens).")
    response_column: str = Field("response", description="causal-lm: column with the response the model learns "
                                 "to write after the prompt.")
    messages_column: str | None = Field(
        None, description="causal-lm: column of chats, each a list of {role, content} (JSONL/Parquet, or JSON text "
        "in a CSV cell), rendered with the tokenizer's chat template; loss on the assistant turns only. Set it "
        "instead of prompt_column/response_column.")
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


class DistributedSpec(Section):
    """How several processes share one training run (`tuneforge train --nproc N`, or torchrun on several machines).

    One process is plain single-device training; these settings apply only when torchrun starts several.
    """

    strategy: Literal["ddp", "fsdp", "deepspeed"] = Field(
        "ddp", description="ddp: every process holds the whole model and gradients are averaged; fsdp: parameters, "
        "gradients and optimiser state are sharded over the processes (PyTorch FSDP); deepspeed: DeepSpeed ZeRO "
        "(needs the deepspeed package).",
    )
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="Process-group backend; auto: nccl on GPUs, gloo on the CPU.")
    fsdp: str = Field(
        "full_shard auto_wrap", description="fsdp: the Trainer's fsdp option, e.g. 'full_shard auto_wrap', "
        "'shard_grad_op auto_wrap', 'full_shard offload auto_wrap'.")
    fsdp_config: dict[str, Any] = Field(
        default_factory=dict, description="fsdp: extra FSDP settings passed to the Trainer's fsdp_config, e.g. "
        "{transformer_layer_cls_to_wrap: [BertLayer]}.")
    zero_stage: Literal[1, 2, 3] = Field(
        2, description="deepspeed: ZeRO stage (1: optimiser state, 2: + gradients, 3: + parameters sharded).")
    deepspeed_config: str | None = Field(
        None, description="deepspeed: a DeepSpeed JSON config file used instead of the one built from zero_stage.")


class TrainSpec(Section):
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate of AdamW.")
    batch_size: int | Literal["auto"] = Field(
        16, description="Examples per device per optimisation micro-step; auto: the largest that fits (probed on a "
        "GPU, from the memory estimate on the CPU), recorded in metrics.json.",
    )
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
        "auto", description="auto: bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU. bf16 also runs on "
        "CPUs with AVX-512 BF16 or AMX (mixed precision, faster there)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto uses a GPU when one is visible.")
    group_by_length: bool = Field(
        True, description="Batch texts of similar length together so less compute goes to padding."
    )
    logging_steps: int = Field(1, ge=1, description="Log loss and learning rate every this many steps (1: every step).")
    save_checkpoints: bool = Field(True, description="Save a checkpoint per epoch so `--resume` can continue a run.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept on disk (the best one is always kept).")
    dataloader_workers: int = Field(0, ge=0, description="Worker processes loading batches.")
    distributed: DistributedSpec = Field(
        default_factory=DistributedSpec,
        description="Multi-process training (`--nproc N` or torchrun): ddp, fsdp or deepspeed.")
    stages: list[Literal["pretrain", "finetune"]] = Field(
        default_factory=lambda: ["finetune"],
        description="pretrain: continued pretraining on the pretrain.corpus before fine-tuning ([pretrain, "
        "finetune]); the adapted model is kept in <run>/pretrained.",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: much less memory for about 30% more time."
    )
    optimizer: Literal["adamw_torch_fused", "adamw_torch", "adafactor", "adamw_8bit", "paged_adamw_8bit"] = Field(
        "adamw_torch_fused",
        description="adamw_torch_fused (the Trainer's default, one fused kernel), adamw_torch, adafactor (factored "
        "second moments, least memory), adamw_8bit / paged_adamw_8bit (8-bit states through bitsandbytes; paging "
        "needs CUDA and falls back to plain 8-bit on the CPU).",
    )

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"batch_size takes a whole number of at least 1, or auto; got {value!r}")
        return value


class GenerationSpec(Section):
    """How a generative run (seq2seq, causal-lm) writes text at evaluation and predict time."""

    max_new_tokens: int = Field(64, ge=1, description="Most tokens generated per input.")
    num_beams: int = Field(1, ge=1, description="Beam-search width; 1 is greedy (or sampling with do_sample).")
    do_sample: bool = Field(False, description="Sample from the distribution instead of taking the best token.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (do_sample).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: smallest set of tokens with this much "
                         "probability (do_sample).")
    top_k: int = Field(50, ge=0, description="Sample among the k most likely tokens; 0 turns it off (do_sample).")
    repetition_penalty: float = Field(1.0, gt=0, description="Above 1 discourages repeating tokens.")
    no_repeat_ngram_size: int = Field(0, ge=0, description="Never repeat an n-gram of this size; 0: off.")
    eval_examples: int = Field(
        200, ge=0, description="Validation and test rows generated for the text metrics after training (0: all); "
        "generation is slow, the loss is still measured on every row.")
    batch_size: int = Field(16, ge=1, description="Inputs per generation call.")
    seed: int = Field(0, description="Seed of sampling, so the same input gives the same text.")


class LanguageModelSpec(Section):
    """causal-lm options: packing, chat template, label-as-text classification."""

    packing: bool = Field(
        False, description="Put each batch's examples end to end in one row without padding; positions restart "
        "per example so attention never crosses examples (needs a model that reads position_ids: GPT-2, Llama, "
        "Mistral, Qwen ...). Faster when lengths vary.")
    chat_template: str | None = Field(
        None, description="Jinja chat template used instead of the tokenizer's; empty: the tokenizer's, or a plain "
        "'<|role|>' template with an end-of-sequence token after every assistant turn when it has none.")
    system_prompt: str | None = Field(None, description="System message put before every chat (messages_column).")
    classify: bool = Field(
        False, description="Classification as text: the prompt is text_column in prompt_template, the response is "
        "the label name from label_column; metrics are accuracy and macro-F1.")
    prompt_template: str = Field(
        "Text: {text} Label:", description="classify: how the text becomes a prompt ({text} is replaced).")
    label_scoring: Literal["likelihood", "generate"] = Field(
        "likelihood", description="classify: pick the label whose text is most likely after the prompt, or "
        "generate and map the text to the closest label.")


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
                                             "f1 (token-classification), f1_micro (multilabel) or loss "
                                             "(seq2seq, causal-lm).")
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
    rare_class_share: float = Field(
        0.05, ge=0, lt=1, description="A class with less than this share of the training rows is reported as rare, "
        "with advice, in the imbalance report and the data warnings.")
    rare_class_rows: int = Field(
        20, ge=0, description="A class with fewer training rows than this, and less than half the largest "
        "class's, is reported as rare as well.")


FlagOrDrop = Literal["off", "flag", "drop"]


class CleanSpec(Section):
    """Data cleaning of the training split; every removed, flagged or masked row is listed in data_report.json."""

    enabled: bool = Field(
        False, description="Clean the training file (before validation/test are carved from it); separate validation "
        "and test files only get PII masking, since dropping hard rows from them would flatter the scores.")
    duplicates: FlagOrDrop = Field(
        "drop", description="Exact duplicates (same text after lower-casing and collapsing spaces): keep the first.")
    near_duplicates: FlagOrDrop = Field(
        "drop", description="Near duplicates (MinHash estimate of the Jaccard similarity of character 5-grams at "
        "least near_duplicate_threshold): keep the first.")
    near_duplicate_threshold: float = Field(0.85, gt=0, le=1, description="Similarity that makes a near duplicate.")
    conflicting_labels: FlagOrDrop = Field(
        "drop", description="Copies of one text with different labels: keep the majority label's copies, or none "
        "when there is no majority.")
    garbage: FlagOrDrop = Field(
        "drop", description="Empty or garbage rows: no letters, mostly non-printable characters, or runs of one "
        "repeated character with fewer than 3 other letters.")
    length_outliers: FlagOrDrop = Field(
        "flag", description="Texts whose word or character count lies beyond the robust bounds "
        "(quartiles -/+ length_iqr_factor x the interquartile range).")
    length_iqr_factor: float = Field(3.0, gt=0, description="Width of the length bounds in interquartile ranges.")
    mislabelled: FlagOrDrop = Field(
        "flag", description="Likely label errors by confident learning (cleanlab) on 5-fold cross-validated "
        "probabilities of a TF-IDF + logistic-regression classifier (classification only).")
    mislabelled_folds: int = Field(5, ge=2, le=20, description="Cross-validation folds for mislabelled.")
    pii: Literal["off", "flag", "drop", "mask"] = Field(
        "mask", description="Personal data (e-mail addresses, phone numbers, URLs, IP addresses, IBANs and card "
        "numbers that pass their checksums, names listed in pii_names): mask replaces each with [EMAIL], [PHONE] ... "
        "in every split, so no run artifact repeats it.")
    pii_kinds: list[Literal["email", "phone", "url", "ip", "iban", "credit_card", "name"]] = Field(
        default_factory=lambda: ["email", "phone", "url", "ip", "iban", "credit_card", "name"],
        description="Kinds of personal data detected.")
    pii_names: list[str] = Field(
        default_factory=list, description="Person names to detect (whole words, case-insensitive); names are not "
        "guessed without a list.")
    toxicity: FlagOrDrop = Field(
        "flag", description="Profanity and slurs (the better-profanity word list, with its leetspeak variants).")

    @field_validator("duplicates", "near_duplicates", "conflicting_labels", "garbage", "length_outliers",
                     "mislabelled", "pii", "toxicity", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML 1.1 reads an unquoted `off` as false


AugmentMethod = Literal["synonym", "eda", "shuffle", "back_translation", "generation", "contextual"]
# Which options belong to which method, so an option given to the wrong method is an error, not ignored.
AUGMENT_OPTIONS = {
    "synonym": ("fraction", "wordnet_dir"),
    "eda": ("alpha_sr", "alpha_ri", "alpha_rs", "alpha_rd", "wordnet_dir"),
    "shuffle": ("words",),
    "back_translation": ("pivots", "source_language", "models", "batch_size", "timeout"),
    "generation": ("model", "mode", "filter_model", "min_confidence", "examples_per_prompt", "max_new_tokens",
                   "temperature", "top_p", "batch_size", "tries"),
    "contextual": ("model", "fraction", "top_k", "batch_size"),
}


class AugmentMethodSpec(Section):
    method: AugmentMethod = Field(description="The augmenter.")
    ratio: float = Field(
        1.0, gt=0, le=20, description="New examples per original; a fraction augments that share of the rows."
    )
    fraction: float = Field(
        0.15, gt=0, le=1, description="synonym, contextual: share of the eligible words replaced (at least one)."
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
    batch_size: int = Field(64, ge=1, description="back_translation, generation, contextual: texts per model call.")
    timeout: float = Field(120.0, gt=0, description="back_translation: seconds one batch may take.")
    model: str | None = Field(
        None, description="generation: the causal or seq2seq generator (hub id, local folder or run directory); "
        "contextual: a masked language model (with an MLM head).")
    mode: Literal["paraphrase", "label_conditioned"] = Field(
        "paraphrase", description="generation: rewrite each original (paraphrase), or write new examples from the "
        "label and a few examples of it (label_conditioned).")
    filter_model: str | None = Field(
        None, description="generation: a tuneforge run directory whose classifier must agree with the label of a "
        "generated text; empty: a TF-IDF + logistic-regression classifier fitted on the training split.")
    min_confidence: float = Field(
        0.5, ge=0, le=1, description="generation: keep a generated text only if the filter predicts its label with "
        "at least this probability.")
    examples_per_prompt: int = Field(3, ge=0, le=20, description="generation, label_conditioned: same-label "
                                     "examples shown in each prompt.")
    max_new_tokens: int = Field(48, ge=1, description="generation: most tokens generated per text.")
    temperature: float = Field(0.9, gt=0, description="generation: sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="generation: nucleus-sampling share of probability mass.")
    tries: int = Field(3, ge=1, le=20, description="generation: candidates sampled per wanted variant (the filter "
                       "and de-duplication keep the first that pass).")
    top_k: int = Field(10, ge=1, description="contextual: the masked LM's best tokens a replacement is drawn from.")

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
        if self.method in ("generation", "contextual") and not self.model:
            kind = "a causal or sequence-to-sequence language model" if self.method == "generation" else \
                "a masked language model (e.g. a BERT with its MLM head)"
            raise ValueError(f"{self.method} needs model: {kind}, as a local folder, run directory or hub id")
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
        "method (synonym, eda, shuffle, back_translation, generation, contextual), ratio and that method's options "
        "(see the README). "
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


class DomainRuleSpec(Section):
    pattern: str = Field(description="Regular expression (Python `re` syntax).")
    replacement: str = Field("", description="Replacement text; \\1 inserts the first group.")
    ignore_case: bool = Field(False, description="Match regardless of case.")


class DomainSpec(Section):
    rule_packs: list[Literal["legal", "medical", "financial", "dates"]] = Field(
        default_factory=list,
        description="Built-in preprocessing rule packs applied to every text at training and prediction time: legal "
        "(citations, section signs, case numbers), medical (de-identifies names/dates/IDs, expands clinical "
        "abbreviations, spaces units), financial (currencies, amounts, tickers, dates), dates.",
    )
    rules: list[DomainRuleSpec] = Field(
        default_factory=list, description="Your own rules, applied after the packs: [{pattern, replacement}]."
    )
    functions: list[str] = Field(
        default_factory=list,
        description="Dotted paths of functions text -> text applied last (e.g. transliteration), such as "
        "mypackage.rules:transliterate; they must be importable wherever the model is used.",
    )
    unicode_normalization: Literal["none", "NFC", "NFKC", "NFKC_casefold"] = Field(
        "none", description="Unicode normalisation before the rules (NFKC folds full-width and compatibility forms)."
    )
    extend_vocabulary: bool = Field(
        False,
        description="Add frequent domain words that the tokenizer splits into many pieces as whole tokens, their "
        "embeddings starting from the mean of their old pieces.",
    )
    max_new_tokens: int = Field(200, ge=1, description="extend_vocabulary: most words added.")
    min_term_frequency: int = Field(3, ge=1, description="extend_vocabulary: a word must occur this often.")
    min_term_pieces: int = Field(3, ge=2, description="extend_vocabulary: a word must split into this many pieces.")

    @property
    def has_rules(self) -> bool:
        return bool(self.rule_packs or self.rules or self.functions or self.unicode_normalization != "none")


class PretrainSpec(Section):
    corpus: str | None = Field(
        None, description="Unlabelled domain text (CSV/TSV/JSONL/Parquet with a text column, or a .txt file with "
        "one text per line) for continued pretraining; needs train.stages: [pretrain, finetune]."
    )
    text_column: str = Field("text", description="Column of the corpus holding the text.")
    objective: Literal["auto", "mlm", "clm"] = Field(
        "auto", description="auto: masked-LM for encoders, causal-LM for decoders."
    )
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="Share of tokens masked (mlm).")
    epochs: float = Field(1.0, gt=0, description="Passes over the corpus.")
    max_steps: int = Field(0, ge=0, description="Stop after this many steps; 0 means use epochs.")
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate of continued pretraining.")
    batch_size: int = Field(16, ge=1, description="Texts per step.")


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


Combiner = Literal["concat", "gated", "attention", "late"]


class FeaturesSpec(Section):
    """Typed input columns fused with the language model's text representation (multimodal runs).

    Empty (the default) keeps the text-only path; any column listed here trains the multimodal model instead.
    """

    text: list[str] = Field(
        default_factory=list, description="Text columns, joined with the tokenizer's separator; empty: "
        "data.text_column when other features are listed.")
    numeric: list[str] = Field(default_factory=list, description="Numeric columns: median-imputed (with a "
                               "missing-value indicator) and standard-scaled on the training split.")
    categorical: list[str] = Field(default_factory=list, description="Categorical columns: a vocabulary of the "
                                   "training split's values (unseen values go to an unknown bucket), embedded.")
    image: list[str] = Field(default_factory=list, description="Columns holding paths of local image files "
                             "(relative paths are relative to the data file); needs image_encoder.")
    audio: list[str] = Field(default_factory=list, description="Columns holding paths of local WAV files "
                             "(relative paths are relative to the data file); needs audio_encoder.")
    image_encoder: str | None = Field(None, description="Transformers vision model (local folder or hub id, e.g. "
                                      "a ViT or ConvNeXt) with its image processor (resize and normalise).")
    audio_encoder: str | None = Field(None, description="Transformers audio model (local folder or hub id; e.g. "
                                      "an AST over log-mel features, or a Wav2Vec2) with its feature extractor.")
    freeze_encoders: bool = Field(True, description="Keep the image and audio encoders' weights fixed.")
    combiner: Combiner = Field(
        "concat", description="How modality embeddings are fused: concat (concatenate, then an MLP), gated (a "
        "learnt sigmoid gate per modality, then a sum), attention (softmax-weighted sum over modalities) or late "
        "(one head per modality, outputs averaged).")
    fusion_hidden: int = Field(128, ge=4, description="Width every modality is projected to before fusion.")
    categorical_embedding_dim: int = Field(16, ge=1, description="Embedding width of each categorical column.")
    fusion_dropout: float = Field(0.1, ge=0, lt=1, description="Dropout in the modality projections and head.")
    audio_max_seconds: float = Field(10.0, gt=0, description="Audio is cut (or padded) to this many seconds.")

    @model_validator(mode="after")
    def _encoders_named(self) -> FeaturesSpec:
        for kind in ("image", "audio"):
            if getattr(self, kind) and not getattr(self, f"{kind}_encoder"):
                raise ValueError(f"features.{kind} lists columns but features.{kind}_encoder is empty; name a "
                                 f"Transformers {kind} model (a local folder or hub id)")
        columns = [c for kind in ("text", "numeric", "categorical", "image", "audio") for c in getattr(self, kind)]
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise ValueError(f"column {', '.join(repeated)} is listed under more than one feature type (or twice); "
                             "give each column one type")
        return self

    @property
    def enabled(self) -> bool:
        return any(getattr(self, kind) for kind in ("text", "numeric", "categorical", "image", "audio"))


class TaskSpec(Section):
    """One task of a multi-task recipe: its own data and head over the shared encoder."""

    name: str = Field(description="Short name of the task (letters, digits, _ or -); it prefixes the task's metrics "
                      "and picks the task at predict time (--task-name).")
    task: Literal["classification", "regression"] = Field(
        "classification", description="classification or regression (one head per task).")
    data: DataSpec = Field(default_factory=DataSpec, description="The task's data, as the data section of a "
                           "single-task recipe.")

    @field_validator("name")
    @classmethod
    def _name_is_a_key(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", value or ""):
            raise ValueError(f"task name {value!r} must be letters, digits, '_' or '-' (it prefixes metric names)")
        return value


class MultitaskSpec(Section):
    """How batches are drawn from the tasks of a multi-task recipe and how their losses add up."""

    sampling: Literal["proportional", "temperature", "round_robin"] = Field(
        "proportional", description="Which task each batch comes from: proportional to the tasks' training rows, "
        "temperature (proportional to rows^(1/temperature), which lifts small tasks), or round_robin (tasks in "
        "turn).")
    temperature: float = Field(2.0, ge=1.0, description="temperature sampling: 1 is proportional; larger flattens "
                               "towards uniform.")
    loss_weights: dict[str, float] = Field(
        default_factory=dict, description="Loss weight per task name (default 1 each).")


SearchParamType = Literal["float", "int", "categorical"]


class SearchParam(Section):
    """One searched recipe field: a float or int range, or a list of choices (Optuna's distributions)."""

    type: SearchParamType = Field("float", description="float or int (a range from low to high), or categorical.")
    low: float | None = Field(None, description="float, int: smallest value.")
    high: float | None = Field(None, description="float, int: largest value (included).")
    log: bool = Field(False, description="float, int: sample on a log scale (learning rates); low must be > 0.")
    step: float | None = Field(None, description="float, int: spacing of the values (int default 1; a float "
                                                 "range with a step is discrete, so grid search can use it).")
    choices: list[str | int | float | bool | None] | None = Field(
        None, description="categorical: the values to choose from, e.g. [8, 16, 32].")

    @model_validator(mode="after")
    def _consistent(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs choices: [a, b, ...]")
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("a categorical parameter takes only choices; remove low/high/log/step")
            return self
        if self.choices is not None:
            raise ValueError(f"choices belong to type: categorical, not to a {self.type} range; use low and high")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs low and high")
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) is above high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError("log: true needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined; drop one of them")
        if self.step is not None and self.step <= 0:
            raise ValueError("step must be > 0")
        if self.type == "int" and any(v is not None and float(v) != int(v) for v in (self.low, self.high, self.step)):
            raise ValueError("an int parameter needs whole numbers for low, high and step")
        return self


class SearchSpec(Section):
    space: dict[str, SearchParam] = Field(
        default_factory=dict,
        description="Searched recipe fields by path, e.g. {train.learning_rate: {type: float, low: 1e-5, high: 1e-4, "
        "log: true}, train.batch_size: {type: categorical, choices: [8, 16]}}. Used by `tuneforge search`.",
    )
    trials: int | None = Field(20, ge=1, description="Trial budget: finished (completed or pruned) trials of the "
                                                      "study, earlier runs of the same study included.")
    timeout_minutes: float | None = Field(None, gt=0, description="Wall-time budget of one `tuneforge search` "
                                                                  "command; a trial in flight finishes.")
    sampler: Literal["tpe", "random", "grid"] = Field(
        "tpe", description="tpe (Bayesian), random, or grid (every combination; discrete spaces only).")
    pruner: Literal["median", "hyperband", "asha", "none"] = Field(
        "median", description="Stop unpromising trials from their per-epoch validation metric: median (below the "
        "median of earlier trials), hyperband, asha (successive halving), or none.")
    pruner_startup_trials: int = Field(2, ge=0, description="median: trials that finish before any is pruned.")
    seed: int = Field(42, description="Seed of the sampler, so a study proposes the same trials again.")
    storage: str | None = Field(None, description="Study database, any SQLAlchemy URL (PostgreSQL, MySQL) so "
                                                  "workers on several machines share one study; default: SQLite "
                                                  "study.db in the study directory.")
    study_name: str | None = Field(None, description="Name of the study in the storage; default: the study "
                                                     "directory's name.")
    dir: str | None = Field(None, description="Study directory (study.db, trials/<n>/, best_recipe.yaml, "
                                              "leaderboard.csv, plots); default: output.dir, else studies/<task>.")
    keep_checkpoints: bool = Field(False, description="Keep each trial's checkpoints/ (disk-hungry); the trained "
                                                      "model of every completed trial is kept either way.")
    explain_trials: bool = Field(False, description="Run the example explanations after every trial; off saves "
                                                    "time, as only the best recipe needs them.")

    @field_validator("space")
    @classmethod
    def _paths_look_like_fields(cls, value: dict[str, SearchParam]) -> dict[str, SearchParam]:
        for path in value:
            if path.count(".") != 1:
                raise ValueError(f"'{path}' is not a recipe field path; write section.field, e.g. "
                                 "train.learning_rate")
        return value


class OutputSpec(Section):
    dir: str | None = Field(None, description="Run directory; default runs/<task>-<timestamp>.")
    overwrite: bool = Field(False, description="Replace an existing finished run in `dir`.")
    tensorboard: Literal["auto", "on", "off"] = Field(
        "auto", description="TensorBoard logs in <dir>/tensorboard; auto writes them when tensorboard is installed."
    )


class RefreshSpec(Section):
    """`tuneforge refresh`: re-fine-tune a registered model on its data plus accepted feedback, promote if not worse."""

    gate: str | None = Field(
        None, description="Fixed labelled file (same columns as data) the champion and the challenger are both "
        "scored on; required by `tuneforge refresh`. Keep it out of the training data.")
    metric: str = Field("auto", description="Metric compared on the gate set and recent feedback; auto: the "
                        "early-stopping metric (f1_macro for classification, rmse for regression).")
    margin: float = Field(0.0, ge=0.0, description="Promote unless the challenger is worse than the champion by "
                          "more than this, in metric units, on the gate set or on recent feedback.")
    start_from: Literal["champion", "base"] = Field(
        "champion", description="Fine-tune the challenger from the champion's weights, or afresh from model.name.")
    feedback_holdout: float = Field(
        0.2, ge=0.0, lt=1.0, description="Share of the newest accepted corrections kept out of training and scored "
        "as the recent-feedback check (0: train on all of them and skip that check).")
    min_feedback: int = Field(1, ge=0, description="Fewest accepted corrections needed before a refresh trains "
                              "anything; with fewer it stops, successfully, saying so.")


class Recipe(Section):
    """A complete, validated description of one fine-tuning run."""

    task: TaskName = Field("classification", description="classification, regression, token-classification "
                                                         "(alias ner: one tag per word, CoNLL files or token lists), "
                                                         "multilabel (several labels per text), pair-classification "
                                                         "(classification of text pairs; needs data.text_pair_column), "
                                                         "seq2seq (text to text, encoder-decoders) or causal-lm "
                                                         "(decoder fine-tuning on prompt/response or chat data).")
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    clean: CleanSpec = Field(default_factory=CleanSpec)
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    domain: DomainSpec = Field(default_factory=DomainSpec)
    pretrain: PretrainSpec = Field(default_factory=PretrainSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    lm: LanguageModelSpec = Field(default_factory=LanguageModelSpec)
    loss: LossSpec = Field(default_factory=LossSpec)
    freeze: FreezeSpec = Field(default_factory=FreezeSpec)
    peft: PeftSpec = Field(default_factory=PeftSpec)
    early_stopping: EarlyStoppingSpec = Field(default_factory=EarlyStoppingSpec)
    imbalance: ImbalanceSpec = Field(default_factory=ImbalanceSpec)
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)
    fairness: FairnessSpec = Field(default_factory=FairnessSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    features: FeaturesSpec = Field(default_factory=FeaturesSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    refresh: RefreshSpec = Field(default_factory=RefreshSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    tasks: list[TaskSpec] = Field(
        default_factory=list,
        description="Multi-task learning: two or more tasks, each {name, task, data}, trained together with one "
        "shared encoder and one head each; the top-level task and data are then unused. Empty: one task.")
    multitask: MultitaskSpec = Field(default_factory=MultitaskSpec)

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
    def _generative_options(self) -> Recipe:
        """Options of whole-text classifiers that a text-writing model has no use for are errors, not ignored."""
        if self.task not in GENERATIVE_TASKS:
            lm_changed = [f"lm.{name}" for name, field in LanguageModelSpec.model_fields.items()
                          if getattr(self.lm, name) != field.default]
            if lm_changed:
                raise ValueError(f"{', '.join(lm_changed)} apply to task causal-lm only; remove them for {self.task}")
            return self
        if self.loss.name != "auto" or self.loss.class_weights is not None:
            raise ValueError(f"{self.task} trains with token-level cross-entropy on the target tokens; set loss.name: "
                             "auto and remove loss.class_weights")
        if self.fairness.mitigation != "none" or self.imbalance.oversample:
            raise ValueError(f"fairness.mitigation and imbalance.oversample balance classes of texts; {self.task} "
                             "has none, set them to none / false")
        if self.peft.method in ("prompt_tuning", "prefix_tuning") and self.task == "seq2seq":
            raise ValueError(f"peft.method '{self.peft.method}' is not available for seq2seq; use lora or ia3")
        if self.evaluation.plugins:
            raise ValueError(f"evaluation.plugins score class predictions; {self.task} writes text, remove them "
                             "(the text metrics BLEU, chrF and ROUGE are built in)")
        if self.task == "seq2seq" and self.lm != LanguageModelSpec():
            raise ValueError("the lm section applies to task causal-lm only; remove it for seq2seq")
        if self.lm.packing and self.peft.method in ("prompt_tuning", "prefix_tuning"):
            raise ValueError(f"lm.packing needs position ids, which peft's {self.peft.method} ignores, so packed "
                             "examples would attend to each other; set lm.packing: false or use peft.method: lora")
        if self.lm.classify and "{text}" not in self.lm.prompt_template:
            raise ValueError("lm.prompt_template must contain {text}, where each text goes")
        return self

    @model_validator(mode="after")
    def _clean_fits_task(self) -> Recipe:
        # Cleaning works on rows of text with one label; other tasks' rows would pass through it unchanged.
        if self.clean.enabled and self.task not in ("classification", "multilabel", "regression"):
            raise ValueError(f"clean: works on text rows of classification, multilabel and regression data, not "
                             f"{self.task}; set clean.enabled: false, or clean the texts first with `tuneforge clean`")
        return self

    @model_validator(mode="after")
    def _peft_fits_task(self) -> Recipe:
        if self.task == "token-classification" and self.peft.method in ("prompt_tuning", "prefix_tuning"):
            raise ValueError(f"peft.method '{self.peft.method}' puts virtual tokens before the input, which have no "
                             "tags to predict; use peft.method: lora or ia3 for token classification")
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

    @model_validator(mode="after")
    def _features_fit_task(self) -> Recipe:
        # Multimodal runs train their own fusion model (models/multimodal.py): one class or one score per row.
        if not self.features.enabled:
            return self
        if self.task not in ("classification", "regression"):
            raise ValueError(f"features (multimodal inputs) work with classification and regression; this recipe "
                             f"is {self.task}: remove the features section or change the task")
        if self.peft.enabled:
            raise ValueError("features (multimodal inputs) cannot be combined with peft yet; set peft.method: none "
                             "(freeze.all_but_head keeps the text encoder fixed)")
        if self.data.text_pair_column:
            raise ValueError("features replaces data.text_pair_column: list both text columns in features.text")
        return self

    @model_validator(mode="after")
    def _stages_make_sense(self) -> Recipe:
        stages = self.train.stages
        if stages not in (["finetune"], ["pretrain", "finetune"]):
            raise ValueError(f"train.stages {stages} is not a plan tuneforge runs; use [finetune] or "
                             "[pretrain, finetune]")
        if "pretrain" in stages and not self.pretrain.corpus:
            raise ValueError("train.stages has pretrain but pretrain.corpus is empty; name the unlabelled domain "
                             "text file in pretrain.corpus")
        # Domain adaptation is wired into the single-task text path (train/domain.py); elsewhere it would be
        # silently skipped, so it is refused.
        adapting = [name for name, on in (("domain rules", self.domain.has_rules),
                                          ("domain.extend_vocabulary", self.domain.extend_vocabulary),
                                          ("train.stages pretrain", "pretrain" in stages)) if on]
        other_path = ("features (multimodal inputs)" if self.features.enabled else
                      "tasks (multi-task)" if self.tasks else
                      f"task {self.task}" if self.task in GENERATIVE_TASKS else None)
        if adapting and other_path:
            raise ValueError(f"{', '.join(adapting)} work with single-task text runs; they are not available with "
                             f"{other_path} yet: remove them, or preprocess and pretrain in a separate run and name "
                             "its pretrained/ folder as model.name")
        if self.domain.has_rules and self.task == "token-classification":
            raise ValueError("domain rules rewrite whole texts, which would move words away from their tags; "
                             "preprocess the CoNLL file before training, or remove domain.rule_packs, domain.rules, "
                             "domain.functions and domain.unicode_normalization")
        return self

    @model_validator(mode="after")
    def _multitask_fits(self) -> Recipe:
        if not self.tasks:
            if self.multitask != MultitaskSpec():
                raise ValueError("the multitask section needs a tasks list of two or more tasks")
            return self
        names = [spec.name for spec in self.tasks]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if len(self.tasks) < 2 or repeated:
            raise ValueError("tasks needs two or more tasks with different names" +
                             (f" ({', '.join(repeated)} is repeated)" if repeated else "") +
                             "; for one task use the top-level task and data sections")
        if self.data.train is not None:
            raise ValueError("with tasks, each task carries its own data; move data.train (and the other data "
                             "settings) into the tasks' entries")
        unknown = sorted(set(self.multitask.loss_weights) - set(names))
        if unknown:
            raise ValueError(f"multitask.loss_weights names {', '.join(unknown)}, which is not a task; tasks are "
                             f"{', '.join(names)}")
        if any(weight < 0 for weight in self.multitask.loss_weights.values()):
            raise ValueError("multitask.loss_weights must be 0 or more")
        if self.peft.enabled or self.freeze != FreezeSpec() or self.augment.enabled:
            raise ValueError("multi-task runs fine-tune the whole shared encoder; remove the peft, freeze and "
                             "augment settings")
        return self

    @model_validator(mode="after")
    def _search_space_fits(self) -> Recipe:
        # Each searched path must be a field of this schema and every value it can take must make a valid recipe,
        # so a study fails at load time rather than at trial 7.
        if self.search.space:
            from tuneforge.search.space import space_problems

            problems = space_problems(self)
            if problems:
                raise ValueError("; ".join(problems))
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
            metric = {"regression": "rmse", "token-classification": "f1", "multilabel": "f1_micro",
                      "seq2seq": "loss", "causal-lm": "loss"}.get(self.task, "f1_macro")
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
    gate = recipe.refresh.gate
    if gate and not Path(gate).is_absolute():
        recipe.refresh.gate = str((base_dir / gate).resolve())
    corpus = recipe.pretrain.corpus
    if corpus and not Path(corpus).is_absolute():
        recipe.pretrain.corpus = str((base_dir / corpus).resolve())
    for spec in recipe.tasks:
        for split in ("train", "validation", "test"):
            value = getattr(spec.data, split)
            if value and not Path(value).is_absolute() and not value.startswith(("hf://", "http://", "https://")):
                setattr(spec.data, split, str((base_dir / value).resolve()))
    for kind in ("image_encoder", "audio_encoder"):  # a folder beside the recipe; otherwise a hub id
        value = getattr(recipe.features, kind)
        if value and not Path(value).is_absolute() and (base_dir / value).is_dir():
            setattr(recipe.features, kind, str((base_dir / value).resolve()))
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
    if isinstance(value, BaseModel):  # a nested section (train.distributed) is written inline
        value = value.model_dump(mode="json")
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
