"""Ensembles of real tiny runs: built from run directories, loaded by tuneforge.load, accepted unchanged by
evaluate, predict and serve; members that disagree on the label set are refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tuneforge
from tests.conftest import make_regression_rows, make_rows, tiny_recipe, write_csv
from tuneforge.cli.main import main
from tuneforge.ensemble.build import build_ensemble
from tuneforge.errors import TuneforgeError

QUICK = {"train": {"epochs": 2}, "evaluation": {"explain_examples": 0},
         "fairness": {"counterfactual": False, "identity_categories": []}}


@pytest.fixture(scope="module")
def members(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("ensemble-members")
    files = {role: write_csv(root / "data" / f"{role}.csv", make_rows(count, seed))
             for role, count, seed in (("train", 48, 2), ("validation", 24, 3), ("test", 24, 4))}
    runs = [tuneforge.fine_tune(tiny_recipe(tiny_model, files, root / f"seed{seed}",
                                            **{**QUICK, "train": {**QUICK["train"], "seed": seed}})).directory
            for seed in (1, 2)]
    binary = {role: write_csv(root / "binary" / f"{role}.csv", make_rows(count, seed, ("negative", "positive")))
              for role, count, seed in (("train", 32, 2), ("validation", 12, 3))}
    other = tuneforge.fine_tune(tiny_recipe(tiny_model, binary, root / "binary-run", **{**QUICK, "train": {
        "epochs": 1}})).directory
    regression = {role: write_csv(root / "reg" / f"{role}.csv", make_regression_rows(count, seed))
                  for role, count, seed in (("train", 32, 2), ("validation", 12, 3))}
    regressors = [tuneforge.fine_tune({**tiny_recipe(tiny_model, regression, root / f"reg{seed}",
                                                     data={"label_column": "score"},
                                                     **{**QUICK, "train": {"epochs": 1, "seed": seed}}),
                                       "task": "regression"}).directory for seed in (1, 2)]
    return {"runs": runs, "files": files, "binary": other, "regressors": regressors, "regression_files": regression,
            "root": root}


@pytest.mark.parametrize("method", ["mean", "vote", "weighted", "stacking"])
def test_ensemble_directory_loads_and_predicts_like_a_run(members, method, tmp_path) -> None:
    files = members["files"]
    output = tmp_path / f"ens-{method}"
    run = build_ensemble(members["runs"], method, output, validation=files["validation"], test=files["test"])
    spec = json.loads((output / "ensemble.json").read_text())
    assert spec["method"] == method and len(spec["members"]) == 2
    assert (output / "recipe.yaml").is_file() and (output / "metrics.json").is_file()
    assert not list(output.rglob("*.pkl")) and not list(output.rglob("*.pickle"))
    assert set(run.metrics["test"]) >= {"accuracy", "f1_macro", "confusion_matrix"}

    predictor = tuneforge.load(output, device="cpu")
    texts = pd.read_csv(files["test"])["text"].tolist()
    members_ = [tuneforge.load(path, device="cpu") for path in members["runs"]]
    outputs = np.stack([m.probabilities(texts) for m in members_])
    probabilities = predictor.probabilities(texts)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-9)
    if method == "mean":  # known answer: the average of the members' calibrated probabilities
        np.testing.assert_allclose(probabilities, outputs.mean(axis=0), atol=1e-9)
        with pytest.raises(TuneforgeError, match="no single model"):
            predictor.model  # noqa: B018 - explain/export get a clear refusal, not an AttributeError
    if method == "weighted":
        weights = np.asarray(spec["weights"])
        assert weights.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(probabilities, np.tensordot(weights, outputs, axes=1), atol=1e-9)
    rows = predictor.predict(texts)
    assert [r["label"] for r in rows] == [predictor.labels[i] for i in probabilities.argmax(axis=1)]
    accuracy = np.mean([r["label"] == t for r, t in zip(rows, pd.read_csv(files["test"])["label"], strict=True)])
    assert accuracy == pytest.approx(run.metrics["test"]["accuracy"])


def test_evaluate_and_predict_accept_an_ensemble(members, tmp_path, capsys) -> None:
    files = members["files"]
    output = tmp_path / "ens"
    assert main(["ensemble", *map(str, members["runs"]), "--method", "mean", "--validation",
                 str(files["validation"]), "--output", str(output), "--device", "cpu"]) == 0
    built = json.loads((output / "metrics.json").read_text())
    assert main(["evaluate", str(output), "--data", str(files["validation"]), "--device", "cpu",
                 "--output", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["accuracy"] == pytest.approx(built["validation"]["accuracy"])
    assert main(["predict", str(output), "--data", str(files["test"]), "--output", str(tmp_path / "p.csv"),
                 "--device", "cpu"]) == 0
    frame = pd.read_csv(tmp_path / "p.csv")
    assert len(frame) == 24 and {"label", "score"} <= set(frame.columns)


def test_serve_accepts_an_ensemble(members, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from tuneforge.lifecycle.serve import create_app

    output = tmp_path / "ens"
    build_ensemble(members["runs"], "vote", output)
    with TestClient(create_app(output)) as client:
        answer = client.post("/predict", json={"texts": ["good great food", "awful rude place"]})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert len(predictions) == 2 and all(p["label"] in ("negative", "neutral", "positive") for p in predictions)
        assert client.get("/health").json()["labels"] == ["negative", "neutral", "positive"]


def test_regression_ensemble_averages_scores(members, tmp_path) -> None:
    output = tmp_path / "reg-ens"
    run = build_ensemble(members["regressors"], "mean", output,
                         validation=members["regression_files"]["validation"])
    assert "rmse" in run.metrics["validation"]
    texts = ["good bad great", "awful rude"]
    scores = [[row["score"] for row in tuneforge.load(path, device="cpu").predict(texts)]
              for path in members["regressors"]]
    combined = [row["score"] for row in tuneforge.load(output, device="cpu").predict(texts)]
    np.testing.assert_allclose(combined, np.mean(scores, axis=0), atol=1e-6)


def test_members_with_other_labels_are_refused_by_name(members, tmp_path) -> None:
    with pytest.raises(TuneforgeError, match="binary-run") as refused:
        build_ensemble([members["runs"][0], members["binary"]], "mean", tmp_path / "bad")
    assert "label" in refused.value.message
    with pytest.raises(TuneforgeError, match="regression"):
        build_ensemble([members["runs"][0], members["regressors"][0]], "mean", tmp_path / "bad2")


def test_fitted_methods_need_validation(members, tmp_path) -> None:
    with pytest.raises(TuneforgeError, match="--validation"):
        build_ensemble(members["runs"], "stacking", tmp_path / "x")
    assert main(["ensemble", *map(str, members["runs"]), "--method", "median", "--output", str(tmp_path / "y")]) == 1
