"""Parameter-efficient fine-tuning through `peft`: wrap a loaded model, save and reload its adapter, merge it.

A PEFT run keeps the adapter alone in `adapter/` (peft's layout, the tokenizer and the head's labels). LoRA and
(IA)3 adapters fold into the base weights, so `model/` also holds the merged model and every consumer of a run
loads it unchanged; prompt and prefix tuning add virtual tokens instead, so such a run has no `model/` and
`load_run_model` rebuilds base + adapter from the run's recipe.

`peft` is imported inside the functions that use it: a run without PEFT never pays for the import.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tuneforge import artifacts
from tuneforge.errors import ModelNotFoundError, TuneforgeError
from tuneforge.models.freezing import body
from tuneforge.models.loading import load_generative_model, load_sequence_model, load_trained_model
from tuneforge.models.resolve import ResolvedModel, resolve_model
from tuneforge.recipe import GENERATIVE_TASKS, PeftMethod, PeftSpec, Recipe
from tuneforge.run import RunLayout, read_run_recipe
from tuneforge.trust import REMOTE_CODE, RunCodeTrust

# peft.method values whose adapter folds into model/, and adapter_config.json's `peft_type` of those adapters.
MERGEABLE = tuple(method.value for method in PeftMethod if method.mergeable)
MERGEABLE_PEFT_TYPES = tuple(dict.fromkeys(str(method.adapter_type) for method in PeftMethod if method.mergeable))
HEAD_FILE = "head.json"  # task, labels and pad id: what it takes to rebuild the head the adapter was trained on


# ------------------------------------------------------------------------------------------------------
# Which layers get an adapter, and which train in full
# ------------------------------------------------------------------------------------------------------

def _adapter_layer_types() -> tuple[type[nn.Module], ...]:
    from transformers.pytorch_utils import Conv1D  # GPT-2's projections are Conv1D, not Linear

    return nn.Linear, Conv1D


def head_modules(model: PreTrainedModel) -> list[str]:
    """Top-level modules outside the pretrained body that hold weights: the task head (classifier, score,
    classification_head, DeBERTa's pooler). They start untrained, so they must train in full and be saved."""
    trunk = body(model)
    if trunk is model:
        return ["classifier", "score"]
    return [name for name, child in model.named_children()
            if child is not trunk and any(True for _ in child.parameters())]


def _inside_attention(name: str, modules: dict[str, nn.Module]) -> bool:
    parts = name.split(".")
    for depth in range(1, len(parts)):
        part = parts[depth - 1].lower()
        owner = type(modules[".".join(parts[:depth])]).__name__.lower()
        if "attn" in part or "attention" in part or "attention" in owner:
            return True
    return False


def _shortest_unique_suffixes(chosen: list[str], others: list[str]) -> list[str]:
    """The shortest dotted suffix of each chosen module that names none of the others, in peft's matching
    (a target matches a module whose name equals it or ends with "." + it): `query`, but `attention.output.dense`
    because BERT's feed-forward output is also a `dense`."""
    suffixes: list[str] = []
    for name in chosen:
        parts = name.split(".")
        suffix = name
        for size in range(1, len(parts) + 1):
            candidate = ".".join(parts[-size:])
            if not any(o == candidate or o.endswith("." + candidate) for o in others):
                suffix = candidate
                break
        if suffix not in suffixes:
            suffixes.append(suffix)
    return suffixes


def attention_projections(model: PreTrainedModel) -> list[str]:
    """Every Linear/Conv1D layer inside an attention block, as the shortest names peft matches unambiguously.

    One generic rule rather than a table per architecture: BERT query/key/value/attention.output.dense, GPT-2
    c_attn/attn.c_proj, Llama, Mistral and Qwen q/k/v/o_proj, T5 q/k/v/o all come out of it.
    """
    modules = dict(model.named_modules())
    head = tuple(head_modules(model))
    layers = [name for name, module in modules.items()
              if isinstance(module, _adapter_layer_types()) and name.split(".")[0] not in head]
    chosen = [name for name in layers if _inside_attention(name, modules)]
    others = [name for name, module in modules.items()
              if isinstance(module, _adapter_layer_types()) and name not in chosen]
    return _shortest_unique_suffixes(chosen, others)


def detect_target_modules(model: PreTrainedModel, method: str) -> tuple[list[str], list[str]]:
    """(target_modules, feedforward_modules) for `target_modules: auto`.

    LoRA gets every attention projection (the generic rule), and peft's own per-architecture table only when
    the rule finds nothing. (IA)3 takes peft's table first: it pairs keys and values with the feed-forward
    output layer, whose vectors scale inputs rather than outputs, a pairing no naming rule can infer.
    """
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
        TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
        TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING,
    )

    model_type = getattr(model.config, "model_type", "")
    if method == "ia3" and model_type in TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING:
        return (list(TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING[model_type]),
                list(TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.get(model_type, [])))
    targets = attention_projections(model)
    if not targets and isinstance(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type), list):
        targets = list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING[model_type])
    if not targets:
        raise TuneforgeError(
            f"found no attention layers in {type(model).__name__} to put adapters on",
            fix="name them in peft.target_modules (Linear layer names from model.named_modules(), e.g. "
                "[q_proj, v_proj])",
        )
    return targets, []


