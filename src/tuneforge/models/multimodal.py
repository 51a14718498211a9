"""The multimodal model: a text encoder, optional image/audio encoders and tabular inputs, fused by a combiner.

Each modality becomes one vector of width `fusion_hidden` (text: mean-pooled token states; numeric: scaled
values with missing indicators; categorical: one embedding per column; image/audio: the encoder's pooled
output, one modality per column), and a combiner fuses them:

- concat: concatenate every modality vector, then a two-layer MLP head;
- gated: a sigmoid gate per modality computed from all of them, gated vectors summed, then the head;
- attention: a learnt score per modality vector, softmax over modalities, the weighted sum, then the head;
- late: one head per modality, their outputs averaged.

Saved as model/config.json (this module's config, no pickle), model/text, model/image and model/audio (each
encoder in the Transformers layout with its tokenizer or processor) and model/fusion.safetensors (the
projections, combiner and head).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel
from transformers.modeling_outputs import SequenceClassifierOutput

from tuneforge import artifacts
from tuneforge.errors import ModelNotFoundError, TuneforgeError

MODEL_TYPE = "tuneforge-multimodal"
COMBINERS = ("concat", "gated", "attention", "late")
FUSION_WEIGHTS = "fusion.safetensors"
ENCODER_FOLDERS = {"text": "text", "image": "image", "audio": "audio"}


@dataclass
class MultimodalConfig:
    """Everything needed to rebuild the fusion layers; the encoders carry their own Transformers configs."""

    task: str
    num_labels: int
    labels: list[str] | None
    combiner: str = "concat"
    fusion_hidden: int = 128
    dropout: float = 0.1
    numeric_width: int = 0
    vocabulary_sizes: list[int] = field(default_factory=list)
    categorical_embedding_dim: int = 16
    categorical_columns: list[str] = field(default_factory=list)
    image_columns: list[str] = field(default_factory=list)
    audio_columns: list[str] = field(default_factory=list)
    audio_input_name: str = "input_values"
    model_type: str = MODEL_TYPE

    def modalities(self) -> list[str]:
        """Names of the fused modality vectors, in order: text, numeric, categorical, image:<col>, audio:<col>."""
        names = ["text"]
        if self.numeric_width:
            names.append("numeric")
        if self.vocabulary_sizes:
            names.append("categorical")
        return names + [f"image:{c}" for c in self.image_columns] + [f"audio:{c}" for c in self.audio_columns]

    @classmethod
    def read(cls, path: Path) -> MultimodalConfig:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("model_type") != MODEL_TYPE:
            raise TuneforgeError(f"{path} is not a tuneforge multimodal model", fix="pass a multimodal run")
        data.pop("architectures", None)
        return cls(**data)


def encoder_width(config: Any) -> int:
    """The width of an encoder's pooled output, read from its config (BERT, ViT, AST, Wav2Vec2, ConvNeXt)."""
    for name in ("hidden_size", "d_model"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    sizes = getattr(config, "hidden_sizes", None)
    if sizes:
        return int(sizes[-1])
    raise TuneforgeError(f"cannot tell the output width of a {type(config).__name__} encoder",
                         fix="use a Transformers encoder whose config has hidden_size (ViT, ConvNeXt, AST, Wav2Vec2)")


def load_encoder(path: str, what: str, trust_remote_code: bool = False, offline: bool = False) -> nn.Module:
    """A pretrained encoder-only body (AutoModel), in fp32 like every model tuneforge trains."""
    try:
        model = AutoModel.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust_remote_code,
                                          local_files_only=offline, use_safetensors=None)
    except (OSError, ValueError) as error:
        raise ModelNotFoundError(f"could not load the {what} encoder '{path}': {str(error).splitlines()[0]}",
                                 fix=f"name a local Transformers {what} model folder (config, weights, processor) "
                                     f"in features.{what}_encoder") from None
    if getattr(model.config, "is_encoder_decoder", False):
        raise TuneforgeError(f"the {what} encoder '{path}' is an encoder-decoder model ({model.config.model_type})",
                             fix=f"use an encoder-only {what} model, e.g. "
                                 f"{'ViT or ConvNeXt' if what == 'image' else 'AST (log-mel) or Wav2Vec2'}")
    return model


def _projection(width: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.LayerNorm(hidden))


def _head(width: int, hidden: int, outputs: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, outputs))


def _pool_tokens(states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return states.mean(dim=1)
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-6)


def _pool_encoder(output: Any) -> torch.Tensor:
    """A vector per input: mean over a transformer's tokens, or a CNN's pooled (spatially averaged) output."""
    states = output.last_hidden_state
    if states.dim() == 3:
        return states.mean(dim=1)
    pooled = getattr(output, "pooler_output", None)
    if pooled is not None:
        return pooled.flatten(1)
    return states.flatten(2).mean(dim=-1)


