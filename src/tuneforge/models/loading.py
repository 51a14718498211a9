"""Load a tokenizer and a pretrained body with a fresh task head sized from the data."""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tuneforge.errors import ModelNotFoundError
from tuneforge.models.resolve import ResolvedModel, resolve_model
from tuneforge.recipe import ModelSpec


def _hub_failure(resolved: ResolvedModel, error: Exception) -> ModelNotFoundError:
    if resolved.source == "hub":
        return ModelNotFoundError(
            f"could not load '{resolved.requested}' from the model hub or its local cache ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''})",
            fix="check the name and your connection, or use a model available offline (`tuneforge models`), "
                "e.g. model.name: minilm",
        )
    return ModelNotFoundError(f"could not load the model in {resolved.path}: {error}",
                              fix="check that the folder holds a complete Transformers model (config, weights, "
                                  "tokenizer files)")


def load_tokenizer(spec: ModelSpec, resolved: ResolvedModel | None = None) -> PreTrainedTokenizerBase:
    resolved = resolved or resolve_model(spec.name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            resolved.path, revision=spec.revision, trust_remote_code=spec.trust_remote_code,
            local_files_only=resolved.offline,
        )
    except (OSError, ValueError) as error:
        raise _hub_failure(resolved, error) from None
    if tokenizer.pad_token is None:
        # Decoder tokenizers often ship without a pad token; padding with EOS is the standard fix.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_sequence_model(
    spec: ModelSpec,
    task: str,
    labels: list[str] | None,
    resolved: ResolvedModel | None = None,
    pad_token_id: int | None = None,
    **load_options: Any,
) -> PreTrainedModel:
    """Body from the checkpoint, head sized from the data: one output per class (per token for tagging), or one
    for regression.

    `load_options` go to `from_pretrained` as they are (QLoRA's quantization_config and device_map).
    """
    resolved = resolved or resolve_model(spec.name)
    kwargs: dict[str, Any] = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code,
                              "use_safetensors": True, "local_files_only": resolved.offline}
    if "quantization_config" not in load_options:
        # Transformers 5 keeps a checkpoint's stored dtype (bf16 for most recent decoders), even on a CPU; the
        # weights being trained stay fp32 and mixed precision (train.precision) runs the matmuls in bf16/fp16.
        kwargs["dtype"] = torch.float32
    if task == "regression":
        kwargs.update(num_labels=1, problem_type="regression")
    else:
        assert labels is not None
        kwargs.update(num_labels=len(labels), id2label=dict(enumerate(labels)),
                      label2id={name: i for i, name in enumerate(labels)})
        if task == "classification":
            kwargs["problem_type"] = "single_label_classification"
        elif task == "multilabel":
            kwargs["problem_type"] = "multi_label_classification"
    auto_class = AutoModelForTokenClassification if task == "token-classification" else \
        AutoModelForSequenceClassification
    try:
        model = auto_class.from_pretrained(resolved.path, **kwargs, **load_options)
    except (OSError, ValueError) as error:
        if "safetensors" in str(error).lower():
            raise ModelNotFoundError(
                f"'{resolved.requested}' has no safetensors weights; tuneforge does not load pickled weights, "
                "which can run arbitrary code",
                fix="convert the checkpoint to safetensors (save_pretrained(safe_serialization=True)) or pick "
                    "another model",
            ) from None
        raise _hub_failure(resolved, error) from None
    if model.config.pad_token_id is None and pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return model


def head_class(architectures: list[str] | None) -> type:
    """The Auto class that rebuilds a saved model with the head it was trained with."""
    if any(name.endswith("ForTokenClassification") for name in architectures or []):
        return AutoModelForTokenClassification
    return AutoModelForSequenceClassification


def load_trained_model(model_dir: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A fine-tuned model from a run directory: safetensors only, no remote code."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    model = head_class(config.architectures).from_pretrained(model_dir, use_safetensors=True)
    return model, tokenizer
