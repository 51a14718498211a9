"""The features section: typed input columns of multimodal runs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tuneforge.recipe.section import Section

Combiner = Literal["concat", "gated", "attention", "late"]


class FeaturesSpec(Section):
    """Typed input columns fused with the language model's text representation (multimodal runs).

    Empty (the default) keeps the text-only path; any column listed here trains the multimodal model instead.
    """

    text: list[str] = Field(
        default_factory=list, description="Text columns, joined with the tokenizer's separator; empty: "
        "data.text_column when other features are listed.")
    numeric: list[str] = Field(default_factory=list, description="Numeric columns: median-imputed (with a "
                               "missing-value indicator) and standard-scaled on the training split.")
    categorical: list[str] = Field(default_factory=list, description="Categorical columns: a vocabulary of the "
                                   "training split's values (unseen values go to an unknown bucket), embedded.")
    image: list[str] = Field(default_factory=list, description="Columns holding paths of local image files "
                             "(relative paths are relative to the data file); needs image_encoder.")
    audio: list[str] = Field(default_factory=list, description="Columns holding paths of local WAV files "
                             "(relative paths are relative to the data file); needs audio_encoder.")
    image_encoder: str | None = Field(None, description="Transformers vision model (local folder or hub id, e.g. "
                                      "a ViT or ConvNeXt) with its image processor (resize and normalise).")
    audio_encoder: str | None = Field(None, description="Transformers audio model (local folder or hub id; e.g. "
                                      "an AST over log-mel features, or a Wav2Vec2) with its feature extractor.")
    freeze_encoders: bool = Field(True, description="Keep the image and audio encoders' weights fixed.")
    combiner: Combiner = Field(
        "concat", description="How modality embeddings are fused: concat (concatenate, then an MLP), gated (a "
        "learnt sigmoid gate per modality, then a sum), attention (softmax-weighted sum over modalities) or late "
        "(one head per modality, outputs averaged).")
    fusion_hidden: int = Field(128, ge=4, description="Width every modality is projected to before fusion.")
    categorical_embedding_dim: int = Field(16, ge=1, description="Embedding width of each categorical column.")
    fusion_dropout: float = Field(0.1, ge=0, lt=1, description="Dropout in the modality projections and head.")
    audio_max_seconds: float = Field(10.0, gt=0, description="Audio is cut (or padded) to this many seconds.")

    @model_validator(mode="after")
    def _encoders_named(self) -> FeaturesSpec:
        for kind in ("image", "audio"):
            if getattr(self, kind) and not getattr(self, f"{kind}_encoder"):
                raise ValueError(f"features.{kind} lists columns but features.{kind}_encoder is empty; name a "
                                 f"Transformers {kind} model (a local folder or hub id)")
        columns = [c for kind in ("text", "numeric", "categorical", "image", "audio") for c in getattr(self, kind)]
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise ValueError(f"column {', '.join(repeated)} is listed under more than one feature type (or twice); "
                             "give each column one type")
        return self

    @property
    def enabled(self) -> bool:
        return any(getattr(self, kind) for kind in ("text", "numeric", "categorical", "image", "audio"))
