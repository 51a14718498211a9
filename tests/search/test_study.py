"""Studies on the tiny model: pruning, outputs, two workers on one SQLite file, resuming after interruptions."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from transformers import TrainerCallback

from tests.conftest import make_rows, tiny_recipe, write_csv
from tuneforge.recipe import load_recipe, recipe_from_dict
from tuneforge.run import RunLayout
from tuneforge.search import run_study
from tuneforge.search.objective import SearchInterrupted
from tuneforge.search.storage import open_storage, storage_url

QUIET = {"evaluation": {"explain_examples": 0}, "calibration": {"temperature_scaling": False},
         "fairness": {"identity_categories": []}}


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    return {"train": write_csv(tmp_path / "train.csv", make_rows(90, seed=2)),
            "validation": write_csv(tmp_path / "val.csv", make_rows(30, seed=3))}


def _recipe(tiny_model: Path, files: dict[str, Path], study: Path, train: dict, search: dict):
    return recipe_from_dict(tiny_recipe(tiny_model, files, study, train={"batch_size": 8, **train},
                                        search=search, **QUIET))


def test_a_four_trial_study_prunes_hopeless_trials_and_writes_its_outputs(tiny_model, files, tmp_path):
    # lr 1e-7 cannot learn in two epochs, lr 1e-2 can: once a good trial has finished, a 1e-7 trial is below the
    # median at its first evaluation and is pruned there.
    recipe = _recipe(tiny_model, files, tmp_path / "study", {"epochs": 2, "group_by_length": False}, {
        "trials": 4, "seed": 0, "pruner": "median", "pruner_startup_trials": 1,
        "space": {"train.learning_rate": {"type": "categorical", "choices": [1e-7, 1e-2]}}})
    seen = []
    result = run_study(recipe, on_trial=seen.append)

    assert sorted(row.number for row in result.trials) == [0, 1, 2, 3] and len(seen) == 4
    pruned = [row for row in result.trials if row.state == "PRUNED"]
    completed = [row for row in result.trials if row.state == "COMPLETE"]
    assert pruned and completed and len(pruned) + len(completed) == 4
    assert all(row.params["train.learning_rate"] == 1e-7 and row.evaluations == 1 for row in pruned)
    assert all(row.evaluations == 2 for row in completed)
    for row in pruned:  # stopped mid-run: no metrics, and no checkpoints left behind
        layout = RunLayout(Path(row.run_dir))
        assert not layout.metrics.is_file() and not layout.checkpoints.exists()
    best = result.best
    assert best is completed[0] and best.params["train.learning_rate"] == 1e-2
    assert RunLayout(Path(best.run_dir)).is_finished()
    assert best.value == pytest.approx(max(row.value for row in completed))

    board = pd.read_csv(result.leaderboard)
    assert list(board["trial"])[0] == best.number and len(board) == 4
    assert set(board["state"]) == {"complete", "pruned"}
    written = yaml.safe_load(result.best_recipe.read_text(encoding="utf-8"))
    assert "search" not in written and written["output"]["dir"] is None
    assert load_recipe(result.best_recipe).train.learning_rate == 1e-2
    assert {p.name for p in result.plots} >= {"optimization_history.png", "parallel_coordinate.png"}
    assert (tmp_path / "study" / "study.db").is_file()

    again = run_study(recipe)  # the budget is spent: nothing runs, the outputs are rewritten
    assert again.ran_now == 0 and len(again.trials) == 4


def test_two_workers_share_one_sqlite_study_without_losing_trials(tiny_model, files, tmp_path):
    recipe = _recipe(tiny_model, files, tmp_path / "study", {"epochs": 1}, {
        "trials": 4, "pruner": "none", "sampler": "random",
        "space": {"train.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}})
    result = run_study(recipe, workers=2)

    assert sorted(row.number for row in result.trials) == [0, 1, 2, 3]
    assert all(row.state == "COMPLETE" for row in result.trials)
    assert {row.worker for row in result.trials} == {0, 1}  # both processes ran trials
    assert len({row.run_dir for row in result.trials}) == 4
    assert all(RunLayout(Path(row.run_dir)).is_finished() for row in result.trials)
    assert len({row.params["train.learning_rate"] for row in result.trials}) == 4  # workers sample apart


class _InterruptOnce(TrainerCallback):
    """Ctrl-C during the second training step of the first trial it sees."""

    def __init__(self) -> None:
        self.fired = False

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if not self.fired and state.global_step == 2:
            self.fired = True
            raise KeyboardInterrupt


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the dead worker is simulated with study.ask()
def test_an_interrupted_study_resumes_and_retries_lost_trials(tiny_model, files, tmp_path):
    recipe = _recipe(tiny_model, files, tmp_path / "study", {"epochs": 1}, {
        "trials": 2, "pruner": "none", "sampler": "random",
        "space": {"train.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}})
    heartbeat = (1, 1)
    with pytest.raises(SearchInterrupted, match="run the same command again"):
        run_study(recipe, callbacks=[_InterruptOnce()], heartbeat=heartbeat)

    # A worker that died without a word: its trial stays "running", with a heartbeat that stops.
    storage = open_storage(storage_url(None, tmp_path / "study"), *heartbeat)
    study = optuna.load_study(study_name="study", storage=storage)
    dead = study.ask()
    dead.suggest_float("train.learning_rate", 1e-3, 1e-2, log=True)
    storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)  # SQLite timestamps have whole seconds: wait past the 1 s grace period whatever the rounding

    result = run_study(recipe, heartbeat=heartbeat)
    rows = {row.number: row for row in result.trials}
    assert rows[0].state == "FAIL" and rows[1].state == "FAIL"
    finished = [row for row in result.trials if row.state == "COMPLETE"]
    assert result.ran_now == 2 and len(finished) == 2
    # each lost trial is run again with its own values
    assert sorted(row.retry_of for row in finished) == [0, 1]
    for row in finished:
        assert row.params == rows[row.retry_of].params
