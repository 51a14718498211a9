"""Load a tokenizer and a pretrained body with a fresh task head sized from the data."""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tuneforge.errors import ModelNotFoundError
from tuneforge.models.heads import HeadPlan, checkpoint_head, plan_head, reinitialise_head
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


def _load_failure(resolved: ResolvedModel, error: Exception) -> ModelNotFoundError:
    """Why `from_pretrained` failed, for any head: pickled-only weights are refused, the rest is a hub/folder issue."""
    if "safetensors" in str(error).lower():
        return ModelNotFoundError(
            f"'{resolved.requested}' has no safetensors weights; tuneforge does not load pickled weights, "
            "which can run arbitrary code",
            fix="convert the checkpoint to safetensors (save_pretrained(safe_serialization=True)) or pick "
                "another model",
        )
    return _hub_failure(resolved, error)


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
    head = _head_plan(spec, resolved, task, labels)
    if head.reinitialise:
        kwargs["ignore_mismatched_sizes"] = True  # the old head's shape may not fit; it is replaced anyway
    try:
        model = auto_class.from_pretrained(resolved.path, **kwargs, **load_options)
    except (OSError, ValueError) as error:
        raise _load_failure(resolved, error) from None
    if head.reinitialise:
        reinitialise_head(model)
    if model.config.pad_token_id is None and pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return model


def _head_plan(spec: ModelSpec, resolved: ResolvedModel, task: str, labels: list[str] | None) -> HeadPlan:
    """Keep or replace the head of a checkpoint that has one (an earlier run); see models/heads.py."""
    try:
        config = AutoConfig.from_pretrained(resolved.path, revision=spec.revision,
                                            trust_remote_code=spec.trust_remote_code,
                                            local_files_only=resolved.offline)
    except (OSError, ValueError):
        return HeadPlan(None, reinitialise=False)  # loading the model itself reports what is wrong
    return plan_head(spec.head, checkpoint_head(config), task, labels, resolved.requested)


def check_generative_model(spec: ModelSpec, task: str, resolved: ResolvedModel | None = None) -> None:
    """Raise, naming the model and what the task needs, when its architecture has no head to write text with
    for the task (read from config.json alone, so `tuneforge validate` can say so without loading weights)."""
    resolved = resolved or resolve_model(spec.name)
    auto_class = AutoModelForSeq2SeqLM if task == "seq2seq" else AutoModelForCausalLM
    try:
        config = AutoConfig.from_pretrained(resolved.path, revision=spec.revision,
                                            trust_remote_code=spec.trust_remote_code,
                                            local_files_only=resolved.offline)
    except (OSError, ValueError) as error:
        raise _hub_failure(resolved, error) from None
    expected = "an encoder-decoder (T5, BART, mT5, Marian ...)" if task == "seq2seq" else \
        "a decoder (GPT-2, Llama, Mistral, Qwen ...)"
    if type(config) not in auto_class._model_mapping:
        raise ModelNotFoundError(f"'{resolved.requested}' ({config.model_type}) has no "
                                 f"{'sequence-to-sequence' if task == 'seq2seq' else 'causal language-model'} head; "
                                 f"task {task} needs {expected}",
                                 fix="pick such a model with --model, or another task for this model")


def load_generative_model(spec: ModelSpec, task: str, resolved: ResolvedModel | None = None,
                          **load_options: Any) -> PreTrainedModel:
    """An encoder-decoder (seq2seq) or decoder (causal-lm) with its pretrained language-model head, in fp32 for
    training (as load_sequence_model) and with PyTorch's fused attention (SDPA) where the architecture has it."""
    resolved = resolved or resolve_model(spec.name)
    auto_class = AutoModelForSeq2SeqLM if task == "seq2seq" else AutoModelForCausalLM
    kwargs: dict[str, Any] = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code,
                              "use_safetensors": True, "local_files_only": resolved.offline}
    if "quantization_config" not in load_options:
        kwargs["dtype"] = torch.float32
    check_generative_model(spec, task, resolved)
    try:
        try:
            return auto_class.from_pretrained(resolved.path, attn_implementation="sdpa", **kwargs, **load_options)
        except ValueError as error:
            if "sdpa" not in str(error).lower() and "attn_implementation" not in str(error):
                raise
            return auto_class.from_pretrained(resolved.path, **kwargs, **load_options)
    except (OSError, ValueError) as error:
        raise _load_failure(resolved, error) from None


def head_class(architectures: list[str] | None, config: Any = None) -> type:
    """The Auto class that rebuilds a saved model with the head it was trained with."""
    if any(name.endswith("ForTokenClassification") for name in architectures or []):
        return AutoModelForTokenClassification
    if config is not None and type(config) in AutoModelForSeq2SeqLM._model_mapping and \
            any(name.endswith(("ForConditionalGeneration", "LMHeadModel")) for name in architectures or []):
        return AutoModelForSeq2SeqLM
    if any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures or []):
        return AutoModelForCausalLM
    return AutoModelForSequenceClassification


def load_trained_model(model_dir: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A fine-tuned model from a run directory: safetensors only, no remote code."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    model = head_class(config.architectures, config).from_pretrained(model_dir, use_safetensors=True)
    return model, tokenizer
