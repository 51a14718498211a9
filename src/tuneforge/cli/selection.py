"""`tuneforge estimate` and `tuneforge recommend`: which model and method fit the task, the data and the machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from tuneforge.cli.display import console
from tuneforge.errors import TuneforgeError
from tuneforge.recipe import OPTIMIZERS, PAIR_TASK, TASKS, PeftMethod, resolve_task

# The names `tuneforge train` takes, so a recommendation or an estimate carries over to a recipe unchanged.
TASK_HELP = (f"{', '.join(TASKS)} or {PAIR_TASK}, as `tuneforge train --task` takes them (aliases too, e.g. ner).")
PEFT_HELP = f"peft.method: {', '.join(PeftMethod.names())} (none: full fine-tuning)."
OPTIMIZER_HELP = f"train.optimizer: {', '.join(OPTIMIZERS)}."


def format_bytes(count: float) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise TuneforgeError(f"unknown --device '{device}'", fix="use auto, cpu or cuda")
    if device != "auto":
        return device
    from tuneforge.models.hardware import visible_gpu

    return "cuda" if visible_gpu() else "cpu"


def _method(peft: str, freeze: bool) -> str:
    """The estimate's training setup for `--peft` (a peft.method) and `--freeze` (freeze.all_but_head)."""
    if peft not in PeftMethod.names():
        raise TuneforgeError(f"unknown --peft '{peft}'", fix=f"use one of {', '.join(PeftMethod.names())}")
    method = PeftMethod(peft)
    if freeze and method.enabled:
        raise TuneforgeError("--freeze trains the head alone and --peft adds adapters: pick one",
                             fix="drop --freeze, or use --peft none")
    return "freeze" if freeze else method.estimate_method


def _optimizer(name: str) -> str:
    if name not in OPTIMIZERS:
        raise TuneforgeError(f"unknown --optimizer '{name}'", fix=f"use one of {', '.join(OPTIMIZERS)} "
                                                                  "(the names train.optimizer takes)")
    return name


def estimate_table(result: Any, budget: tuple[int, str] | None) -> Table:
    from tuneforge.cli.models import format_parameters

    setup, memory = result.setup, result.memory
    title = (f"{result.model}: {setup.task}, {setup.method}, batch {setup.batch_size} × {setup.sequence} tokens, "
             f"{setup.precision}, {setup.device}")
    table = Table(title=title, title_justify="left")
    table.add_column("estimate")
    table.add_column("value", justify="right")
    table.add_column("how", style="dim")
    table.add_row("parameters", format_parameters(result.parameters), "built on the meta device from the config")
    table.add_row("trainable", format_parameters(result.trainable_parameters),
                  f"LoRA r={setup.lora_r} + head" if setup.method in ("lora", "qlora") else
                  "task head only" if setup.method == "freeze" else "every weight")
    table.add_row("weights", format_bytes(memory.weights),
                  "4-bit body, 16-bit rest, fp32 adapters" if setup.method == "qlora" else
                  "fp32" + (" + 16-bit autocast copy" if setup.precision != "fp32" else ""))
    table.add_row("gradients", format_bytes(memory.gradients), "4 bytes per trainable parameter")
    table.add_row("optimiser states", format_bytes(memory.optimizer), setup.optimizer)
    table.add_row("activations", format_bytes(memory.activations),
                  "kept for backward" + (", checkpointed" if setup.gradient_checkpointing else ""))
    table.add_row("overhead", format_bytes(memory.overhead),
                  f"backward buffers {format_bytes(memory.workspace)}, allocator {format_bytes(memory.allocator)}, "
                  f"runtime {format_bytes(memory.runtime)}")
    fits = "" if budget is None else ("fits " if memory.peak <= budget[0] else "does NOT fit ") + budget[1]
    table.add_row("peak memory", format_bytes(memory.peak), fits, style="bold")
    if result.time is not None:
        time = result.time
        table.add_row("tokens per epoch", f"{time.tokens_per_epoch:,}", f"{setup.rows:,} rows × {setup.sequence}")
        table.add_row("FLOPs per epoch", f"{time.flops_per_epoch:.2e}", "6·N per token (full), 4·N LoRA, 2·N frozen")
        table.add_row("device speed", f"{time.device_flops / 1e12:.2f} TFLOP/s", time.device_source)
        table.add_row("time per epoch", format_seconds(time.seconds_per_epoch), "", style="bold")
    return table


