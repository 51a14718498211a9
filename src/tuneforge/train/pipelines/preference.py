"""The pipeline of preference tuning (task preference: DPO, ORPO, KTO, SimPO) and reward modelling (task reward).

The loop is TRL's: `build_trainer` returns the method's TRL trainer, whose config *is* a TrainingArguments, built by
copying the skeleton's arguments and adding the method's options from the recipe's preference section. So the run
directory, lock, signals and exact resume, metrics block and report are the skeleton's, as for every kind.

What is written here rather than taken from TRL, and why:
- the data checks (data/preference_data.py), so a bad row is reported like every other task's;
- the held-out scores at the end, one definition for every method (TRL's differ: DPO sums log-probabilities
  against a reference, ORPO and SimPO average them without one, KTO reports no pair accuracy), so methods compare:
  the summed log-probability of each chosen and rejected completion under the tuned and the starting model, and
  the reward beta * (tuned - starting), DPO's implicit reward. TRL's own evaluation of the method is kept beside it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainingArguments

from tuneforge import artifacts
from tuneforge.data.preference_data import UNPAIRED, PreferenceData, prepare_preference_data
from tuneforge.errors import Problem, TuneforgeError
from tuneforge.kinds import GENERATIVE, PREFERENCE
from tuneforge.models.freezing import apply_freezing, count_parameters
from tuneforge.models.loading import (
    check_generative_model,
    load_generative_model,
    load_sequence_model,
    load_tokenizer,
)
from tuneforge.models.peft import (
    _base_model,
    adapter_type,
    build_peft_config,
    quantized_loading,
    save_adapter,
)
from tuneforge.models.resolve import ResolvedModel, resolve_model
from tuneforge.predict.preference import completion_log_probs, pair_summary, reward_scores, sequence_ids
from tuneforge.recipe import PeftMethod, Recipe
from tuneforge.run import RunLayout, read_kind, read_run_recipe
from tuneforge.tasks import causal_lm
from tuneforge.train.pipelines.base import RunPipeline, RunState, Warnings, save_model

# method -> (module, config class, trainer class); ORPO and CPO (SimPO's trainer) are in TRL's experimental package.
TRAINERS = {
    "dpo": ("trl", "DPOConfig", "DPOTrainer"),
    "orpo": ("trl.experimental.orpo", "ORPOConfig", "ORPOTrainer"),
    "kto": ("trl", "KTOConfig", "KTOTrainer"),
    "simpo": ("trl.experimental.cpo", "CPOConfig", "CPOTrainer"),
    "reward": ("trl", "RewardConfig", "RewardTrainer"),
}
HEAD_TASK = {"preference": "causal-lm", "reward": "regression"}  # how models/peft.py rebuilds the adapter's model
TRL_SKIPPED = ("runtime", "samples_per_second", "steps_per_second", "model_preparation_time", "epoch",
               "num_tokens")


def _method(recipe: Recipe) -> str:
    return "reward" if recipe.task == "reward" else recipe.preference.method


def trl_classes(name: str) -> tuple[type, type]:
    """(config class, trainer class) of a method; TRL is imported here, by the runs that use it (2 s of import)."""
    module_name, config, trainer = TRAINERS[name]
    if importlib.util.find_spec("trl") is None:
        raise TuneforgeError("preference and reward runs train with TRL, which is not installed",
                             fix="pip install 'tuneforge[preference]' (or pip install trl)")
    module = importlib.import_module(module_name)
    return getattr(module, config), getattr(module, trainer)


def method_options(recipe: Recipe) -> dict[str, Any]:
    """The recipe's options of its method, named as TRL's config names them; what is left out keeps TRL's default."""
    spec = recipe.preference
    options: dict[str, Any] = {"max_length": recipe.train.max_length}
    method = _method(recipe)
    if method == "reward":
        return {**options, "center_rewards_coefficient": spec.center_rewards_coefficient}
    options["beta"] = spec.beta
    if method == "dpo":
        options["label_smoothing"] = spec.label_smoothing
        if spec.loss_type:
            options["loss_type"] = [spec.loss_type]
    elif method == "kto":
        options.update(desirable_weight=spec.desirable_weight, undesirable_weight=spec.undesirable_weight)
        if spec.loss_type:
            options["loss_type"] = spec.loss_type
    elif method == "simpo":
        options.update(loss_type="simpo", simpo_gamma=spec.simpo_gamma, cpo_alpha=spec.cpo_alpha)
    return options


