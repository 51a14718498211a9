"""Peak training memory and time per epoch of a model, before anything is loaded or trained.

Memory, in bytes, for P parameters of which T train:

- weights: 4·P (fp32, as tuneforge loads them); under bf16/fp16 autocast the trainable matmul weights also get
  a 2-byte copy for the forward pass. QLoRA stores the body's Linear weights in NF4 with double quantisation,
  4.127 bits each (Dettmers et al. 2023, "QLoRA", §3), the rest in 16 bits.
- gradients: 4·T. Optimiser states: AdamW 8·T (two fp32 moments), 8-bit AdamW 2·T, plain SGD none, Adafactor
  next to none (a row and a column vector per matrix). With the fp32 weights this is the 16 bytes per trained
  parameter of Rajbhandari et al. 2020 ("ZeRO", §3.1).
- activations: the tensors autograd keeps for backward; see `activation_bytes` for the per-layer formula.
- overhead: temporary buffers of backward (`workspace`), on the CPU the heap memory glibc keeps after freeing
  activations (`allocator`), and the runtime itself (imports and kernels, or the CUDA context).

Backward frees a layer's activations as it writes that layer's gradients, so the two overlap instead of adding
up: peak = weights + optimiser states + max(activations + workspace, gradients) + allocator + runtime (the
Trainer's default fused AdamW needs no temporaries of its own). bench/memory.py checks the figure against
measured peaks.

Time: training FLOPs per token ≈ 6·N + 6·L·s·d_attn for full training, N the parameters in matrix multiplies,
L layers, s the sequence length and d_attn the attention width (Kaplan et al. 2020, "Scaling Laws for Neural
Language Models", §2.1: forward 2N + 2·L·s·d_attn, backward twice that). A frozen weight skips its
weight-gradient product, so LoRA costs 4·N; a frozen body needs the forward only, 2·N; gradient checkpointing
repeats the forward, 2·N more. Seconds = FLOPs / the device's achieved FLOP/s (see `models.hardware`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tuneforge.errors import TuneforgeError
from tuneforge.models.shapes import ModelShape
from tuneforge.recipe import OPTIMIZERS as TRAIN_OPTIMIZERS
from tuneforge.recipe import PeftMethod, normalise_task

Precision = Literal["fp32", "bf16", "fp16"]
Device = Literal["cpu", "cuda"]
# What is trained: every weight, the head alone (freeze.all_but_head), or what a peft.method is sized as.
METHODS: tuple[str, ...] = ("full", "freeze", *dict.fromkeys(m.estimate_method for m in PeftMethod if m.enabled))
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
# Optimiser-state bytes per trainable parameter, by how the states are stored.
STATE_BYTES = {"adamw": 8, "adamw_8bit": 2, "adafactor": 0, "sgd": 0}
# train.optimizer -> its state layout; the names are the recipe's (a test keeps the two in step).
OPTIMIZER_STATES = {"adamw_torch_fused": "adamw", "adamw_torch": "adamw", "adafactor": "adafactor",
                    "adamw_8bit": "adamw_8bit", "paged_adamw_8bit": "adamw_8bit"}
OPTIMIZERS: tuple[str, ...] = (*TRAIN_OPTIMIZERS, *(name for name in STATE_BYTES if name not in TRAIN_OPTIMIZERS))
DEVICES: tuple[str, ...] = ("cpu", "cuda")
# Recipe tasks whose model has the shape of another task's: a multilabel classifier is a classifier with one
# output per label.
SHAPE_TASKS = {"multilabel": "classification"}

MiB = 2**20
GiB = 2**30
NF4_BYTES = 4.127 / 8  # QLoRA: 4-bit NF4 plus double-quantised block constants
RUNTIME_BYTES = {"cpu": 600 * MiB, "cuda": 600 * MiB}  # imports + kernels (CPU RSS) / CUDA context
# glibc serves tensors below its (adaptive, up to 32 MiB) mmap threshold from the heap and keeps much of what
# backward frees; bench/memory.py measured peak RSS at live tensors + 0.45 to 0.9 x activations.
CPU_ALLOCATOR_SLACK = 0.65


@dataclass(frozen=True)
class TrainingSetup:
    """What is trained and how: everything the estimate needs besides the model's shape."""

    task: str = "classification"
    batch_size: int = 16
    max_length: int = 128
    method: str = "full"  # one of METHODS
    lora_r: int = 8
    lora_dropout: float = 0.05  # tuneforge's default peft.dropout
    precision: Precision = "fp32"
    optimizer: str = "adamw_torch_fused"  # a train.optimizer name, or a state layout of STATE_BYTES
    gradient_checkpointing: bool = False
    device: Device = "cpu"
    rows: int | None = None  # training rows per epoch; no time estimate without them
    tokens_per_row: float | None = None  # padded tokens per row when the data are known; else max_length

    def __post_init__(self) -> None:
        for name, value, allowed in (("method", self.method, METHODS), ("precision", self.precision, PRECISIONS),
                                     ("optimizer", self.optimizer, OPTIMIZERS), ("device", self.device, DEVICES)):
            if value not in allowed:
                named = TRAIN_OPTIMIZERS if name == "optimizer" else allowed  # the names train.optimizer takes
                raise TuneforgeError(f"unknown {name} '{value}'", fix=f"use one of {', '.join(named)}")
        if self.batch_size < 1 or self.max_length < 1 or self.lora_r < 1:
            raise TuneforgeError("batch size, max length and LoRA rank must be at least 1",
                                 fix="pass positive values, e.g. --batch-size 16 --max-length 128")

    @property
    def state_bytes(self) -> int:
        """Optimiser-state bytes per trainable parameter."""
        return STATE_BYTES[OPTIMIZER_STATES.get(self.optimizer, self.optimizer)]

    @property
    def sequence(self) -> int:
        """Tokens per padded row."""
        return max(1, round(min(self.tokens_per_row or self.max_length, self.max_length)))


