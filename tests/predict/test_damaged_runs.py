"""Every artifact of a run directory is checked on load: a damaged copy of a real tiny run fails
`tuneforge predict`, `tuneforge evaluate` and `Predictor.from_run` with an error naming the damaged file, never
with a library's traceback or a silently wrong answer."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import tuneforge
from tests.conftest import FILLER, WORDS, make_regression_rows, make_rows, tiny_recipe, write_csv
from tests.multimodal_fixtures import multimodal_recipe, write_multimodal_files
from tuneforge.cli.main import main
from tuneforge.errors import TuneforgeError
from tuneforge.kinds import MULTILABEL, MULTIMODAL, MULTITASK, TEXT
from tuneforge.predict import Predictor, RunPredictor

QUICK = {"train": {"epochs": 1, "save_checkpoints": False}, "early_stopping": {"enabled": False},
         "evaluation": {"explain_examples": 0}, "fairness": {"identity_categories": [], "counterfactual": False}}
TASK = "sentiment"  # the task the multi-task run is loaded and scored for
KIND = {"text": TEXT, "multilabel": MULTILABEL, "adapter": TEXT, "multitask": MULTITASK, "multimodal": MULTIMODAL}


@dataclass(frozen=True)
class Trained:
    directory: Path
    data: Path  # a labelled file `evaluate` and `predict` read
    options: tuple[str, ...] = ()  # what the CLI needs besides --data


def multilabel_rows(count: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    signals = {"food": ["tasty", "bland"], "service": ["friendly", "rude"]}
    rows = []
    for index in range(count):
        labels = [["food"], ["service"], ["food", "service"]][index % 3]
        words = rng.sample(FILLER, 3) + [word for label in labels for word in signals[label]] + \
            rng.sample(WORDS["neutral"], 1)
        rows.append({"text": " ".join(words), "label": "|".join(labels)})
    return rows


def _text_files(folder: Path, make: Callable[[int, int], list[dict[str, Any]]]) -> dict[str, Path]:
    return {role: write_csv(folder / f"{role}.csv", make(count, seed))
            for role, count, seed in (("train", 36, 2), ("validation", 15, 3), ("test", 12, 4))}


def _train(name: str, tiny_model: Path, root: Path) -> Trained:
    """One tiny run of each kind a damage needs: text (with domain rules and a temperature), multilabel (with
    thresholds), prompt tuning (an adapter over a base model), multi-task, and multimodal."""
    if name == "text":
        files = _text_files(root / "data", lambda count, seed: make_rows(count, seed))
        recipe = tiny_recipe(tiny_model, files, root / "run", domain={"rules": [
            {"pattern": r"\bgoood\b", "replacement": "good"}]}, **QUICK)
    elif name == "multilabel":
        files = _text_files(root / "data", multilabel_rows)
        recipe = {**tiny_recipe(tiny_model, files, root / "run", **QUICK), "task": "multilabel"}
    elif name == "adapter":
        files = _text_files(root / "data", lambda count, seed: make_rows(count, seed))
        recipe = tiny_recipe(tiny_model, files, root / "run", peft={"method": "prompt_tuning", "num_virtual_tokens": 4},
                             **QUICK)
    elif name == "multitask":
        return _train_multitask(tiny_model, root)
    else:
        files = write_multimodal_files(root / "data", "numeric", media=False, sizes=(32, 12, 12))
        recipe = multimodal_recipe(tiny_model, files, root / "run", {"numeric": ["size"], "categorical": ["colour"],
                                                                    "fusion_hidden": 8}, epochs=1)
        recipe["evaluation"] = {"explain_examples": 0}
    run = tuneforge.fine_tune(recipe, on_warnings=lambda problems: None)
    return Trained(run.directory, files["test"])


def _train_multitask(tiny_model: Path, root: Path) -> Trained:
    sentiment = _text_files(root / "sentiment", lambda count, seed: make_rows(count, seed))
    score = {role: write_csv(root / "score" / f"{role}.csv", make_regression_rows(count, seed))
             for role, count, seed in (("train", 24, 2), ("validation", 9, 3))}
    recipe = {"model": {"name": str(tiny_model)},
              "tasks": [{"name": TASK, "data": {k: str(v) for k, v in sentiment.items()}},
                        {"name": "score", "task": "regression",
                         "data": {**{k: str(v) for k, v in score.items()}, "label_column": "score"}}],
              "train": {"epochs": 1, "batch_size": 8, "max_length": 32, "save_checkpoints": False},
              "output": {"dir": str(root / "run"), "tensorboard": "off"}}
    run = tuneforge.fine_tune(recipe, on_warnings=lambda problems: None)
    return Trained(run.directory, sentiment["test"], ("--task-name", TASK))


@pytest.fixture(scope="module")
def trained(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Trained]:
    """Each kind of run trained once for the module, when a test first needs it."""
    runs: dict[str, Trained] = {}

    def get(name: str) -> Trained:
        if name not in runs:
            runs[name] = _train(name, tiny_model, tmp_path_factory.mktemp(f"damaged-{name}"))
        return runs[name]

    return get


# ------------------------------------------------------------------------------------------------------
# Ways to damage a run
# ------------------------------------------------------------------------------------------------------

def write(relative: str, text: str) -> Callable[[Path], None]:
    return lambda run: (run / relative).write_text(text, encoding="utf-8")


def delete(*relatives: str) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        for relative in relatives:
            (run / relative).unlink()
    return apply


def truncate(relative: str) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        data = (run / relative).read_bytes()
        (run / relative).write_bytes(data[: len(data) // 2])
    return apply


def edit_json(relative: str, change: Callable[[dict], Any]) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        data = json.loads((run / relative).read_text(encoding="utf-8"))
        change(data)
        (run / relative).write_text(json.dumps(data), encoding="utf-8")
    return apply


def edit_recipe(change: Callable[[dict], Any]) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        recipe = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8"))
        change(recipe)
        (run / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return apply


def pickle_weights(run: Path) -> None:
    """The weights as a pickle (`pytorch_model.bin`) where model.safetensors was."""
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(run / "model" / "model.safetensors"), run / "model" / "pytorch_model.bin")
    (run / "model" / "model.safetensors").unlink()


def foreign_tokenizer(run: Path) -> None:
    """The run's tokenizer grown by 500 tokens the model never embedded: another model's tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    tokenizer.add_tokens([f"zzunseen{index}" for index in range(500)])
    tokenizer.save_pretrained(run / "model")