def method_config(config_class: type, args: TrainingArguments, options: dict[str, Any]) -> TrainingArguments:
    """The skeleton's arguments copied field by field into the method's config (a TrainingArguments subclass),
    with the method's options on top: one object from recipe to trainer."""
    copied = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init}
    return config_class(**(copied | options))


# ------------------------------------------------------------------------------------------------------
# Where a run starts: a base model, or an earlier causal-lm run (merged, or its adapter continued)
# ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Start:
    resolved: ResolvedModel  # what the weights load from
    tokenizer: ResolvedModel  # what the tokenizer (and its chat template) loads from
    run: Path | None = None  # the earlier run model.name names
    adapter: Path | None = None  # its adapter, trained further
    model_spec: Any = None  # the earlier run's model section (continue: the base the adapter belongs to)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.resolved.path, "run": str(self.run) if self.run else None,
                "adapter": "continued" if self.adapter else ("merged" if self.run else None)}


def starting_point(recipe: Recipe) -> Start:
    """What `model.name` names: a model, or a finished run whose model (merged) or adapter (continued) is the start;
    refused, with the fix, when that run cannot start this kind of run."""
    path = Path(recipe.model.name).expanduser()
    mode = recipe.preference.start_adapter
    if not (path.is_dir() and (path / "recipe.yaml").is_file()):
        if mode == "continue":
            raise TuneforgeError(f"preference.start_adapter continue trains an earlier run's adapter further, but "
                                 f"model.name '{recipe.model.name}' is not a tuneforge run",
                                 fix="point model.name at a causal-lm run trained with peft.method lora or ia3, or "
                                     "set preference.start_adapter: merge")
        resolved = resolve_model(recipe.model.name)
        return Start(resolved, resolved)
    earlier = read_run_recipe(path)
    kind = read_kind(path, earlier)
    if recipe.task == "preference" and (kind.name not in (GENERATIVE, PREFERENCE) or earlier.task == "seq2seq"):
        raise TuneforgeError(f"model.name '{recipe.model.name}' is a {earlier.task} run; preference tuning starts "
                             "from a decoder", fix="point model.name at a causal-lm (or preference) run, or at a "
                                                   "decoder model")
    layout = RunLayout(path)
    if mode == "merge":
        if not layout.has_model():
            raise TuneforgeError(f"run '{path}' has no model/ to start from (its adapter adds virtual tokens, which "
                                 "cannot be merged)", fix="start from its base model instead, with a new adapter")
        resolved = ResolvedModel(recipe.model.name, str(layout.model), "run")
        return Start(resolved, resolved, run=path)
    if recipe.task != "preference":
        raise TuneforgeError("preference.start_adapter continue applies to task preference; a reward model gets a "
                             "new score head", fix="set preference.start_adapter: merge")
    if not layout.has_adapter():
        raise TuneforgeError(f"run '{path}' has no adapter to continue (it trained every weight)",
                             fix="set preference.start_adapter: merge")
    method = PeftMethod(recipe.peft.method)
    trained = adapter_type(layout)
    if method.adapter_type is None or str(method.adapter_type) != trained:
        raise TuneforgeError(f"run '{path}' has a {trained.lower()} adapter; continuing it needs peft.method set to "
                             f"that method (now {method})", fix=f"set peft.method: {trained.lower()}, or "
                                                                "preference.start_adapter: merge")
    base = _base_model(earlier, layout)
    return Start(base, ResolvedModel(recipe.model.name, str(layout.adapter), "local"), run=path,
                 adapter=layout.adapter, model_spec=earlier.model)


def _record_continued_base(state: RunState, start: Start) -> None:
    """A continued adapter belongs to the earlier run's base model, not to its merged model: the run's recipe
    names that base, so merging, loading and `tuneforge export` rebuild the right model (data.json keeps the run it
    started from)."""
    base = start.resolved.path
    name = str(Path(base).resolve()) if start.resolved.source != "hub" else base
    state.recipe.model = start.model_spec.model_copy(update={"name": name})
    artifacts.write_text(state.layout.recipe, state.recipe.to_yaml())


# ------------------------------------------------------------------------------------------------------
# The pipeline
# ------------------------------------------------------------------------------------------------------

