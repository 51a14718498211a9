"""The model section: which pretrained model a run starts from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuneforge.recipe.section import Section

DEFAULT_MODEL = "minilm"


class ModelSpec(Section):
    name: str = Field(
        DEFAULT_MODEL,
        description="Bundled alias (see `tuneforge models`), a local Transformers folder, or a hub id when online.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) for hub ids.")
    trust_remote_code: bool = Field(
        False,
        description="Run modelling code shipped with a hub model. Off by default: only enable it for code you trust.",
    )
    head: Literal["auto", "new", "keep"] = Field(
        "auto",
        description="When model.name is an earlier run (or any checkpoint with a task head): new starts a freshly "
        "initialised head on its encoder, keep continues with its head (same task and labels required), auto "
        "keeps it only when the task and labels are the same.",
    )
