"""The imbalance section: class weights, oversampling and the rare-class report."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuneforge.recipe.section import Section


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
