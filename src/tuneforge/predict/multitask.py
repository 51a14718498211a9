"""One task of a multi-task run as an ordinary Predictor: the shared encoder with that task's head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModel, AutoTokenizer

from tuneforge import kinds
from tuneforge.errors import TuneforgeError
from tuneforge.models.multitask import HEADS_FILE, TaskModel
from tuneforge.predict import checks
from tuneforge.predict.protocol import LoadRequest
from tuneforge.predict.registry import loads
from tuneforge.predict.text import Predictor
from tuneforge.recipe import Recipe, TaskSpec
from tuneforge.runtime import pick_device


def task_recipe(recipe: Recipe, spec: TaskSpec) -> Recipe:
    """The single-task recipe of one task: its kind and data, everything else shared."""
    # model_copy(update=...) skips validation, which would (rightly) refuse data beside tasks half-way through
    return recipe.model_copy(update={"task": spec.task, "data": spec.data.model_copy(deep=True), "tasks": [],
                                     "multitask": type(recipe.multitask)()}, deep=True)


def task_model(folder: Path, name: str, labels: list[str] | None) -> tuple[TaskModel, Any]:
    """The shared encoder with the head of task `name`, and the tokenizer, from a checked model/ folder."""
    with checks.loading(folder):
        encoder = AutoModel.from_pretrained(str(folder), dtype=torch.float32, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        heads = load_file(str(folder / HEADS_FILE))
        weight, bias = heads[f"{name}.weight"], heads[f"{name}.bias"]
        head = nn.Linear(weight.shape[1], weight.shape[0])
        head.load_state_dict({"weight": weight, "bias": bias})
    config = encoder.config.__class__.from_dict(encoder.config.to_dict())
    if labels is not None:
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
    else:
        config.num_labels = 1
    return TaskModel(encoder, head, config), tokenizer


@loads(kinds.MULTITASK)
def load_task(request: LoadRequest) -> Predictor:
    """A Predictor for the task `request.task_name` of a multi-task run; without one (or with an unknown one) the
    error lists the run's tasks."""
    layout, recipe = request.layout, request.recipe
    tasks = checks.multitask(layout, recipe)
    name = request.task_name
    if name is None or name not in tasks:
        what = "is a multi-task run" if name is None else f"has no task '{name}'"
        raise TuneforgeError(f"{layout.root} {what}; its tasks are {', '.join(tasks)}",
                             fix=f"pass --task-name {next(iter(tasks))} (Python: tuneforge.load(run, task_name=...))")
    checks.transformers_model(layout.model, labelled=False)
    model, tokenizer = task_model(layout.model, name, tasks[name].get("labels"))
    checks.tokenizer_fits(tokenizer, model.config, layout.model)
    spec = next(spec for spec in recipe.tasks if spec.name == name)
    predictor = Predictor(model, tokenizer, task_recipe(recipe, spec), pick_device(request.device),
                          temperature=float(tasks[name].get("temperature", 1.0)))
    return predictor.bind(request)
