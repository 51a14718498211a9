"""Where a run is written (output) and how a registered model is refreshed (refresh)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuneforge.recipe.section import Section


class OutputSpec(Section):
    dir: str | None = Field(None, description="Run directory; default runs/<task>-<timestamp>.")
    overwrite: bool = Field(False, description="Replace an existing finished run in `dir`.")
    tensorboard: Literal["auto", "on", "off"] = Field(
        "auto", description="TensorBoard logs in <dir>/tensorboard; auto writes them when tensorboard is installed."
    )
    tracking_uri: str | None = Field(
        None, description="MLflow tracking store for train.report_to: mlflow (sqlite:///path/mlflow.db or a server "
        "URL); empty: `tuneforge train` uses the local registry store in the tuneforge home folder.")
    experiment: str = Field("tuneforge", description="MLflow experiment the runs are logged under.")


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
