"""Training and prediction speed: tuneforge's normal train/predict paths against the documented Transformers recipe.

    python bench/throughput.py                     # CPU: encoder fine-tuning and batch prediction
    python bench/throughput.py --device cuda --model-size 1.1b --workloads decoder

Workloads, each side in its own fresh process (so peak memory is its own), interleaved baseline/ours:

- encoder: the bundled `minilm` fine-tuned on TweetEval emotion (read from ../shared/data/tweeteval/emotion).
  Baseline: AutoModelForSequenceClassification + Trainer + DataCollatorWithPadding with default
  TrainingArguments except the shared hyperparameters (learning rate, batch size, epochs, seed, max length).
  Ours: `tuneforge.fine_tune` with a recipe giving the same hyperparameters (plus `train.precision: bf16` where
  the CPU has native bf16, or the GPU supports it; its default per-epoch validation and checkpoint stay on).
- predict: the run's model over the validation and test tweets: `tuneforge.load(run).predict` against the
  Transformers `pipeline("text-classification")`, called as documented (batch_size 1) and with the same batch
  size as ours.
- decoder: causal-LM supervised fine-tuning of a randomly initialised Llama (prompt/response pairs of varied
  length), full fine-tuning and LoRA: `tuneforge.fine_tune` (task causal-lm) against AutoModelForCausalLM + Trainer
  + DataCollatorForLanguageModeling.

Measured per side: training samples/s and non-padding tokens/s over the training loop (Trainer's train begin to
train end, per-epoch evaluation and checkpoints included), peak memory (CPU: the process's peak RSS; CUDA: the
allocator's peak), time to the first optimiser step from the start of the job (model and data loading included),
and the final validation metric and loss, so speed is never bought with quality. On CUDA, model-FLOPs utilisation
against a measured bf16 matmul peak. Ratios ours/baseline come last.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
LLAMA_SIZES = {  # hidden, layers, heads, kv heads, intermediate; vocab 32000 (Llama 2's tokenizer size)
    "small": (256, 4, 4, 4, 688),
    "1.1b": (2048, 22, 32, 4, 5632),  # TinyLlama-1.1B's configuration
}


# ------------------------------------------------------------------------------------------------------
# Shared pieces (used in the child processes)
# ------------------------------------------------------------------------------------------------------

def read_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return text[:-1].split("\n") if text.endswith("\n") else text.split("\n")


def peak_memory(device: str) -> int:
    """Bytes: the CUDA allocator's peak, or this process's peak resident set (VmHWM)."""
    import torch

    if device == "cuda":
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timer_callback(started: float) -> Any:
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        """Wall-clock marks of the training loop; the Trainer calls it identically on both sides."""

        def __init__(self) -> None:
            self.begin = self.first = self.end = 0.0
            self.steps = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.begin = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.steps += 1
            if not self.first:
                self.first = time.perf_counter()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.end = time.perf_counter()

        def result(self) -> dict[str, float]:
            return {"loop_seconds": self.end - self.begin, "first_step_seconds": self.first - started,
                    "steps": self.steps}

    return Timer()


def classification_scores(logits: Any, truth: list[int]) -> dict[str, float]:
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score

    predicted = np.asarray(logits).argmax(-1)
    return {"accuracy": float(accuracy_score(truth, predicted)),
            "f1_macro": float(f1_score(truth, predicted, average="macro"))}


# ------------------------------------------------------------------------------------------------------
# Workload 1: encoder classification
# ------------------------------------------------------------------------------------------------------

def encoder_baseline(job: dict[str, Any]) -> dict[str, Any]:
    """The Transformers documentation's text-classification recipe."""
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    started = time.perf_counter()
    labels = job["labels"]
    tokenizer = AutoTokenizer.from_pretrained(job["model"])
    model = AutoModelForSequenceClassification.from_pretrained(
        job["model"], num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)})

    def dataset(role: str) -> Any:
        rows = job["splits"][role]
        data = Dataset.from_dict({"text": rows["texts"], "label": [labels.index(x) for x in rows["labels"]]})
        return data.map(lambda batch: tokenizer(batch["text"], truncation=True, max_length=job["max_length"]),
                        batched=True)

    train, validation = dataset("train"), dataset("validation")
    timer = timer_callback(started)
    args = TrainingArguments(output_dir=job["output"], learning_rate=job["learning_rate"],
                             per_device_train_batch_size=job["batch_size"],
                             per_device_eval_batch_size=job["batch_size"], num_train_epochs=job["epochs"],
                             seed=job["seed"], report_to="none", use_cpu=job["device"] == "cpu",
                             bf16=job["device"] == "cuda" and torch.cuda.is_bf16_supported())
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=validation,
                      processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                      callbacks=[timer])
    trainer.train()
    output = trainer.predict(validation)
    return {**timer.result(), **classification_scores(output.predictions, validation["label"]),
            "loss": float(output.metrics["test_loss"]), "peak_memory": peak_memory(job["device"]),
            "precision": "bf16" if args.bf16 else "fp32"}


