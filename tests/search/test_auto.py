"""`tuneforge auto` on the tiny model: budget, trial 0, one reading of the test split, the ablation table."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import TrainerCallback

from tests.conftest import make_rows, tiny_recipe, write_csv
from tuneforge.cli.auto import parse_budget
from tuneforge.cli.main import main
from tuneforge.errors import TuneforgeError
from tuneforge.recipe import recipe_from_dict
from tuneforge.search.auto import DEFAULT, StrategySpace, ablation_table, run_auto

QUIET = {"calibration": {"temperature_scaling": False}, "fairness": {"identity_categories": []}}


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    return {"train": write_csv(tmp_path / "train.csv", make_rows(90, seed=2)),
            "validation": write_csv(tmp_path / "val.csv", make_rows(36, seed=3)),
            "test": write_csv(tmp_path / "test.csv", make_rows(30, seed=4))}


def _recipe(tiny_model: Path, files: dict[str, Path], folder: Path, **auto: object):
    return recipe_from_dict(tiny_recipe(tiny_model, files, folder, train={"epochs": 3}, **QUIET,
                                        auto={"seeds": 1, "ensemble_size": 3, **auto}))


class _CountTestReads:
    """Wraps every module's reference to the table reader and counts the reads of the test file."""

    MODULES = ("tuneforge.data.loading", "tuneforge.data.prepare", "tuneforge.evaluate.scoring",
               "tuneforge.ensemble.build")

    def __init__(self, monkeypatch: pytest.MonkeyPatch, test_file: Path) -> None:
        import importlib

        from tuneforge.data.loading import read_table

        self.test_file = test_file.resolve()
        self.reads = 0

        def spy(path, *args, **kwargs):  # noqa: ANN001, ANN202
            if Path(str(path)).resolve() == self.test_file:
                self.reads += 1
            return read_table(path, *args, **kwargs)

        for name in self.MODULES:
            monkeypatch.setattr(importlib.import_module(name), "read_table", spy)


def test_auto_runs_the_recipe_first_reads_the_test_once_and_writes_the_ablation(tiny_model, files, tmp_path,
                                                                                 monkeypatch):
    spy = _CountTestReads(monkeypatch, files["test"])
    budget = 40.0
    seen = []
    started = time.monotonic()
    # the quick strategies only (losses), so the small budget holds a few of them even on a busy machine
    result = run_auto(_recipe(tiny_model, files, tmp_path / "auto", strategies=["loss", "hyperparameters"]),
                      budget_s=budget, on_progress=seen.append)
    elapsed = time.monotonic() - started
    summary = result.summary
    trials = summary["trials"]

    # the budget holds, give or take the trial that was running when it ran out (and the final steps)
    longest = max(trial["duration_s"] or 0 for trial in trials)
    assert elapsed <= budget + longest + 15
    assert len([t for t in trials if t["state"] == "COMPLETE"]) >= 2
    # trial 0 is the recipe as it is
    first = trials[0]
    assert first["number"] == 0 and first["arm"] == DEFAULT and first["state"] == "COMPLETE"
    assert first["strategy"] == "the recipe as it is"
    assert first["params"]["loss"] == DEFAULT and first["params"]["train.learning_rate"] == 1e-2
    # only the chosen run read the test split, once, after the choice
    assert spy.reads == 1
    assert summary["test"]["f1_macro"] is not None and "read once" in summary["decision"]
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["test"]["f1_macro"] == summary["test"]["f1_macro"]
    assert (result.run_dir / "predictions_test.csv").is_file()
    # the choice is the best validation score (or an ensemble that beat it)
    best = max((t for t in trials if t["state"] == "COMPLETE"), key=lambda t: t["value"])
    assert summary["chosen"]["validation"] >= best["value"]
    assert summary["chosen"]["kind"] == ("ensemble" if summary["ensemble"] and summary["ensemble"].get("kept")
                                         else "trial")
    # the ablation: the recipe, then each strategy measured against it
    table = {row["strategy"]: row for row in summary["ablation"]}
    assert table[DEFAULT]["effect"] == 0.0
    assert any(name.startswith("loss=") for name in table)
    for name, row in table.items():
        if "=" in name:
            assert row["effect"] == pytest.approx(row["mean"] - table[DEFAULT]["mean"])
    assert json.loads((tmp_path / "auto" / "auto.json").read_text()) == summary
    assert json.loads((result.run_dir / "auto.json").read_text()) == summary
    page = (result.run_dir / "report.html").read_text(encoding="utf-8")
    assert "Ablation on validation" in page and "loss=label_smoothing" in page
    # progress: budget used, trials done, best so far
    assert seen[0].last is None and seen[-1].trials_done >= 2 and seen[-1].best_value is not None
    assert all(later.elapsed_s >= earlier.elapsed_s for earlier, later in zip(seen, seen[1:], strict=False))


class _CtrlCOnTrial(TrainerCallback):
    """Ctrl-C during the first training step of the second trial."""

    def __init__(self) -> None:
        self.trials = 0

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self.trials += 1

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.trials == 2:
            raise KeyboardInterrupt


def test_ctrl_c_keeps_the_best_finished_trial(tiny_model, files, tmp_path):
    result = run_auto(_recipe(tiny_model, files, tmp_path / "auto"), budget_s=300, callbacks=[_CtrlCOnTrial()])
    summary = result.summary
    assert summary["interrupted"] and summary["chosen"] == {**summary["chosen"], "kind": "trial", "trial": 0}
    assert summary["ensemble"] == {"skipped": "interrupted"}
    assert (result.run_dir / "model" / "config.json").is_file() and summary["test"] is not None