class PreferencePipeline(RunPipeline):
    """preference and reward runs, trained by TRL's trainer of the method."""

    def prepare(self, state: RunState, on_warnings: Warnings) -> None:
        recipe = state.recipe
        reward = recipe.task == "reward"
        quantization = quantized_loading(recipe.peft, state.device)
        start = starting_point(recipe)
        spec = recipe.model if start.model_spec is None else start.model_spec  # a continued adapter's base
        if not reward:
            check_generative_model(spec, "causal-lm", start.resolved)
        data = prepare_preference_data(recipe)
        state.data = data
        if on_warnings is not None and data.warnings:
            on_warnings(data.warnings)
        trl_classes(_method(recipe))  # a missing TRL fails before a model is loaded
        tokenizer = load_tokenizer(spec, start.tokenizer)
        causal_lm.require_eos(tokenizer, recipe.model.name)  # TRL ends every plain-text response with it
        if not reward or data.chat:
            causal_lm.ensure_chat_template(tokenizer)  # saved with the model: chat predictions use it
        if reward:
            model = load_sequence_model(spec, "regression", None, start.resolved, tokenizer.pad_token_id,
                                        **quantization)
        else:
            model = load_generative_model(spec, "causal-lm", start.resolved, **quantization)
            if model.config.pad_token_id is None:
                model.config.pad_token_id = tokenizer.pad_token_id
            model.config.use_cache = False
        if start.adapter is not None:
            from peft import PeftModel

            # TRL's DPO and KTO copy a loaded adapter as the reference, so the reference is the earlier run.
            model = PeftModel.from_pretrained(model, str(start.adapter), is_trainable=True)
            _record_continued_base(state, start)
        elif recipe.peft.enabled:
            if recipe.peft.method == "qlora":
                from peft import prepare_model_for_kbit_training

                model = prepare_model_for_kbit_training(
                    model, use_gradient_checkpointing=recipe.train.gradient_checkpointing,
                    gradient_checkpointing_kwargs={"use_reentrant": False})
            # TRL wraps the model itself from this config, so its reference is the model with the adapter off.
            state.extras["peft_config"] = build_peft_config(model, recipe.peft, HEAD_TASK[recipe.task])
        else:
            apply_freezing(model, recipe.freeze)
            if not reward and recipe.preference.method in ("dpo", "kto"):
                # The reference is a second copy of the starting model, loaded as the policy was: TRL would reload
                # it from the config's path by itself, without the recipe's revision or the offline hub cache.
                state.extras["reference_model"] = functools.partial(load_generative_model, spec, "causal-lm",
                                                                    start.resolved)
        if not hasattr(model, "hf_device_map"):
            model.to(state.device)
        state.model, state.tokenizer = model, tokenizer
        state.parameters = count_parameters(model)
        state.splits = {role: split for role, split in (("train", self._train_rows(recipe, data)),
                                                        ("validation", data.validation), ("test", data.test))
                        if split is not None and len(split)}
        if not reward:  # the starting model's log-probabilities of the held-out completions, before any step
            state.extras["reference"] = {role: _log_probs(model, tokenizer, split, recipe, state.device)
                                         for role, split in state.splits.items() if role != "train"}
        lengths = _length_statistics(tokenizer, state.splits, recipe.train.max_length)
        cut = {role: stats["truncated_share"] for role, stats in lengths.items() if stats["truncated_share"] > 0}
        if cut and on_warnings is not None:
            on_warnings([Problem(
                where="train.max_length", severity="warning",
                message=f"{', '.join(f'{share:.0%} of {role}' for role, share in cut.items())} rows are longer than "
                        f"{recipe.train.max_length} tokens; their ends, where chosen and rejected responses differ, "
                        "are cut", fix="raise train.max_length (data.json lists the lengths)")])
        _write_data_summary(state.layout, data, state.splits, start, lengths)

    @staticmethod
    def _train_rows(recipe: Recipe, data: PreferenceData) -> Any:
        """KTO's training rows unpaired (pairs become a desirable and an undesirable row) and shuffled once, seeded:
        TRL requires KTO to read them in order, since each batch's KL estimate pairs neighbouring rows."""
        if recipe.task != "preference" or recipe.preference.method != "kto":
            return data.train
        from trl.data_utils import unpair_preference_dataset

        rows = data.train if data.layout == UNPAIRED else unpair_preference_dataset(data.train)
        return rows.shuffle(seed=recipe.train.seed).flatten_indices()

    def collator(self, state: RunState) -> None:
        return None  # TRL's trainer builds its method's collator

    def compute_metrics(self, state: RunState) -> None:
        return None  # TRL logs its method's metrics with every evaluation

    def adjust_arguments(self, args: TrainingArguments, state: RunState) -> None:
        args.prediction_loss_only = True
        if args.train_sampling_strategy == "group_by_length":
            args.train_sampling_strategy = "random"  # TRL's tokenised pairs have no one input_ids column to group by

    def build_trainer(self, state: RunState, args: TrainingArguments, callbacks: list[Any]) -> Trainer:
        method = _method(state.recipe)
        config_class, trainer_class = trl_classes(method)
        options = method_options(state.recipe)
        if method == "kto":
            options["train_sampling_strategy"] = "sequential"  # see _train_rows
        config = method_config(config_class, args, options)
        extra = {"peft_config": state.extras["peft_config"]} if "peft_config" in state.extras else {}
        if "reference_model" in state.extras:
            extra["ref_model"] = state.extras["reference_model"]().eval()
        return trainer_class(model=state.model, args=config, train_dataset=state.splits["train"],
                             eval_dataset=state.splits.get("validation"), processing_class=state.tokenizer,
                             callbacks=callbacks, **extra)

    def save(self, trainer: Trainer, state: RunState) -> None:
        trained = trainer.accelerator.unwrap_model(trainer.model)
        if state.recipe.task == "preference":
            trained.config.use_cache = True
        if state.recipe.peft.enabled:
            artifacts.write_directory(state.layout.adapter, functools.partial(
                _save_adapter, trained, state.tokenizer, HEAD_TASK[state.recipe.task]))
        else:
            artifacts.write_directory(state.layout.model, functools.partial(save_model, trained, state.tokenizer))

    def metrics_header(self, state: RunState) -> dict[str, Any]:
        recipe = state.recipe
        header = {"task": recipe.task, "model": recipe.model.name, "labels": None}
        if recipe.task == "preference":
            header.update(method=recipe.preference.method, beta=recipe.preference.beta)
        return header

    def training_metrics(self, trainer: Trainer, state: RunState) -> dict[str, Any]:
        data: PreferenceData = state.data
        return {"trainer": type(trainer).__name__, "layout": data.layout, "chat": data.chat,
                "options": method_options(state.recipe)}

    def evaluate(self, trainer: Trainer, state: RunState, metrics: dict[str, Any]) -> None:
        trained = trainer.accelerator.unwrap_model(trainer.model)
        for role in ("validation", "test"):
            split = state.splits.get(role)
            if split is None:
                continue
            block = _held_out(trained, state, role, split)
            rows = _tokenised(trainer, split) if _method(state.recipe) in ("orpo", "simpo") else split
            block["trl"] = _trl_metrics(trainer.evaluate(rows, metric_key_prefix=role), role)
            block["loss"] = block["trl"].pop("loss", None)
            metrics[role] = block


