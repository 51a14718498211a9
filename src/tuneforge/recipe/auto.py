"""The auto section: `tuneforge auto`, a study over whole strategies within a wall-clock budget."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tuneforge.recipe.section import Section

AutoStrategy = Literal["loss", "augmentation", "contrastive", "hyperparameters"]
AUTO_STRATEGIES: tuple[str, ...] = ("loss", "augmentation", "contrastive", "hyperparameters")


class AutoSpec(Section):
    """What `tuneforge auto` may try and how long it may take; the recipe itself is always trial 0."""

    budget_minutes: float = Field(30.0, gt=0, description="Wall-clock budget of the whole study (trials, the "
                                  "ensemble and the final test scoring); a trial still running at the end is "
                                  "stopped, except the default recipe's, which always finishes.")
    strategies: list[AutoStrategy] = Field(
        default_factory=lambda: list(AUTO_STRATEGIES),
        description="loss (label smoothing, focal loss, class weights), augmentation (word shuffling; EDA when "
        "WordNet is installed), contrastive (few-shot contrastive training; only below "
        "contrastive_rows_per_class), hyperparameters (learning rate, epochs, batch size, warm-up, scheduler, "
        "searched by Optuna's TPE with successive-halving pruning).")
    seeds: int = Field(2, ge=1, le=10, description="Seeds each strategy is measured with against the default "
                       "recipe (the ablation table's spread); more seeds, steadier effects, fewer trials for the "
                       "search.")
    contrastive_rows_per_class: int = Field(50, ge=2, description="contrastive training is tried only when the "
                                            "smallest class has fewer training rows than this.")
    ensemble_size: int = Field(3, ge=0, le=10, description="Best trials combined into an ensemble, kept only if "
                               "it beats the best single trial on validation; 0 or 1: no ensemble.")
    folds: int = Field(0, ge=0, le=10, description="0: choose among the trials on the validation split. 2 or more: "
                       "the best `finalists` trials are each retrained on that many folds of train + validation "
                       "(stratified, made once) and the choice follows the mean fold score; that is folds x "
                       "finalists more trainings, kept out of the trials' share of the budget, so it suits small "
                       "data (validation under about 500 rows, where one split ranks trials poorly).")
    finalists: int = Field(3, ge=2, le=10, description="folds: the best trials re-scored by cross-validation.")
    dir: str | None = Field(None, description="Study directory (study.db, trials/<n>/, auto.json, best/); default: "
                            "output.dir, else autos/<task>.")

    @field_validator("folds")
    @classmethod
    def _folds_split(cls, value: int) -> int:
        if value == 1:
            raise ValueError("one fold is no cross-validation; use 0 (choose on the validation split) or 2 or more")
        return value
