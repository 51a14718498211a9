"""The imbalance report: counts, ratio, rare classes, and advice that leaves out what the recipe already does."""

from __future__ import annotations

from tests.conftest import write_csv
from tuneforge.data.imbalance import imbalance_report, imbalance_warning
from tuneforge.recipe import Recipe


def test_report_names_rare_classes_and_ratio() -> None:
    report = imbalance_report({"a": 500, "b": 480, "c": 12}, Recipe())
    assert report["imbalance_ratio"] == round(500 / 12, 3)
    assert report["rare_classes"] == ["c"] and report["minority"] == "c" and report["majority"] == "a"
    assert report["class_weights_on"]  # auto turns weighting on above ratio 1.5
    advice = " ".join(report["advice"])
    assert "oversample" in advice and "focal" in advice and "more examples" in advice
    assert "imbalance.class_weights" not in advice  # already on
    warning = imbalance_warning(report, "train.csv: column 'label'")
    assert warning.severity == "warning"
    assert "'c' (12 rows, 1.2%)" in warning.message and "ratio 41.667" in warning.message


def test_advice_drops_what_the_recipe_does() -> None:
    recipe = Recipe.model_validate({"imbalance": {"class_weights": "off", "oversample": True},
                                    "loss": {"name": "focal"}})
    report = imbalance_report({"a": 300, "b": 10}, recipe)
    advice = " ".join(report["advice"])
    assert "oversample" not in advice and "focal" not in advice and "class_weights" not in advice
    assert not report["class_weights_on"]


def test_balanced_data_has_no_warning() -> None:
    report = imbalance_report({"a": 50, "b": 45}, Recipe())
    assert report["rare_classes"] == [] and report["advice"] == []
    assert imbalance_warning(report, "x") is None


def test_prepare_reports_imbalance_as_a_data_warning(tmp_path, data_recipe) -> None:
    from tuneforge.data.prepare import prepare_data

    rows = [{"text": f"common text number {i}", "label": "common"} for i in range(120)]
    rows += [{"text": f"rare text number {i}", "label": "rare"} for i in range(6)]
    data = prepare_data(data_recipe(train=write_csv(tmp_path / "train.csv", rows), validation_split=0.0))
    assert data.imbalance["class_counts"] == {"common": 120, "rare": 6}
    assert data.imbalance["rare_classes"] == ["rare"]
    assert any("rare class(es) in training: 'rare' (6 rows" in w.message for w in data.warnings)
