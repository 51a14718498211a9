"""Language-model loss without the logits: the LM head and the cross-entropy run over a few rows at a time.

A causal LM's logits are batch × length × vocabulary floats, kept for backward together with their fp32 copy and
gradient: at 8 × 2048 tokens and a 32k vocabulary that is 2 GiB each, often more than the whole model. Here the
hidden states go through the head `chunk_tokens` rows at a time, each chunk's summed cross-entropy and its
gradients are computed at once, and only the gradients of the hidden states and of the head's weight are kept,
so at most one chunk's logits exist at any moment. The result is the same loss and the same gradients as
`F.cross_entropy` over the full logits.

On a CUDA device with `liger-kernel` installed, Liger's fused linear cross-entropy (Triton kernels doing the same
thing faster) is used instead. The plain-PyTorch path below exists because Liger needs Triton and a GPU, and so
that the CPU, tests and heads Liger cannot take (a LoRA-adapted or quantised head) get the same memory saving.

Both return the *summed* loss and the number of labelled tokens: the caller divides by the labelled tokens of the
whole accumulated batch (the Trainer's `num_items_in_batch`), which a per-micro-batch mean would get wrong.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100
DEFAULT_CHUNK_TOKENS = 1024


def liger_available() -> bool:
    """Whether Liger's kernels can be imported (they need Triton, hence a GPU build)."""
    return importlib.util.find_spec("liger_kernel") is not None and importlib.util.find_spec("triton") is not None


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype autocast would run the head's matrix product in, so the chunked path matches the plain one."""
    device_type = tensor.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return tensor.dtype


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `hidden @ weight.T + bias`, chunk by chunk, with the gradients made in forward.

    Written by hand because PyTorch has no fused linear cross-entropy. Making the gradients during forward (as
    Liger does) costs the same three matrix products as the plain path, where recomputing each chunk's logits in
    backward (checkpointing) would cost four; what is kept for backward is the size of the inputs, not of the logits.
    """

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                labels: torch.Tensor, chunk_tokens: int, ignore_index: int, softcap: float | None) -> torch.Tensor:
        dtype = _compute_dtype(hidden)
        accumulate = torch.promote_types(dtype, torch.float32)  # the loss in fp32 at least, as F.cross_entropy's
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        # fp32 accumulators: the sum over chunks of bf16 products would lose the small contributions.
        grad_weight = torch.zeros(weight.shape, dtype=accumulate, device=weight.device) if need_weight else None
        grad_bias = (torch.zeros(bias.shape, dtype=accumulate, device=bias.device)
                     if need_bias and bias is not None else None)
        w = weight.to(dtype)
        b = bias.to(dtype) if bias is not None else None
        total = torch.zeros((), dtype=accumulate, device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, hidden.shape[0], chunk_tokens):
                rows = slice(start, start + chunk_tokens)
                h = hidden[rows].to(dtype)
                target = labels[rows]
                logits = F.linear(h, w, b).to(accumulate)
                if softcap is not None:
                    logits = torch.tanh(logits / softcap) * softcap
                keep = target != ignore_index
                safe = torch.where(keep, target, 0)
                lse = torch.logsumexp(logits, dim=-1)
                picked = logits.gather(1, safe.unsqueeze(1)).squeeze(1)
                total += ((lse - picked) * keep).sum()
                if not (need_hidden or need_weight or need_bias):
                    continue
                # d(lse - logit[target]) / d logits = softmax - one_hot(target), zero on ignored rows; made in
                # place where possible so one chunk holds one or two vocabulary-wide buffers.
                if softcap is not None:
                    grad = torch.exp(logits - lse.unsqueeze(1))
                else:
                    grad = logits.sub_(lse.unsqueeze(1)).exp_()
                grad.scatter_add_(1, safe.unsqueeze(1), torch.full_like(picked, -1.0).unsqueeze(1))
                grad *= keep.unsqueeze(1)
                if softcap is not None:  # d(c·tanh(x/c))/dx = 1 - tanh² = 1 - (capped/c)²
                    grad *= logits.div_(softcap).square_().neg_().add_(1)
                del logits
                if grad_bias is not None:
                    grad_bias += grad.sum(0)
                grad = grad.to(dtype)
                if grad_hidden is not None:
                    grad_hidden[rows] = (grad @ w).to(hidden.dtype)
                if grad_weight is not None:
                    grad_weight += (grad.t() @ h).to(accumulate)
        ctx.save_for_backward(*(t if t is not None else torch.empty(0) for t in (grad_hidden, grad_weight,
                                                                                 grad_bias)))
        ctx.present = (grad_hidden is not None, grad_weight is not None, grad_bias is not None)
        ctx.dtypes = (weight.dtype, bias.dtype if bias is not None else None)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        saved = ctx.saved_tensors
        grads = [tensor * grad_output if present else None for tensor, present in zip(saved, ctx.present, strict=True)]
        if grads[1] is not None:
            grads[1] = grads[1].to(ctx.dtypes[0])
        if grads[2] is not None:
            grads[2] = grads[2].to(ctx.dtypes[1])
        return grads[0], grads[1], grads[2], None, None, None, None


def _flatten(hidden: torch.Tensor, labels: torch.Tensor, shift: bool,
             ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows × hidden and rows; a decoder predicts token t+1 from position t, so its labels move one left and the
    last position gets `ignore_index` (padding the labels copies far less than slicing the hidden states)."""
    if shift:
        labels = F.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    return hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1).to(hidden.device)


