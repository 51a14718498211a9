"""Multimodal runs end to end on tiny encoders and generated data: each feature type and each combiner trains,
its run directory round-trips through load/predict/evaluate/explain/serve, and the modality that carries the
label is the one ablation finds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import tuneforge
from tests.multimodal_fixtures import build_tiny_ast, build_tiny_vit, multimodal_recipe, write_multimodal_files
from tuneforge.errors import DataError

# (the modality that carries the label, the combiner, the feature columns) — together every feature type and
# every combiner; the other columns are noise the model has to learn to ignore.
CASES = [
    ("numeric", "concat", {"numeric": ["size"], "categorical": ["colour"]}),
    ("categorical", "gated", {"numeric": ["size"], "categorical": ["colour"]}),
    ("image", "attention", {"numeric": ["size"], "image": ["photo"]}),
    ("audio", "late", {"categorical": ["colour"], "audio": ["clip"]}),
]


@pytest.fixture(scope="module")
def encoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("mm-encoders")
    return {"image_encoder": str(build_tiny_vit(root / "vit")), "audio_encoder": str(build_tiny_ast(root / "ast"))}


def _features(columns: dict, combiner: str, encoders: dict[str, str]) -> dict:
    features = {**columns, "combiner": combiner, "fusion_hidden": 16}
    for kind in ("image", "audio"):
        if kind in columns:
            features[f"{kind}_encoder"] = encoders[f"{kind}_encoder"]
    return features


def _train(tiny_model: Path, root: Path, signal: str, combiner: str, columns: dict, encoders: dict[str, str],
           task: str = "classification") -> tuple[tuneforge.run.Run, dict[str, Path]]:
    media = "image" in columns or "audio" in columns
    files = write_multimodal_files(root / "data", signal, media=media, regression=task == "regression")
    recipe = multimodal_recipe(tiny_model, files, root / "run", _features(columns, combiner, encoders), task=task)
    if combiner == "gated":  # a frozen text encoder: its vectors are computed once, before training
        recipe["freeze"] = {"all_but_head": True}
    return tuneforge.fine_tune(recipe, on_warnings=lambda problems: None), files


@pytest.mark.parametrize(("signal", "combiner", "columns"), CASES, ids=[f"{s}-{c}" for s, c, _ in CASES])
def test_each_feature_type_and_combiner_trains_and_round_trips(tiny_model: Path, tmp_path: Path, signal: str,
                                                               combiner: str, columns: dict,
                                                               encoders: dict[str, str]) -> None:
    run, files = _train(tiny_model, tmp_path, signal, combiner, columns, encoders)
    assert run.metrics["test"]["accuracy"] >= 0.9, run.metrics["test"]
    assert run.metrics["multimodal"]["combiner"] == combiner
    layout = run.layout
    assert (layout.root / "features.json").is_file() and (layout.model / "fusion.safetensors").is_file()
    assert layout.is_finished() and layout.report.is_file()
    trainable = run.metrics["training"]["trainable_parameters"]
    assert (trainable < 20_000) == (combiner == "gated"), trainable  # the tiny BERT alone has about 30k

    # The saved run alone predicts what training wrote for the test split, from rows read like a user's.
    predictor = tuneforge.load(run.directory, device="cpu")
    frame = pd.read_csv(files["test"])
    predicted = predictor.predict(frame.to_dict("records"), base_dir=files["test"].parent)
    written = pd.read_csv(layout.test_predictions)
    assert [p["label"] for p in predicted] == written["label"].tolist()

    # Ablation puts the label-carrying modality first.
    summary = json.loads((layout.explanations / "modalities.json").read_text())["summary"]
    strongest = max(summary, key=lambda name: summary[name]["share"])
    assert strongest.split(":")[0] == signal, summary


def test_regression_head_learns_the_numeric_target(tiny_model: Path, tmp_path: Path,
                                                   encoders: dict[str, str]) -> None:
    run, files = _train(tiny_model, tmp_path, "numeric", "attention", {"numeric": ["size"]}, encoders,
                        task="regression")
    assert run.metrics["test"]["rmse"] < 1.5  # targets are +3 / -3: a constant would score 3
    predictor = tuneforge.load(run.directory, device="cpu")
    rows = pd.read_csv(files["test"]).head(4)
    scores = [p["score"] for p in predictor.predict(rows.to_dict("records"))]
    assert [s > 0 for s in scores] == (rows["label"] > 0).tolist()


@pytest.fixture(scope="module")
def tabular_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory,
                encoders: dict[str, str]) -> Iterator[tuple[Path, dict[str, Path]]]:
    root = tmp_path_factory.mktemp("mm-tabular")
    run, files = _train(tiny_model, root, "categorical", "concat", {"numeric": ["size"], "categorical": ["colour"]},
                        encoders)
    yield run.directory, files


def test_cli_predict_evaluate_and_explain_read_the_columns(tabular_run: tuple[Path, dict[str, Path]],
                                                           tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tuneforge.cli.main import main

    run_dir, files = tabular_run
    output = tmp_path / "predictions.csv"
    assert main(["predict", str(run_dir), "--data", str(files["test"]), "--output", str(output), "--device",
                 "cpu"]) == 0
    predictions = pd.read_csv(output)
    truth = pd.read_csv(files["test"])["label"]
    assert (predictions["label"] == truth).mean() >= 0.9 and {"prob_high", "prob_low"} <= set(predictions.columns)

    assert main(["evaluate", str(run_dir), "--data", str(files["test"]), "--device", "cpu"]) == 0
    evaluation = json.loads((run_dir / "evaluations" / "test.json").read_text())
    assert evaluation["accuracy"] >= 0.9 and evaluation["examples"] == len(truth)

    assert main(["explain", str(run_dir), "--data", str(files["test"]), "--limit", "6", "--output",
                 str(tmp_path / "why"), "--device", "cpu"]) == 0
    report = json.loads((tmp_path / "why" / "modalities.json").read_text())
    assert len(report["rows"]) == 6 and set(report["summary"]) == {"text", "numeric", "categorical"}
    assert "Modality contributions" in capsys.readouterr().out

    assert main(["predict", str(run_dir)]) == 1  # rows come from --data, not lines of standard input
    assert "pass --data FILE with the columns text, size, colour" in capsys.readouterr().err
    broken = tmp_path / "broken.csv"
    pd.read_csv(files["test"]).drop(columns=["colour"]).to_csv(broken, index=False)
    assert main(["predict", str(run_dir), "--data", str(broken)]) == 1
    assert "feature column 'colour' is missing" in capsys.readouterr().err


def test_serve_takes_rows_and_explains_modalities(tabular_run: tuple[Path, dict[str, Path]]) -> None:
    from fastapi.testclient import TestClient

    from tuneforge.lifecycle.serve import create_app

    run_dir, files = tabular_run
    rows = pd.read_csv(files["test"]).head(3)
    records = json.loads(rows.to_json(orient="records"))
    with TestClient(create_app(run_dir)) as client:
        response = client.post("/predict", json={"rows": records})
        assert response.status_code == 200, response.text
        expected = tuneforge.load(run_dir, device="cpu").predict(records)
        assert [p["label"] for p in response.json()["predictions"]] == [p["label"] for p in expected]
        explained = client.post("/explain", json={"rows": records[:1]}).json()["explanations"]
        assert set(explained[0]["contributions"]) == {"text", "numeric", "categorical"}
        missing = client.post("/predict", json={"rows": [{"text": "a", "size": 1}]})
        assert missing.status_code == 422 and "colour" in missing.json()["error"]


def test_missing_image_file_in_training_data_names_the_row(tiny_model: Path, tmp_path: Path,
                                                           encoders: dict[str, str]) -> None:
    files = write_multimodal_files(tmp_path / "data", "image", sizes=(8, 4, 4))
    (files["train"].parent / "img_1_5.png").unlink()
    recipe = multimodal_recipe(tiny_model, files, tmp_path / "run",
                               _features({"image": ["photo"]}, "concat", encoders))
    with pytest.raises(DataError, match=r"1 image file\(s\) not found \(row 6 \(line 7\): img_1_5.png\)"):
        tuneforge.fine_tune(recipe)


def test_validate_checks_feature_columns_and_media_files(tiny_model: Path, tmp_path: Path,
                                                         encoders: dict[str, str],
                                                         capsys: pytest.CaptureFixture) -> None:
    import yaml

    from tuneforge.cli.main import main

    files = write_multimodal_files(tmp_path / "data", "image", sizes=(8, 4, 4))
    recipe = multimodal_recipe(tiny_model, files, tmp_path / "run",
                               _features({"numeric": ["size"], "image": ["photo"]}, "concat", encoders))
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["validate", str(path)]) == 0
    assert "recipe is valid" in capsys.readouterr().out
    (files["test"].parent / "img_3_2.png").unlink()
    frame = pd.read_csv(files["train"])
    frame["size"] = frame["size"].astype(object)
    frame.loc[4, "size"] = "big"
    frame.to_csv(files["train"], index=False)
    assert main(["validate", str(path)]) == 1
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert "2 error(s)" in shown and "column 'size'" in shown and "row 5 (line 6)" in shown
    assert "column 'photo'" in shown and "row 3 (line 4): img_3_2.png" in shown


def test_a_lone_training_file_is_split_stratified_and_keeps_its_row_numbers(tmp_path: Path) -> None:
    from tuneforge.data.multimodal import prepare_multimodal_data
    from tuneforge.recipe import recipe_from_dict

    files = write_multimodal_files(tmp_path / "data", "numeric", media=False, sizes=(40, 2, 2))
    recipe = recipe_from_dict({"data": {"train": str(files["train"]), "validation_split": 0.2, "test_split": 0.2},
                               "features": {"numeric": ["size"]}})
    data = prepare_multimodal_data(recipe)
    sizes = [len(split.frame) for _, split in data.splits()]
    assert sizes == [24, 8, 8] and data.labels == ["high", "low"]
    for _, split in data.splits():
        assert split.frame["label"].value_counts().tolist() == [len(split.frame) // 2] * 2
    rows = sorted(i for _, split in data.splits() for i in split.frame.index)
    assert rows == list(range(40))  # every row once, named by its place in the file