@dataclass(frozen=True)
class LayerProfile:
    """Tensors autograd keeps in one transformer layer, in units of their size (see `activation_bytes`)."""

    hidden: float  # batch × seq × hidden tensors besides Q, K and V: layer and norm inputs, attention output ...
    mlp: float  # batch × seq × intermediate tensors: activation input and output, gated products
    hidden_masks: float = 2  # batch × seq × hidden dropout masks, when hidden dropout is on
    scores: float = 1  # batch × heads × seq² tensors per attention block when scores are written out
    attention_blocks: float = 1  # attention sub-blocks per layer; 1.5 on average for encoder-decoders
    own_attention: bool = False  # attention written in the model's code, so scores are always materialised


# Counted with torch.autograd.graph.saved_tensors_hooks on small models of each architecture (transformers 5).
_BERT = LayerProfile(hidden=5, mlp=2)
PROFILES: dict[str, LayerProfile] = {
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "electra", "distilbert", "camembert", "mpnet", "albert"),
                    _BERT),
    "deberta-v2": LayerProfile(hidden=5, mlp=2, scores=4.6, own_attention=True),  # + disentangled c2p/p2c scores
    "deberta": LayerProfile(hidden=5, mlp=2, scores=4.6, own_attention=True),
    "gpt2": LayerProfile(hidden=5, mlp=5),  # GPT-2's tanh GELU is written out of elementwise ops
    **dict.fromkeys(("llama", "mistral", "mixtral", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "smollm3", "olmo"),
                    LayerProfile(hidden=7, mlp=4, hidden_masks=0)),  # RMSNorm keeps two tensors; SwiGLU four
    "modernbert": LayerProfile(hidden=7, mlp=4),
    **dict.fromkeys(("t5", "mt5", "umt5"), LayerProfile(hidden=9, mlp=3, hidden_masks=2.5, attention_blocks=1.5,
                                                        own_attention=True)),
    **dict.fromkeys(("bart", "mbart", "pegasus", "marian"),
                    LayerProfile(hidden=6.7, mlp=2, hidden_masks=2.5, attention_blocks=1.5)),
}
GATED_T5_MLP = 8  # T5 v1.1 / Flan-T5 / mT5: two input projections and a written-out GELU


