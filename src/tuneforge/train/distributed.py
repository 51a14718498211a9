"""Several processes for one run: the launch goes through torchrun (torch.distributed.run), the processes are the
Transformers Trainer's (DDP by default, FSDP or DeepSpeed ZeRO from `train.distributed`), and this module only
decides who writes what.

Only rank 0 writes the run directory. The other ranks run the same code path, including the evaluation after
training (its gathers are collective, so every rank must take part), but their layout is a `ScratchLayout`:
files go to a private temporary folder that is removed at exit, while checkpoints go to the run's shared
checkpoints/ folder, where the Trainer saves each rank's RNG state and `--resume` finds them.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tuneforge.errors import TuneforgeError
from tuneforge.kinds import kind_of
from tuneforge.recipe import DistributedSpec, Recipe
from tuneforge.run import RunLayout


@dataclass(frozen=True)
class ScratchLayout(RunLayout):
    """A non-zero rank's layout: its own scratch root, the run's shared checkpoints."""

    shared: Path = Path()

    @property
    def checkpoints(self) -> Path:
        return self.shared / "checkpoints"


def writes_run(layout: RunLayout) -> bool:
    """Whether this process writes the run directory's artifacts (rank 0, or the only process)."""
    return not isinstance(layout, ScratchLayout)


def process_state(device: torch.device) -> Any | None:
    """accelerate's PartialState when torchrun started several processes (the process group is initialised:
    gloo on the CPU, nccl on GPUs); None for a single process."""
    if not torch.distributed.is_torchelastic_launched():
        return None
    from accelerate import PartialState

    state = PartialState(cpu=device.type == "cpu")
    return state if state.num_processes > 1 else None


def main_process_first(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Rank 0 runs the block before the others (data loading writes the datasets cache once)."""
    state = process_state(device)
    return state.main_process_first() if state is not None else contextlib.nullcontext()


def prepare_run_dir(prepare: Callable[[], tuple[RunLayout, Path | None]], device: torch.device
                    ) -> tuple[RunLayout, Path | None]:
    """`prepare()` (create, check or clear the run directory) on rank 0 only; every rank gets the outcome.

    A refusal on rank 0 (the folder holds a run, no checkpoint to resume) is raised on every rank, so none waits
    for a partner that has stopped.
    """
    state = process_state(device)
    if state is None:
        return prepare()
    outcome: list[Any] = [None]
    if state.is_main_process:
        try:
            outcome[0] = ("ok", prepare())
        except TuneforgeError as error:
            outcome[0] = ("error", (error.message, error.fix))
    torch.distributed.broadcast_object_list(outcome, src=0)
    kind, value = outcome[0]
    if kind == "error":
        raise TuneforgeError(*value)
    layout, checkpoint = value
    if state.is_main_process:
        return layout, checkpoint
    scratch = Path(tempfile.mkdtemp(prefix=f"tuneforge-rank{state.process_index}-"))
    atexit.register(functools.partial(shutil.rmtree, scratch, ignore_errors=True))
    return ScratchLayout(scratch, shared=layout.root), checkpoint


def check_strategy(spec: DistributedSpec) -> None:
    """Fail before any process starts when the strategy cannot run here."""
    if spec.strategy == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise TuneforgeError("train.distributed.strategy is deepspeed but the deepspeed package is not installed",
                             fix="pip install deepspeed (it needs a CUDA toolkit), or use strategy ddp or fsdp")
    if spec.deepspeed_config and not Path(spec.deepspeed_config).is_file():
        raise TuneforgeError(f"train.distributed.deepspeed_config {spec.deepspeed_config} does not exist",
                             fix="point it at a DeepSpeed JSON config, or leave it empty to use zero_stage")


def deepspeed_config(spec: DistributedSpec) -> str | dict[str, Any]:
    """The user's config file, or a ZeRO config whose sizes the Trainer fills in from its own arguments."""
    if spec.deepspeed_config:
        return spec.deepspeed_config
    return {
        "zero_optimization": {"stage": spec.zero_stage, "overlap_comm": True, "contiguous_gradients": True},
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
    }


def trainer_arguments(spec: DistributedSpec) -> dict[str, Any]:
    """TrainingArguments for the strategy. A single process ignores fsdp and deepspeed (there is nothing to shard),
    so one recipe runs alone or under torchrun unchanged."""
    check_strategy(spec)
    arguments: dict[str, Any] = {}
    if spec.backend != "auto":
        arguments["ddp_backend"] = spec.backend
    if not torch.distributed.is_torchelastic_launched():
        return arguments
    if spec.strategy == "fsdp":
        arguments["fsdp"] = spec.fsdp
        arguments["fsdp_config"] = dict(spec.fsdp_config) or None
    elif spec.strategy == "deepspeed":
        arguments["deepspeed"] = deepspeed_config(spec)
    return arguments


def _absolute(value: str | None) -> str | None:
    if not value or value.startswith(("hf://", "http://", "https://")) or Path(value).is_absolute():
        return value
    return str(Path(value).resolve())


def launch_recipe(recipe: Recipe, default_dir: Path) -> Recipe:
    """The recipe every process reads: data paths and the run directory made absolute, so the processes (and
    later a `--resume`) agree on them whatever their working folder and clock."""
    resolved = recipe.model_copy(deep=True)
    for data in [resolved.data, *(task.data for task in resolved.tasks)]:
        for split in ("train", "validation", "test"):
            setattr(data, split, _absolute(getattr(data, split)))
    resolved.output.dir = str(Path(resolved.output.dir or default_dir).resolve())
    return resolved


def launch_command(recipe_file: Path, nproc: int, arguments: Sequence[str] = ()) -> list[str]:
    """torchrun on this machine: `--standalone` finds a free port and rendezvous locally."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "tuneforge.cli.main", "train", str(recipe_file), *arguments]


def launch(recipe: Recipe, nproc: int, default_dir: Path, *, resume: bool = False, force: bool = False
           ) -> tuple[int, Path]:
    """Run `tuneforge train` in `nproc` processes through torchrun; returns (exit code, run directory).

    torchrun starts, watches and stops the processes; the recipe reaches them as a resolved YAML file.
    """
    if nproc < 2:
        raise ValueError("launch is for two or more processes")
    kind = kind_of(recipe)
    if not kind.nproc:  # refused before any process starts
        raise TuneforgeError(f"{kind.name} runs ({kind.summary}) train in one process",
                             fix="drop --nproc (or start it without torchrun)")
    check_strategy(recipe.train.distributed)
    resolved = launch_recipe(recipe, default_dir)
    folder = Path(tempfile.mkdtemp(prefix="tuneforge-launch-"))
    try:
        recipe_file = folder / "recipe.yaml"
        recipe_file.write_text(resolved.to_yaml(), encoding="utf-8")
        command = launch_command(recipe_file, nproc, (["--resume"] if resume else []) + (["--force"] if force else []))
        return subprocess.run(command, check=False).returncode, Path(resolved.output.dir or "")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