def chunked_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                                 bias: torch.Tensor | None = None, *, shift: bool = False,
                                 chunk_tokens: int = DEFAULT_CHUNK_TOKENS, ignore_index: int = IGNORE_INDEX,
                                 softcap: float | None = None,
                                 use_liger: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed cross-entropy, labelled tokens) of `hidden @ weight.T + bias` against `labels`.

    `hidden` is (..., H), `labels` (...) with `ignore_index` where no loss is wanted; `shift` for decoders.
    `softcap` applies Gemma 2's c·tanh(logits/c). `use_liger`: None picks Liger on CUDA when it is installed.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be at least 1, got {chunk_tokens}")
    rows, targets = _flatten(hidden, labels, shift, ignore_index)
    count = (targets != ignore_index).sum()
    if use_liger is None:
        use_liger = rows.is_cuda and liger_available()
    if use_liger:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        dtype = _compute_dtype(rows)
        options: dict[str, Any] = {"ignore_index": ignore_index, "reduction": "sum", "softcap": softcap}
        if dtype in (torch.bfloat16, torch.float16) and "accum_dtype" in inspect.signature(
                LigerFusedLinearCrossEntropyLoss).parameters:
            # Sum the head's gradient over chunks in fp32, as one unchunked product would inside its GEMM.
            options["accum_dtype"] = torch.float32
        loss_fn = LigerFusedLinearCrossEntropyLoss(**options)
        # Liger's kernels take one dtype for input and weight; autocast does not reach inside them.
        loss = loss_fn(weight.to(dtype), rows.to(dtype).contiguous(), targets,
                       bias.to(dtype) if bias is not None else None)
        return loss.float(), count
    loss = _ChunkedLinearCrossEntropy.apply(rows, weight, bias, targets, chunk_tokens, ignore_index, softcap)
    return loss, count


def chunked_head_cross_entropy(hidden: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor],
                               labels: torch.Tensor, *, shift: bool = False,
                               chunk_tokens: int = DEFAULT_CHUNK_TOKENS, ignore_index: int = IGNORE_INDEX,
                               softcap: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The same for any head module (LoRA-adapted, quantised): each chunk goes through `head` under activation
    checkpointing, so its logits are freed after forward and recomputed in backward (one extra head product)."""
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be at least 1, got {chunk_tokens}")
    rows, targets = _flatten(hidden, labels, shift, ignore_index)

    def chunk_loss(h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = head(h)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        return F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")

    total = torch.zeros((), dtype=torch.float32, device=rows.device)
    for h, target in zip(rows.split(chunk_tokens), targets.split(chunk_tokens), strict=True):
        if torch.is_grad_enabled():
            total = total + checkpoint(chunk_loss, h, target, use_reentrant=False)
        else:
            total = total + chunk_loss(h, target)
    return total, (targets != ignore_index).sum()


# ------------------------------------------------------------------------------------------------------
# Whole models
# ------------------------------------------------------------------------------------------------------

def _unwrap_peft(model: nn.Module) -> nn.Module:
    """A PEFT model's adapters live inside its base model, so running the base model's body trains them too;
    prompt-learning methods change the inputs in the wrapper's own forward, which this would skip."""
    if hasattr(model, "get_base_model") and hasattr(model, "peft_config"):
        config = model.peft_config.get(getattr(model, "active_adapter", "default"))
        if config is not None and getattr(config, "is_prompt_learning", False):
            raise NotImplementedError("the loss without logits does not run prompt-learning adapters (prompt, "
                                      "prefix or p-tuning); compute the loss from the model's logits instead")
        return model.get_base_model()
    return model


