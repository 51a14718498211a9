"""GPU training throughput of a 1.1B Llama: the documented Transformers Trainer recipe against tuneforge's kernels.

    PYTHONPATH=src python bench/gpu_throughput.py --out results.json          # one GPU, every side
    PYTHONPATH=src python bench/gpu_throughput.py --model-size tiny --steps 2  # the CPU: a smoke test

A randomly initialised Llama of TinyLlama's shape (hidden 2048, 22 layers, 32 heads, 4 key/value heads,
intermediate 5632, vocabulary 32000; 1.1B parameters) trains on random tokens, sequence length 2048, batch 8,
bf16 autocast over fp32 weights, AdamW. Every side runs in its own fresh process (so peak memory and Liger's
process-wide patches are its own), through the same `transformers.Trainer`:

- trainer:      the documented recipe: the plain model, `TrainingArguments(bf16=True)`, default optimiser, no
                compile; the model's forward computes the logits and the loss.
- full:         ours: Liger's kernels in the blocks (`models.liger.apply_liger`), the loss without logits
                (`tasks.chunked_loss.lm_loss_without_logits`, Liger's fused linear cross-entropy on CUDA), and
                regional `torch.compile` of each block (`models.compile.compile_blocks`).
- lean:         full plus activation checkpointing and 8-bit AdamW states (bitsandbytes, when installed).
- lora_trainer: the documented LoRA recipe: peft LoRA r=16 on every linear layer of the blocks, Trainer as above.
- lora:         ours with the same adapters: Liger, the loss without logits, regional compile.
- lora_lean:    lora plus activation checkpointing.

Per side, over `--steps` optimiser steps after `--warmup` (compilation happens in the warm-up): tokens/s, model
FLOPs utilisation = 6·N·tokens/s over the bf16 peak (N all parameters; 790 TFLOP/s, the dense bf16 matrix-product
rate measured on an H200, unless `--peak-tflops` says otherwise; LoRA's true cost is nearer 4·N, and recomputed
forwards are not counted, as MFU's definition wants), the CUDA allocator's peak, and the mean loss of the first and
last timed steps (all sides start near ln 32000 = 10.37 and must fall alike). Ratios are against the matching
Trainer side. Results go to a table and to `--out` as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SIZES = {  # hidden, layers, heads, kv heads, intermediate, vocab
    "1.1b": (2048, 22, 32, 4, 5632, 32000),
    "tiny": (64, 2, 4, 2, 128, 32000),
}
SIDES: dict[str, dict[str, Any]] = {
    "trainer": {"ours": False, "lora": False, "lean": False},
    "full": {"ours": True, "lora": False, "lean": False},
    "lean": {"ours": True, "lora": False, "lean": True},
    "lora_trainer": {"ours": False, "lora": True, "lean": False},
    "lora": {"ours": True, "lora": True, "lean": False},
    "lora_lean": {"ours": True, "lora": True, "lean": True},
}
BASELINE_OF = {"trainer": "trainer", "full": "trainer", "lean": "trainer", "lora_trainer": "lora_trainer",
               "lora": "lora_trainer", "lora_lean": "lora_trainer"}
H200_BF16_TFLOPS = 790.0
GiB = 2**30


# ------------------------------------------------------------------------------------------------------
# One side (child process)
# ------------------------------------------------------------------------------------------------------

def chunked_loss() -> Any:
    """tuneforge.tasks.chunked_loss loaded from its file: the `tuneforge.tasks` package imports every task and
    their metric libraries, which a bare GPU image need not have; this module needs torch alone."""
    import importlib.util

    name = "tuneforge_chunked_loss"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "src" / "tuneforge" / "tasks" / "chunked_loss.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def build_model(size: str, device: str) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, layers, heads, kv_heads, intermediate, vocab = SIZES[size]
    config = LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv_heads, intermediate_size=intermediate, vocab_size=vocab,
                         max_position_embeddings=4096, attn_implementation="sdpa", use_cache=False)
    torch.manual_seed(0)
    with torch.device(device):
        return LlamaForCausalLM(config)


class RandomTokens:
    """Fixed random token rows (labels = inputs), the same for every side."""

    def __init__(self, rows: int, length: int, vocab: int) -> None:
        import torch

        generator = torch.Generator().manual_seed(1)
        self.ids = torch.randint(0, vocab, (rows, length), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


def run_side(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import transformers
    from transformers import Trainer, TrainerCallback, TrainingArguments

    side = SIDES[args.side]
    cuda = torch.cuda.is_available() and args.device == "cuda"
    device = "cuda" if cuda else "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    model = build_model(args.model_size, device)
    parameters = sum(p.numel() for p in model.parameters())
    applied: dict[str, Any] = {}
    if side["ours"]:
        from tuneforge.models.liger import apply_liger

        # Our loss runs outside the forward, so Liger's own loss-in-forward patch stays off.
        applied["liger"] = apply_liger(model, fused_linear_cross_entropy=False) if args.liger_blocks else []
    if side["lora"]:
        from peft import LoraConfig, get_peft_model

        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=targets,
                                                 task_type="CAUSAL_LM"))
    if side["ours"] and args.compile:
        from tuneforge.models.compile import compile_blocks

        applied["compiled_blocks"] = len(compile_blocks(model, backend=args.compile_backend))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    optimizer = "adamw_torch_fused" if cuda else "adamw_torch"
    if side["lean"] and not side["lora"]:
        try:
            import bitsandbytes  # noqa: F401

            optimizer = "adamw_bnb_8bit"
        except ImportError:
            applied["eightbit"] = "bitsandbytes not installed: 8-bit states not measured"
    applied["optimizer"] = optimizer
    applied["gradient_checkpointing"] = bool(side["lean"])

    total_steps = args.warmup + args.steps
    data = RandomTokens(total_steps * args.batch, args.seq, SIZES[args.model_size][5])
    training = TrainingArguments(
        output_dir=args.work_dir, per_device_train_batch_size=args.batch, max_steps=total_steps,
        learning_rate=1e-5, warmup_steps=0, lr_scheduler_type="constant", bf16=cuda, optim=optimizer,
        gradient_checkpointing=bool(side["lean"]),
        gradient_checkpointing_kwargs={"use_reentrant": False} if side["lean"] else None,
        logging_strategy="no", save_strategy="no", report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, use_cpu=not cuda, seed=0, remove_unused_columns=False,
    )
    marks: dict[str, float] = {}
    losses: list[Any] = []

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    class Clock(TrainerCallback):
        """Times the steps after the warm-up, synchronising the GPU at both ends."""

        def on_step_end(self, arguments: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == args.warmup:
                sync()
                marks["start"] = time.perf_counter()
            elif state.global_step == total_steps:
                sync()
                marks["end"] = time.perf_counter()

    class Recorded(Trainer):
        """The plain Trainer, keeping each step's loss on the device (no sync); ours computes it without logits."""

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            if side["ours"]:
                lm_loss_without_logits = chunked_loss().lm_loss_without_logits
                labels = inputs["labels"]
                # accelerate puts bf16 autocast around model.forward only; the body is called directly here.
                with self.accelerator.autocast():
                    total, count = lm_loss_without_logits(model, inputs, labels, shift=True,
                                                          chunk_tokens=args.chunk_tokens)
                loss = total / (num_items_in_batch if num_items_in_batch is not None else count)
            else:
                loss = super().compute_loss(model, inputs, return_outputs=False,
                                            num_items_in_batch=num_items_in_batch)
            losses.append(loss.detach().float())
            return loss

    trainer = Recorded(model=model, args=training, train_dataset=data, callbacks=[Clock()])
    trainer.train()
    seconds = marks["end"] - marks["start"]
    tokens = args.steps * args.batch * args.seq
    per_step = [float(x) for x in torch.stack(losses).cpu()]
    timed = per_step[args.warmup:]
    head = max(1, len(timed) // 4)
    result = {
        "side": args.side, "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "parameters": parameters, "trainable_parameters": trainable,
        "batch": args.batch, "seq_len": args.seq, "warmup_steps": args.warmup, "timed_steps": args.steps,
        "seconds": seconds, "tokens_per_s": tokens / seconds, "step_s": seconds / args.steps,
        "mfu": 6 * parameters * tokens / seconds / (args.peak_tflops * 1e12),
        "peak_allocated_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        "peak_reserved_bytes": torch.cuda.max_memory_reserved() if cuda else None,
        "loss_first": sum(timed[:head]) / head, "loss_last": sum(timed[-head:]) / head,
        "finite": all(math.isfinite(x) for x in per_step),
        "wall_s": time.perf_counter() - started, "applied": applied,
    }
    return result


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    """Exactness on this device: the loss without logits (Liger's kernel and the plain chunked path) against the
    model's own loss and every gradient, on a small fp32 Llama with a 32k vocabulary."""
    import torch

    from tuneforge.models.compile import should_compile

    liger_available, lm_loss_without_logits = chunked_loss().liger_available, chunked_loss().lm_loss_without_logits

    device = "cuda" if torch.cuda.is_available() and args.device == "cuda" else "cpu"
    model = build_model("tiny", device)
    model.train()
    ids = torch.randint(0, 32000, (2, 256), generator=torch.Generator().manual_seed(3)).to(device)
    labels = ids.clone()
    labels[:, :32] = -100
    model(input_ids=ids, labels=labels).loss.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters()}
    reference_loss = model(input_ids=ids, labels=labels).loss.item()
    report: dict[str, Any] = {"side": "check", "liger_available": liger_available(),
                              "should_compile_auto": should_compile("auto", device)}
    for name, use_liger in (("liger", True), ("plain_chunked", False)):
        if use_liger and not (liger_available() and device == "cuda"):
            report[name] = "not available"
            continue
        model.zero_grad(set_to_none=True)
        total, count = lm_loss_without_logits(model, {"input_ids": ids}, labels, shift=True, chunk_tokens=128,
                                              use_liger=use_liger)
        (total / count).backward()
        report[name] = {
            "loss_abs_diff": abs((total / count).item() - reference_loss),
            "max_grad_abs_diff": max((p.grad - reference[n]).abs().max().item() for n, p in model.named_parameters()),
            "max_grad_abs": max(g.abs().max().item() for g in reference.values()),
        }
    return report