def reads_last_token(model: PreTrainedModel) -> bool:
    """Decoder-only classifiers pool the last non-padding token, which they find from input_ids; prompt tuning
    feeds embeddings instead, so they take the last position, which is a real token only with left padding."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    config = model.config
    return (config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
            and config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
            and not getattr(config, "is_encoder_decoder", False))


# ------------------------------------------------------------------------------------------------------
# Wrapping a model for training
# ------------------------------------------------------------------------------------------------------

def quantized_loading(spec: PeftSpec, device: torch.device) -> dict[str, Any]:
    """Extra `from_pretrained` arguments for QLoRA's 4-bit base (NF4, double quantisation); empty otherwise.

    Called before the data are prepared, so a machine that cannot run QLoRA says so at once.
    """
    if spec.method != "qlora":
        return {}
    if device.type != "cuda":
        raise TuneforgeError(
            "peft.method 'qlora' loads the base model in 4 bits through bitsandbytes, which needs a CUDA GPU; "
            "this run is on the CPU",
            fix="use peft.method: lora on the CPU (same adapter, full-precision base), or run on a CUDA machine "
                "with bitsandbytes installed (pip install bitsandbytes)",
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise TuneforgeError("peft.method 'qlora' needs the bitsandbytes package, which is not installed",
                             fix="pip install bitsandbytes (CUDA machines), or use peft.method: lora")
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=compute)
    # 4-bit weights are quantised as they reach the GPU and cannot move afterwards: load them onto it.
    return {"quantization_config": quantization, "device_map": {"": torch.cuda.current_device()}}


def _check_prompt_method(model: PreTrainedModel, method: str) -> None:
    name = type(model).__name__
    if getattr(model.config, "is_encoder_decoder", False):
        raise TuneforgeError(f"peft.method '{method}' does not work with {name}: peft cannot put virtual tokens "
                             "before an encoder-decoder classifier's input",
                             fix="use peft.method: lora or ia3 for this model")
    if method == "prefix_tuning":
        # peft's own test: the prefix reaches the model as past key values, through the classifier or its body.
        takes_cache = any("past_key_values" in inspect.signature(module.forward).parameters
                          for module in (model, body(model)))
        if not takes_cache:
            raise TuneforgeError(
                f"peft.method 'prefix_tuning' needs a model whose forward pass takes past key values; {name} does "
                "not with the installed transformers and peft",
                fix="use peft.method: prompt_tuning (trained virtual tokens at the input) or lora",
            )


def tags_tokens(model: PreTrainedModel) -> bool:
    """A token-classification model (a label per token), which peft must wrap as TOKEN_CLS, not SEQ_CLS."""
    return any(name.endswith("ForTokenClassification")
               for name in [type(model).__name__, *(getattr(model.config, "architectures", None) or [])])


def build_peft_config(model: PreTrainedModel, spec: PeftSpec, task_name: str | None = None) -> Any:
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig, TaskType

    # Regression too is SEQ_CLS: peft's sequence-classification wrapper serves one-output heads. The generative
    # tasks keep their pretrained language-model head, so `auto` trains no module in full for them.
    task = {"seq2seq": TaskType.SEQ_2_SEQ_LM, "causal-lm": TaskType.CAUSAL_LM}.get(task_name or "", TaskType.SEQ_CLS)
    if task == TaskType.SEQ_CLS and tags_tokens(model):  # one label per token: peft's token-classification wrapper
        task = TaskType.TOKEN_CLS
    generative = task not in (TaskType.SEQ_CLS, TaskType.TOKEN_CLS)
    if spec.modules_to_save == "auto":
        save = [] if generative else head_modules(model)
    else:
        save = list(spec.modules_to_save)
    save = save or None
    if PeftMethod(spec.method).virtual_tokens:
        _check_prompt_method(model, spec.method)
        if spec.method == "prompt_tuning":
            # Virtual tokens start as embeddings of sampled vocabulary tokens, inside the space the model knows.
            return PromptTuningConfig(task_type=task, num_virtual_tokens=spec.num_virtual_tokens,
                                      prompt_tuning_init="SAMPLE_VOCAB", modules_to_save=save)
        return PrefixTuningConfig(task_type=task, num_virtual_tokens=spec.num_virtual_tokens, modules_to_save=save)
    if spec.target_modules == "auto":
        targets, feedforward = detect_target_modules(model, spec.method)
    else:
        targets, feedforward = list(spec.target_modules), []
        if spec.method == "ia3":
            _, auto_feedforward = detect_target_modules(model, "ia3")
            feedforward = [name for name in auto_feedforward if name in targets]
    if spec.method == "ia3":
        return IA3Config(task_type=task, target_modules=targets, feedforward_modules=feedforward,
                         modules_to_save=save)
    return LoraConfig(task_type=task, r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                      target_modules=targets, modules_to_save=save)


def apply_peft(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, spec: PeftSpec,
               gradient_checkpointing: bool = False, task: str | None = None) -> Any:
    """The model wrapped for training: base weights frozen, adapter and head trainable."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    config = build_peft_config(model, spec, task)
    if spec.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    if spec.method == "prompt_tuning" and reads_last_token(model) and task != "causal-lm":
        tokenizer.padding_side = "left"
    try:
        return get_peft_model(model, config)
    except ValueError as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TuneforgeError(f"peft could not add a {spec.method} adapter to {type(model).__name__}: {first}",
                             fix="check peft.target_modules against the model's layer names, or set it to auto"
                             ) from None