def _head_transform(model: nn.Module) -> tuple[float, torch.Tensor | None, float | None]:
    """(scale of the hidden states, extra logit bias, softcap): what models do between the body and the loss.

    Each entry mirrors a model's own forward in Transformers: T5 scales the decoder output by d_model^-0.5 when
    its head is tied (`scale_decoder_outputs`; older releases read `tie_word_embeddings`), Cohere multiplies the
    logits by `logit_scale`, Granite divides them by `logits_scaling`, BART-like models add `final_logits_bias`,
    Gemma 2/3 cap them with `final_logit_softcapping`. A scale of the logits is applied to the hidden states,
    which is the same thing for a head without bias.
    """
    config = model.config
    scale = 1.0
    if config.model_type in ("t5", "mt5", "umt5", "longt5"):
        tied = getattr(config, "scale_decoder_outputs", None)
        if tied is None:
            tied = getattr(config, "tie_word_embeddings", True)
        if tied:
            scale = config.d_model ** -0.5
    logit_scale = getattr(model, "logit_scale", None) or getattr(config, "logit_scale", None)
    if isinstance(logit_scale, (int, float)):
        scale *= float(logit_scale)
    logits_scaling = getattr(config, "logits_scaling", None)
    if isinstance(logits_scaling, (int, float)) and logits_scaling:
        scale /= float(logits_scaling)
    extra_bias = getattr(model, "final_logits_bias", None)
    if isinstance(extra_bias, torch.Tensor):
        extra_bias = extra_bias.reshape(-1)
    else:
        extra_bias = None
    softcap = getattr(config, "final_logit_softcapping", None)
    return scale, extra_bias, softcap


def _body_hidden(model: nn.Module, inputs: Mapping[str, Any], labels: torch.Tensor) -> torch.Tensor:
    """The last hidden states the LM head would see: the decoder's output for encoder-decoders, fed by the
    labels shifted right as the model's own forward does when it gets labels and no decoder inputs."""
    body_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "num_items_in_batch")}
    if getattr(model.config, "is_encoder_decoder", False):
        encoder_keys = ("input_ids", "attention_mask", "inputs_embeds")
        encoded = model.get_encoder()(**{k: body_inputs[k] for k in encoder_keys if k in body_inputs})
        decoder_ids = body_inputs.get("decoder_input_ids")
        if decoder_ids is None and body_inputs.get("decoder_inputs_embeds") is None:
            decoder_ids = model.prepare_decoder_input_ids_from_labels(labels=labels)
        decoder_inputs = {k[len("decoder_"):]: v for k, v in body_inputs.items() if k.startswith("decoder_")}
        decoder_inputs["input_ids"] = decoder_ids
        decoder_inputs = {k: v for k, v in decoder_inputs.items() if v is not None}
        output = model.get_decoder()(**decoder_inputs, encoder_hidden_states=encoded[0],
                                     encoder_attention_mask=body_inputs.get("attention_mask"), use_cache=False)
        return output[0]
    output = model.get_decoder()(**body_inputs, use_cache=False)
    return output[0]


def lm_loss_without_logits(model: nn.Module, inputs: Mapping[str, Any], labels: torch.Tensor, shift: bool,
                           chunk_tokens: int = DEFAULT_CHUNK_TOKENS, *, ignore_index: int = IGNORE_INDEX,
                           use_liger: bool | None = None,
                           autocast_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed cross-entropy, labelled tokens) of a causal or seq2seq LM, its logits never all in memory.

    Runs the model's body (decoder stack, or encoder and decoder), applies what the model's forward does before
    the loss (see `_head_transform`) and the chunked loss on `lm_head`. `shift` is True for decoders (labels
    aligned with `input_ids`) and False for encoder-decoders (labels are the decoder's targets). Divide the
    sum by the labelled tokens of the whole accumulated batch.

    `autocast_dtype` (e.g. torch.bfloat16) runs all of it under autocast. Pass the run's precision, or call this
    inside `trainer.accelerator.autocast()`: accelerate puts autocast around `model.forward` only, and the body
    called here bypasses it. Without autocast fp32 weights run in fp32, and on a GPU attention then falls back
    from flash attention to the kernel that writes out every score (out of memory at long sequences).
    """
    if autocast_dtype is not None:
        device_type = next(model.parameters()).device.type
        with torch.autocast(device_type, dtype=autocast_dtype):
            return lm_loss_without_logits(model, inputs, labels, shift, chunk_tokens, ignore_index=ignore_index,
                                          use_liger=use_liger)
    base = _unwrap_peft(model)
    hidden = _body_hidden(base, inputs, labels)
    scale, extra_bias, softcap = _head_transform(base)
    if scale != 1.0:
        hidden = hidden * scale
    head = base.get_output_embeddings()
    if type(head) is nn.Linear:
        bias = head.bias
        if extra_bias is not None:
            bias = extra_bias if bias is None else bias + extra_bias
        return chunked_linear_cross_entropy(hidden, head.weight, labels, bias, shift=shift, chunk_tokens=chunk_tokens,
                                            ignore_index=ignore_index, softcap=softcap, use_liger=use_liger)
    call: Callable[[torch.Tensor], torch.Tensor] = head
    if extra_bias is not None:
        def call(h: torch.Tensor) -> torch.Tensor:
            return head(h) + extra_bias

    return chunked_head_cross_entropy(hidden, call, labels, shift=shift, chunk_tokens=chunk_tokens,
                                      ignore_index=ignore_index, softcap=softcap)
