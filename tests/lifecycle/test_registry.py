"""The MLflow-backed registry on a local SQLite store: register, aliases, promote, rollback, diff, loading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tuneforge.errors import TuneforgeError
from tuneforge.lifecycle.registry import CHALLENGER, CHAMPION, Registry, flatten, numeric_metrics, parse_model_ref


def variant(run: Path, folder: Path, learning_rate: float, accuracy: float) -> Path:
    """A copy of a trained run whose recipe and metrics differ, as a later training run's would."""
    shutil.copytree(run, folder, ignore=shutil.ignore_patterns("checkpoints"))
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    recipe["train"]["learning_rate"] = learning_rate
    recipe["output"]["dir"] = str(folder)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["test"]["accuracy"] = accuracy
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, registry_template: Path) -> Registry:
    home = tmp_path_factory.mktemp("tuneforge-home")
    shutil.copyfile(registry_template, home / registry_template.name)
    return Registry.local(home)


@pytest.fixture(scope="module")
def versions(registry: Registry, served_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
             ) -> list[int]:
    run = served_runs["classification"]
    folder = tmp_path_factory.mktemp("variants")
    first = registry.register(run, "sentiment")
    second = registry.register(variant(run, folder / "b", 0.5, 0.25), "sentiment", parent_version=first.version)
    return [first.version, second.version]


def test_first_version_is_champion_later_ones_challengers(registry: Registry, versions: list[int],
                                                           served_runs: dict[str, Path]) -> None:
    assert versions == [1, 2]
    first, second = registry.version("sentiment", 1), registry.version("sentiment", "v2")
    assert first.aliases == (CHAMPION,) and second.aliases == (CHALLENGER,)
    assert registry.version("sentiment", CHAMPION).version == 1
    assert second.parent_version == 1 and first.parent_version is None
    recipe = yaml.safe_load((served_runs["classification"] / "recipe.yaml").read_text())
    assert first.base_model == recipe["model"]["name"]
    assert len(first.tags["tuneforge.data_fingerprint"]) == 64
    assert first.params["train.batch_size"] == "8"
    assert first.metrics["test.accuracy"] == json.loads(
        (served_runs["classification"] / "metrics.json").read_text())["test"]["accuracy"]
    [summary] = registry.models()
    assert (summary.name, summary.latest_version, summary.aliases) == ("sentiment", 2, {CHAMPION: 1, CHALLENGER: 2})


def test_versions_load_offline_from_their_artifacts(registry: Registry, versions: list[int]) -> None:
    info, folder = registry.run_dir("sentiment", CHALLENGER)
    assert info.version == 2
    assert (folder / "model" / "model.safetensors").is_file() and not (folder / "checkpoints").exists()
    assert yaml.safe_load((folder / "recipe.yaml").read_text())["train"]["learning_rate"] == 0.5
    import tuneforge

    assert tuneforge.load(folder).predict(["good food"])[0]["label"]


def test_diff_names_recipe_and_metric_changes(registry: Registry, versions: list[int]) -> None:
    diff = registry.diff("sentiment", 1, 2)
    recipe = {key: (a, b) for key, a, b in diff.recipe}
    assert recipe["train.learning_rate"] == ("0.01", "0.5")
    assert "output.dir" in recipe and "train.batch_size" not in recipe
    metrics = {key: (a, b) for key, a, b in diff.metrics}
    assert metrics["test.accuracy"][1] == 0.25


def test_promote_then_rollback(registry: Registry, versions: list[int]) -> None:
    promoted = registry.promote("sentiment", 2)
    assert promoted.aliases == (CHAMPION,)  # the challenger alias moves off a promoted version
    assert registry.alias_version("sentiment", CHAMPION) == 2
    assert registry.rollback("sentiment").version == 1
    assert registry.alias_version("sentiment", CHAMPION) == 1
    with pytest.raises(TuneforgeError, match="no earlier champion"):
        registry.rollback("sentiment")


def test_unknown_names_and_refs_are_clear(registry: Registry, versions: list[int]) -> None:
    with pytest.raises(TuneforgeError, match="no model named 'nope'") as raised:
        registry.version("nope", CHAMPION)
    assert "sentiment" in raised.value.fix
    with pytest.raises(TuneforgeError, match="no version or alias 'gold'") as raised:
        registry.version("sentiment", "gold")
    assert "champion (v" in raised.value.fix
    with pytest.raises(TuneforgeError, match="cannot name a model"):
        registry.register(Path("."), "bad@name")


def test_an_unfinished_run_is_refused_before_anything_is_registered(registry: Registry, versions: list[int],
                                                                    served_runs: dict[str, Path],
                                                                    tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_bytes((served_runs["classification"] / "recipe.yaml").read_bytes())
    with pytest.raises(TuneforgeError, match="has not finished training"):
        registry.register(tmp_path, "never")
    assert [model.name for model in registry.models()] == ["sentiment"]


def test_model_references_and_flattening() -> None:
    assert parse_model_ref("sentiment") == ("sentiment", CHAMPION)
    assert parse_model_ref("sentiment@3") == ("sentiment", "3")
    assert parse_model_ref("sentiment@challenger") == ("sentiment", CHALLENGER)
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": 1, "a.c": [1, 2], "d": None}
    assert numeric_metrics({"test": {"f1": 0.5, "ok": True, "rows": [1], "per class": {"a/b": 2}}}) == \
        {"test.f1": 0.5, "test.per class.a/b": 2.0}