def encoder_ours(job: dict[str, Any]) -> dict[str, Any]:
    import tuneforge
    from tuneforge.runtime import pick_device, resolve_precision

    started = time.perf_counter()
    precision = job["ours_precision"]
    recipe = {
        "task": "classification",
        "model": {"name": job["model"]},
        "data": {"train": job["files"]["train"], "validation": job["files"]["validation"]},
        "train": {"learning_rate": job["learning_rate"], "batch_size": job["batch_size"],
                  "eval_batch_size": job["batch_size"], "epochs": job["epochs"], "seed": job["seed"],
                  "max_length": job["max_length"], "precision": precision, "device": job["device"]},
        # the after-training audit and explanations run after the training loop and are not measured here
        "evaluation": {"explain_examples": 0},
        "fairness": {"identity_categories": [], "counterfactual": False},
        "output": {"dir": job["output"], "overwrite": True},
    }
    timer = timer_callback(started)
    run = tuneforge.fine_tune(recipe, callbacks=[timer])
    validation = run.metrics["validation"]
    return {**timer.result(), "accuracy": validation["accuracy"], "f1_macro": validation["f1_macro"],
            "loss": validation["loss"], "peak_memory": peak_memory(job["device"]), "run": str(run.directory),
            "precision": resolve_precision(precision, pick_device(job["device"]))}


# ------------------------------------------------------------------------------------------------------
# Workload 3: batch prediction
# ------------------------------------------------------------------------------------------------------

def predict_pipeline(job: dict[str, Any]) -> dict[str, Any]:
    from transformers import pipeline

    texts = job["texts"]
    classify = pipeline("text-classification", model=job["model_dir"], device=0 if job["device"] == "cuda" else -1)
    classify(texts[:8], truncation=True, max_length=job["max_length"])  # warm-up
    started = time.perf_counter()
    outputs = classify(texts, batch_size=job["batch_size"], truncation=True, max_length=job["max_length"])
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "labels": [row["label"] for row in outputs], "peak_memory": peak_memory(job["device"])}


def predict_ours(job: dict[str, Any]) -> dict[str, Any]:
    import tuneforge

    texts = job["texts"]
    predictor = tuneforge.load(job["run"], device=job["device"]).use_precision(job["precision"])
    predictor.predict(texts[:8])  # warm-up
    started = time.perf_counter()
    outputs = predictor.predict(texts, batch_size=job["batch_size"])
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "labels": [row["label"] for row in outputs], "peak_memory": peak_memory(job["device"])}




# ------------------------------------------------------------------------------------------------------
# The parent: data, jobs in fresh processes, the table
# ------------------------------------------------------------------------------------------------------

def run_child(name: str, job: dict[str, Any], threads: int) -> dict[str, Any]:
    print(f"running {name} ...", file=sys.stderr, flush=True)  # a long CPU run shows it is alive
    folder = Path(job["scratch"])
    spec = folder / f"{name}-{time.time_ns()}.json"
    spec.write_text(json.dumps(job), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", name, str(spec)], capture_output=True, text=True,
                          env=env, cwd=REPO_ROOT)
    if done.returncode != 0:
        sys.exit(f"error: {name} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - started
    return result


def load_emotion(data_dir: Path, train_rows: int, validation_rows: int) -> tuple[dict[str, dict], list[str]]:
    folder = data_dir / "tweeteval" / "emotion"
    if not (folder / "train_text.txt").is_file():
        sys.exit(f"error: TweetEval emotion not found in {folder}; pass --data-dir (the shared data folder)")
    names = dict(line.split("\t", 1) for line in read_lines(folder / "mapping.txt") if line.strip())
    labels = [names[key].strip() for key in sorted(names, key=int)]
    splits = {}
    for role, prefix, limit in (("train", "train", train_rows), ("validation", "val", validation_rows),
                                ("test", "test", None)):
        texts = read_lines(folder / f"{prefix}_text.txt")
        ids = read_lines(folder / f"{prefix}_labels.txt")
        rows = [(t, names[i.strip()].strip()) for t, i in zip(texts, ids, strict=True) if t.strip()][:limit]
        splits[role] = {"texts": [t for t, _ in rows], "labels": [x for _, x in rows]}
    return splits, labels


def write_csv(path: Path, split: dict[str, list[str]]) -> str:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(split["texts"], split["labels"], strict=True))
    return str(path)