def test_the_cli_takes_a_budget_and_prints_the_decision(tiny_model, files, tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    import yaml

    data = tiny_recipe(tiny_model, files, tmp_path / "unused", train={"epochs": 1}, **QUIET,
                       auto={"strategies": ["loss"], "seeds": 1, "ensemble_size": 0})
    del data["output"]
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert main(["auto", str(path), "--budget", "10s", "--output", str(tmp_path / "auto")]) == 0
    out = capsys.readouterr().out
    assert "trial 0 is the recipe as it is" in out and "decision:" in out and "run directory:" in out
    assert (tmp_path / "auto" / "run" / "report.html").is_file()


def test_budgets_parse_and_non_text_runs_are_refused(tmp_path):
    assert parse_budget("45m") == 2700 and parse_budget("1h30m") == 5400 and parse_budget("90s") == 90
    assert parse_budget("2") == 120
    with pytest.raises(TuneforgeError, match="not a duration"):
        parse_budget("soon")
    with pytest.raises(TuneforgeError, match="token-classification run"):
        run_auto(recipe_from_dict({"task": "ner", "data": {"train": str(tmp_path / "x.conll")}}), budget_s=5)


def test_the_space_changes_one_strategy_per_arm_and_offers_contrastive_only_for_small_data():
    recipe = recipe_from_dict({"train": {"learning_rate": 4e-5, "batch_size": 16}})
    small = StrategySpace.build(recipe, smallest_class=12, wordnet=False)
    assert small.strategies["method"] == [DEFAULT, "contrastive"]
    assert "eda" not in small.strategies["augmentation"]
    assert "method" not in StrategySpace.build(recipe, smallest_class=80, wordnet=True).strategies
    names = [name for name, _ in small.arms()]
    assert names[0] == "method=contrastive" and "loss=focal" in names and "augmentation=shuffle" in names
    base = recipe.model_dump(mode="json")
    for name, params in small.arms():
        changed = {key for key, value in params.items() if value != small.default_params().get(key)}
        assert changed <= {name.split("=")[0], "augmentation_ratio"}
        applied = small.apply(base, params, seed=7)
        recipe_from_dict(applied)  # every arm is a valid recipe
        assert applied["train"]["seed"] == 7
    focal = small.apply(base, dict(small.arms())["loss=focal"], seed=1)
    assert focal["loss"]["name"] == "focal"
    shuffled = small.apply(base, dict(small.arms())["augmentation=shuffle"], seed=1)
    assert shuffled["augment"]["methods"] == [{"method": "shuffle", "ratio": 1.0, "words": True}]


def _trial(arm: str | None, seed: int, value: float, state: str = "COMPLETE", number: int = 0) -> SimpleNamespace:
    return SimpleNamespace(user_attrs={"arm": arm, "seed": seed} if arm else {"seed": seed}, value=value,
                           state=SimpleNamespace(name=state), number=number, params={"train.learning_rate": 0.1})


def test_the_ablation_pairs_each_strategy_with_the_recipe_on_the_same_seed():
    trials = [_trial(DEFAULT, 1, 0.70), _trial(DEFAULT, 2, 0.60), _trial("loss=focal", 1, 0.75),
              _trial("loss=focal", 2, 0.61), _trial("loss=focal", 3, 0.99), _trial("augmentation=eda", 1, 0.5,
                                                                                   state="PRUNED"),
              _trial(None, 1, 0.8, number=9)]
    table = {row["strategy"]: row for row in ablation_table(trials, greater=True)}
    assert table[DEFAULT]["mean"] == pytest.approx(0.65) and table[DEFAULT]["spread"] == pytest.approx(0.0707, 1e-3)
    focal = table["loss=focal"]
    assert focal["seeds"] == 2 and focal["effect"] == pytest.approx(0.03)  # seed 3 has no recipe to pair with
    assert focal["spread"] == pytest.approx(0.02828, 1e-3)
    assert "augmentation=eda" not in table  # pruned: no effect to report
    assert table["search (trial 9)"]["effect"] == pytest.approx(0.15)


def test_cross_validation_chooses_among_the_best_trials_and_lets_a_small_split_through(tiny_model, tmp_path):
    files = {"train": write_csv(tmp_path / "train.csv", make_rows(60, seed=2)),
             "validation": write_csv(tmp_path / "val.csv", make_rows(21, seed=3))}  # too few to rank alone
    result = run_auto(_recipe(tiny_model, files, tmp_path / "auto", strategies=["loss"], folds=2, finalists=2,
                              ensemble_size=0), budget_s=50)
    summary = result.summary
    assert "21 rows" in summary["warnings"][0] and "2-fold cross-validation" in summary["warnings"][0]
    folds = summary["cross_validation"]
    assert folds["rows"] == 81 and len(folds["finalists"]) == 2
    assert all(len(entry["scores"]) == 2 for entry in folds["finalists"])
    best = max(folds["finalists"], key=lambda entry: entry["mean"])
    assert folds["chosen"] == best["trial"] == summary["chosen"]["trial"]
    assert summary["decision"].startswith("chosen by 2-fold cross-validation over train + validation (81 rows)")
