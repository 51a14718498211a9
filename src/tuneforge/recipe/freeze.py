"""The freeze section: which pretrained weights stay fixed in a full fine-tune."""

from __future__ import annotations

from pydantic import Field

from tuneforge.recipe.section import Section


class FreezeSpec(Section):
    embeddings: bool = Field(False, description="Freeze the embedding layer.")
    layers: int = Field(0, ge=0, description="Freeze the first N transformer layers.")
    all_but_head: bool = Field(False, description="Train only the task head (linear probing).")
    gradual_unfreeze: bool = Field(
        False,
        description="Start with only the head trainable and unfreeze one more layer from the top at each epoch "
        "(the embeddings open last, unless `embeddings` keeps them frozen).",
    )