def token_count(model: str, texts: list[str], max_length: int) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    return sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"])


def machine(device: str, threads: int) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.is_file():
        names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    text = f"{cpu}, {os.cpu_count()} cores, {threads} torch threads, torch {torch.__version__}"
    if device == "cuda":
        text = f"{torch.cuda.get_device_name(0)}; host {text}"
    return text


def load_average() -> str:
    try:
        return " / ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def better(results: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Of repeated runs of one side, the fastest (the least disturbed by other jobs on a shared machine)."""
    return min(results, key=lambda r: r[key])


def encoder_workload(args: argparse.Namespace, scratch: Path, rows: list[dict[str, Any]],
                     notes: list[str]) -> str:
    from tuneforge.models.resolve import resolve_model
    from tuneforge.runtime import cpu_bf16_native

    splits, labels = load_emotion(args.data_dir, args.train_rows, args.validation_rows)
    model = resolve_model("minilm").path
    files = {role: write_csv(scratch / f"{role}.csv", splits[role]) for role in ("train", "validation")}
    native = args.device == "cuda" or cpu_bf16_native()
    job = {"model": model, "labels": labels, "splits": splits, "files": files, "max_length": args.max_length,
           "learning_rate": args.learning_rate, "batch_size": args.batch_size, "epochs": args.epochs,
           "seed": args.seed, "device": args.device, "scratch": str(scratch),
           "ours_precision": "bf16" if native else "auto"}
    tokens = token_count(model, splits["train"]["texts"], args.max_length) * args.epochs
    samples = len(splits["train"]["texts"]) * args.epochs
    baseline, ours = [], []
    for repeat in range(args.repeats):
        baseline.append(run_child("encoder_baseline", {**job, "output": str(scratch / f"base-{repeat}")},
                                  args.threads))
        ours.append(run_child("encoder_ours", {**job, "output": str(scratch / f"ours-{repeat}")}, args.threads))
    for side, results in (("Trainer recipe", baseline), ("tuneforge", ours)):
        best = better(results, "loop_seconds")
        rows.append({"workload": "encoder fine-tuning (minilm, TweetEval emotion)", "side": side,
                     "samples/s": samples / best["loop_seconds"], "tokens/s": tokens / best["loop_seconds"],
                     "peak memory": best["peak_memory"], "first step": best["first_step_seconds"],
                     "quality": f"acc {best['accuracy']:.3f} / F1 {best['f1_macro']:.3f}",
                     "loss": best["loss"], "precision": best["precision"]})
    notes.append(f"encoder: {len(splits['train']['texts'])} training tweets × {args.epochs} epoch(s), validation "
                 f"{len(splits['validation']['texts'])}, batch {args.batch_size}, max length {args.max_length}, "
                 f"learning rate {args.learning_rate:g}, seed {args.seed}; best of {args.repeats} interleaved run(s)")
    return better(ours, "loop_seconds")["run"]


def predict_workload(args: argparse.Namespace, scratch: Path, run: str, rows: list[dict[str, Any]],
                     notes: list[str]) -> None:
    splits, _ = load_emotion(args.data_dir, 1, None)
    texts = (splits["validation"]["texts"] + splits["test"]["texts"])[:args.predict_rows]
    model_dir = str(Path(run) / "model")
    tokens = token_count(model_dir, texts, args.max_length)
    from tuneforge.runtime import cpu_bf16_native

    precision = "bf16" if args.device == "cuda" or cpu_bf16_native() else "fp32"
    job = {"texts": texts, "run": run, "model_dir": model_dir, "device": args.device, "max_length": args.max_length,
           "scratch": str(scratch), "precision": precision}
    sides: dict[str, list[dict[str, Any]]] = {"pipeline, batch_size 1 (documented default)": [],
                                              f"pipeline, batch_size {args.predict_batch}": [],
                                              f"tuneforge Predictor, batch_size {args.predict_batch}": []}
    for _ in range(args.repeats):
        for side, results in sides.items():
            child = "predict_ours" if side.startswith("tuneforge") else "predict_pipeline"
            batch = 1 if "batch_size 1 " in side else args.predict_batch
            results.append(run_child(child, {**job, "batch_size": batch}, args.threads))
    reference = None
    for side, results in sides.items():
        best = better(results, "seconds")
        if reference is None:
            reference = best["labels"]
        agree = sum(a == b for a, b in zip(best["labels"], reference, strict=True)) / len(texts)
        rows.append({"workload": "batch prediction (the run's model)", "side": side,
                     "samples/s": len(texts) / best["seconds"], "tokens/s": tokens / best["seconds"],
                     "peak memory": best["peak_memory"], "first step": None,
                     "quality": f"{agree:.1%} same labels as batch 1", "loss": None,
                     "precision": precision if side.startswith("tuneforge") else "fp32"})
    notes.append(f"predict: {len(texts)} validation+test tweets, the encoder run's model, best of {args.repeats}")


