"""Does `tuneforge estimate` predict the memory training really takes? Measure it on a few configurations.

Each configuration trains a few steps (forward, backward, fused AdamW step, gradients set to None, as the
Trainer does) in a fresh subprocess, so peaks never mix, and reports the peak memory it added:

- CPU: peak resident set size (VmHWM, reset through /proc/self/clear_refs; psutil sampling elsewhere) minus the
  RSS before the model was built. A warm-up step on a tiny model of the same architecture runs first, so
  imports, kernel code and thread pools are in the baseline: the comparison is with the estimate's training
  peak, without its fixed runtime allowance. Each configuration runs twice: with glibc's default allocator
  (what a user sees) and with MALLOC_MMAP_THRESHOLD_=131072, which returns every freed tensor to the OS, so the
  second measures live tensors and checks the formula without the estimate's allocator allowance.
- CUDA: torch.cuda.max_memory_allocated(), against the estimate for device cuda.

    python bench/memory.py                     # five CPU configurations, ~5 minutes on 2 cores
    python bench/memory.py --only minilm-full --steps 2 --json /tmp/memory.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
LIVE_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}
# Warm-up model: the configuration with every size shrunk (only keys the config has are replaced).
TINY = {"hidden_size": 64, "n_embd": 64, "d_model": 64, "dim": 64, "embedding_size": 64, "intermediate_size": 128,
        "n_inner": 128, "d_ff": 128, "hidden_dim": 128, "num_attention_heads": 2, "n_head": 2, "n_heads": 2,
        "num_heads": 2, "num_key_value_heads": 2, "num_hidden_layers": 1, "n_layer": 1, "n_layers": 1,
        "num_layers": 1, "vocab_size": 256, "head_dim": 32, "d_kv": 32}


@dataclass(frozen=True)
class Config:
    name: str
    model: str  # what `tuneforge estimate --model` takes
    task: str
    method: str  # full, lora, freeze
    batch_size: int
    max_length: int


CONFIGS = (
    Config("minilm-full", "minilm", "classification", "full", 16, 128),
    Config("minilm-lora", "minilm", "classification", "lora", 16, 128),
    Config("minilm-freeze", "minilm", "classification", "freeze", 16, 128),
    Config("bert-base-full", "google-bert/bert-base-uncased", "classification", "full", 8, 128),
    Config("bert-base-lora", "google-bert/bert-base-uncased", "classification", "lora", 8, 128),
    Config("gpt2-full", "openai-community/gpt2", "generation", "full", 4, 128),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="training steps per configuration (default 3)")
    parser.add_argument("--only", action="append", default=[], help="run only this configuration (repeatable)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------------------
# The measured side: one configuration in this process
# ------------------------------------------------------------------------------------------------------

class PeakRss:
    """Peak RSS since `reset`: the kernel's VmHWM when it can be reset, else a 1 ms psutil sampler."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.sampled = 0
        self.kernel = self._reset_kernel()
        self.stop = threading.Event()
        if not self.kernel:
            threading.Thread(target=self._sample, daemon=True).start()

    @staticmethod
    def _reset_kernel() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return Path("/proc/self/status").is_file()
        except OSError:
            return False

    def _sample(self) -> None:
        while not self.stop.is_set():
            self.sampled = max(self.sampled, self.process.memory_info().rss)
            time.sleep(0.001)

    def reset(self) -> None:
        self.sampled = self.process.memory_info().rss
        if self.kernel:
            self._reset_kernel()

    def peak(self) -> int:
        if self.kernel:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return self.sampled


def build(config: Config, device: str, tiny: bool = False) -> Any:
    """The model as tuneforge trains it: the bundled minilm with its weights, a catalog model randomly
    initialised from its published config; LoRA through peft.get_peft_model with tuneforge's defaults."""
    from tuneforge.models.shapes import build_meta_model, model_config

    found = model_config(config.model)
    if config.model == "minilm" and not tiny:
        from tuneforge.models.loading import load_sequence_model
        from tuneforge.recipe import ModelSpec

        model = load_sequence_model(ModelSpec(name="minilm"), "classification", ["negative", "positive"])
    else:
        values = dict(found.config)
        if tiny:
            values = {key: TINY.get(key, value) for key, value in values.items()}
        model = build_meta_model(values, config.task, device="cpu")
    if config.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        from tuneforge.models.peft import detect_target_modules, head_modules

        targets, _ = detect_target_modules(model, "lora")
        generation = config.task == "generation"
        model = get_peft_model(model, LoraConfig(
            task_type=TaskType.CAUSAL_LM if generation else TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.05,
            target_modules=targets, modules_to_save=None if generation else head_modules(model)))
    elif config.method == "freeze":
        from tuneforge.models.freezing import apply_freezing
        from tuneforge.recipe import FreezeSpec

        apply_freezing(model, FreezeSpec(all_but_head=True))
    return model.to(device).train()


def batch(model: Any, config: Config, size: int, length: int, device: str) -> dict[str, Any]:
    import torch

    vocab = model.config.vocab_size
    ids = torch.randint(5, vocab, (size, length), device=device)
    labels = ids if config.task == "generation" else torch.randint(0, 2, (size,), device=device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def train_steps(model: Any, inputs: dict[str, Any], steps: int, device: str) -> list[float]:
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5, fused=True)  # the Trainer's default (adamw_torch_fused)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        del loss
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return times