def profile_for(shape: ModelShape) -> LayerProfile:
    profile = PROFILES.get(shape.architecture, _BERT)
    if shape.gated_mlp and profile.own_attention and profile.attention_blocks > 1:
        return LayerProfile(**{**asdict(profile), "mlp": GATED_T5_MLP})
    return profile


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes per component; `peak` is what the process needs at its highest point."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    workspace: int  # transient buffers of backward (largest per-layer gradients, LM-head logits)
    allocator: int  # heap kept by the C allocator (CPU)
    runtime: int  # the framework itself: CPU-side imports and kernels, or the CUDA context

    @property
    def overhead(self) -> int:
        return self.workspace + self.allocator + self.runtime

    @property
    def training_peak(self) -> int:
        """Peak of what training adds on top of the runtime (what bench/memory.py measures)."""
        overlap = max(self.activations + self.workspace, self.gradients)
        return self.weights + self.optimizer + overlap + self.allocator

    @property
    def peak(self) -> int:
        return self.training_peak + self.runtime

    def to_json(self) -> dict[str, int]:
        return {**asdict(self), "overhead": self.overhead, "training_peak": self.training_peak, "peak": self.peak}


@dataclass(frozen=True)
class TimeEstimate:
    tokens_per_epoch: int
    flops_per_epoch: float
    device_flops: float  # achieved FLOP/s assumed for training
    device_source: str  # how the FLOP/s figure was obtained
    seconds_per_epoch: float


@dataclass(frozen=True)
class Estimate:
    model: str
    setup: TrainingSetup
    parameters: int
    trainable_parameters: int
    memory: MemoryBreakdown
    time: TimeEstimate | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "setup": asdict(self.setup), "parameters": self.parameters,
                "trainable_parameters": self.trainable_parameters, "memory_bytes": self.memory.to_json(),
                "time": asdict(self.time) if self.time else None, "notes": list(self.notes)}


def shape_task(task: str) -> str:
    """The task name models.shapes and the catalog use for a task: a recipe task or alias (ner, multi-label)
    becomes the task whose head it trains; the catalog's own names (generation, summarization ...) pass through."""
    name = normalise_task(task)
    return SHAPE_TASKS.get(name, name)


# ------------------------------------------------------------------------------------------------------
# Parameters
# ------------------------------------------------------------------------------------------------------

def lora_parameters(shape: ModelShape, r: int) -> int:
    """LoRA adds A (r × in) and B (out × r) to every adapted layer."""
    return r * shape.lora_in_out


def trainable_parameters(shape: ModelShape, setup: TrainingSetup) -> int:
    if setup.method == "full":
        return shape.parameters
    if setup.method == "freeze":
        return shape.head_parameters
    return lora_parameters(shape, setup.lora_r) + shape.head_parameters


def total_parameters(shape: ModelShape, setup: TrainingSetup) -> int:
    """With LoRA, the adapters and a trainable copy of the head (peft's modules_to_save) come on top."""
    if setup.method in ("lora", "qlora"):
        return shape.parameters + lora_parameters(shape, setup.lora_r) + shape.head_parameters
    return shape.parameters


# ------------------------------------------------------------------------------------------------------
# Memory
# ------------------------------------------------------------------------------------------------------

def _activation_width(setup: TrainingSetup) -> tuple[int, int]:
    """(bytes per activation element, bytes per dropout-mask element): masks are bool on CUDA, but on the CPU
    dropout multiplies by a mask of the activations' own dtype."""
    element = 4 if setup.precision == "fp32" else 2
    return element, (1 if setup.device == "cuda" else element)


def scores_materialised(shape: ModelShape, setup: TrainingSetup) -> bool:
    """Whether attention writes out batch × heads × seq² scores. Fused kernels (flash / memory-efficient SDPA)
    keep none; PyTorch's CPU SDPA falls back to the plain math path when attention dropout is on."""
    profile = profile_for(shape)
    if profile.own_attention or shape.attention == "eager":
        return True
    return shape.attention == "sdpa" and setup.device == "cpu" and shape.attention_dropout > 0