# ------------------------------------------------------------------------------------------------------
# Workload 2: causal-LM supervised fine-tuning of a Llama-architecture decoder
# ------------------------------------------------------------------------------------------------------

def load_reviews(data_dir: Path, rows: int) -> list[dict[str, str]]:
    """Women's clothing reviews as prompt/response pairs: realistic text of widely varying length."""
    path = data_dir / "womens_clothing" / "val.csv"
    if not path.is_file():
        sys.exit(f"error: {path} not found; pass --data-dir (the shared data folder)")
    pairs = []
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            review, title = (row.get("Review Text") or "").strip(), (row.get("Title") or "").strip()
            if review:
                pairs.append({"prompt": f"Write a review of this {row.get('Class Name') or 'item'}"
                                        f"{' titled ' + title if title else ''}.\n", "response": review})
    return pairs[:rows]


def build_llama(folder: Path, texts: list[str], size: str) -> str:
    """A byte-level BPE tokenizer trained on the texts and a randomly initialised Llama, saved like a hub model."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=8000, special_tokens=list(specials.values()),
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, model_max_length=4096, **specials)
    tokenizer.save_pretrained(folder)
    hidden, layers, heads, kv_heads, intermediate = LLAMA_SIZES[size]
    config = LlamaConfig(vocab_size=len(tokenizer) if size == "small" else 32000, hidden_size=hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         intermediate_size=intermediate, max_position_embeddings=4096,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return str(folder)


def sft_examples(tokenizer: Any, pairs: list[dict[str, str]], max_length: int) -> list[dict[str, list[int]]]:
    """Prompt tokens, response tokens and EOS; the loss covers the response and EOS only."""
    rows = []
    for pair in pairs:
        prompt = tokenizer(pair["prompt"], add_special_tokens=False)["input_ids"]
        response = tokenizer(pair["response"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = (prompt + response)[:max_length]
        labels = ([-100] * len(prompt) + response)[:max_length]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return rows


def decoder_baseline(job: dict[str, Any]) -> dict[str, Any]:
    """AutoModelForCausalLM + Trainer with the documented collator for pre-labelled examples (padding labels with
    -100), and for LoRA the documented peft recipe."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(job["model"])
    model = AutoModelForCausalLM.from_pretrained(job["model"], dtype=torch.float32)
    if job["lora"]:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.05,
                                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    train = Dataset.from_list(sft_examples(tokenizer, job["train"], job["max_length"]))
    validation = Dataset.from_list(sft_examples(tokenizer, job["validation"], job["max_length"]))
    timer = timer_callback(started)
    cuda = job["device"] == "cuda"
    args = TrainingArguments(output_dir=job["output"], learning_rate=job["learning_rate"],
                             per_device_train_batch_size=job["batch_size"],
                             per_device_eval_batch_size=job["batch_size"], num_train_epochs=job["epochs"],
                             seed=job["seed"], report_to="none", use_cpu=not cuda,
                             bf16=cuda and torch.cuda.is_bf16_supported())
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=validation,
                      data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100), callbacks=[timer])
    trainer.train()
    loss = trainer.evaluate()["eval_loss"]
    return {**timer.result(), "loss": float(loss), "peak_memory": peak_memory(job["device"]),
            "precision": "bf16" if args.bf16 else "fp32"}


