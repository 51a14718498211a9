"""One task of a multi-task run as an ordinary Predictor: the shared encoder with that task's head."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModel, AutoTokenizer

from tuneforge.errors import TuneforgeError
from tuneforge.models.multitask import HEADS_FILE, TaskModel
from tuneforge.predict import Predictor
from tuneforge.recipe import Recipe, TaskSpec
from tuneforge.run import RunLayout, read_run_recipe
from tuneforge.runtime import pick_device


def task_recipe(recipe: Recipe, spec: TaskSpec) -> Recipe:
    """The single-task recipe of one task: its kind and data, everything else shared."""
    # model_copy(update=...) skips validation, which would (rightly) refuse data beside tasks half-way through
    return recipe.model_copy(update={"task": spec.task, "data": spec.data.model_copy(deep=True), "tasks": [],
                                     "multitask": type(recipe.multitask)()}, deep=True)


def task_names(root: str | Path) -> list[str]:
    layout = RunLayout(Path(root))
    return [task["name"] for task in json.loads(layout.multitask.read_text(encoding="utf-8"))["tasks"]]


def task_predictor(root: str | Path, task_name: str | None, device: str = "auto") -> Predictor:
    """A Predictor for one task of a multi-task run: the shared encoder with that task's head."""
    layout = RunLayout(Path(root))
    described = json.loads(layout.multitask.read_text(encoding="utf-8"))
    by_name = {task["name"]: task for task in described["tasks"]}
    if task_name is None or task_name not in by_name:
        what = "is a multi-task run" if task_name is None else f"has no task '{task_name}'"
        raise TuneforgeError(f"{layout.root} {what}; its tasks are {', '.join(by_name)}",
                             fix=f"pass --task-name {next(iter(by_name))} (Python: tuneforge.load(run, "
                                 f"task_name=...))")
    task = by_name[task_name]
    recipe = read_run_recipe(layout.root)
    spec = next(spec for spec in recipe.tasks if spec.name == task_name)
    encoder = AutoModel.from_pretrained(str(layout.model), dtype=torch.float32, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(layout.model))
    heads = load_file(str(layout.model / HEADS_FILE))
    weight, bias = heads[f"{task_name}.weight"], heads[f"{task_name}.bias"]
    head = nn.Linear(weight.shape[1], weight.shape[0])
    head.load_state_dict({"weight": weight, "bias": bias})
    config = encoder.config.__class__.from_dict(encoder.config.to_dict())
    labels = task["labels"]
    if labels is not None:
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}
    else:
        config.num_labels = 1
    return Predictor(TaskModel(encoder, head, config), tokenizer, task_recipe(recipe, spec), pick_device(device),
                     temperature=float(task.get("temperature", 1.0)))
