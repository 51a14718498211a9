"""Is the ONNX export worth it for CPU serving? ONNX Runtime vs PyTorch on the same fine-tuned model.

Fine-tunes the bundled `minilm` briefly on the bundled NusaX English sentiment data, exports the run with
`tuneforge export RUN --format onnx` (the same code), then scores the 400 test texts with both backends of
`tuneforge.load(run, backend=...)`, at batch 1 (an online request) and batch 32 (a bulk job), with the same
number of threads, and prints throughput, the speed-up and how closely the two agree:

    python bench/onnx_serving.py                 # a few minutes: training 20 steps dominates
    python bench/onnx_serving.py --json /tmp/onnx.json

(The file is not called onnx.py: run as a script, bench/ comes first on sys.path and would shadow the `onnx`
package.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=20, help="training steps before the export (default 20)")
    parser.add_argument("--threads", type=int, default=1, help="threads for both backends (default 1: one "
                        "serving process per core; on a shared machine two threads each mostly wait for a core)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per setting, the two backends "
                        "alternating; the fastest pass is kept (the least disturbed by other processes)")
    parser.add_argument("--workdir", type=Path, help="keep the fine-tuned run here and reuse it on the next call "
                        "(default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return parser.parse_args(argv)


def machine(threads: int) -> dict[str, Any]:
    import onnxruntime
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")]
        cpu = models[0] if models else cpu
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__}


def throughput(predictors: dict[str, Any], texts: list[str], batch_size: int, repeats: int) -> dict[str, float]:
    """Texts per second through `Predictor.probabilities` (tokenisation included, as a server pays it). The
    backends take turns pass by pass, so a burst of load from elsewhere hits both alike, and each keeps its
    fastest pass."""
    for predictor in predictors.values():  # warm-up: allocations, ONNX Runtime's first run
        predictor.probabilities(texts[:batch_size], batch_size=batch_size)
    best = dict.fromkeys(predictors, float("inf"))
    for _ in range(repeats):
        for name, predictor in predictors.items():
            start = time.perf_counter()
            predictor.probabilities(texts, batch_size=batch_size)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(texts) / seconds for name, seconds in best.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    import tuneforge
    from tuneforge.cli.common import quiet_libraries
    from tuneforge.demo import demo_recipe
    from tuneforge.models.onnx import export_onnx, load_onnx_model
    from tuneforge.predict import Predictor
    from tuneforge.predict.io import read_texts
    from tuneforge.run import Run

    quiet_libraries()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        folder = (args.workdir or Path(scratch)) / "run"
        recipe = demo_recipe(folder, [
            f"train.max_steps={args.max_steps}", "evaluation.explain_examples=0", "fairness.counterfactual=false",
            "train.save_checkpoints=false"])
        if (folder / "metrics.json").is_file():
            run = Run.open(folder)
        else:
            run = tuneforge.fine_tune(recipe, on_warnings=lambda problems: None)
        started = time.perf_counter()
        export_onnx(run.directory)
        export_seconds = time.perf_counter() - started
        texts, _ = read_texts(recipe.data.test, recipe.data.text_column)
        truths, _ = read_texts(recipe.data.test, recipe.data.label_column)
        torch_predictor = tuneforge.load(run.directory, device="cpu")
        model, tokenizer = load_onnx_model(run.directory, threads=args.threads)
        onnx_predictor = Predictor(model, tokenizer, torch_predictor.recipe, torch.device("cpu"),
                                   temperature=torch_predictor.temperature)
        torch_probs, onnx_probs = torch_predictor.probabilities(texts), onnx_predictor.probabilities(texts)
        labels = torch_predictor.labels
        logit_gap = np.abs(torch_predictor.logits(texts) - onnx_predictor.logits(texts)).max()
        truth = np.array([labels.index(t) for t in truths])
        agreement = {
            "max_abs_probability_difference": float(np.abs(torch_probs - onnx_probs).max()),
            "max_abs_logit_difference": float(logit_gap),
            "same_label_share": float(np.mean(torch_probs.argmax(1) == onnx_probs.argmax(1))),
            "torch_accuracy": float(np.mean(torch_probs.argmax(1) == truth)),
            "onnx_accuracy": float(np.mean(onnx_probs.argmax(1) == truth)),
        }
        rows = []
        for batch_size in (1, 32):
            subset = texts if batch_size > 1 else texts[:100]
            speeds = throughput({"torch": torch_predictor, "onnx": onnx_predictor}, subset, batch_size, args.repeats)
            rows.append({"batch_size": batch_size, "texts": len(subset), "torch_texts_per_s": speeds["torch"],
                         "onnx_texts_per_s": speeds["onnx"], "speedup": speeds["onnx"] / speeds["torch"]})
        size_mb = (run.directory / "onnx" / "model.onnx").stat().st_size / 2**20
    host = machine(args.threads)
    result = {"machine": host, "rows": rows, "agreement": agreement, "export_seconds": export_seconds,
              "onnx_size_mib": size_mb, "max_steps": args.max_steps}
    print(f"ONNX Runtime vs PyTorch on the CPU: minilm fine-tuned {args.max_steps} steps on NusaX English, "
          f"{len(texts)} test texts")
    print(f"machine: {host['cpu']}, {host['cores']} cores, {args.threads} threads per backend, torch "
          f"{host['torch']}, onnxruntime {host['onnxruntime']}")
    print("\n| batch size | texts | PyTorch texts/s | ONNX Runtime texts/s | ONNX Runtime / PyTorch |")
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['batch_size']} | {row['texts']} | {row['torch_texts_per_s']:.1f} | "
              f"{row['onnx_texts_per_s']:.1f} | ×{row['speedup']:.2f} |")
    print(f"\nagreement on {len(texts)} texts: max |Δ logit| {agreement['max_abs_logit_difference']:.1e}, max |Δ p| "
          f"{agreement['max_abs_probability_difference']:.1e}, same label {agreement['same_label_share']:.1%}; "
          f"accuracy torch {agreement['torch_accuracy']:.4f} / onnx {agreement['onnx_accuracy']:.4f}")
    print(f"export: {export_seconds:.1f} s, model.onnx {size_mb:.1f} MiB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