def decoder_ours(job: dict[str, Any]) -> dict[str, Any]:
    import tuneforge
    from tuneforge.runtime import pick_device, resolve_precision

    started = time.perf_counter()
    recipe = {
        "task": "causal-lm",
        "model": {"name": job["model"]},
        "data": {"train": job["files"]["train"], "validation": job["files"]["validation"]},
        "train": {"learning_rate": job["learning_rate"], "batch_size": job["batch_size"],
                  "eval_batch_size": job["batch_size"], "epochs": job["epochs"], "seed": job["seed"],
                  "max_length": job["max_length"], "precision": job["ours_precision"], "device": job["device"],
                  "save_checkpoints": False},
        "lm": {"packing": True},
        "peft": {"method": "lora" if job["lora"] else "none", "r": 8, "alpha": 16, "dropout": 0.05},
        "generation": {"eval_examples": 1, "max_new_tokens": 8},  # the text metrics after training are not timed
        "early_stopping": {"enabled": False},
        "evaluation": {"explain_examples": 0},
        "fairness": {"identity_categories": [], "counterfactual": False},
        "output": {"dir": job["output"], "overwrite": True},
    }
    timer = timer_callback(started)
    run = tuneforge.fine_tune(recipe, callbacks=[timer])
    return {**timer.result(), "loss": run.metrics["validation"]["loss"], "peak_memory": peak_memory(job["device"]),
            "precision": resolve_precision(job["ours_precision"], pick_device(job["device"]))}


def bf16_matmul_peak(seconds: float = 2.0) -> float:
    """FLOP/s of large bf16 matrix products on this GPU: the MFU denominator, measured rather than the datasheet's."""
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(10):
            a @ b
        torch.cuda.synchronize()
        count += 10
    return 2 * 8192**3 * count / (time.perf_counter() - started)