def _tokenised(trainer: Trainer, split: Any) -> Any:
    """A held-out split tokenised as TRL's experimental ORPO and CPO trainers tokenise the datasets they are built
    with: unlike DPO, KTO and the reward trainer, their `evaluate` does not tokenise a dataset handed to it. The
    fingerprints are given: `datasets` would otherwise hash the trainer behind `tokenize_row` (seconds per split)."""
    from datasets.fingerprint import Hasher
    from trl.data_utils import maybe_apply_chat_template, maybe_extract_prompt

    key = Hasher.hash((split._fingerprint, type(trainer).__name__, trainer.processing_class.name_or_path,
                       trainer.args.max_length))
    rows = split.map(maybe_extract_prompt, new_fingerprint=f"{key}-prompt")
    rows = rows.map(maybe_apply_chat_template, fn_kwargs={"processing_class": trainer.processing_class},
                    new_fingerprint=f"{key}-chat")
    return rows.map(trainer.tokenize_row, new_fingerprint=f"{key}-tokens")


def _trl_metrics(result: dict[str, Any], role: str) -> dict[str, float]:
    """TRL's evaluation of a split, keys without their prefix (TRL's own metrics come back as eval_*)."""
    found = {}
    for key, value in result.items():
        name = key.removeprefix(f"{role}_").removeprefix("eval_")
        if isinstance(value, (int, float)) and not any(name.endswith(skip) for skip in TRL_SKIPPED):
            found[name] = float(value)
    return found


