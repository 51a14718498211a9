"""Which memory savers a training run needs to fit a memory budget, chosen from the cheapest, with the reasons.

The savers, in the order they are tried (cheapest in speed and exactness first):

1. chunked loss (`tasks.chunked_loss`): the batch × length × vocabulary logits, their fp32 copy and gradient
   are never all in memory. Same loss, same gradients, about the same speed. Language-model tasks only.
2. activation checkpointing: each layer keeps only its input and is recomputed in backward. Exact, about a
   third more compute (one more forward).
3. 8-bit AdamW states (bitsandbytes): 2 bytes per trained parameter instead of 8. Block-wise quantised moments
   train about like fp32 ones (Dettmers et al. 2022, "8-bit Optimizers via Block-wise Quantization"), but not
   bit for bit, hence after the exact savers.
4. paged 8-bit AdamW (CUDA): the states live in unified memory that the driver moves to host RAM under
   pressure, so the GPU need no longer counts them; slow whenever pages move.

When checkpointing was needed together with later savers, the plan is tried again without it (and without
paging) and keeps that if it fits, since checkpointing costs the most speed. Figures come from
`models.estimate` (its formulas and measured per-architecture constants), adjusted for the chunked loss.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from tuneforge.models.estimate import GiB, MemoryBreakdown, TrainingSetup, memory_breakdown
from tuneforge.models.shapes import ModelShape

PLAIN_OPTIMIZER = "adamw_torch_fused"
CHUNK_TOKENS = 1024
SAVERS: tuple[str, ...] = ("chunked_loss", "gradient_checkpointing", "adamw_8bit", "paged_adamw_8bit")
WHY = {
    "chunked_loss": "no vocabulary-wide logits in memory; same loss and gradients, about the same speed",
    "gradient_checkpointing": "each layer keeps only its input and is recomputed in backward: exact, about a "
                              "third more compute",
    "adamw_8bit": "AdamW moments in 8 bits (2 instead of 8 bytes per trained parameter); trains about like fp32 "
                  "states, not bit for bit",
    "paged_adamw_8bit": "8-bit states in unified memory the driver pages out to host RAM under pressure; slow "
                        "whenever pages move",
}


@dataclass(frozen=True)
class LeanStep:
    """One saver switched on: its name, the estimated peak before and after, and why it was chosen."""

    saver: str
    peak_before: int
    peak_after: int
    why: str


@dataclass(frozen=True)
class LeanPlan:
    """What the run should switch on, and whether the estimated peak then fits the budget."""

    fits: bool
    chunked_loss: bool
    chunk_tokens: int | None
    gradient_checkpointing: bool
    optimizer: str  # the recipe's train.optimizer name: adamw_torch_fused, adamw_8bit or paged_adamw_8bit
    budget_bytes: int
    plain_bytes: int  # estimated peak with no saver
    lean_bytes: int  # estimated peak with the chosen savers
    steps: tuple[LeanStep, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def savers(self) -> list[str]:
        return [step.saver for step in self.steps]

    def summary(self) -> str:
        """One line for a log: what was chosen and the figures behind it."""
        chosen = ", ".join(self.savers) or "nothing"
        verdict = "fits" if self.fits else "does NOT fit"
        return (f"memory plan: {chosen}; peak {self.lean_bytes / GiB:.1f} GiB (plain {self.plain_bytes / GiB:.1f}) "
                f"{verdict} in {self.budget_bytes / GiB:.1f} GiB")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "steps": [asdict(step) for step in self.steps], "notes": list(self.notes),
                "savers": self.savers, "summary": self.summary()}


def llama_like_shape(parameters: int, vocab: int) -> ModelShape:
    """An approximate Llama-style shape for a bare parameter count, for when no config is at hand.

    Layers hold about 10.75·h² weights (grouped-query attention with a quarter of the heads for keys and values,
    a gated MLP of 2.75·h) and h ≈ 93 × layers (TinyLlama's 2048 / 22; Llama-2-7B's 4096 / 32 is 128), so
    h³ ≈ 93 · body / 10.75. Activations scale with layers × hidden: expect them within about 20 % of a real
    model's; pass the model's own ModelShape (`models.shapes.shape_of`) for the exact figure.
    """
    hidden = 1024
    for _ in range(20):  # the untied embedding and head (2·V·h) depend on h: a few fixed-point rounds
        body = max(parameters - 2 * vocab * hidden, parameters // 4)
        hidden = max(256, round((93 * body / 10.75) ** (1 / 3) / 128) * 128)
    layers = max(1, round(body / (10.75 * hidden * hidden)))
    head_dim = 64
    heads = hidden // head_dim
    kv_heads = max(1, heads // 4)
    intermediate = round(2.75 * hidden / 128) * 128
    q_v = 2 * hidden + hidden + kv_heads * head_dim  # q_proj (h→h) and v_proj (h→kv) in + out features
    return ModelShape(
        name=f"~{parameters / 1e9:.2f}B parameters (Llama-like shape)", architecture="llama", family=None,
        task="causal-lm", parameters=parameters, head_parameters=0, matmul_parameters=parameters - vocab * hidden,
        body_linear_parameters=body, lora_targets=("q_proj", "v_proj"), lora_in_out=layers * q_v,
        lora_inputs=layers * 2 * hidden, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads,
        head_dim=head_dim, intermediate=intermediate, vocab=vocab, hidden_dropout=0.0, attention_dropout=0.0,
        attention="sdpa",
    )


def _peak(shape: ModelShape, setup: TrainingSetup, chunked: bool, paged: bool, chunk_tokens: int) -> int:
    """Estimated peak bytes; the chunked loss swaps the logits terms for one chunk's (logits and their gradient
    in fp32), the hidden-state gradient and the fp32 head-gradient accumulator it keeps from forward to backward;
    paged states leave the GPU."""
    memory: MemoryBreakdown = memory_breakdown(shape, setup)
    if chunked and shape.lm_head:
        b, s, v, h = setup.batch_size, setup.sequence, shape.vocab, shape.hidden
        element = 4 if setup.precision == "fp32" else 2
        rows = min(chunk_tokens, b * s)
        head_grad = 4 * v * h if setup.method == "full" else 0
        memory = replace(memory,
                         activations=memory.activations - 4 * b * s * v + b * s * h * element + head_grad,
                         workspace=memory.workspace - 3 * 4 * b * s * v + 2 * 4 * rows * v)
    if paged:
        memory = replace(memory, optimizer=0)
    return memory.peak


def plan_lean(model_params: int | ModelShape, batch: int, seq_len: int, vocab: int, budget_bytes: int,
              device: str | torch.device = "cuda", *, method: str = "full", precision: str | None = None,
              eightbit_available: bool | None = None, chunk_tokens: int = CHUNK_TOKENS) -> LeanPlan:
    """The cheapest savers that fit `budget_bytes` (see the module docstring), with the estimates behind them.

    `model_params` is the model's ModelShape (exact) or a parameter count (a Llama-like shape is assumed; see
    `llama_like_shape`). `vocab` overrides the shape's vocabulary (an extended tokenizer). `precision` defaults
    to bf16 on CUDA and fp32 on the CPU; `eightbit_available` to whether bitsandbytes is installed.
    """
    device_type = torch.device(device).type
    device_type = "cuda" if device_type == "cuda" else "cpu"
    if isinstance(model_params, ModelShape):
        shape = replace(model_params, vocab=vocab)
    else:
        shape = llama_like_shape(int(model_params), vocab)
    if precision is None:
        precision = "bf16" if device_type == "cuda" else "fp32"
    if eightbit_available is None:
        eightbit_available = importlib.util.find_spec("bitsandbytes") is not None
    base = TrainingSetup(task=shape.task, batch_size=batch, max_length=seq_len, method=method,  # type: ignore[arg-type]
                         precision=precision, optimizer="adamw", device=device_type)  # type: ignore[arg-type]

    def peak(chosen: set[str]) -> int:
        setup = replace(base, gradient_checkpointing="gradient_checkpointing" in chosen,
                        optimizer="adamw_8bit" if chosen & {"adamw_8bit", "paged_adamw_8bit"} else "adamw")
        return _peak(shape, setup, "chunked_loss" in chosen, "paged_adamw_8bit" in chosen, chunk_tokens)

    notes: list[str] = []
    available = list(SAVERS)
    if not shape.lm_head:
        available.remove("chunked_loss")
    if not eightbit_available:
        available = [s for s in available if "8bit" not in s]
        notes.append("bitsandbytes is not installed: 8-bit optimiser states not considered")
    elif device_type != "cuda":
        available.remove("paged_adamw_8bit")

    def walk(savers: list[str]) -> tuple[list[LeanStep], int]:
        """Switch savers on in order until the estimate fits, recording each step."""
        steps: list[LeanStep] = []
        chosen: set[str] = set()
        current = peak(chosen)
        for saver in savers:
            if current <= budget_bytes:
                break
            after = peak(chosen | {saver})
            if after < current:
                steps.append(LeanStep(saver, current, after, WHY[saver]))
                chosen.add(saver)
                current = after
        return steps, current

    plain = peak(set())
    steps, current = walk(available)
    chosen = {step.saver for step in steps}
    if current <= budget_bytes and "gradient_checkpointing" in chosen and len(steps) > 1:
        # Paging is no substitute: once pages move it is slower than recomputing the layers.
        fewer = [saver for saver in available if saver not in ("gradient_checkpointing", "paged_adamw_8bit")]
        retry, retry_peak = walk(fewer)
        if retry_peak <= budget_bytes:
            notes.append("activation checkpointing left out: the other savers alone fit, and it costs the most "
                         "speed")
            steps, current = retry, retry_peak
            chosen = {step.saver for step in steps}
    fits = current <= budget_bytes
    if not fits:
        notes.append("even with every saver the estimate exceeds the budget: use LoRA, a smaller batch with "
                     "gradient accumulation, or shorter sequences")
    optimizer = ("paged_adamw_8bit" if "paged_adamw_8bit" in chosen
                 else "adamw_8bit" if "adamw_8bit" in chosen else PLAIN_OPTIMIZER)
    return LeanPlan(fits=fits, chunked_loss="chunked_loss" in chosen,
                    chunk_tokens=chunk_tokens if "chunked_loss" in chosen else None,
                    gradient_checkpointing="gradient_checkpointing" in chosen, optimizer=optimizer,
                    budget_bytes=int(budget_bytes), plain_bytes=plain, lean_bytes=current, steps=tuple(steps),
                    notes=tuple(notes))
