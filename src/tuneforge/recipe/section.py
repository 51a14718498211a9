"""The base of every recipe section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Strict base: an unknown key is an error that names the closest known one."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