def _completions(split: Any) -> tuple[list[Any], list[Any], list[Any]]:
    """(prompts, first completions, second completions) of pairs; unpaired rows give (prompts, completions, [])."""
    if "completion" in split.column_names:
        return list(split["prompt"]), list(split["completion"]), []
    return list(split["prompt"]), list(split["chosen"]), list(split["rejected"])


def _log_probs(model: Any, tokenizer: Any, split: Any, recipe: Recipe, device: torch.device
               ) -> tuple[np.ndarray, np.ndarray]:
    prompts, first, second = _completions(split)
    score = functools.partial(completion_log_probs, model, tokenizer, max_length=recipe.train.max_length,
                              device=device, batch_size=min(recipe.train.eval_batch_size, 16))
    return score(prompts, first), (score(prompts, second) if second else np.zeros(0))


def _held_out(model: Any, state: RunState, role: str, split: Any) -> dict[str, Any]:
    """The uniform held-out scores of a split (see the module docstring)."""
    recipe = state.recipe
    if recipe.task == "reward":
        prompts, chosen, rejected = _completions(split)
        score = functools.partial(reward_scores, model, state.tokenizer, max_length=recipe.train.max_length,
                                  device=state.device, batch_size=min(recipe.train.eval_batch_size, 16))
        good, bad = score(prompts, chosen), score(prompts, rejected)
        return {**pair_summary(good, bad), "score_chosen": float(good.mean()), "score_rejected": float(bad.mean())}
    beta = recipe.preference.beta
    first, second = _log_probs(model, state.tokenizer, split, recipe, state.device)
    reference_first, reference_second = state.extras["reference"][role]
    if "completion" in split.column_names:  # unpaired: desirable against undesirable, no pairs to count
        desirable = np.asarray(split["label"], dtype=bool)

        def gap(values: np.ndarray) -> float | None:
            both = desirable.any() and (~desirable).any()
            return float(values[desirable].mean() - values[~desirable].mean()) if both else None

        return {"reward_accuracy": None, "reward_margin": gap(beta * (first - reference_first)),
                "logps_chosen": float(first[desirable].mean()) if desirable.any() else None,
                "logps_rejected": float(first[~desirable].mean()) if (~desirable).any() else None,
                "logps_margin": gap(first), "reference_logps_margin": gap(reference_first), "pairs": 0}
    block = pair_summary(beta * (first - reference_first), beta * (second - reference_second))
    return {**block, "logps_chosen": float(first.mean()), "logps_rejected": float(second.mean()),
            "logps_margin": float((first - second).mean()),
            "reference_logps_margin": float((reference_first - reference_second).mean()),
            "logps_accuracy": float((first > second).mean()),  # the tuned model alone prefers the chosen one
            "reference_logps_accuracy": float((reference_first > reference_second).mean())}


def _save_adapter(model: Any, tokenizer: Any, task: str, folder: Path) -> None:
    """The trained adapter alone: TRL's copy of a continued adapter, the frozen reference, stays out."""
    save_adapter(model, tokenizer, task, folder)
    shutil.rmtree(folder / "ref", ignore_errors=True)


def _length_statistics(tokenizer: Any, splits: dict[str, Any], max_length: int) -> dict[str, dict[str, float]]:
    """Tokens of prompt + response per split (the longer response of a pair), and the share cut at max_length."""
    stats = {}
    for role, split in splits.items():
        prompts, first, second = _completions(split)
        sizes = np.asarray([max(len(sequence_ids(tokenizer, prompt, answer)[0]) for answer in answers)
                            for prompt, *answers in zip(prompts, first, *([second] if second else []), strict=True)])
        stats[role] = {"mean": float(sizes.mean()), "p95": float(np.percentile(sizes, 95)), "max": int(sizes.max()),
                       "truncated_share": float((sizes > max_length).mean())}
    return stats


def _write_data_summary(layout: RunLayout, data: PreferenceData, splits: dict[str, Any], start: Start,
                        lengths: dict[str, dict[str, float]]) -> None:
    summary = {
        "sources": data.sources,
        "rows": {role: len(split) for role, split in splits.items()},
        "format": f"{data.layout} of {'chats' if data.chat else 'texts'}",
        "layout": data.layout,
        "chat": data.chat,
        "start": start.to_json(),
        "text_lengths": lengths,
        "warnings": [str(w) for w in data.warnings],
    }
    artifacts.write_json(layout.data_summary, summary)
