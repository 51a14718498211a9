"""Domain adaptation of sentence encoders that ship no language-model head: TSDAE and SimCSE.

Masked-LM pretraining needs the model's MLM head; a sentence encoder such as the bundled minilm was published
without it, so masked-LM would first have to learn a head from nothing on the user's (usually small) corpus. Two
unsupervised objectives train the encoder itself instead, through sentence-transformers:

- TSDAE (Wang et al., 2021): a decoder must rebuild each text from the sentence embedding of a copy with 60% of
  its words deleted (DenoisingAutoEncoderLoss, the decoder tied to the encoder's weights).
- SimCSE (Gao et al., 2021): two dropout views of the same text must embed closer to each other than to the other
  texts of the batch (MultipleNegativesRankingLoss on (text, text) pairs).

Both pool the first token, the one Transformers' classification heads read, so what is adapted is what the task
head is put on. The output replaces the base model exactly as continued pretraining's does (train/domain.py). A
tenth of the corpus is held out and scored before and after with the same objective (for SimCSE against a copy
with words deleted, as identical views score trivially once dropout is off), so the run records whether the
encoder learned the domain.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import AutoConfig, AutoModelForMaskedLM, PreTrainedTokenizerBase

from tuneforge import artifacts
from tuneforge.errors import TuneforgeError
from tuneforge.models.resolve import ResolvedModel
from tuneforge.models.vocabulary import initialise_embeddings
from tuneforge.recipe import Recipe
from tuneforge.train.pretraining import FINISHED, pretraining_objective

SENTENCE_OBJECTIVES = ("tsdae", "simcse")
DELETION_RATIO = 0.6  # TSDAE's best noise in the paper: delete 60% of the words
# Architectures and weight names that show the checkpoint carries its language-model head.
HEAD_ARCHITECTURES = ("ForMaskedLM", "ForPreTraining", "ForCausalLM", "LMHeadModel", "WithLMHead",
                      "ForConditionalGeneration")
HEAD_WEIGHTS = ("cls.predictions.", "lm_head.", "generator_lm_head.", "vocab_projector.", "vocab_transform.")


def _weight_names(folder: Path) -> list[str]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return list(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}))
    single = folder / "model.safetensors"
    if not single.is_file():
        return []
    from safetensors import safe_open

    with safe_open(str(single), framework="pt") as handle:
        return list(handle.keys())


def has_language_model_head(config: Any, folder: str | Path) -> bool:
    """Whether the checkpoint ships its pretraining head: named in config.architectures, or present among the
    weights (some checkpoints list only the bare encoder class but keep the head's tensors)."""
    if any(name.endswith(HEAD_ARCHITECTURES) for name in getattr(config, "architectures", None) or []):
        return True
    path = Path(folder)
    return path.is_dir() and any(name.startswith(HEAD_WEIGHTS) or f".{HEAD_WEIGHTS[0]}" in name
                                 for name in _weight_names(path))


def choose_objective(recipe: Recipe, resolved: ResolvedModel) -> tuple[str, str | None]:
    """(objective, warning): `auto` takes the model's own LM objective when it ships the head, tsdae for an
    encoder without one; an explicit mlm on an encoder without its head is kept, with a warning naming tsdae."""
    asked = recipe.pretrain.objective
    if asked in SENTENCE_OBJECTIVES:
        return asked, None
    config = AutoConfig.from_pretrained(resolved.path, trust_remote_code=recipe.model.trust_remote_code,
                                        local_files_only=resolved.offline)
    encoder = type(config) in AutoModelForMaskedLM._model_mapping and not getattr(config, "is_encoder_decoder",
                                                                                   False)
    headless = encoder and not has_language_model_head(config, resolved.path)
    if asked == "auto":
        return ("tsdae", None) if headless else (pretraining_objective(recipe, resolved), None)
    if asked == "mlm" and headless:
        return "mlm", (f"'{resolved.requested}' ships no masked-LM head, so masked-LM pretraining first trains a new "
                       "head from nothing on the corpus; pretrain.objective: tsdae (or simcse) adapts an encoder "
                       "without one, and auto picks tsdae for it")
    return asked, None


def _delete_words(text: str, rng: random.Random) -> str:
    """TSDAE's noise on whitespace words. sentence-transformers' DenoisingAutoEncoderDataset belongs to its
    deprecated fit API and needs NLTK's punkt data, which is not there offline, hence these lines."""
    words = text.split()
    if not words:
        return text
    kept = [word for word in words if rng.random() > DELETION_RATIO]
    return " ".join(kept or [rng.choice(words)])


def _sentence_model(recipe: Recipe, resolved: ResolvedModel, tokenizer: PreTrainedTokenizerBase,
                    new_pieces: dict[str, list[int]], device: str) -> Any:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    module = Transformer(str(resolved.path), max_seq_length=recipe.train.max_length,
                         model_kwargs={"trust_remote_code": recipe.model.trust_remote_code,
                                       "local_files_only": resolved.offline, "dtype": torch.float32},
                         processor_kwargs={"local_files_only": resolved.offline})
    module.processor = tokenizer  # the run's tokenizer, new domain words included
    if new_pieces:
        initialise_embeddings(module.auto_model, tokenizer, new_pieces)
    return SentenceTransformer(modules=[module, Pooling(module.get_embedding_dimension(), "cls")], device=device)


def _loss(objective: str, model: Any) -> Any:
    from sentence_transformers.sentence_transformer import losses

    if objective == "tsdae":
        return losses.DenoisingAutoEncoderLoss(model, tie_encoder_decoder=True)
    return losses.MultipleNegativesRankingLoss(model)


def _datasets(objective: str, texts: Sequence[str], seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The training pairs (fresh noise each time a TSDAE row is read) and the held-out pairs (fixed noise)."""
    unique = list(dict.fromkeys(texts))  # a text twice in a batch would be its own in-batch negative (SimCSE)
    random.Random(seed).shuffle(unique)
    held_count = max(1, len(unique) // 10)
    held, train = unique[:held_count], unique[held_count:]
    rng = random.Random(seed)
    held_out = datasets.Dataset.from_dict({"damaged": [_delete_words(t, rng) for t in held], "text": held})
    if objective == "simcse":
        return datasets.Dataset.from_dict({"anchor": train, "positive": train}), held_out
    noise = random.Random(seed + 1)

    def damage(batch: dict[str, list[str]]) -> dict[str, list[str]]:
        return {"damaged": [_delete_words(t, noise) for t in batch["text"]], "text": batch["text"]}

    training = datasets.Dataset.from_dict({"text": train})
    training.set_transform(damage)
    return training, held_out


def adapt_sentence_encoder(recipe: Recipe, resolved: ResolvedModel, tokenizer: PreTrainedTokenizerBase,
                           new_pieces: dict[str, list[int]], output: Path, objective: str, texts: Sequence[str],
                           rules: Any = None, use_cpu: bool = True) -> dict[str, Any]:
    """Adapt the encoder to the corpus with `objective` (tsdae or simcse) and save it (Transformers layout,
    safetensors) in `output`, with pretraining.json as continued pretraining writes it; returns the report."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    if objective not in SENTENCE_OBJECTIVES:
        raise TuneforgeError(f"'{objective}' is not a sentence-encoder objective",
                             fix=f"use one of {', '.join(SENTENCE_OBJECTIVES)}")
    spec = recipe.pretrain
    texts = rules.apply(list(texts)) if rules is not None else list(texts)
    device = "cpu" if use_cpu else ("cuda" if torch.cuda.is_available() else "cpu")
    model = _sentence_model(recipe, resolved, tokenizer, new_pieces, device)
    train, held_out = _datasets(objective, texts, recipe.train.seed)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(output.with_name(".pretraining-checkpoints")), learning_rate=spec.learning_rate,
        per_device_train_batch_size=spec.batch_size, per_device_eval_batch_size=spec.batch_size,
        num_train_epochs=spec.epochs, max_steps=spec.max_steps if spec.max_steps > 0 else -1,
        warmup_steps=recipe.train.warmup_ratio, weight_decay=recipe.train.weight_decay, seed=recipe.train.seed,
        use_cpu=use_cpu, batch_sampler=BatchSamplers.NO_DUPLICATES if objective == "simcse" else
        BatchSamplers.BATCH_SAMPLER, save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
        logging_strategy="no", remove_unused_columns=False)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=_loss(objective, model))

    def held_out_loss() -> float:
        torch.manual_seed(0)
        return float(trainer.evaluate(held_out)["eval_loss"])

    before = held_out_loss()
    started = time.time()
    result = trainer.train()
    after = held_out_loss()
    encoder = model[0].auto_model

    def save(folder: Path) -> None:
        encoder.save_pretrained(str(folder), safe_serialization=True)
        tokenizer.save_pretrained(str(folder))

    artifacts.write_directory(output, save)
    report = {"objective": objective, "corpus": spec.corpus, "train_texts": len(train),
              "held_out_texts": len(held_out), "steps": result.global_step,
              "runtime_seconds": round(time.time() - started, 2), "held_out_loss_before": round(before, 4),
              "held_out_loss_after": round(after, 4),
              "held_out_perplexity_before": round(math.exp(min(before, 50)), 2) if objective == "tsdae" else None,
              "held_out_perplexity_after": round(math.exp(min(after, 50)), 2) if objective == "tsdae" else None}
    artifacts.write_json(output / FINISHED, report)
    return report
