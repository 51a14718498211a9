"""The clean section: what data cleaning drops, flags or masks in the training split."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from tuneforge.recipe.section import Section

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
