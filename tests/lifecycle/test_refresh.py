"""The maintenance loop: the next training set, a promoted challenger, a kept champion, and clear failures."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from mlflow.entities import ViewType

from tests.conftest import make_rows, tiny_recipe, write_csv
from tuneforge.errors import TuneforgeError
from tuneforge.lifecycle.feedback import FeedbackStore, default_store_url
from tuneforge.lifecycle.refresh import build_training_set, metric_direction, not_worse, refresh
from tuneforge.lifecycle.registry import CHAMPION, Registry
from tuneforge.recipe import Recipe


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture()
def registry(home: Path, make_registry) -> Registry:
    return make_registry(home)


@pytest.fixture()
def store(home: Path) -> FeedbackStore:
    return FeedbackStore.open(default_store_url(home))


def recipe_for(model: Path, root: Path, **refresh: object) -> Recipe:
    files = {"train": write_csv(root / "train.csv", make_rows(150, seed=2)),
             "validation": write_csv(root / "val.csv", make_rows(15, seed=3))}
    gate = write_csv(root / "gate.csv", make_rows(30, seed=7))
    recipe = tiny_recipe(model, files, root / "unused", train={"epochs": 2},
                         evaluation={"explain_examples": 0},
                         fairness={"counterfactual": False, "identity_categories": []},
                         refresh={"gate": str(gate), **refresh})
    return Recipe.model_validate(recipe)


def test_training_set_adds_feedback_replaces_and_holds_out(store: FeedbackStore, tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", [{"text": "good food", "label": "positive"},
                                               {"text": "bad food", "label": "negative"},
                                               {"text": "bad food", "label": "negative"}])
    recipe = Recipe.model_validate({"data": {"train": str(train)}, "refresh": {"feedback_holdout": 0.25}})
    store.add_feedback("m", "negative", text="good food")  # relabels an original row
    store.add_feedback("m", "positive", text="lovely place")
    store.add_feedback("m", "neutral", text="a table")
    store.add_feedback("m", "positive", text="newest one")  # the newest quarter is held out
    built = build_training_set(recipe, store.corrections(model="m"), tmp_path / "next")
    with built.path.open() as handle:
        rows = [(row["text"], row["label"]) for row in csv.DictReader(handle)]
    assert rows == [("bad food", "negative"), ("good food", "negative"), ("lovely place", "positive"),
                    ("a table", "neutral")]
    assert (built.original, built.feedback, built.replaced, built.duplicates, built.rows) == (3, 3, 1, 1, 4)
    assert [c.text for c in built.holdout] == ["newest one"]


def test_metric_direction_and_margin() -> None:
    assert metric_direction(Recipe()) == ("f1_macro", True)
    assert metric_direction(Recipe.model_validate({"refresh": {"metric": "rmse"}})) == ("rmse", False)
    assert not_worse(0.80, 0.79, 0.02, True) and not not_worse(0.80, 0.77, 0.02, True)
    assert not_worse(1.0, 1.01, 0.02, False) and not not_worse(1.0, 1.05, 0.02, False)


def test_refresh_promotes_a_challenger_that_is_not_worse(
        tiny_model: Path, served_runs: dict[str, Path], store: FeedbackStore, registry: Registry, tmp_path: Path
) -> None:
    registry.register(served_runs["classification"], "shop")
    [prediction] = store.log_predictions("shop", "1", ["the food was dirty"], [{"label": "positive", "score": 0.5}])
    store.add_feedback("shop", "negative", prediction_id=prediction)
    for index in range(4):
        store.add_feedback("shop", "positive", text=f"lovely friendly place number {index}")
    recipe = recipe_for(tiny_model, tmp_path, margin=1.0)
    result = refresh(registry, store, "shop", recipe, tmp_path / "challenger", device="cpu")
    assert result.promoted and (result.champion, result.challenger) == (1, 2)
    assert registry.alias_version("shop", CHAMPION) == 2
    challenger = registry.version("shop", 2)
    assert challenger.parent_version == 1
    assert challenger.tags["tuneforge.started_from"] == "version 1"
    assert challenger.tags["tuneforge.refresh_decision"] == "promoted"
    assert result.training_set.feedback == 4 and len(result.training_set.holdout) == 1
    assert result.gate is not None and result.feedback is not None
    # the step is recorded: one refresh run with the counts, scores and decision
    experiment = registry.client.get_experiment_by_name("tuneforge/shop")
    [run] = registry.client.search_runs([experiment.experiment_id], "tags.`tuneforge.kind` = 'refresh'",
                                        run_view_type=ViewType.ALL)
    assert run.info.status == "FINISHED" and run.data.tags["tuneforge.status"] == "promoted"
    assert run.data.metrics["data.feedback"] == 4 and run.data.metrics["feedback.new"] == 5
    assert f"gate.challenger.{result.metric}" in run.data.metrics


@pytest.mark.slow  # two refreshes
def test_refresh_keeps_a_worse_challenger_and_skips_without_feedback(
        tiny_model: Path, served_runs: dict[str, Path], store: FeedbackStore, registry: Registry, tmp_path: Path
) -> None:
    registry.register(served_runs["classification"], "shop")
    recipe = recipe_for(tiny_model, tmp_path, margin=0.0, start_from="base", feedback_holdout=0.0)
    skipped = refresh(registry, store, "shop", recipe, tmp_path / "none", device="cpu")
    assert not skipped.promoted and skipped.challenger is None and "nothing trained" in skipped.reason

    store.add_feedback("shop", "positive", text="lovely friendly place")
    # A challenger that learns nothing (a learning rate of zero from the base model) must not replace the champion.
    recipe.train.learning_rate = 1e-12
    result = refresh(registry, store, "shop", recipe, tmp_path / "challenger", device="cpu")
    assert result.challenger == 2 and not result.promoted
    assert result.gate[1] < result.gate[0] and "worse than v1" in result.reason
    assert registry.alias_version("shop", CHAMPION) == 1
    assert registry.version("shop", 2).tags["tuneforge.refresh_decision"] == "not promoted"


def test_refresh_needs_a_gate(tiny_model: Path, store: FeedbackStore, registry: Registry, tmp_path: Path) -> None:
    recipe = recipe_for(tiny_model, tmp_path)
    recipe.refresh.gate = None
    with pytest.raises(TuneforgeError, match="no refresh.gate") as raised:
        refresh(registry, store, "shop", recipe, tmp_path / "c")
    assert "refresh:" in raised.value.fix
    recipe.refresh.gate = str(tmp_path / "missing.csv")
    with pytest.raises(TuneforgeError, match="missing.csv' does not exist"):
        refresh(registry, store, "shop", recipe, tmp_path / "c")


@pytest.mark.slow  # trains a challenger before the unknown metric is found
def test_a_failed_refresh_is_recorded(tiny_model: Path, served_runs: dict[str, Path], store: FeedbackStore,
                                      registry: Registry, tmp_path: Path) -> None:
    registry.register(served_runs["classification"], "shop")
    store.add_feedback("shop", "positive", text="lovely friendly place")
    recipe = recipe_for(tiny_model, tmp_path, metric="no_such_metric", start_from="base")
    with pytest.raises(TuneforgeError, match="metric 'no_such_metric'"):
        refresh(registry, store, "shop", recipe, tmp_path / "c2", device="cpu")
    experiment = registry.client.get_experiment_by_name("tuneforge/shop")
    [run] = registry.client.search_runs([experiment.experiment_id], "tags.`tuneforge.kind` = 'refresh'",
                                        run_view_type=ViewType.ALL)
    assert run.info.status == "FAILED" and "no_such_metric" in run.data.tags["tuneforge.error"]