def layer_activation_bytes(shape: ModelShape, setup: TrainingSetup, method: str | None = None) -> int:
    """Bytes one transformer layer keeps for backward (see `activation_bytes`)."""
    method = method or setup.method
    if method == "freeze":
        return 0  # nothing below a trainable weight needs a gradient, so autograd records nothing
    profile = profile_for(shape)
    b, s, h, i = setup.batch_size, setup.sequence, shape.hidden, shape.intermediate
    element, mask = _activation_width(setup)
    qkv = (shape.heads + 2 * shape.kv_heads) * shape.head_dim  # widths of Q, K and V
    hidden_units = profile.hidden * h + profile.attention_blocks * qkv
    masks = profile.hidden_masks * h * mask if shape.hidden_dropout > 0 else 0
    per_token = hidden_units * element + masks + profile.mlp * i * element
    if method in ("lora", "qlora"):
        # Frozen projections keep no input (attention input, attention output, MLP input, MLP down-projection);
        # each adapted layer keeps its (dropped-out) input and dropout mask instead.
        per_token -= (3 * h + i) * element
        per_layer_inputs = shape.lora_inputs / max(shape.layers, 1)
        per_token += per_layer_inputs * (element + (mask if setup.lora_dropout > 0 else 0))
    total = b * s * max(per_token, 0)
    if scores_materialised(shape, setup):
        dropout = (mask + element) if shape.attention_dropout > 0 else 0
        total += profile.attention_blocks * b * shape.heads * s * s * (profile.scores * element + dropout)
    return int(total)


def activation_bytes(shape: ModelShape, setup: TrainingSetup) -> int:
    """Activations autograd keeps between forward and backward.

    Per transformer layer, with b batch, s sequence, h hidden, I intermediate, a heads, d bytes per activation
    element and m bytes per dropout-mask element:

        b·s·[(c_h·h + q + 2·kv)·d + c_m·h·m + c_I·I·d]  +  a·b·s²·(c_s·d + m + d)   (scores, when written out)

    q and kv are the query and key/value widths (grouped-query attention shrinks kv). This is the breakdown of
    Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models", §4.1: 34·s·b·h +
    5·a·s²·b bytes for BERT/GPT layers in 16 bits, I = 4h), with the per-architecture counts c_h, c_m, c_I, c_s
    of `PROFILES` because norms, activation functions and attention kernels differ: flash / memory-efficient
    SDPA keeps no s² scores at all, and on the CPU dropout masks take d bytes instead of one. LoRA's frozen
    projections keep no input; a frozen body keeps nothing; gradient checkpointing keeps each layer's input and
    recomputes one layer at a time. Outside the layers: embeddings (3·b·s·h·d) and, for generation, the fp32
    log-softmax over the vocabulary (4·b·s·V).
    """
    b, s, h = setup.batch_size, setup.sequence, shape.hidden
    element, _ = _activation_width(setup)
    layer = layer_activation_bytes(shape, setup)
    if setup.method == "freeze":
        body = 0
    elif setup.gradient_checkpointing:
        body = shape.layers * b * s * h * element + layer
    else:
        body = shape.layers * layer
    embeddings = 0 if setup.method == "freeze" else (2 if shape.encoder_decoder else 1) * 3 * b * s * h * element
    logits = 4 * b * s * shape.vocab if shape.lm_head else 0
    return int(body + embeddings + logits)


def workspace_bytes(shape: ModelShape, setup: TrainingSetup) -> int:
    """Short-lived buffers at the memory peak: gradients of the largest per-layer tensors while backward runs
    (a frozen body: the largest tensors of one layer's forward), plus the logits, their fp32 copy and gradients
    for generation."""
    b, s = setup.batch_size, setup.sequence
    element, _ = _activation_width(setup)
    widest = max(shape.intermediate, shape.hidden) * b * s
    scores = b * shape.heads * s * s if scores_materialised(shape, setup) else 0
    if setup.method == "freeze":
        # Forward only: an MLP's input and output, or an attention's scores, softmax, dropout mask and output.
        transient = max(2 * widest, 4 * scores) * element
    else:
        transient = 2 * max(widest, scores) * element
    logits = 3 * 4 * b * s * shape.vocab if shape.lm_head else 0
    return int(transient + logits)