def lose_the_base(run: Path) -> None:
    """The adapter's base model is nowhere: neither where the recipe names it nor where peft recorded it."""
    edit_recipe(lambda recipe: recipe["model"].update(name=str(run / "missing-base")))(run)
    edit_json("adapter/adapter_config.json",
              lambda config: config.update(base_model_name_or_path=str(run / "missing-base")))(run)


@dataclass(frozen=True)
class Damage:
    name: str
    run: str  # which trained run it damages
    apply: Callable[[Path], None]
    named: tuple[str, ...]  # what the error must name (whitespace ignored)


DAMAGES = [
    Damage("weights missing", "text", delete("model/model.safetensors"), ("model.safetensors",)),
    Damage("weights truncated", "text", truncate("model/model.safetensors"), ("model.safetensors",)),
    Damage("weights header garbled", "text", write("model/model.safetensors", "not a tensor file at all"),
           ("model.safetensors",)),
    Damage("pickled weights", "text", pickle_weights, ("pytorch_model.bin", "safetensors")),
    Damage("tokenizer missing", "text", delete("model/tokenizer.json", "model/tokenizer_config.json"),
           ("tokenizer",)),
    Damage("tokenizer vocabulary missing", "text", delete("model/tokenizer.json"), ("tokenizer.json",)),
    Damage("tokenizer config missing", "text", delete("model/tokenizer_config.json"), ("tokenizer_config.json",)),
    Damage("tokenizer garbled", "text", write("model/tokenizer.json", "{not json"), ("tokenizer.json",)),
    Damage("tokenizer of another model", "text", foreign_tokenizer, ("tokenizer",)),
    Damage("config missing", "text", delete("model/config.json"), ("config.json",)),
    Damage("config garbled", "text", write("model/config.json", "{not json"), ("config.json",)),
    Damage("config without labels", "text", edit_json("model/config.json", lambda c: (c.pop("id2label"),
                                                                                       c.pop("label2id"))),
           ("config.json", "id2label")),
    Damage("recipe missing", "text", delete("recipe.yaml"), ("recipe.yaml",)),
    Damage("recipe not YAML", "text", write("recipe.yaml", "task: [classification\n"), ("recipe.yaml",)),
    Damage("recipe not a mapping", "text", write("recipe.yaml", "- classification\n"), ("recipe.yaml",)),
    Damage("recipe invalid", "text", edit_recipe(lambda r: r.update(task="telepathy")), ("recipe.yaml", "task")),
    Damage("calibration garbled", "text", write("calibration.json", "{not json"), ("calibration.json",)),
    Damage("calibration temperature negative", "text", write("calibration.json", '{"temperature": -1}'),
           ("calibration.json",)),
    Damage("domain rules garbled", "text", write("domain_rules.json", "{not json"), ("domain_rules.json",)),
    Damage("run kind garbled", "text", write("run_kind.json", "{not json"), ("run_kind.json",)),
    Damage("run kind unknown", "text", write("run_kind.json", '{"kind": "telepathy"}'), ("run_kind.json",)),
    Damage("run kind contradicts the recipe", "text", write("run_kind.json", '{"kind": "multilabel"}'),
           ("run_kind.json", "recipe.yaml")),
    Damage("run kind ensemble without ensemble.json", "text", write("run_kind.json", '{"kind": "ensemble"}'),
           ("run_kind.json", "ensemble.json")),
    Damage("thresholds garbled", "multilabel", write("thresholds.json", "[1, 2"), ("thresholds.json",)),
    Damage("thresholds for other labels", "multilabel",
           write("thresholds.json", '{"labels": ["drinks", "music"], "thresholds": [0.5, 0.5]}'),
           ("thresholds.json", "drinks")),
    Damage("threshold out of range", "multilabel",
           write("thresholds.json", '{"labels": ["food", "service"], "thresholds": [0.5, 7]}'),
           ("thresholds.json",)),
    Damage("adapter without its base", "adapter", lose_the_base, ("adapter", "missing-base")),
    Damage("adapter weights missing", "adapter", delete("adapter/adapter_model.safetensors"),
           ("adapter_model.safetensors",)),
    Damage("adapter head missing", "adapter", delete("adapter/head.json"), ("head.json",)),
    Damage("multitask.json garbled", "multitask", write("multitask.json", "{not json"), ("multitask.json",)),
    Damage("multitask.json tasks not the recipe's", "multitask",
           edit_json("multitask.json", lambda d: d["tasks"][0].update(name="renamed")), ("multitask.json",)),
    Damage("task heads truncated", "multitask", truncate("model/heads.safetensors"), ("heads.safetensors",)),
    Damage("features.json garbled", "multimodal", write("features.json", "{not json"), ("features.json",)),
    Damage("features.json empty", "multimodal", write("features.json", "{}"), ("features.json",)),
    Damage("features.json missing", "multimodal", delete("features.json"), ("features.json",)),
    Damage("fusion weights truncated", "multimodal", truncate("model/fusion.safetensors"), ("fusion.safetensors",)),
    Damage("text encoder tokenizer missing", "multimodal", delete("model/text/tokenizer.json"), ("tokenizer",)),
]


