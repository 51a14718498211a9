"""What is measured besides the task metrics: calibration, fairness and evaluation plug-ins."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuneforge.recipe.section import Section


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
    explain_methods: list[Literal["ig", "shap", "lime", "attention", "all"]] = Field(
        default_factory=lambda: ["ig", "attention"],
        description="How the test examples are explained after training: the fast gradient and attention methods "
        "by default, so the end of a run stays short; add shap and lime (or all) for the slower model-agnostic "
        "ones, or run `tuneforge explain RUN --method all` later.")
