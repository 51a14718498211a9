"""The train section: optimisation, precision, devices and several-process training."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, field_validator

from tuneforge.recipe.section import Section

# train.optimizer: the names `tuneforge train`, `estimate` and `recommend` all take.
OptimizerName = Literal["adamw_torch_fused", "adamw_torch", "adafactor", "adamw_8bit", "paged_adamw_8bit"]
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerName)


class DistributedSpec(Section):
    """How several processes share one training run (`tuneforge train --nproc N`, or torchrun on several machines).

    One process is plain single-device training; these settings apply only when torchrun starts several.
    """

    strategy: Literal["ddp", "fsdp", "deepspeed"] = Field(
        "ddp", description="ddp: every process holds the whole model and gradients are averaged; fsdp: parameters, "
        "gradients and optimiser state are sharded over the processes (PyTorch FSDP); deepspeed: DeepSpeed ZeRO "
        "(needs the deepspeed package).",
    )
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="Process-group backend; auto: nccl on GPUs, gloo on the CPU.")
    fsdp: str = Field(
        "full_shard auto_wrap", description="fsdp: the Trainer's fsdp option, e.g. 'full_shard auto_wrap', "
        "'shard_grad_op auto_wrap', 'full_shard offload auto_wrap'.")
    fsdp_config: dict[str, Any] = Field(
        default_factory=dict, description="fsdp: extra FSDP settings passed to the Trainer's fsdp_config, e.g. "
        "{transformer_layer_cls_to_wrap: [BertLayer]}.")
    zero_stage: Literal[1, 2, 3] = Field(
        2, description="deepspeed: ZeRO stage (1: optimiser state, 2: + gradients, 3: + parameters sharded).")
    deepspeed_config: str | None = Field(
        None, description="deepspeed: a DeepSpeed JSON config file used instead of the one built from zero_stage.")


class ContrastiveSpec(Section):
    """Few-shot contrastive training (train.method: contrastive), SetFit's recipe: the encoder first learns, from
    pairs of labelled rows, to put texts of one class close together and texts of different classes apart; the
    task head then starts from a logistic regression fitted on those embeddings and is fine-tuned as usual."""

    loss: Literal["cosine", "contrastive", "batch_hard"] = Field(
        "cosine", description="cosine: CosineSimilarityLoss on pairs (same label 1, different label 0; SetFit's "
        "default); contrastive: ContrastiveLoss on the same pairs (a margin for different labels); batch_hard: "
        "BatchHardTripletLoss on the rows themselves, batches grouped by label.")
    iterations: int = Field(20, ge=1, description="cosine, contrastive: pairs per training row, half of them "
                            "positive (same label) and half negative (SetFit's num_iterations).")
    max_pairs: int = Field(20_000, ge=10, description="Most pairs generated, however large the data: contrastive "
                           "training pays off on small data (tens of rows per class), not on large.")
    epochs: float = Field(1.0, gt=0, description="Passes over the pairs.")
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate of the contrastive stage.")
    batch_size: int = Field(16, ge=2, description="Pairs (or rows, batch_hard) per step.")
    bridge_epochs: int = Field(
        10, ge=0, description="Passes that teach the classifier's own feature path (for BERT-style models the first "
        "token through the pooler) to reproduce the mean-pooled embedding the contrastive stage shaped, on the "
        "training texts and copies with words dropped; 0: off.")
    head_init: Literal["logistic", "random"] = Field(
        "logistic", description="logistic: the head's output layer starts from a logistic regression fitted on the "
        "features it reads (SetFit's head, in the ordinary classifier); random: the usual fresh head.")


class TrainSpec(Section):
    method: Literal["standard", "contrastive"] = Field(
        "standard", description="standard: fine-tune the encoder and a fresh head on the labelled rows; contrastive "
        "(classification only; pays off below about 50 rows per class): SetFit-style contrastive training of the "
        "encoder on pairs of rows first, then the head (see train.contrastive).")
    contrastive: ContrastiveSpec = Field(default_factory=ContrastiveSpec,
                                         description="train.method contrastive: the contrastive stage.")
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate of AdamW.")
    batch_size: int | Literal["auto"] = Field(
        16, description="Examples per device per optimisation micro-step; auto: the largest that fits (probed on a "
        "GPU, from the memory estimate on the CPU), recorded in metrics.json.",
    )
    eval_batch_size: int = Field(64, ge=1, description="Examples per device per evaluation step.")
    epochs: float = Field(3.0, gt=0, description="Passes over the training data (ignored when max_steps > 0).")
    max_steps: int = Field(0, ge=0, description="Stop after this many optimisation steps; 0 means use epochs.")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="Fraction of steps with linear learning-rate warm-up.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "linear", description="Learning-rate schedule after warm-up."
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm; 0 turns clipping off.")
    gradient_accumulation_steps: int = Field(
        1, ge=1, description="Micro-steps per optimiser step; the loss is normalised so it does not depend on it."
    )
    max_length: int = Field(128, ge=8, description="Longest input in tokens; longer texts are truncated.")
    seed: int = Field(42, description="Seed for weights of new layers, shuffling and dropout.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU. bf16 also runs on "
        "CPUs with AVX-512 BF16 or AMX (mixed precision, faster there)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto uses a GPU when one is visible.")
    group_by_length: bool = Field(
        True, description="Batch texts of similar length together so less compute goes to padding."
    )
    logging_steps: int = Field(1, ge=1, description="Log loss and learning rate every this many steps (1: every step).")
    save_checkpoints: bool = Field(True, description="Save a checkpoint per epoch so `--resume` can continue a run.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept on disk (the best one is always kept).")
    keep_checkpoints: bool = Field(False, description="Keep checkpoints/ after a successful run (most of a run's "
                                   "size: optimiser states). Off: they are removed once the model is saved; "
                                   "an interrupted or failed run always keeps them for --resume.")
    dataloader_workers: int = Field(0, ge=0, description="Worker processes loading batches.")
    distributed: DistributedSpec = Field(
        default_factory=DistributedSpec,
        description="Multi-process training (`--nproc N` or torchrun): ddp, fsdp or deepspeed.")
    stages: list[Literal["pretrain", "finetune"]] = Field(
        default_factory=lambda: ["finetune"],
        description="pretrain: continued pretraining on the pretrain.corpus before fine-tuning ([pretrain, "
        "finetune]); the adapted model is kept in <run>/pretrained.",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: much less memory for about 30% more time."
    )
    optimizer: OptimizerName = Field(
        "adamw_torch_fused",
        description="adamw_torch_fused (the Trainer's default, one fused kernel), adamw_torch, adafactor (factored "
        "second moments, least memory), adamw_8bit / paged_adamw_8bit (8-bit states through bitsandbytes; paging "
        "needs CUDA and falls back to plain 8-bit on the CPU).",
    )
    compile: Literal["auto", "on", "off"] = Field(
        "auto", description="torch.compile each transformer block (regional, so compiling stays short): auto is on "
        "with a CUDA GPU and off on the CPU, where it does not pay.")
    memory: Literal["standard", "lean"] = Field(
        "standard", description="lean: fit the run into the memory free now with the cheapest savers that suffice "
        "(chunked loss for causal-lm/seq2seq, activation checkpointing, 8-bit or paged optimiser states); "
        "metrics.json says what was chosen and why.")
    chunked_loss: Literal["auto", "on", "off"] = Field(
        "auto", description="causal-lm, seq2seq: compute the loss in chunks of tokens so the logits of a whole "
        "batch never exist at once (exact gradients); auto: on for vocabularies of 32k tokens or more, or when "
        "memory: lean asks for it.")
    report_to: list[Literal["mlflow", "tensorboard", "wandb"]] = Field(
        default_factory=list, description="Experiment trackers that receive the run's parameters and training "
        "curves: mlflow (to output.tracking_uri; the CLI defaults to the local registry store), tensorboard "
        "(<dir>/tensorboard), wandb (needs `pip install wandb` and a login). Search trials and refresh runs log "
        "the same way.")
    kernels: Literal["auto", "off"] = Field(
        "auto", description="auto: Liger's fused kernels (RMSNorm, RoPE, SwiGLU) for the decoders Liger supports, on "
        "a CUDA GPU with liger-kernel installed (pip install 'tuneforge[gpu]'); elsewhere nothing changes.")

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"batch_size takes a whole number of at least 1, or auto; got {value!r}")
        return value