# ------------------------------------------------------------------------------------------------------
# Saving and loading a run's adapter
# ------------------------------------------------------------------------------------------------------

def save_adapter(model: Any, tokenizer: PreTrainedTokenizerBase, task: str, folder: Path) -> None:
    """peft's adapter_config.json + adapter_model.safetensors (adapter and head weights only), the tokenizer,
    and the head's labels, so base + adapter can be rebuilt without the training data."""
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    config = model.get_base_model().config
    named = task in ("classification", "multilabel", "token-classification")
    labels = [config.id2label[i] for i in sorted(config.id2label)] if named else None
    artifacts.write_json(folder / HEAD_FILE, {"task": task, "labels": labels, "pad_token_id": config.pad_token_id})


def adapter_type(layout: RunLayout) -> str:
    """peft's name for the run's adapter: LORA, IA3, PROMPT_TUNING, PREFIX_TUNING."""
    config = json.loads((layout.adapter / "adapter_config.json").read_text(encoding="utf-8"))
    return str(config.get("peft_type", "")).upper()


def _base_model(recipe: Recipe, layout: RunLayout) -> ResolvedModel:
    try:
        return resolve_model(recipe.model.name)
    except ModelNotFoundError as error:
        # The recipe may name a folder relative to where training ran; peft recorded the path it loaded.
        config = json.loads((layout.adapter / "adapter_config.json").read_text(encoding="utf-8"))
        recorded = config.get("base_model_name_or_path")
        if recorded and (Path(recorded) / "config.json").is_file():
            return ResolvedModel(recipe.model.name, str(recorded), "local")
        raise ModelNotFoundError(
            f"the adapter in {layout.adapter} needs its base model '{recipe.model.name}': {error.message}",
            fix=f"make the base model available again, or set model.name in {layout.recipe} to where it is now",
        ) from None


