"""The run directory: the contract between training, evaluation, prediction and later steps."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tuneforge import artifacts
from tuneforge.errors import TuneforgeError
from tuneforge.kinds import ENSEMBLE, KINDS, RunKind, kind_of
from tuneforge.recipe import Recipe, recipe_from_dict

FAIRNESS_FILE = "fairness.json"
KIND_FILE = "run_kind.json"
EXPLANATIONS_DIR = "explanations"


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def adapter(self) -> Path:
        """A PEFT run's adapter alone (peft layout, plus the tokenizer and the head's labels)."""
        return self.root / "adapter"

    def has_adapter(self) -> bool:
        return (self.adapter / "adapter_config.json").is_file()

    def has_model(self) -> bool:
        """Whether model/ holds a full Transformers model (not so for prompt or prefix tuning: adapter only)."""
        return (self.model / "config.json").is_file()

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def data_summary(self) -> Path:
        return self.root / "data.json"

    @property
    def log(self) -> Path:
        return self.root / "logs.jsonl"

    @property
    def test_predictions(self) -> Path:
        return self.root / "predictions_test.csv"

    @property
    def test_predictions_jsonl(self) -> Path:
        """Token classification: one JSON line per test sentence (words, true and predicted tags, entities)."""
        return self.root / "predictions_test.jsonl"

    @property
    def training_curve(self) -> Path:
        return self.root / "training_curve.png"

    @property
    def confusion_matrix(self) -> Path:
        return self.root / "confusion_matrix.png"

    @property
    def calibration(self) -> Path:
        """`{"temperature": T}` fitted on validation data; absent means no temperature scaling (T = 1)."""
        return self.root / "calibration.json"

    @property
    def thresholds(self) -> Path:
        """Multilabel: `{"labels": [...], "thresholds": [...]}`, one decision threshold per label, tuned on the
        validation split (0.5 each without one)."""
        return self.root / "thresholds.json"

    @property
    def reliability_diagram(self) -> Path:
        return self.root / "reliability_diagram.png"

    @property
    def fairness(self) -> Path:
        """The fairness audit of the test split (or of the last `tuneforge fairness` run)."""
        return self.root / FAIRNESS_FILE

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def explanations(self) -> Path:
        return self.root / EXPLANATIONS_DIR

    @property
    def evaluations(self) -> Path:
        return self.root / "evaluations"

    @property
    def ensemble(self) -> Path:
        """An ensemble run's members by path, method and fitted weights or meta-learner (tuneforge.ensemble)."""
        return self.root / "ensemble.json"

    @property
    def multitask(self) -> Path:
        """A multi-task run's tasks and their heads (model/ then holds the shared encoder; models/multitask.py)."""
        return self.root / "multitask.json"

    def last_checkpoint(self) -> Path | None:
        def step(path: Path) -> int:
            try:
                return int(path.name.rsplit("-", 1)[-1])
            except ValueError:
                return -1
        found = [p for p in self.checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
        return max(found, key=step) if found else None

    def is_finished(self) -> bool:
        return self.metrics.is_file() and (self.has_model() or self.has_adapter() or self.ensemble.is_file())


def read_run_recipe(root: Path) -> Recipe:
    """The resolved recipe a run was trained with; a damaged recipe.yaml is an error naming it, since every later
    step (predict, evaluate, serve, report) reads the run through it."""
    layout = RunLayout(root)
    if not layout.recipe.is_file():
        raise TuneforgeError(f"'{root}' is not a tuneforge run directory (no recipe.yaml)",
                             fix="pass the folder that `tuneforge train` wrote (its --output)")
    restore = "restore recipe.yaml from where the run came from (a copy, the registry), or train the run again"
    try:
        data = yaml.safe_load(layout.recipe.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise TuneforgeError(f"{layout.recipe} cannot be read ({' '.join(str(error).split())})", fix=restore) \
            from None
    if not isinstance(data, dict):
        raise TuneforgeError(f"{layout.recipe} must be a YAML mapping of recipe sections", fix=restore)
    return recipe_from_dict(data, source=str(layout.recipe))


@dataclass
class Run:
    """A finished run: where it is, what it was, how it scored."""

    directory: Path
    recipe: Recipe
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.directory)

    @classmethod
    def open(cls, directory: str | Path) -> Run:
        root = Path(directory)
        layout = RunLayout(root)
        recipe = read_run_recipe(root)
        metrics = json.loads(layout.metrics.read_text(encoding="utf-8")) if layout.metrics.is_file() else {}
        return cls(root, recipe, metrics)

    def predictor(self) -> Any:
        from tuneforge.predict import Predictor

        return Predictor.from_run(self.directory, trust_run_code=True)  # this process trained it from its recipe


# --- the run's kind, decided once at training (kinds.py) ------------------------------------------------

def write_kind(run_dir: str | Path, kind: RunKind) -> None:
    artifacts.write_json(Path(run_dir) / KIND_FILE, {"kind": kind.name, "capabilities": kind.to_json()})


def read_kind(run_dir: str | Path, recipe: Any = None) -> RunKind:
    """The kind a run directory was written as; runs from before the file existed are decided from their
    recipe (or, for an ensemble, its ensemble.json)."""
    root = Path(run_dir)
    path = root / KIND_FILE
    if path.is_file():
        try:
            name = json.loads(path.read_text(encoding="utf-8"))["kind"]
        except (ValueError, KeyError, TypeError) as error:
            raise TuneforgeError(f"{path} is damaged ({error})",
                                 fix="restore it from the run, or delete it: the recipe decides the kind then") \
                from None
        if name not in KINDS:
            raise TuneforgeError(f"{path} names run kind '{name}', which this version of tuneforge does not know",
                                 fix=f"use a tuneforge that knows it; kinds here: {', '.join(KINDS)}")
        return KINDS[name]
    if (root / "ensemble.json").is_file():
        return KINDS[ENSEMBLE]
    if recipe is None:
        recipe = read_run_recipe(root)
    return kind_of(recipe)
