"""The steps after training: fairness audit, example explanations and report.html, none able to lose the run."""

from __future__ import annotations

import json

import tuneforge
from tests.conftest import make_rows, tiny_recipe, write_csv
from tuneforge.train import finishing


def files(tmp_path, test_rows: list[dict] | None = None) -> dict:
    rows = make_rows(40, seed=2)
    test = test_rows if test_rows is not None else [
        {**row, "text": f"{'she' if i % 2 else 'he'} said {row['text']}"} for i, row in enumerate(make_rows(12, 4))]
    return {"train": write_csv(tmp_path / "train.csv", rows),
            "validation": write_csv(tmp_path / "val.csv", make_rows(12, seed=3)),
            "test": write_csv(tmp_path / "test.csv", test)}


def test_a_finished_run_has_its_audit_explanations_and_report(tiny_model, tmp_path):
    recipe = tiny_recipe(tiny_model, files(tmp_path), tmp_path / "run", train={"epochs": 1},
                         fairness={"identity_categories": ["gender"]},
                         evaluation={"explain_examples": 2, "explain_methods": ["all"]})
    run = tuneforge.fine_tune(recipe)
    audit = json.loads((run.directory / "fairness.json").read_text())
    assert audit["examples"] == 12 and set(audit["attributes"]["gender"]["groups"]) == {"female", "male"}
    assert audit["counterfactual"]["categories"]["gender"]["pairs"] == 12
    explained = json.loads((run.directory / "explanations" / "explanations.json").read_text())
    assert [entry["text"] for entry in explained["texts"]] == ["he said " + make_rows(12, 4)[0]["text"],
                                                              "she said " + make_rows(12, 4)[1]["text"]]
    assert explained["methods"] == ["ig", "shap", "lime", "attention"]
    page = (run.directory / "report.html").read_text(encoding="utf-8")
    assert "Counterfactual probe" in page and "Integrated Gradients" in page
    assert (run.directory / "model_card.md").is_file()


def test_extras_switched_off_leave_only_the_report(tiny_model, tmp_path):
    recipe = tiny_recipe(tiny_model, files(tmp_path), tmp_path / "run", train={"epochs": 1},
                         fairness={"identity_categories": []}, evaluation={"explain_examples": 0})
    run = tuneforge.fine_tune(recipe)
    assert not (run.directory / "fairness.json").exists() and not (run.directory / "explanations").exists()
    assert (run.directory / "report.html").is_file()


def test_a_failing_step_is_a_warning_and_the_rest_still_run(tiny_model, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("attribution exploded")

    monkeypatch.setattr(finishing, "explain_test_examples", broken)
    warnings: list = []
    recipe = tiny_recipe(tiny_model, files(tmp_path), tmp_path / "run", train={"epochs": 1},
                         fairness={"identity_categories": ["gender"]})
    run = tuneforge.fine_tune(recipe, on_warnings=warnings.extend)
    [problem] = [p for p in warnings if "after training" in p.message]
    assert "example explanations" in problem.message and "attribution exploded" in problem.message
    assert problem.severity == "warning" and f"tuneforge explain {run.directory}" in problem.fix
    assert (run.directory / "fairness.json").is_file() and (run.directory / "report.html").is_file()
    assert run.metrics["test"]["accuracy"] is not None  # the trained model and its metrics are intact
