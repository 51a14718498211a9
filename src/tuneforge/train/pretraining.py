"""Continued pretraining: the base model reads the user's unlabelled domain text before it sees any label.

Masked-LM for encoders, causal-LM for decoders, through the Trainer and Transformers' language-modelling
collator. A tenth of the corpus is held out and scored before and after, so the run records whether the model
actually learned the domain (held-out loss going down) rather than only that a stage ran.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    DataCollatorForLanguageModeling,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
)

from tuneforge import artifacts
from tuneforge.data.loading import read_table
from tuneforge.errors import DataError, Problem, TuneforgeError
from tuneforge.models.resolve import ResolvedModel
from tuneforge.models.vocabulary import initialise_embeddings
from tuneforge.recipe import Recipe
from tuneforge.tasks.text import tokenize_dataset

FINISHED = "pretraining.json"


def read_corpus(path: str, text_column: str, cache_dir: str | None = None) -> list[str]:
    """Non-empty texts of the corpus: a plain .txt file holds one text per line."""
    source = Path(path)
    if source.suffix.lower() == ".txt":
        if not source.is_file():
            raise DataError([Problem(where=str(source), message="corpus file not found",
                                     fix="check pretrain.corpus (relative paths are relative to the recipe)")])
        texts = [line.strip() for line in source.read_text(encoding="utf-8", errors="replace").splitlines()]
    else:
        table = read_table(source, "train", cache_dir)
        if text_column not in table.column_names:
            raise DataError([Problem(where=str(source), message=f"the corpus has no column '{text_column}'",
                                     fix=f"set pretrain.text_column to one of {', '.join(table.column_names)}")])
        texts = [str(t).strip() for t in table[text_column] if t is not None]
    texts = [t for t in texts if t]
    if len(texts) < 10:
        raise DataError([Problem(where=str(source), message=f"the corpus has {len(texts)} non-empty texts; "
                                 "continued pretraining needs at least 10", fix="add domain text to the corpus")])
    return texts


def pretraining_objective(recipe: Recipe, resolved: ResolvedModel) -> str:
    if recipe.pretrain.objective != "auto":
        return recipe.pretrain.objective
    config = AutoConfig.from_pretrained(resolved.path, trust_remote_code=recipe.model.trust_remote_code,
                                        local_files_only=resolved.offline)
    if getattr(config, "is_encoder_decoder", False):
        raise TuneforgeError(f"continued pretraining of the encoder-decoder '{resolved.requested}' is not supported",
                             fix="remove pretrain from train.stages, or use an encoder or a decoder model")
    architectures = config.architectures or []
    decoder = any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures)
    return "clm" if decoder else "mlm"


def _held_out_loss(trainer: Trainer, dataset: datasets.Dataset) -> float:
    torch.manual_seed(0)  # the same masks before and after, so the two losses compare
    return float(trainer.evaluate(dataset)["eval_loss"])


def continue_pretraining(recipe: Recipe, resolved: ResolvedModel, tokenizer: PreTrainedTokenizerBase,
                         new_pieces: dict[str, list[int]], output: Path, rules: Any = None,
                         use_cpu: bool = True, texts: list[str] | None = None) -> dict[str, Any]:
    """Adapt the base model to the corpus and save it (Transformers layout, safetensors) in `output`.

    `new_pieces` are domain words just added to the tokenizer, with their old pieces: their embeddings are
    initialised before pretraining, so pretraining trains them too. Returns what was measured.
    """
    spec = recipe.pretrain
    texts = texts or read_corpus(spec.corpus or "", spec.text_column, recipe.data.cache_dir)
    objective = pretraining_objective(recipe, resolved)
    auto_class = AutoModelForCausalLM if objective == "clm" else AutoModelForMaskedLM
    if objective == "mlm" and tokenizer.mask_token is None:
        raise TuneforgeError(f"'{resolved.requested}' has no mask token, so it cannot be pretrained as a masked LM",
                             fix="set pretrain.objective: clm for a decoder")
    model = auto_class.from_pretrained(resolved.path, dtype=torch.float32, use_safetensors=True,
                                       trust_remote_code=recipe.model.trust_remote_code,
                                       local_files_only=resolved.offline)
    if new_pieces:
        initialise_embeddings(model, tokenizer, new_pieces)

    held_out_size = max(1, len(texts) // 10)
    corpus = datasets.Dataset.from_dict({"text": texts}).shuffle(seed=recipe.train.seed)
    splits = {"train": corpus.select(range(held_out_size, len(corpus))),
              "held_out": corpus.select(range(held_out_size))}
    tokenized = {role: tokenize_dataset(split, tokenizer, "text", None, recipe.train.max_length, keep=(),
                                        desc=f"tokenizing the pretraining {role} corpus", rules=rules)
                 for role, split in splits.items()}
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=objective == "mlm",
                                               mlm_probability=spec.mlm_probability, seed=recipe.train.seed)
    args = TrainingArguments(
        output_dir=str(output.with_name(".pretraining-checkpoints")), learning_rate=spec.learning_rate,
        per_device_train_batch_size=spec.batch_size, per_device_eval_batch_size=spec.batch_size,
        num_train_epochs=spec.epochs, max_steps=spec.max_steps if spec.max_steps > 0 else -1,
        warmup_steps=recipe.train.warmup_ratio, weight_decay=recipe.train.weight_decay, seed=recipe.train.seed,
        use_cpu=use_cpu, save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
        logging_strategy="no",
    )
    trainer = Trainer(model=model, args=args, train_dataset=tokenized["train"], data_collator=collator,
                      processing_class=tokenizer)
    before = _held_out_loss(trainer, tokenized["held_out"])
    started = time.time()
    result = trainer.train()
    after = _held_out_loss(trainer, tokenized["held_out"])

    def save(folder: Path) -> None:
        trainer.model.save_pretrained(str(folder), safe_serialization=True)
        tokenizer.save_pretrained(str(folder))

    artifacts.write_directory(output, save)
    report = {"objective": objective, "corpus": spec.corpus, "train_texts": len(tokenized["train"]),
              "held_out_texts": len(tokenized["held_out"]), "steps": result.global_step,
              "runtime_seconds": round(time.time() - started, 2), "held_out_loss_before": round(before, 4),
              "held_out_loss_after": round(after, 4),
              "held_out_perplexity_before": round(math.exp(min(before, 50)), 2),
              "held_out_perplexity_after": round(math.exp(min(after, 50)), 2)}
    artifacts.write_json(output / FINISHED, report)
    return report