def measure(config: Config, steps: int, device: str, threads: int | None) -> dict[str, Any]:
    import torch

    from tuneforge.cli.common import quiet_libraries

    quiet_libraries()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    # Warm-up on a tiny model of the same architecture: imports, kernels and thread pools join the baseline.
    warm = build(config, device, tiny=True)
    train_steps(warm, batch(warm, config, 2, 16, device), 1, device)
    del warm
    gc.collect()
    rss = PeakRss()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss.process.memory_info().rss
        rss.reset()
    model = build(config, device)
    inputs = batch(model, config, config.batch_size, config.max_length, device)
    times = train_steps(model, inputs, steps, device)
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else rss.peak()
    rss.stop.set()
    return {"measured_bytes": peak - base, "step_seconds": statistics.median(times[1:] or times),
            "threads": torch.get_num_threads()}


def run_child(config: Config, steps: int, device: str, threads: int | None, live: bool) -> dict[str, Any]:
    """One configuration in a fresh interpreter, so its peak is its own."""
    env = {**os.environ, **(LIVE_ENV if live else {}), "TOKENIZERS_PARALLELISM": "false"}
    spec = json.dumps({"config": asdict(config), "steps": steps, "device": device, "threads": threads})
    done = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{config.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------------
# The estimated side and the table
# ------------------------------------------------------------------------------------------------------

def estimated(config: Config, device: str, flops: float) -> Any:
    from tuneforge.models.estimate import TrainingSetup, estimate
    from tuneforge.models.shapes import model_shape

    shape, _ = model_shape(config.model, config.task)
    setup = TrainingSetup(task=config.task, batch_size=config.batch_size, max_length=config.max_length,
                          method=config.method, device=device, rows=config.batch_size)  # type: ignore[arg-type]
    return estimate(shape, setup, flops, "")


def error(estimate: float, measured: float) -> float:
    return 100.0 * (estimate - measured) / measured


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(measure(Config(**spec["config"]), spec["steps"], spec["device"], spec["threads"])))
        return 0
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    import torch
    from quality import machine  # the same machine description as the quality benchmark

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = [c for c in CONFIGS if not args.only or c.name in args.only]
    from tuneforge.models.hardware import device_throughput

    speed = device_throughput(device, "fp32")
    rows = []
    for config in configs:
        print(f"{config.name}: measuring {args.steps} steps ...", file=sys.stderr)
        guess = estimated(config, device, speed.flops if speed else 0.0)
        result = {"config": asdict(config), "parameters": guess.parameters,
                  "trainable_parameters": guess.trainable_parameters,
                  "estimated_bytes": guess.memory.training_peak, "estimate": guess.to_json(),
                  "estimated_step_seconds": guess.time.seconds_per_epoch if guess.time else None}
        result["measured"] = run_child(config, args.steps, device, args.threads, live=False)
        if device == "cpu":
            result["estimated_live_bytes"] = guess.memory.training_peak - guess.memory.allocator
            result["measured_live"] = run_child(config, args.steps, device, args.threads, live=True)
        rows.append(result)
    host = machine()
    report(rows, host, device, speed.source if speed else "")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": host, "device": device, "steps": args.steps,
                                         "speed": speed.source if speed else None, "results": rows}, indent=2) + "\n")
    return 0


def report(rows: list[dict[str, Any]], host: dict[str, Any], device: str, speed: str) -> None:
    from rich.console import Console
    from rich.table import Table

    mib = 2**20
    table = Table(title=f"Estimated vs measured peak training memory ({device})")
    columns = ["config", "batch × len", "trainable", "estimated", "measured", "error"]
    if device == "cpu":
        columns += ["live est.", "live measured", "live error"]
    columns += ["step est.", "step measured"]
    for column in columns:
        table.add_column(column, justify="left" if column == "config" else "right")
    errors = []
    for row in rows:
        config, measured = row["config"], row["measured"]
        err = error(row["estimated_bytes"], measured["measured_bytes"])
        errors.append(abs(err))
        cells = [config["name"], f"{config['batch_size']} × {config['max_length']}",
                 f"{row['trainable_parameters'] / 1e6:.1f} M", f"{row['estimated_bytes'] / mib:,.0f} MiB",
                 f"{measured['measured_bytes'] / mib:,.0f} MiB", f"{err:+.1f}%"]
        if device == "cpu":
            live = row["measured_live"]["measured_bytes"]
            cells += [f"{row['estimated_live_bytes'] / mib:,.0f} MiB", f"{live / mib:,.0f} MiB",
                      f"{error(row['estimated_live_bytes'], live):+.1f}%"]
        step = row["estimated_step_seconds"]
        cells += [f"{step:.2f} s" if step else "-", f"{measured['step_seconds']:.2f} s"]
        table.add_row(*cells)
    Console(width=200).print(table)
    print(f"machine: {host['cpu']}, {host['cores']} cores, torch {host['torch']}, {rows[0]['measured']['threads']} "
          f"torch threads; gpu: {host['gpu']}")
    print(f"speed for the time estimate: {speed}")
    print(f"largest |error|: {max(errors):.1f}% (target: within 25%)")


if __name__ == "__main__":
    sys.exit(main())
