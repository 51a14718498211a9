"""The multi-task model: one shared encoder (AutoModel), one linear head per task, routed by the batch's task.

Saved as model/ (the encoder in the Transformers layout, safetensors, tokenizer) plus model/heads.safetensors;
nothing pickled. `TaskModel` is one task's view, shaped like a sequence classifier so every consumer of a
classifier works on it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

HEADS_FILE = "heads.safetensors"


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of the token states over real tokens: works for any encoder, whatever its [CLS] convention."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class MultiTaskModel(nn.Module):
    """The shared encoder and one linear head per task; `task_id` (the same for the whole batch) picks the head."""

    def __init__(self, encoder: nn.Module, names: Sequence[str], kinds: Sequence[str], widths: Sequence[int],
                 loss_weights: Sequence[float], dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.names, self.kinds = list(names), list(kinds)
        hidden = encoder.config.hidden_size
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, width) for name, width in zip(names, widths,
                                                                                          strict=True)})
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("loss_weights", torch.tensor(list(loss_weights), dtype=torch.float32),
                             persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                task_id: torch.Tensor | None = None) -> SequenceClassifierOutput:
        if task_id is None:
            raise ValueError("a multi-task batch needs task_id")
        index = int(task_id.reshape(-1)[0])
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**inputs).last_hidden_state
        logits = self.heads[self.names[index]](self.dropout(mean_pool(hidden, attention_mask)))
        loss = None
        if labels is not None:
            if self.kinds[index] == "regression":
                loss = nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())
            else:
                loss = nn.functional.cross_entropy(logits.float(), labels.long())
            loss = loss * self.loss_weights[index]
        return SequenceClassifierOutput(loss=loss, logits=logits)


class TaskModel(nn.Module):
    """One task's view of a multi-task model, shaped like a sequence classifier (`.config`, `.logits`), so the
    ordinary Predictor (and with it evaluate, predict and serve) works on it unchanged."""

    def __init__(self, encoder: nn.Module, head: nn.Linear, config: Any) -> None:
        super().__init__()
        self.encoder, self.head, self.config = encoder, head, config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **_: Any) -> SequenceClassifierOutput:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**inputs).last_hidden_state
        return SequenceClassifierOutput(logits=self.head(mean_pool(hidden, attention_mask)))


def save_multitask(model: MultiTaskModel, tokenizer: Any, folder: Path) -> None:
    """The encoder as a Transformers model (safetensors) and the heads beside it, nothing pickled."""
    model.encoder.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    heads = {f"{name}.{key}": tensor.detach().cpu().contiguous()
             for name, head in model.heads.items() for key, tensor in head.state_dict().items()}
    save_file(heads, str(folder / HEADS_FILE), metadata={"format": "pt"})
