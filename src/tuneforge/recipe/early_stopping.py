"""The early_stopping section: when training stops because validation stopped improving."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuneforge.recipe.section import Section


class EarlyStoppingSpec(Section):
    enabled: bool = Field(True, description="Stop when the validation metric stops improving.")
    metric: str = Field("auto", description="Metric to watch; auto: f1_macro (classification), rmse (regression), "
                                             "f1 (token-classification), f1_micro (multilabel) or loss "
                                             "(seq2seq, causal-lm).")
    mode: Literal["auto", "max", "min"] = Field("auto", description="Whether larger or smaller is better.")
    patience: int = Field(2, ge=1, description="Evaluations without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as an improvement.")
    restore_best: bool = Field(True, description="Keep the best checkpoint's weights rather than the last ones.")
