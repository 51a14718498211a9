"""The preference section: preference tuning (task preference: DPO, ORPO, KTO, SimPO) and reward modelling (task
reward), the columns their rows come in, and each method's own options with TRL's defaults.

The options go to TRL's config of the method as they are (train/pipelines/preference.py), so a field here reaches
the loss in one hop. An option of another method, or of another task, is refused rather than ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tuneforge.recipe.section import Section

PREFERENCE_TASKS = ("preference", "reward")
PreferenceMethod = Literal["dpo", "orpo", "kto", "simpo"]
# TRL's loss variants per method (DPOConfig.loss_type, KTOConfig.loss_type); the first is TRL's default.
LOSS_TYPES: dict[str, tuple[str, ...]] = {
    "dpo": ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
            "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"),
    "kto": ("kto", "apo_zero_unpaired"),
}
# Which method reads each option; `beta` and the columns belong to every method.
METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "loss_type": ("dpo", "kto"),
    "label_smoothing": ("dpo",),
    "desirable_weight": ("kto",),
    "undesirable_weight": ("kto",),
    "simpo_gamma": ("simpo",),
    "cpo_alpha": ("simpo",),
}
TUNING_ONLY = ("method", "beta", *METHOD_OPTIONS, "start_adapter")  # what a reward run has no use for
REWARD_ONLY = ("center_rewards_coefficient",)


class PreferenceSpec(Section):
    """Preference tuning and reward modelling: rows of a prompt with a chosen and a rejected response (text, or
    chats as lists of {role, content}), or KTO's unpaired prompt, completion and label."""

    method: PreferenceMethod = Field(
        "dpo", description="task preference: dpo (direct preference optimisation against the starting model), "
        "orpo (odds-ratio loss added to SFT, no reference model), kto (desirable/undesirable completions, pairs "
        "or unpaired rows), simpo (length-normalised, reference-free; TRL's CPO trainer with loss_type simpo).")
    beta: float = Field(
        0.1, gt=0, description="Strength of the preference term: DPO/KTO's deviation from the reference model, "
        "ORPO's odds-ratio weight (lambda), SimPO's reward scale. TRL's default for each method is 0.1.")
    loss_type: str | None = Field(
        None, description="dpo: sigmoid (default), hinge, ipo, robust, ... (TRL's DPO loss types); kto: kto "
        "(default) or apo_zero_unpaired. Empty: TRL's default.")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="dpo: probability that a preference label is "
                                   "flipped (robust and cDPO losses).")
    desirable_weight: float = Field(1.0, gt=0, description="kto: loss weight of desirable (chosen) completions.")
    undesirable_weight: float = Field(1.0, gt=0, description="kto: loss weight of undesirable (rejected) "
                                      "completions; raise it when they are fewer.")
    simpo_gamma: float = Field(0.5, ge=0, description="simpo: target reward margin between chosen and rejected.")
    cpo_alpha: float = Field(1.0, ge=0, description="simpo: weight of the SFT loss on the chosen responses "
                             "(TRL's default 1.0 is CPO-SimPO; 0 is SimPO as published).")
    center_rewards_coefficient: float | None = Field(
        None, ge=0, description="reward: pull the scores towards zero with this weight (TRL's RewardTrainer); "
        "empty: off.")
    chosen_column: str = Field("chosen", description="Column with the preferred response (text, or a chat).")
    rejected_column: str = Field("rejected", description="Column with the rejected response (text, or a chat).")
    completion_column: str = Field(
        "completion", description="kto, unpaired rows: column with one completion; data.label_column says "
        "whether it is desirable (true/false).")
    start_adapter: Literal["merge", "continue"] = Field(
        "merge", description="When model.name is a causal-lm run trained with a LoRA or (IA)3 adapter: merge "
        "starts from its merged model (a new adapter, if any, on top), continue trains its adapter further "
        "(peft.method must be the adapter's method).")


def _changed(spec: PreferenceSpec, names: tuple[str, ...]) -> list[str]:
    fields = PreferenceSpec.model_fields
    return [name for name in names if getattr(spec, name) != fields[name].default]


def preference_problem(recipe: Any) -> str | None:
    """What is wrong with the preference section for this recipe's task, or None."""
    spec: PreferenceSpec = recipe.preference
    if recipe.task not in PREFERENCE_TASKS:
        changed = _changed(spec, tuple(PreferenceSpec.model_fields))
        if changed:
            return (f"{', '.join(f'preference.{name}' for name in changed)}: options of tasks preference and "
                    f"reward; remove them for {recipe.task}")
        return None
    if recipe.loss.name != "auto":
        return f"task {recipe.task} trains with TRL's loss of its method; set loss.name: auto"
    if recipe.task == "reward":
        changed = _changed(spec, TUNING_ONLY)
        if changed:
            return (f"{', '.join(f'preference.{name}' for name in changed)}: options of task preference, which "
                    "tunes a language model; a reward model learns one score per response: remove them, or use "
                    "task preference")
        return None
    changed = _changed(spec, REWARD_ONLY)
    if changed:
        return f"preference.{changed[0]} applies to task reward; remove it for task preference"
    foreign = [name for name in _changed(spec, tuple(METHOD_OPTIONS)) if spec.method not in METHOD_OPTIONS[name]]
    if foreign:
        return "; ".join(f"preference.{name} is an option of method {' and '.join(METHOD_OPTIONS[name])}, not "
                         f"{spec.method}" for name in foreign) + ": remove it or change preference.method"
    if spec.loss_type is not None and spec.loss_type not in LOSS_TYPES[spec.method]:
        return (f"preference.loss_type '{spec.loss_type}' is not a {spec.method} loss; use one of "
                f"{', '.join(LOSS_TYPES[spec.method])}")
    return None