# ------------------------------------------------------------------------------------------------------
# Orchestration (parent process)
# ------------------------------------------------------------------------------------------------------

def child(args: argparse.Namespace, side: str, timeout: float, extra: list[str]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--side", side, "--model-size", args.model_size, "--steps",
               str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch), "--seq", str(args.seq),
               "--device", args.device, "--peak-tflops", str(args.peak_tflops), "--chunk-tokens",
               str(args.chunk_tokens), "--compile-backend", args.compile_backend, "--work-dir", args.work_dir, *extra]
    if not args.compile:
        command.append("--no-compile")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(args.work_dir) / "inductor"))  # shared: sides reuse kernels
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as expired:
        tail = (expired.stderr or "")[-1500:] if isinstance(expired.stderr, str) else ""
        return {"side": side, "error": f"timed out after {timeout:.0f} s", "log_tail": tail}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"side": side, "error": f"exit {done.returncode} after {time.perf_counter() - started:.0f} s",
            "log_tail": (done.stderr or done.stdout)[-2500:]}


def ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value and base else "-"


def table(results: dict[str, dict[str, Any]], peak_tflops: float) -> str:
    first = next((r for r in results.values() if "tokens_per_s" in r), {})
    lines = [f"device: {first.get('device', '?')}; torch {first.get('torch', '?')}; transformers "
             f"{first.get('transformers', '?')}; MFU = 6·N·tokens/s / {peak_tflops:.0f} TFLOP/s "
             f"(N = {first.get('parameters', 0) / 1e9:.3f}B); seq {first.get('seq_len')}, batch "
             f"{first.get('batch')}, {first.get('timed_steps')} timed steps after {first.get('warmup_steps')}",
             "| side | tokens/s | MFU | peak alloc GiB | peak reserved GiB | tokens/s vs baseline | memory vs "
             "baseline | loss first -> last | applied |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if "tokens_per_s" not in r:
            lines.append(f"| {name} | failed: {r.get('error')} | | | | | | | |")
            continue
        base = results.get(BASELINE_OF[name], {})
        alloc = r["peak_allocated_bytes"]
        reserved = r["peak_reserved_bytes"]
        applied = r.get("applied", {})
        what = ", ".join(f"{k}={v}" for k, v in applied.items() if v not in ([], None, False))
        lines.append(
            f"| {name} | {r['tokens_per_s']:,.0f} | {100 * r['mfu']:.1f}% | "
            f"{alloc / GiB:.1f} | {reserved / GiB:.1f} | "
            f"{ratio(r['tokens_per_s'], base.get('tokens_per_s'))} | "
            f"{ratio(alloc, base.get('peak_allocated_bytes'))} | "
            f"{r['loss_first']:.3f} -> {r['loss_last']:.3f} | {what or '-'} |"
            if alloc is not None else
            f"| {name} | {r['tokens_per_s']:,.0f} | - | - | - | "
            f"{ratio(r['tokens_per_s'], base.get('tokens_per_s'))} | - | "
            f"{r['loss_first']:.3f} -> {r['loss_last']:.3f} | {what or '-'} |")
    return "\n".join(lines)


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.perf_counter() + args.budget_s
    results: dict[str, dict[str, Any]] = {}
    out = Path(args.out) if args.out else None
    check = child(args, "check", 120, []) if args.check else None
    if check is not None:
        print("[check] " + json.dumps(check)[:1500], flush=True)
    report: dict[str, Any] = {}
    for side in args.sides:
        left = deadline - time.perf_counter()
        if left < 30:
            results[side] = {"side": side, "error": "skipped: out of time budget"}
            continue
        extra = [] if args.liger_blocks else ["--no-liger-blocks"]
        result = child(args, side, min(left, args.side_timeout_s), extra)
        if "error" in result and SIDES[side]["ours"] and args.liger_blocks and deadline - time.perf_counter() > 60:
            # Liger's Triton kernels inside compiled blocks are the riskiest combination: measure without them.
            first_error = result
            result = child(args, side, min(deadline - time.perf_counter(), args.side_timeout_s),
                           ["--no-liger-blocks"])
            result["retried_without_liger_blocks"] = first_error.get("error")
            result["first_log_tail"] = first_error.get("log_tail", "")[-1200:]
        results[side] = result
        print(f"[{side}] " + json.dumps({k: v for k, v in result.items() if k != "log_tail"})[:600], flush=True)
        if "error" in result:
            print(result.get("log_tail", ""), flush=True)
        report = {"results": results, "table": table(results, args.peak_tflops), "check": check,
                  "peak_tflops": args.peak_tflops, "peak_source": args.peak_source}
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2))
    print(report.get("table", "no side ran"), flush=True)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-size", choices=sorted(SIZES), default="1.1b")
    parser.add_argument("--steps", type=int, default=25, help="timed optimiser steps per side")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--sides", nargs="+", choices=sorted(SIDES), default=list(SIDES))
    parser.add_argument("--side", choices=[*sorted(SIDES), "check"], help=argparse.SUPPRESS)
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip the exactness check of the loss without logits on this device")
    parser.add_argument("--peak-tflops", type=float, default=H200_BF16_TFLOPS)
    parser.add_argument("--peak-source", default="dense bf16 matrix product measured on an H200 (790 TFLOP/s); "
                                                  "the datasheet's is 989")
    parser.add_argument("--chunk-tokens", type=int, default=4096)
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--no-liger-blocks", dest="liger_blocks", action="store_false")
    parser.add_argument("--budget-s", type=float, default=450, help="stop starting sides after this many seconds")
    parser.add_argument("--side-timeout-s", type=float, default=170)
    parser.add_argument("--work-dir", default="/tmp/gpu_throughput")
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args(argv)
    if args.model_size == "tiny" and args.seq == 2048:
        args.seq, args.batch = 64, 2
    if args.side:
        print("RESULT " + json.dumps(run_check(args) if args.side == "check" else run_side(args)), flush=True)
        return
    orchestrate(args)


if __name__ == "__main__":
    main()
