"""The sizes a memory or time estimate needs, read off a model built on the `meta` device.

A meta model has every module and parameter shape but no storage, so even an 8 B model is built in a second
without memory or a download. The config comes from the model's own config.json (bundled, local folder, run,
hub cache) or, for a catalog model not on this machine, from the hyperparameters in `known_models.yaml`.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import ModelNotFoundError, TuneforgeError
from tuneforge.models.catalog import TASKS, CatalogEntry, family_of, find_entry, suggest
from tuneforge.models.resolve import BUNDLED, BundledModel, bundled_path, is_run_dir

GENERATION_TASKS = ("generation", "summarization", "translation", "seq2seq", "causal-lm")  # the last two: recipe names


@dataclass(frozen=True)
class ModelConfig:
    """A model's config.json contents and where they came from."""

    name: str
    config: dict[str, Any]
    source: str  # bundled, local, run, hub-cache, catalog
    entry: CatalogEntry | None = None


@dataclass(frozen=True)
class ModelShape:
    """Counts and dimensions of one model with the head a task puts on it."""

    name: str
    architecture: str  # the Transformers model_type
    family: str | None
    task: str
    parameters: int  # every weight of the task model (tied weights once)
    head_parameters: int  # weights of the new task head, outside the pretrained body (0 for generation)
    matmul_parameters: int  # weights of Linear/Conv1D layers (a tied LM head counts): what costs FLOPs per token
    body_linear_parameters: int  # Linear/Conv1D weights inside the body, which QLoRA stores in 4 bits
    lora_targets: tuple[str, ...]  # module names LoRA adapts (tuneforge's automatic choice)
    lora_in_out: int  # sum of in + out features over every adapted layer: LoRA adds r times this
    lora_inputs: int  # sum of in features over every adapted layer: the inputs LoRA keeps for backward
    hidden: int
    layers: int  # transformer layers, encoder and decoder together
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    hidden_dropout: float
    attention_dropout: float
    attention: str  # the attention implementation transformers picked: sdpa, eager, ...
    encoder_decoder: bool = False
    gated_mlp: bool = False  # T5 v1.1 style gated feed-forward (Llama-style models are gated by architecture)
    context_length: int | None = None

    @property
    def lm_head(self) -> bool:
        """The task scores every vocabulary token at every position (the big activation of generation)."""
        return self.task in GENERATION_TASKS


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ModelNotFoundError(f"could not read {path}: {error}",
                                 fix="check that the folder holds a complete Transformers model") from None