def matmul_parameters(model: str) -> int:
    """Weights in Linear layers (the LM head included): what costs 2 FLOPs per token forward."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        built = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model))
    return sum(m.weight.numel() for m in built.modules() if isinstance(m, torch.nn.Linear))


def decoder_workload(args: argparse.Namespace, scratch: Path, rows: list[dict[str, Any]], notes: list[str]) -> None:
    from transformers import AutoTokenizer

    from tuneforge.runtime import cpu_bf16_native

    size = args.model_size or ("1.1b" if args.device == "cuda" else "small")
    pairs = load_reviews(args.data_dir, args.decoder_rows + args.decoder_rows // 5)
    train, validation = pairs[:args.decoder_rows], pairs[args.decoder_rows:]
    model = build_llama(scratch / f"llama-{size}", [p["prompt"] + p["response"] for p in pairs], size)
    files = {}
    for role, split in (("train", train), ("validation", validation)):
        path = scratch / f"sft-{role}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["prompt", "response"])
            writer.writeheader()
            writer.writerows(split)
        files[role] = str(path)
    tokenizer = AutoTokenizer.from_pretrained(model)
    examples = sft_examples(tokenizer, train, args.decoder_max_length)
    tokens = sum(len(row["input_ids"]) for row in examples) * args.epochs
    native = args.device == "cuda" or cpu_bf16_native()
    job = {"model": model, "train": train, "validation": validation, "files": files,
           "max_length": args.decoder_max_length, "learning_rate": args.decoder_learning_rate,
           "batch_size": args.decoder_batch_size, "epochs": args.epochs, "seed": args.seed, "device": args.device,
           "scratch": str(scratch), "ours_precision": "bf16" if native else "auto"}
    peak = bf16_matmul_peak() if args.device == "cuda" else 0.0
    matmuls = matmul_parameters(model)
    for lora in (False, True):
        baseline, ours = [], []
        for repeat in range(args.repeats):
            common = {**job, "lora": lora}
            baseline.append(run_child("decoder_baseline", {**common, "output": str(scratch / f"db-{lora}-{repeat}")},
                                      args.threads))
            ours.append(run_child("decoder_ours", {**common, "output": str(scratch / f"do-{lora}-{repeat}")},
                                  args.threads))
        workload = f"causal-LM SFT, Llama {size}, {'LoRA r 8' if lora else 'full fine-tuning'}"
        for side, results in (("Trainer recipe", baseline), ("tuneforge", ours)):
            best = better(results, "loop_seconds")
            rows.append({"workload": workload, "side": side, "samples/s": len(train) * args.epochs /
                         best["loop_seconds"], "tokens/s": tokens / best["loop_seconds"],
                         "peak memory": best["peak_memory"], "first step": best["first_step_seconds"],
                         "quality": "response tokens", "loss": best["loss"], "precision": best["precision"]})
            if peak:  # 6 FLOPs per weight and token (forward 2, backward 4); a frozen weight skips 2 of them
                rows[-1]["mfu"] = (4 if lora else 6) * matmuls * rows[-1]["tokens/s"] / peak
    if peak:
        notes.append(f"MFU: model FLOPs (6 per matmul weight and token, 4 with LoRA; attention scores left out) "
                     f"over a measured bf16 matmul peak of {peak / 1e12:.0f} TFLOP/s")
    lengths = sorted(len(row["input_ids"]) for row in examples)
    notes.append(f"decoder: Llama {size} ({LLAMA_SIZES[size]} hidden/layers/heads/kv heads/intermediate), random "
                 f"initialisation; {len(train)} review prompt/response pairs × {args.epochs} epoch(s), tokens per "
                 f"example {lengths[0]}–{lengths[-1]} (median {lengths[len(lengths) // 2]}), batch "
                 f"{args.decoder_batch_size}, max length {args.decoder_max_length}; loss on response tokens")


CHILDREN = {"encoder_baseline": encoder_baseline, "encoder_ours": encoder_ours,
            "predict_pipeline": predict_pipeline, "predict_ours": predict_ours,
            "decoder_baseline": decoder_baseline, "decoder_ours": decoder_ours}


def format_bytes(value: float | None) -> str:
    return "" if value is None else f"{value / 2**20:,.0f} MiB"


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    mfu = any("mfu" in row for row in rows)
    for column in ("workload", "side", "samples/s", "tokens/s", "peak memory", "first step", "validation",
                   "val. loss", "precision") + (("MFU",) if mfu else ()):
        table.add_column(column, justify="right" if column not in ("workload", "side", "validation") else "left")
    for row in rows:
        table.add_row(row["workload"], row["side"], f"{row['samples/s']:.1f}", f"{row['tokens/s']:,.0f}",
                      format_bytes(row["peak memory"]),
                      "" if row["first step"] is None else f"{row['first step']:.1f} s", row["quality"],
                      "" if row["loss"] is None else f"{row['loss']:.4f}", row["precision"],
                      *((f"{row['mfu']:.1%}" if "mfu" in row else "",) if mfu else ()))
    Console(width=200).print(table)


def print_ratios(rows: list[dict[str, Any]]) -> None:
    print("\nratios, ours / baseline:")
    by_workload: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_workload.setdefault(row["workload"], []).append(row)
    for workload, group in by_workload.items():
        ours = group[-1]
        for base in group[:-1]:
            memory = ours["peak memory"] / base["peak memory"] if base["peak memory"] else float("nan")
            print(f"  {workload}: vs {base['side']}: samples/s ×{ours['samples/s'] / base['samples/s']:.2f}, "
                  f"tokens/s ×{ours['tokens/s'] / base['tokens/s']:.2f}, peak memory ×{memory:.2f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--workloads", default="encoder,predict", help="comma list of encoder, predict, decoder")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in every job (same on both sides)")
    parser.add_argument("--train-rows", type=int, default=600)
    parser.add_argument("--validation-rows", type=int, default=374)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--predict-rows", type=int, default=1000)
    parser.add_argument("--predict-batch", type=int, default=64)
    parser.add_argument("--decoder-rows", type=int, default=240)
    parser.add_argument("--decoder-batch-size", type=int, default=8)
    parser.add_argument("--decoder-max-length", type=int, default=256)
    parser.add_argument("--decoder-learning-rate", type=float, default=3e-4)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats per side; the fastest counts")
    parser.add_argument("--model-size", choices=tuple(LLAMA_SIZES), default=None,
                        help="decoder workload: Llama size (default: small on the CPU, 1.1b on CUDA)")
    parser.add_argument("--child", nargs=2, metavar=("JOB", "SPEC"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def child_main(name: str, spec: str) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    job = json.loads(Path(spec).read_text(encoding="utf-8"))
    result = CHILDREN[name](job)
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child_main(*args.child)
        return
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    load_before = load_average()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tuneforge-throughput-") as folder:
        scratch = Path(folder)
        run = None
        if "encoder" in workloads or "predict" in workloads:
            run = encoder_workload(args, scratch, rows, notes)
        if "predict" in workloads and run is not None:
            predict_workload(args, scratch, run, rows, notes)
        if "decoder" in workloads:
            decoder_workload(args, scratch, rows, notes)
    print_table(rows, f"tuneforge vs Transformers, {args.device}: {machine(args.device, args.threads)}")
    for note in notes:
        print(f"note: {note}")
    print(f"note: load average (1/5/15 min) before {load_before}, after {load_average()}; "
          f"{time.perf_counter() - started:.0f} s in all")
    print_ratios(rows)


if __name__ == "__main__":
    main()
