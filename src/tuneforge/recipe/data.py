"""The data section: the files, their columns and how they are split."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from tuneforge.recipe.section import Section

LABEL_SEPARATORS = ("|", ";", ",")


class DataSpec(Section):
    train: str | None = Field(
        None, description="Training file: CSV, TSV, JSONL/JSON, Parquet, or a `datasets` save folder."
    )
    validation: str | None = Field(None, description="Validation file; carved from train when empty.")
    test: str | None = Field(None, description="Test file; carved from train when empty and test_split > 0.")
    text_column: str = Field("text", description="Column with the input text.")
    text_pair_column: str | None = Field(None, description="Optional second text column (sentence pairs).")
    language: str | None = Field(
        None, description="ISO 639-1 code of the texts (e.g. en, id, jv); a warning is shown when the training "
        "texts look like another language."
    )
    label_column: str = Field("label", description="Column with the label (class name/id, or a number for regression).")
    target_column: str = Field("target", description="seq2seq: column with the output text to generate from "
                               "text_column (summary, translation, rewrite).")
    prompt_column: str = Field("prompt", description="causal-lm: column with the prompt (no loss on its tokens).")
    response_column: str = Field("response", description="causal-lm: column with the response the model learns "
                                 "to write after the prompt.")
    messages_column: str | None = Field(
        None, description="causal-lm: column of chats, each a list of {role, content} (JSONL/Parquet, or JSON text "
        "in a CSV cell), rendered with the tokenizer's chat template; loss on the assistant turns only. Set it "
        "instead of prompt_column/response_column.")
    label_separator: str | None = Field(
        None,
        description="multilabel: separator of the labels in one text cell, e.g. 'a|b'; empty: auto-detect among "
        "'|', ';' and ','. Lists (JSONL/Parquet) need none; an empty cell means no label.",
    )
    validation_split: float = Field(
        0.1, ge=0.0, lt=1.0, description="Fraction of train held out for validation when no validation file is given."
    )
    test_split: float = Field(
        0.0, ge=0.0, lt=1.0, description="Fraction of train held out for testing when no test file is given."
    )
    stratify: bool = Field(True, description="Keep class proportions in carved splits (classification).")
    split_seed: int = Field(42, description="Seed of the split, so the same data always splits the same way.")
    min_examples_per_class: int = Field(
        2, ge=1, description="A class with fewer training examples than this is an error."
    )
    cache_dir: str | None = Field(
        None, description="Cache for loaded and tokenized data (default: the datasets cache)."
    )

    @field_validator("label_separator")
    @classmethod
    def _separator_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("label_separator cannot be blank; leave it empty to auto-detect '|', ';' or ','")
        return value

    @model_validator(mode="after")
    def _splits_leave_training_data(self) -> DataSpec:
        if self.validation_split + self.test_split >= 0.9:
            raise ValueError("validation_split + test_split must leave at least 10% of the data for training")
        return self