def load_adapter_model(run_dir: str | Path, trust_run_code: Any = False) -> tuple[Any, PreTrainedTokenizerBase]:
    """Base model (from the run's recipe) + the run's adapter, ready for inference; nothing merged.

    A recipe with model.trust_remote_code would run the base model's own code: refused unless trusted."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    layout = RunLayout(Path(run_dir))
    recipe = read_run_recipe(layout.root)
    if recipe.model.trust_remote_code:
        RunCodeTrust.resolve(trust_run_code).check(layout.root, [(REMOTE_CODE, REMOTE_CODE)])
    if not layout.has_adapter():
        raise TuneforgeError(f"run '{layout.root}' has no adapter (no adapter/adapter_config.json)",
                             fix="pass a run trained with a peft.method other than none")
    head = json.loads((layout.adapter / HEAD_FILE).read_text(encoding="utf-8"))
    if head["task"] in GENERATIVE_TASKS:
        base = load_generative_model(recipe.model, head["task"], _base_model(recipe, layout))
    else:
        base = load_sequence_model(recipe.model, head["task"], head["labels"], _base_model(recipe, layout),
                                   head["pad_token_id"])
    tokenizer = AutoTokenizer.from_pretrained(str(layout.adapter))
    model = PeftModel.from_pretrained(base, str(layout.adapter), is_trainable=False)
    return model.eval(), tokenizer


def load_run_model(run_dir: str | Path, trust_run_code: Any = False) -> tuple[Any, PreTrainedTokenizerBase]:
    """A run's trained model: the full (or merged) model in model/, else base + adapter (prompt/prefix tuning)."""
    layout = RunLayout(Path(run_dir))
    if layout.has_model():
        return load_trained_model(str(layout.model))
    if layout.has_adapter():
        return load_adapter_model(layout.root, trust_run_code)
    raise TuneforgeError(f"run '{run_dir}' has no trained model yet (no model/ or adapter/ folder)",
                         fix="finish training first; resume an interrupted run with `tuneforge train --resume`")


# ------------------------------------------------------------------------------------------------------
# Merging
# ------------------------------------------------------------------------------------------------------

def check_mergeable(layout: RunLayout) -> None:
    if not layout.has_adapter():
        raise TuneforgeError(
            f"run '{layout.root}' has no adapter to merge: it was trained without peft",
            fix=f"its model/ folder is already a standalone Transformers model; export it without --merge, or use "
                f"{layout.model} directly",
        )
    kind = adapter_type(layout)
    if kind not in MERGEABLE_PEFT_TYPES:
        raise TuneforgeError(
            f"the {kind.lower()} adapter of '{layout.root}' cannot be merged: it adds trained virtual tokens, not "
            "weight updates a base model can absorb",
            fix="load base + adapter with tuneforge.load(RUN) (or export the adapter without --merge), or train "
                "with peft.method: lora to get a mergeable adapter",
        )


def write_merged_model(run_dir: str | Path, folder: Path) -> None:
    """Base + adapter folded into one standalone Transformers model (safetensors) and tokenizer in `folder`.

    QLoRA adapters merge into the base loaded in full precision, since a 4-bit base cannot be saved as a
    standalone model that every tool loads.
    """
    layout = RunLayout(Path(run_dir))
    check_mergeable(layout)
    model, tokenizer = load_adapter_model(layout.root)
    merged = model.merge_and_unload()
    merged.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))


def merge_adapter(run_dir: str | Path, output: str | Path) -> Path:
    """Merge a run's LoRA/(IA)3 adapter into its base model and write it, atomically, to `output`."""
    layout = RunLayout(Path(run_dir))
    read_run_recipe(layout.root)  # a folder that is no run fails here, with its own fix
    check_mergeable(layout)
    target = Path(output)
    artifacts.write_directory(target, functools.partial(write_merged_model, layout.root))
    return target