def flat(text: str) -> str:
    return "".join(text.split())


def damaged_copy(damage: Damage, trained: Callable[[str], Trained], folder: Path) -> tuple[Path, Trained]:
    run = trained(damage.run)
    copy = folder / "run"
    shutil.copytree(run.directory, copy)
    damage.apply(copy)
    return copy, run


@pytest.mark.parametrize("damage", DAMAGES, ids=[damage.name for damage in DAMAGES])
def test_a_damaged_run_is_refused_naming_the_file(damage: Damage, trained: Callable[[str], Trained],
                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy, run = damaged_copy(damage, trained, tmp_path)
    task_name = TASK if damage.run == "multitask" else None
    with pytest.raises(TuneforgeError) as caught:
        Predictor.from_run(copy, "cpu", task_name=task_name)
    said = flat(str(caught.value))
    assert all(flat(name) in said for name in damage.named), said
    capsys.readouterr()
    for verb in ("predict", "evaluate"):
        code = main([verb, str(copy), "--data", str(run.data), "--device", "cpu", *run.options])
        err = capsys.readouterr().err
        assert code != 0, f"{verb} exited 0 on a run with {damage.name}"
        assert "Traceback" not in err and all(flat(name) in flat(err) for name in damage.named), (verb, err)


@pytest.mark.parametrize("name", ["text", "multilabel", "adapter", "multitask", "multimodal"])
def test_the_undamaged_runs_predict_and_evaluate(name: str, trained: Callable[[str], Trained],
                                                 tmp_path: Path) -> None:
    """The control: every run the damages start from is whole, so each failure above is the damage's."""
    run = trained(name)
    predictor = Predictor.from_run(run.directory, "cpu", task_name=TASK if name == "multitask" else None)
    assert isinstance(predictor, RunPredictor) and predictor.kind.name == KIND[name]
    for verb, target in (("predict", "--output"), ("evaluate", "--output")):
        output = tmp_path / f"{verb}.out"
        assert main([verb, str(run.directory), "--data", str(run.data), "--device", "cpu", target, str(output),
                     *run.options]) == 0
        assert output.is_file()