def _cached_config(name: str) -> dict[str, Any] | None:
    """config.json from the local hub cache, without touching the network."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id=name, filename="config.json")
    except (ImportError, ValueError):
        return None
    return _read_json(Path(found)) if isinstance(found, str) else None


def _bundled(name: str) -> BundledModel | None:
    wanted = name.strip().lower()
    for model in BUNDLED:
        if wanted in {model.alias, model.hub_id.lower(), model.hub_id.split("/")[-1].lower(), model.pip_name}:
            return model
    return None


def model_config(name: str) -> ModelConfig:
    """The config of a bundled alias, a local folder or run, a cached hub model, or a catalog model; offline."""
    bundled = _bundled(name)
    if bundled is not None:
        folder = bundled_path(bundled)
        if folder is not None:
            return ModelConfig(name, _read_json(folder / "config.json"), "bundled", find_entry(bundled.hub_id))
    path = Path(name).expanduser()
    if path.exists():
        folder = path / "model" if is_run_dir(path) else path
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(f"'{name}' is a folder but holds no Transformers model (no config.json)",
                                     fix="point at the folder that holds config.json, or at a tuneforge run")
        return ModelConfig(name, _read_json(folder / "config.json"), "run" if folder != path else "local")
    entry = find_entry(name)
    hub_id = entry.name if entry else name
    cached = _cached_config(hub_id) if "/" in hub_id else None
    if cached is not None:
        return ModelConfig(name, cached, "hub-cache", entry)
    if entry is not None:
        return ModelConfig(name, {"model_type": entry.architecture, **entry.config}, "catalog", entry)
    close = suggest(name)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise ModelNotFoundError(
        f"unknown model '{name}': not a bundled alias, a local folder, a model in the hub cache or the catalog",
        fix=f"{hint}`tuneforge models` lists the models tuneforge knows; pass a folder with config.json for others",
    )


def _auto_class(family: str | None, task: str) -> Any:
    import transformers

    if task not in TASKS:
        raise TuneforgeError(f"unknown task '{task}'", fix=f"use one of {', '.join(TASKS)}")
    if task in GENERATION_TASKS:
        if family == "encoder":
            raise TuneforgeError(f"an encoder cannot generate text ({task})",
                                 fix="pick a decoder or an encoder-decoder: `tuneforge models --family decoder`")
        if task == "seq2seq" and family != "encoder-decoder":
            raise TuneforgeError("task seq2seq trains encoder-decoders (T5, BART ...)",
                                 fix="pick one: `tuneforge models --family encoder-decoder`, or use task causal-lm")
        return (transformers.AutoModelForSeq2SeqLM if family == "encoder-decoder" and task != "causal-lm"
                else transformers.AutoModelForCausalLM)
    return {"classification": transformers.AutoModelForSequenceClassification,
            "regression": transformers.AutoModelForSequenceClassification,
            "token-classification": transformers.AutoModelForTokenClassification,
            "question-answering": transformers.AutoModelForQuestionAnswering}[task]


def build_meta_model(config: dict[str, Any], task: str, num_labels: int = 2, device: str = "meta") -> Any:
    """The task model on the `meta` device: shapes only, no storage, nothing downloaded (device="cpu" builds
    it randomly initialised, for benchmarks).

    torch's meta device context is used rather than accelerate's `init_empty_weights`, which re-creates every
    parameter it registers and so unties tied weights (an LM head shared with the embeddings would count twice).
    """
    import torch
    from transformers import AutoConfig

    values = {key: value for key, value in config.items() if key not in ("architectures", "auto_map")}
    model_type = values.pop("model_type", None)
    if not model_type:
        raise TuneforgeError("the model's config.json names no model_type",
                             fix="use a Transformers model folder whose config.json has a model_type")
    labels = 1 if task == "regression" else max(num_labels, 2)
    if task not in GENERATION_TASKS:
        values.update(num_labels=labels, id2label={i: str(i) for i in range(labels)},
                      label2id={str(i): i for i in range(labels)})
    try:
        hf_config = AutoConfig.for_model(model_type, **values)
    except (ValueError, KeyError, TypeError) as error:
        raise TuneforgeError(f"transformers cannot build a config for model type '{model_type}': {error}",
                             fix="upgrade transformers, or pick a model of a supported architecture") from None
    if getattr(hf_config, "pad_token_id", None) is None:
        hf_config.pad_token_id = 0  # decoder classifiers need one to find the last token; the value is irrelevant
    family = family_of({"model_type": model_type, **config})
    auto = _auto_class(family, task)
    with warnings.catch_warnings(), torch.device(device):
        warnings.simplefilter("ignore")
        try:
            return auto.from_config(hf_config)
        except ValueError as error:
            raise TuneforgeError(f"transformers has no {task} model for '{model_type}': "
                                 f"{str(error).splitlines()[0]}",
                                 fix="pick another task or a model family that supports it") from None


def _linear_layers(model: Any) -> dict[str, Any]:
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    return {name: module for name, module in model.named_modules() if isinstance(module, (nn.Linear, Conv1D))}


def _in_out(module: Any) -> tuple[int, int]:
    from torch import nn

    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    rows, cols = module.weight.shape  # GPT-2's Conv1D stores (in, out)
    return int(rows), int(cols)


def _matches(name: str, targets: tuple[str, ...]) -> bool:
    return any(name == target or name.endswith("." + target) for target in targets)


def lora_targets(model: Any, task: str) -> tuple[str, ...]:
    """The layers tuneforge's `peft.target_modules: auto` adapts; peft's own table for a generation model."""
    from tuneforge.models.peft import detect_target_modules

    try:
        targets, _ = detect_target_modules(model, "lora")
    except TuneforgeError:
        return ()
    return tuple(targets)


def _get(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def shape_of(model: Any, name: str, task: str, targets: tuple[str, ...] | None = None) -> ModelShape:
    """Read the shape off a built model (meta or real); `targets` overrides the automatic LoRA layers."""
    from tuneforge.models.freezing import body

    config = model.config
    unique = {id(p): p for p in model.parameters()}
    parameters = sum(p.numel() for p in unique.values())
    trunk = body(model)
    body_ids = {id(p) for p in trunk.parameters()} if trunk is not model else set(unique)
    # A generation model's LM head is pretrained (often tied to the embeddings): only a new head counts here.
    head = 0 if task in GENERATION_TASKS else sum(p.numel() for key, p in unique.items() if key not in body_ids)
    linears = _linear_layers(model)
    matmul = sum(module.weight.numel() for module in linears.values())
    prefix = f"{model.base_model_prefix}." if trunk is not model else ""
    inside = {layer: module for layer, module in linears.items()
              if layer.startswith(prefix) and not layer.endswith("lm_head")}
    body_linear = sum(module.weight.numel() for module in inside.values())
    if targets is None:
        targets = lora_targets(model, task)
    adapted = [module for layer, module in inside.items() if _matches(layer, targets)]
    in_out = sum(sum(_in_out(module)) for module in adapted)
    inputs = sum(_in_out(module)[0] for module in adapted)
    hidden = int(_get(config, "hidden_size", "d_model", "n_embd", "dim"))
    heads = int(_get(config, "num_attention_heads", "n_head", "num_heads", "n_heads", "encoder_attention_heads"))
    encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
    layers = int(_get(config, "num_hidden_layers", "num_layers", "n_layer", "n_layers", "encoder_layers"))
    if encoder_decoder:
        layers += int(_get(config, "num_decoder_layers", "decoder_layers", default=layers))
    intermediate = _get(config, "intermediate_size", "n_inner", "d_ff", "encoder_ffn_dim", "hidden_dim")
    return ModelShape(
        name=name,
        architecture=str(config.model_type),
        family=family_of(config.to_dict()),
        task=task,
        parameters=parameters,
        head_parameters=head,
        matmul_parameters=matmul,
        body_linear_parameters=body_linear,
        lora_targets=tuple(targets),
        lora_in_out=in_out,
        lora_inputs=inputs,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=int(_get(config, "num_key_value_heads", default=heads)),
        head_dim=int(_get(config, "head_dim", "d_kv", default=hidden // heads)),
        intermediate=int(intermediate) if intermediate else 4 * hidden,
        vocab=int(config.vocab_size),
        hidden_dropout=float(_get(config, "hidden_dropout_prob", "resid_pdrop", "dropout_rate", "dropout",
                                  "hidden_dropout", default=0.0)),
        attention_dropout=float(_get(config, "attention_probs_dropout_prob", "attn_pdrop", "attention_dropout",
                                     "dropout_rate", default=0.0)),
        attention=str(getattr(config, "_attn_implementation", None) or "eager"),
        encoder_decoder=encoder_decoder,
        gated_mlp=bool(getattr(config, "is_gated_act", False)),
        context_length=_get(config, "max_position_embeddings", "n_positions"),
    )


def model_shape(name: str, task: str = "classification", num_labels: int = 2,
                targets: tuple[str, ...] | None = None) -> tuple[ModelShape, ModelConfig]:
    """Resolve a model name offline and read its shape with the task's head on it."""
    found = model_config(name)
    model = build_meta_model(found.config, task, num_labels)
    shape = shape_of(model, found.entry.name if found.entry else name, task, targets)
    if found.entry is not None and found.entry.context_length:
        from dataclasses import replace

        shape = replace(shape, context_length=found.entry.context_length)
    return shape, found
