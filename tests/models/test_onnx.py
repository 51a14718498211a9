"""ONNX export: ONNX Runtime reproduces the PyTorch model, and the onnx backend predicts like the torch one."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
import torch

import tuneforge
from tests.conftest import make_rows, tiny_recipe, write_csv
from tuneforge.cli.main import main
from tuneforge.errors import TuneforgeError
from tuneforge.models import onnx as onnx_export

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

QUICK = {"train": {"epochs": 2, "group_by_length": False, "save_checkpoints": False},
         "early_stopping": {"enabled": False}, "evaluation": {"explain_examples": 0},
         "fairness": {"identity_categories": [], "counterfactual": False}}
# Lengths from one word to past max_length (32 tokens), so padding and truncation both occur.
TEXTS = ["good", "the food was bad", "a very friendly place and the service was wonderful today",
         " ".join(["the table by the window was dirty and the street was loud"] * 6), "monday"]


@pytest.fixture(scope="module")
def exported_run(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    files = {"train": write_csv(folder / "train.csv", make_rows(30, seed=61)),
             "validation": write_csv(folder / "val.csv", make_rows(9, seed=62))}
    run_dir = tuneforge.fine_tune(tiny_recipe(tiny_model, files, folder / "run", **QUICK)).directory
    assert main(["export", str(run_dir), "--format", "onnx"]) == 0
    return run_dir


def test_onnx_runtime_logits_agree_with_pytorch(exported_run):
    import onnxruntime
    from transformers import AutoTokenizer

    folder = exported_run / "onnx"
    assert {"model.onnx", "config.json", "export.json", "tokenizer_config.json"} <= {p.name for p in folder.iterdir()}
    meta = json.loads((folder / "export.json").read_text(encoding="utf-8"))
    assert meta["max_abs_logit_difference"] < 1e-4
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    reference = tuneforge.load(exported_run, device="cpu")
    for batch in ([TEXTS[0]], TEXTS[:3], TEXTS):  # several batch sizes and padded lengths: dynamic axes
        encoded = tokenizer(batch, padding=True, truncation=True, max_length=32, return_tensors="np")
        got = session.run(["logits"], {name: encoded[name].astype(np.int64) for name in meta["inputs"]})[0]
        with torch.inference_mode():
            expected = reference.model(**tokenizer(batch, padding=True, truncation=True, max_length=32,
                                                   return_tensors="pt")).logits.numpy()
        assert got.shape == (len(batch), 3)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_onnx_backend_predicts_like_the_torch_backend(exported_run):
    torch_predictor = tuneforge.load(exported_run, device="cpu")
    onnx_predictor = tuneforge.load(exported_run, backend="onnx")
    assert onnx_predictor.labels == torch_predictor.labels == ["negative", "neutral", "positive"]
    assert onnx_predictor.temperature == torch_predictor.temperature
    np.testing.assert_allclose(onnx_predictor.probabilities(TEXTS, batch_size=2),
                               torch_predictor.probabilities(TEXTS), atol=1e-5)
    assert [r["label"] for r in onnx_predictor.predict(TEXTS)] == [r["label"] for r in torch_predictor.predict(TEXTS)]


def test_predict_cli_with_the_onnx_backend(exported_run, tmp_path):
    data = write_csv(tmp_path / "new.csv", [{"text": text} for text in TEXTS])
    for backend in ("torch", "onnx"):
        assert main(["predict", str(exported_run), "--data", str(data), "--output", str(tmp_path / f"{backend}.csv"),
                     "--backend", backend, "--device", "cpu"]) == 0
    torch_rows, onnx_rows = pd.read_csv(tmp_path / "torch.csv"), pd.read_csv(tmp_path / "onnx.csv")
    assert list(onnx_rows["label"]) == list(torch_rows["label"])
    np.testing.assert_allclose(onnx_rows["prob_positive"], torch_rows["prob_positive"], atol=1e-5)


def test_onnx_backend_without_an_export_names_the_command(tiny_model, tmp_path, exported_run, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "recipe.yaml").write_text((exported_run / "recipe.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(TuneforgeError) as caught:
        tuneforge.load(bare, backend="onnx")
    assert "--format onnx" in caught.value.fix
    assert main(["predict", str(bare), "--backend", "onnx", "--data", str(bare / "recipe.yaml")]) == 1
    assert main(["export", str(exported_run), "--format", "tflite"]) == 1
    assert "--format transformers or onnx" in capsys.readouterr().err


def test_missing_onnx_packages_name_the_extra(monkeypatch, exported_run):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name))
    with pytest.raises(TuneforgeError) as caught:
        onnx_export.export_onnx(exported_run)
    assert "onnxruntime" in caught.value.message and "tuneforge[onnx]" in caught.value.fix
    with pytest.raises(TuneforgeError, match="onnxruntime"):
        tuneforge.load(exported_run, backend="onnx")


def test_regression_run_exports_and_scores_like_pytorch(tiny_model, tmp_path):
    from tests.conftest import make_regression_rows

    files = {"train": write_csv(tmp_path / "train.csv", make_regression_rows(24, seed=63))}
    recipe = {**tiny_recipe(tiny_model, files, tmp_path / "run", data={"label_column": "score",
                                                                       "validation_split": 0.25}, **QUICK),
              "task": "regression"}
    run_dir = tuneforge.fine_tune(recipe).directory
    onnx_export.export_onnx(run_dir)
    expected = [row["score"] for row in tuneforge.load(run_dir, device="cpu").predict(TEXTS)]
    got = [row["score"] for row in tuneforge.load(run_dir, backend="onnx").predict(TEXTS)]
    assert got == pytest.approx(expected, abs=1e-5)