def _rows_and_length(data: Path | None, rows: int | None, text_column: str, batch_size: int,
                     max_length: int) -> tuple[int | None, float | None, str]:
    if data is None:
        return rows, None, ""
    from tuneforge.data.profile import profile_data

    profile = profile_data(data, text_column, label_column=None)
    padded = profile.padded_tokens(batch_size, max_length)
    return profile.rows, padded, f"{profile.rows:,} rows in {data}, about {padded:.0f} tokens per padded row"


def _budget(memory: str | None, device: str) -> tuple[int, str] | None:
    from tuneforge.models.hardware import memory_budget, parse_size

    if memory:
        return parse_size(memory), f"the given {memory}"
    try:
        return memory_budget(device)
    except TuneforgeError:
        return None


def register(app: typer.Typer) -> None:
    """Adds the verbs to the application."""

    @app.command("estimate")
    def estimate_command(
        model: str = typer.Option(..., "--model", help="Catalog name or alias, a local folder or run, or a cached "
                                                       "hub model (nothing is downloaded)."),
        task: str = typer.Option("classification", "--task", help=TASK_HELP),
        batch_size: int = typer.Option(16, "--batch-size", min=1, help="Examples per optimisation step."),
        max_length: int = typer.Option(128, "--max-length", min=1, help="Tokens per example (padded length)."),
        peft: str = typer.Option("none", "--peft", help=PEFT_HELP),
        lora_r: int = typer.Option(8, "--lora-r", min=1, help="LoRA rank."),
        freeze: bool = typer.Option(False, "--freeze", help="Train the task head only (frozen body)."),
        precision: str = typer.Option("fp32", "--precision", help="fp32, bf16 or fp16 (mixed precision)."),
        optimizer: str = typer.Option(OPTIMIZERS[0], "--optimizer", help=OPTIMIZER_HELP),
        gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing",
                                                    help="Recompute activations in backward to save memory."),
        data: Path = typer.Option(None, "--data", help="Training file: rows and text lengths come from it."),
        rows: int = typer.Option(None, "--rows", min=1, help="Training rows per epoch (without --data)."),
        text_column: str = typer.Option("text", "--text-column", help="Text column of --data."),
        num_labels: int = typer.Option(2, "--num-labels", min=1, help="Classes of the task head."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (auto: cuda when visible)."),
        gpu: str = typer.Option(None, "--gpu", help="GPU name for the speed table when none is visible, e.g. A100."),
        tflops: float = typer.Option(None, "--tflops", help="Achieved training TFLOP/s, instead of measuring."),
        memory: str = typer.Option(None, "--memory", help="Memory to compare the peak with, e.g. 16GB."),
        as_json: bool = typer.Option(False, "--json", help="Print the estimate as JSON."),
    ) -> None:
        """Estimate parameters, peak training memory and time per epoch, without loading the model."""
        from tuneforge.cli.common import quiet_libraries
        from tuneforge.models.estimate import TrainingSetup, estimate, shape_task
        from tuneforge.models.hardware import device_throughput
        from tuneforge.models.shapes import model_shape

        quiet_libraries()
        if data is not None and rows is not None:
            raise TuneforgeError("--data and --rows both give the row count", fix="pass one of them")
        task, _ = resolve_task(task)
        method = _method(peft, freeze)
        chosen_device = _device(device)
        shape, _ = model_shape(model, shape_task(task), num_labels)
        counted, padded, described = _rows_and_length(data, rows, text_column, batch_size, max_length)
        setup = TrainingSetup(task=task, batch_size=batch_size, max_length=max_length, method=method,
                              lora_r=lora_r, precision=precision, optimizer=_optimizer(optimizer),  # type: ignore[arg-type]
                              gradient_checkpointing=gradient_checkpointing, device=chosen_device,  # type: ignore[arg-type]
                              rows=counted, tokens_per_row=padded)
        speed = device_throughput(chosen_device, precision, gpu, tflops) if counted else None
        result = estimate(shape, setup, speed.flops if speed else 0.0, speed.source if speed else "")
        notes = list(result.notes)
        if not freeze and method != peft and PeftMethod(peft).enabled:
            notes.append(f"peft {peft} is sized as {method} with r={lora_r}: it trains fewer parameters, so the "
                         "figures are an upper bound")
        if counted and speed is None:
            notes.append("no time estimate: unknown GPU; name it with --gpu or give --tflops")
        if as_json:
            typer.echo(json.dumps({**result.to_json(), "notes": notes}, indent=2))
            return
        console.print(estimate_table(result, _budget(memory, chosen_device)))
        for line in ([described] if described else []) + notes:
            console.print(f"note: {line}", highlight=False)

    @app.command("recommend")
    def recommend_command(
        task: str = typer.Option("classification", "--task", help=TASK_HELP),
        data: Path = typer.Option(..., "--data", help="Training file (CSV, TSV, JSONL, Parquet)."),
        text_column: str = typer.Option("text", "--text-column", help="Column with the texts."),
        language: str = typer.Option(None, "--language", help="ISO 639-1 code of the data; detected roughly from "
                                                              "the texts when not given."),
        domain: str = typer.Option(None, "--domain", help="general, biomedical, legal, financial, code or "
                                                          "multilingual."),
        memory: str = typer.Option(None, "--memory", help="Memory budget, e.g. 16GB (default: available RAM, "
                                                          "or the GPU's memory with --device cuda)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        gpu: str = typer.Option(None, "--gpu", help="GPU name for the speed table when none is visible."),
        top: int = typer.Option(5, "--top", min=1, help="Candidates to show."),
        as_json: bool = typer.Option(False, "--json", help="Print the recommendation as JSON."),
        directories: list[Path] = typer.Option(None, "--dir", help="Also consider models and runs in this folder."),
    ) -> None:
        """Rank models and a training method (full, frozen, LoRA, QLoRA) for the task, data and memory."""
        from tuneforge.cli.common import quiet_libraries
        from tuneforge.cli.models import catalog_entries
        from tuneforge.data.profile import profile_data
        from tuneforge.models.catalog import DOMAINS, normalise_language
        from tuneforge.models.hardware import device_throughput, parse_size
        from tuneforge.models.recommend import RecommendRequest, recommend

        quiet_libraries()
        task, pairs = resolve_task(task)
        if domain is not None and domain not in DOMAINS:
            raise TuneforgeError(f"unknown domain '{domain}'", fix=f"use one of {', '.join(DOMAINS)}")
        chosen_device = _device(device)
        precision = "bf16" if chosen_device == "cuda" else "fp32"
        budget = (parse_size(memory), f"given {memory}") if memory else _budget(None, chosen_device)
        if budget is None:
            raise TuneforgeError("no memory budget: no GPU is visible", fix="pass --memory, e.g. --memory 24GB")
        from tuneforge.data.conll import is_conll

        profile = profile_data(data, text_column, label_column=None,
                               conll=(task == "token-classification" and is_conll(data)) or None)
        detected = profile.language
        code = normalise_language(language) if language else detected.code
        max_length = profile.suggested_max_length()
        speed = device_throughput(chosen_device, precision, gpu)
        request = RecommendRequest(task=task, rows=profile.rows, memory_bytes=budget[0], device=chosen_device,
                                   language=code, domain=domain, max_length=max_length,
                                   tokens_per_row=profile.padded_tokens(16, max_length),
                                   device_flops=speed.flops if speed else 0.0,
                                   device_source=speed.source if speed else "", precision=precision)
        result = recommend(request, catalog_entries(directories), limit=top)
        language_words = (f"{code} (given)" if language else
                          f"{detected.describe()}, detected by a script/function-word heuristic")
        if as_json:
            typer.echo(json.dumps(recommendation_json(result, language_words, budget[1]), indent=2))
            return
        console.print(f"task {task}; {profile.rows:,} rows in {data}; language {language_words}; "
                      f"max length {max_length} (95% of texts); budget {format_bytes(budget[0])} ({budget[1]}); "
                      f"{chosen_device}", highlight=False)
        console.print(recommendation_table(result))
        for rank, candidate in enumerate(result.candidates, start=1):
            console.print(f"{rank}. {candidate.entry.name}: {candidate.reason}", highlight=False)
        best = next((candidate for candidate in result.candidates if candidate.fits), None)
        if best is not None:
            console.print("next: " + train_command(best, data, PAIR_TASK if pairs else task, max_length),
                          highlight=False, soft_wrap=True)
        else:
            console.print("[yellow]no candidate fits the budget[/yellow]: raise --memory, use a GPU, or shorten "
                          "the texts", highlight=False)


def recommendation_table(result: Any) -> Table:
    from tuneforge.cli.models import format_parameters
    from tuneforge.models.recommend import describe_method

    table = Table(title="Recommended models (best first; why below)", title_justify="left")
    for column in ("#", "model", "params", "method", "peak", "epoch", "offline"):
        table.add_column(column, justify="right" if column in ("#", "params", "peak", "epoch") else "left",
                         overflow="fold")
    for rank, candidate in enumerate(result.candidates, start=1):
        found = candidate.estimate
        method = (describe_method(candidate.method, candidate.batch_size, candidate.gradient_checkpointing)
                  if candidate.fits else "does not fit")
        epoch = format_seconds(found.time.seconds_per_epoch) if found and found.time else "?"
        table.add_row(str(rank), candidate.entry.name, format_parameters(found.parameters if found else None),
                      method, format_bytes(found.memory.peak) if found else "?", epoch,
                      "yes" if candidate.entry.offline else "no")
    return table


def train_command(candidate: Any, data: Path, task: str, max_length: int) -> str:
    """The `tuneforge train` line that runs the recommended setup; `task` as train takes it."""
    from tuneforge.models.recommend import recipe_settings

    name = candidate.entry.aliases[0] if candidate.entry.availability == "bundled" else (
        candidate.entry.path if candidate.entry.availability in ("local", "run") else candidate.entry.name)
    sets = [f"train.max_length={max_length}", f"train.batch_size={candidate.batch_size}"]
    sets += recipe_settings(candidate.method)
    if candidate.gradient_checkpointing:
        sets.append("train.gradient_checkpointing=true")
    flags = " ".join(f"--set {value}" for value in sets)
    pair = " --text-pair-column SECOND_TEXT_COLUMN" if task == PAIR_TASK else ""
    return f"tuneforge train --data {data} --task {task}{pair} --model {name} {flags}"


def recommendation_json(result: Any, language: str, budget: str) -> dict[str, Any]:
    request = result.request
    return {
        "request": {"task": request.task, "rows": request.rows, "language": request.language,
                    "language_source": language, "domain": request.domain, "memory_bytes": request.memory_bytes,
                    "memory_source": budget, "device": request.device, "max_length": request.max_length},
        "candidates": [{"rank": rank, **candidate.entry.to_json(), "method": candidate.method,
                        "batch_size": candidate.batch_size, "gradient_checkpointing": candidate.gradient_checkpointing,
                        "fits": candidate.fits, "score": candidate.score, "reason": candidate.reason,
                        "estimate": candidate.estimate.to_json() if candidate.estimate else None}
                       for rank, candidate in enumerate(result.candidates, start=1)],
        "skipped": [{"model": name, "why": why} for name, why in result.skipped],
    }