def memory_breakdown(shape: ModelShape, setup: TrainingSetup) -> MemoryBreakdown:
    trainable = trainable_parameters(shape, setup)
    mixed = setup.precision != "fp32"
    if setup.method == "qlora":
        adapters = trainable  # adapters and head: fp32
        weights = shape.body_linear_parameters * NF4_BYTES + (shape.parameters - shape.body_linear_parameters) * 2
        weights += adapters * 4
    else:
        weights = total_parameters(shape, setup) * 4
        if mixed:  # autocast caches a half-precision copy of each trainable weight it multiplies
            weights += (shape.matmul_parameters if setup.method == "full" else trainable) * 2
    gradients = trainable * 4
    states = setup.state_bytes * trainable
    activations = activation_bytes(shape, setup)
    workspace = workspace_bytes(shape, setup)
    allocator = CPU_ALLOCATOR_SLACK * (activations + workspace) if setup.device == "cpu" else 0
    return MemoryBreakdown(weights=int(weights), gradients=int(gradients), optimizer=int(states),
                           activations=activations, workspace=workspace,
                           allocator=int(allocator), runtime=RUNTIME_BYTES[setup.device])


# ------------------------------------------------------------------------------------------------------
# Time
# ------------------------------------------------------------------------------------------------------

def flops_per_token(shape: ModelShape, setup: TrainingSetup) -> float:
    """Training FLOPs per token (see the module docstring)."""
    n = shape.matmul_parameters
    attention = 2 * shape.layers * setup.sequence * shape.heads * shape.head_dim  # forward score and value products
    if setup.method == "freeze":
        return 2 * n + attention + 4 * shape.head_parameters
    forward = 2 * n + attention
    backward = 2 * forward if setup.method == "full" else 2 * n + 2 * attention  # LoRA: no frozen-weight gradients
    adapters = 6 * lora_parameters(shape, setup.lora_r) if setup.method in ("lora", "qlora") else 0
    recompute = forward if setup.gradient_checkpointing else 0
    return float(forward + backward + adapters + recompute)


def time_estimate(shape: ModelShape, setup: TrainingSetup, device_flops: float, source: str) -> TimeEstimate | None:
    if not setup.rows or device_flops <= 0:
        return None
    tokens = int(setup.rows * setup.sequence)
    flops = flops_per_token(shape, setup) * tokens
    return TimeEstimate(tokens_per_epoch=tokens, flops_per_epoch=flops, device_flops=device_flops,
                        device_source=source, seconds_per_epoch=flops / device_flops)


# ------------------------------------------------------------------------------------------------------
# All together
# ------------------------------------------------------------------------------------------------------

def _notes(shape: ModelShape, setup: TrainingSetup) -> list[str]:
    notes = []
    if setup.method == "qlora" and setup.device != "cuda":
        notes.append("QLoRA needs a CUDA GPU with bitsandbytes; on the CPU train with LoRA instead")
    if setup.precision != "fp32" and setup.device == "cpu":
        notes.append("tuneforge trains in fp32 on the CPU (train.precision: auto); bf16/fp16 need a GPU")
    if setup.method == "freeze" and shape.lm_head:
        notes.append("a frozen body leaves a generation model nothing to train; use LoRA")
    if shape.context_length and setup.max_length > shape.context_length:
        notes.append(f"max length {setup.max_length} exceeds the model's context of {shape.context_length} tokens")
    if shape.encoder_decoder:
        notes.append("encoder-decoder: the target is assumed as long as the input")
    if scores_materialised(shape, setup):
        notes.append("attention scores are written out (batch × heads × length²): memory grows with length squared")
    return notes


def estimate(shape: ModelShape, setup: TrainingSetup, device_flops: float = 0.0,
             device_source: str = "") -> Estimate:
    """Parameters, peak memory and (given rows and a device speed) time per epoch of one training setup."""
    if setup.method in ("lora", "qlora") and shape.lora_in_out == 0:
        raise TuneforgeError(f"found no attention layers in {shape.name} for LoRA adapters",
                             fix="use --peft none (full or frozen training) for this model")
    return Estimate(
        model=shape.name,
        setup=setup,
        parameters=total_parameters(shape, setup),
        trainable_parameters=trainable_parameters(shape, setup),
        memory=memory_breakdown(shape, setup),
        time=time_estimate(shape, setup, device_flops, device_source),
        notes=tuple(_notes(shape, setup)),
    )
