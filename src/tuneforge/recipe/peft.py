"""The peft section and the one vocabulary of parameter-efficient fine-tuning methods.

`PeftMethod` says, per method, what every other part of tuneforge needs to know: whether the adapter folds into
the base weights (mergeable), whether it adds trained virtual tokens to the input instead, peft's name for its
adapter type, and which training setup the memory estimate sizes it as. Run kinds list the methods they train
with by these names.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal, NamedTuple

from pydantic import Field, field_validator

from tuneforge.recipe.section import Section


class PeftMethod(str, Enum):
    """peft.method: none, or the adapter trained instead of every weight."""

    NONE = "none"
    LORA = "lora"
    QLORA = "qlora"
    IA3 = "ia3"
    PROMPT_TUNING = "prompt_tuning"
    PREFIX_TUNING = "prefix_tuning"

    def __str__(self) -> str:  # the YAML spelling in messages, not PeftMethod.LORA
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def enabled(self) -> bool:
        return self is not PeftMethod.NONE

    @property
    def mergeable(self) -> bool:
        """Its adapter is a weight update that `merge_and_unload` folds into a standalone model."""
        return _TRAITS[self].mergeable

    @property
    def virtual_tokens(self) -> bool:
        """It trains virtual tokens put before the input (or the attention keys) rather than weight updates."""
        return _TRAITS[self].virtual_tokens

    @property
    def adapter_type(self) -> str | None:
        """peft's `peft_type` in adapter_config.json (None: no adapter)."""
        return _TRAITS[self].adapter_type

    @property
    def estimate_method(self) -> str:
        """The training setup `models.estimate` sizes it as: full, lora or qlora. (IA)3 and the virtual-token
        methods train fewer parameters than LoRA on the same frozen body, so LoRA's figure is their upper bound."""
        return _TRAITS[self].estimate_method

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(method.value for method in cls)


class _Traits(NamedTuple):
    mergeable: bool
    virtual_tokens: bool
    adapter_type: str | None
    estimate_method: str


_TRAITS = {
    PeftMethod.NONE: _Traits(False, False, None, "full"),
    PeftMethod.LORA: _Traits(True, False, "LORA", "lora"),
    PeftMethod.QLORA: _Traits(True, False, "LORA", "qlora"),
    PeftMethod.IA3: _Traits(True, False, "IA3", "lora"),
    PeftMethod.PROMPT_TUNING: _Traits(False, True, "PROMPT_TUNING", "lora"),
    PeftMethod.PREFIX_TUNING: _Traits(False, True, "PREFIX_TUNING", "lora"),
}


class PeftSpec(Section):
    method: PeftMethod = Field(
        PeftMethod.NONE,
        description="Parameter-efficient fine-tuning: train a small adapter (and the task head) instead of every "
        "weight. qlora is LoRA on a 4-bit base and needs a CUDA GPU with bitsandbytes.",
    )
    r: int = Field(8, ge=1, description="LoRA rank: size of the low-rank update matrices (lora, qlora).")
    alpha: float = Field(16, gt=0, description="LoRA scaling; the update is multiplied by alpha / r (lora, qlora).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA branch's input (lora, qlora).")
    target_modules: Literal["auto"] | list[str] = Field(
        "auto",
        description="Layers that get an adapter (lora, qlora, ia3): auto detects the attention projections of the "
        "architecture, or list module names, e.g. [query, value].",
    )
    num_virtual_tokens: int = Field(
        20, ge=1, description="Trained virtual tokens put before every input (prompt_tuning, prefix_tuning)."
    )
    modules_to_save: Literal["auto"] | list[str] = Field(
        "auto",
        description="Modules trained in full and saved with the adapter; auto: the task head (e.g. classifier, "
        "score), which is new and must train.",
    )

    @field_validator("target_modules", "modules_to_save")
    @classmethod
    def _not_empty(cls, value: Any, info: Any) -> Any:
        if isinstance(value, list) and not [name for name in value if str(name).strip()]:
            raise ValueError(f"an empty {info.field_name} list trains nothing; use auto, or name at least one module")
        return value

    @property
    def enabled(self) -> bool:
        return PeftMethod(self.method).enabled