class MultimodalModel(nn.Module):
    """Encoders plus fusion; `forward` takes the collator's batch and returns logits (one per class, or one)."""

    def __init__(self, config: MultimodalConfig, text_encoder: nn.Module, image_encoder: nn.Module | None = None,
                 audio_encoder: nn.Module | None = None) -> None:
        super().__init__()
        if config.combiner not in COMBINERS:
            raise TuneforgeError(f"unknown combiner '{config.combiner}'", fix=f"use one of {', '.join(COMBINERS)}")
        self.config_data = config
        hidden, dropout = config.fusion_hidden, config.dropout
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.audio_encoder = audio_encoder
        self.projections = nn.ModuleDict({"text": _projection(encoder_width(text_encoder.config), hidden, dropout)})
        if config.numeric_width:
            self.projections["numeric"] = _projection(config.numeric_width, hidden, dropout)
        if config.vocabulary_sizes:
            self.embeddings = nn.ModuleList(nn.Embedding(size, config.categorical_embedding_dim)
                                            for size in config.vocabulary_sizes)
            self.projections["categorical"] = _projection(
                config.categorical_embedding_dim * len(config.vocabulary_sizes), hidden, dropout)
        if config.image_columns:
            if image_encoder is None:
                raise TuneforgeError("image columns need an image encoder", fix="set features.image_encoder")
            self.projections["image"] = _projection(encoder_width(image_encoder.config), hidden, dropout)
        if config.audio_columns:
            if audio_encoder is None:
                raise TuneforgeError("audio columns need an audio encoder", fix="set features.audio_encoder")
            self.projections["audio"] = _projection(encoder_width(audio_encoder.config), hidden, dropout)
        count = len(config.modalities())
        outputs = config.num_labels
        if config.combiner == "concat":
            self.head = _head(hidden * count, hidden, outputs, dropout)
        elif config.combiner == "gated":
            self.gate = nn.Linear(hidden * count, hidden * count)
            self.head = _head(hidden, hidden, outputs, dropout)
        elif config.combiner == "attention":
            self.score = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False))
            self.head = _head(hidden, hidden, outputs, dropout)
        else:  # late: a head per modality
            self.heads = nn.ModuleList(_head(hidden, hidden, outputs, dropout) for _ in range(count))
        self.last_weights: torch.Tensor | None = None  # gates or attention weights of the last batch

    # --- training mode: frozen encoders stay in eval mode (no dropout noise in features that do not learn) ----
    def encoders(self) -> dict[str, nn.Module]:
        found = {"text": self.text_encoder, "image": self.image_encoder, "audio": self.audio_encoder}
        return {name: module for name, module in found.items() if module is not None}

    def train(self, mode: bool = True) -> MultimodalModel:
        super().train(mode)
        for module in self.encoders().values():
            if not any(p.requires_grad for p in module.parameters()):
                module.eval()
        return self

    # --- the forward pass --------------------------------------------------------------------------------
    def _encode(self, encoder: nn.Module, **inputs: torch.Tensor) -> torch.Tensor:
        if any(p.requires_grad for p in encoder.parameters()):
            return _pool_encoder(encoder(**inputs))
        with torch.no_grad():
            return _pool_encoder(encoder(**inputs))

    def text_vector(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                    token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The text encoder's token states, mean-pooled over the attention mask."""
        text_inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            text_inputs["token_type_ids"] = token_type_ids
        trainable_text = any(p.requires_grad for p in self.text_encoder.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and trainable_text):
            states = self.text_encoder(**text_inputs).last_hidden_state
        return _pool_tokens(states, attention_mask)

    def modality_vectors(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                         token_type_ids: torch.Tensor | None = None, numeric: torch.Tensor | None = None,
                         categorical: torch.Tensor | None = None, pixel_values: torch.Tensor | None = None,
                         audio_values: torch.Tensor | None = None, text_vectors: torch.Tensor | None = None
                         ) -> list[torch.Tensor]:
        """One `fusion_hidden` vector per modality; `text_vectors` (pooled states of a frozen text encoder,
        computed once before training) replace the text encoder's pass."""
        config = self.config_data
        if text_vectors is None:
            text_vectors = self.text_vector(input_ids, attention_mask, token_type_ids)
        vectors = [self.projections["text"](text_vectors.float())]
        if config.numeric_width:
            vectors.append(self.projections["numeric"](numeric.float()))
        if config.vocabulary_sizes:
            embedded = torch.cat([table(categorical[:, i]) for i, table in enumerate(self.embeddings)], dim=-1)
            vectors.append(self.projections["categorical"](embedded))
        for i, _ in enumerate(config.image_columns):
            pooled = self._encode(self.image_encoder, pixel_values=pixel_values[:, i])
            vectors.append(self.projections["image"](pooled))
        for i, _ in enumerate(config.audio_columns):
            pooled = self._encode(self.audio_encoder, **{config.audio_input_name: audio_values[:, i]})
            vectors.append(self.projections["audio"](pooled))
        return vectors

    def fuse(self, vectors: list[torch.Tensor]) -> torch.Tensor:
        combiner = self.config_data.combiner
        if combiner == "concat":
            return self.head(torch.cat(vectors, dim=-1))
        if combiner == "gated":
            stacked = torch.cat(vectors, dim=-1)
            gates = torch.sigmoid(self.gate(stacked)).view(stacked.shape[0], len(vectors), -1)
            self.last_weights = gates.mean(dim=-1).detach()
            return self.head((gates * torch.stack(vectors, dim=1)).sum(dim=1))
        if combiner == "attention":
            stacked = torch.stack(vectors, dim=1)  # (batch, modalities, hidden)
            weights = torch.softmax(self.score(stacked).squeeze(-1), dim=-1)
            self.last_weights = weights.detach()
            return self.head((weights.unsqueeze(-1) * stacked).sum(dim=1))
        return torch.stack([head(v) for head, v in zip(self.heads, vectors, strict=True)], dim=0).mean(dim=0)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, numeric: torch.Tensor | None = None,
                categorical: torch.Tensor | None = None, pixel_values: torch.Tensor | None = None,
                audio_values: torch.Tensor | None = None, text_vectors: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        # `labels` is in the signature so the Trainer passes them through evaluation; the loss is the recipe's,
        # computed by the trainer (train/losses.py), so it is not computed here.
        vectors = self.modality_vectors(input_ids, attention_mask, token_type_ids, numeric, categorical,
                                        pixel_values, audio_values, text_vectors)
        return SequenceClassifierOutput(logits=self.fuse(vectors))

    # --- saving and loading ---------------------------------------------------------------------------------
    def fusion_state(self) -> dict[str, torch.Tensor]:
        encoder_prefixes = tuple(f"{name}_encoder." for name in ENCODER_FOLDERS)
        return {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()
                if not k.startswith(encoder_prefixes)}

    def save(self, folder: Path, processors: dict[str, Any]) -> None:
        """config.json, one Transformers folder per encoder (with its tokenizer/processor), fusion weights."""
        folder.mkdir(parents=True, exist_ok=True)
        artifacts.write_json(folder / "config.json", {**asdict(self.config_data),
                                                      "architectures": ["TuneforgeMultimodal"]})
        for name, encoder in self.encoders().items():
            target = folder / ENCODER_FOLDERS[name]
            encoder.save_pretrained(str(target), safe_serialization=True)
            if processors.get(name) is not None:
                processors[name].save_pretrained(str(target))
        save_file(self.fusion_state(), str(folder / FUSION_WEIGHTS), metadata={"format": "pt"})


def load_multimodal(folder: Path) -> tuple[MultimodalModel, dict[str, Any]]:
    """The saved model and its processors ({"text": tokenizer, "image": image processor, "audio": feature
    extractor}), from model/ alone."""
    from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoTokenizer

    config = MultimodalConfig.read(folder / "config.json")
    encoders: dict[str, nn.Module | None] = {"image": None, "audio": None}
    processors: dict[str, Any] = {"text": AutoTokenizer.from_pretrained(str(folder / "text"))}
    text = AutoModel.from_pretrained(str(folder / "text"), dtype=torch.float32)
    if config.image_columns:
        encoders["image"] = _saved_encoder(folder / "image")
        processors["image"] = AutoImageProcessor.from_pretrained(str(folder / "image"))
    if config.audio_columns:
        encoders["audio"] = _saved_encoder(folder / "audio")
        processors["audio"] = AutoFeatureExtractor.from_pretrained(str(folder / "audio"))
    model = MultimodalModel(config, text, encoders["image"], encoders["audio"])
    missing, unexpected = model.load_state_dict(load_file(str(folder / FUSION_WEIGHTS)), strict=False)
    missing = [k for k in missing if not k.startswith(tuple(f"{n}_encoder." for n in ENCODER_FOLDERS))]
    if missing or unexpected:
        raise TuneforgeError(f"{folder / FUSION_WEIGHTS} does not fit {folder / 'config.json'} (missing "
                             f"{missing[:3]}, unexpected {unexpected[:3]})", fix="train the run again")
    return model.eval(), processors


def _saved_encoder(folder: Path) -> nn.Module:
    config = AutoConfig.from_pretrained(str(folder))
    return AutoModel.from_pretrained(str(folder), config=config, dtype=torch.float32)
