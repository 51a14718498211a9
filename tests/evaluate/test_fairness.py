"""Group fairness metrics on hand-made arrays, the verdict, and a planted gender shortcut found end to end."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from fairlearn.metrics import equalized_odds_difference

import tuneforge
from tests.conftest import FILLER, WORDS, build_tiny_bert, tiny_recipe, write_csv
from tuneforge.augment.identity import MULTIPLE, infer_groups, load_terms
from tuneforge.cli.main import main
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.counterfactual import counterfactual_probe
from tuneforge.evaluate.fairness import fairness_verdict, group_metrics
from tuneforge.evaluate.fairness_audit import audit, read_audit_data
from tuneforge.recipe import FairnessSpec

LABELS = ["neg", "pos"]
# group a: 4 rows, group b: 4 rows, one row without a group (left out of every figure below).
Y_TRUE = ["pos", "pos", "neg", "neg",   "pos", "neg", "neg", "neg",   "pos"]
Y_PRED = ["pos", "neg", "pos", "pos",   "pos", "neg", "neg", "pos",   "neg"]
GROUPS = ["a", "a", "a", "a",           "b", "b", "b", "b",           None]


def test_group_metrics_match_hand_computed_values():
    result = group_metrics(Y_TRUE, Y_PRED, GROUPS, LABELS)
    # y_true has 4 pos and 5 neg, so the minority class 'pos' is the positive label.
    assert result["positive_label"] == "pos"
    assert (result["examples"], result["examples_with_group"]) == (9, 8)
    a, b = result["groups"]["a"], result["groups"]["b"]
    assert set(result["groups"]) == {"a", "b"}
    # a: predicted pos 3 of 4 -> selection 0.75; negatives 2, both predicted pos -> FPR 2/2; positives 2, one
    #    missed -> FNR 1/2; only row 1 right -> accuracy 1/4.
    #    F1 pos: TP 1, FP 2, FN 1 -> P 1/3, R 1/2 -> 0.4; F1 neg: TP 0 -> 0; macro 0.2.
    assert a == pytest.approx({"count": 4, "accuracy": 0.25, "f1_macro": 0.2, "selection_rate": 0.75,
                               "false_positive_rate": 1.0, "false_negative_rate": 0.5})
    # b: predicted pos 2 of 4 -> 0.5; negatives 3, one predicted pos -> FPR 1/3; the one positive found -> FNR 0;
    #    3 of 4 right -> 0.75. F1 pos: P 1/2, R 1 -> 2/3; F1 neg: P 1, R 2/3 -> 0.8; macro (2/3 + 0.8) / 2.
    assert b == pytest.approx({"count": 4, "accuracy": 0.75, "f1_macro": (2 / 3 + 0.8) / 2, "selection_rate": 0.5,
                               "false_positive_rate": 1 / 3, "false_negative_rate": 0.0})
    # over the 8 grouped rows: 4 right, 5 predicted pos.
    assert result["overall"]["accuracy"] == pytest.approx(0.5)
    assert result["overall"]["selection_rate"] == pytest.approx(5 / 8)
    # DP difference = 0.75 - 0.5; ratio = 0.5 / 0.75.
    assert result["demographic_parity_difference"] == pytest.approx(0.25)
    assert result["demographic_parity_ratio"] == pytest.approx(2 / 3)
    # TPR a 1/2, b 1 -> gap 1/2; FPR a 1, b 1/3 -> gap 2/3; EO difference is the worse gap.
    # EO ratio = min(TPR ratio 1/2, FPR ratio 1/3).
    assert result["equalized_odds_difference"] == pytest.approx(2 / 3)
    assert result["equalized_odds_ratio"] == pytest.approx(1 / 3)
    assert result["gaps"]["accuracy"] == pytest.approx(0.5)
    # Every rate is defined here, so the figure agrees with fairlearn's own function on the grouped rows.
    binary_true = np.asarray([y == "pos" for y in Y_TRUE[:8]], dtype=int)
    binary_pred = np.asarray([y == "pos" for y in Y_PRED[:8]], dtype=int)
    assert result["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(binary_true, binary_pred, sensitive_features=GROUPS[:8]))


def test_integer_labels_and_an_explicit_positive_label():
    as_ids = group_metrics([LABELS.index(y) for y in Y_TRUE], [LABELS.index(y) for y in Y_PRED], GROUPS, LABELS)
    assert as_ids == group_metrics(Y_TRUE, Y_PRED, GROUPS, LABELS)
    flipped = group_metrics(Y_TRUE, Y_PRED, GROUPS, LABELS, positive_label="neg")
    # selection of 'neg' is 1 - selection of 'pos': a 0.25, b 0.5; the difference stays 0.25, the ratio is 0.5.
    assert flipped["groups"]["a"]["selection_rate"] == pytest.approx(0.25)
    assert flipped["demographic_parity_ratio"] == pytest.approx(0.5)
    with pytest.raises(TuneforgeError, match="positive label 'maybe'"):
        group_metrics(Y_TRUE, Y_PRED, GROUPS, LABELS, positive_label="maybe")


def test_undefined_rates_are_none_and_do_not_invent_disparity():
    # group y has no actual positives: its TPR/FNR are undefined, so only FPR is compared (0 vs 1/2).
    result = group_metrics(["pos", "neg", "neg", "neg"], ["pos", "neg", "neg", "pos"], ["x", "x", "y", "y"],
                           LABELS, positive_label="pos")
    assert result["groups"]["y"]["false_negative_rate"] is None
    assert result["groups"]["y"]["false_positive_rate"] == pytest.approx(0.5)
    assert result["equalized_odds_difference"] == pytest.approx(0.5)


def test_multiple_is_shown_but_not_compared_and_one_group_gives_no_disparity():
    result = group_metrics(["pos", "neg", "pos"], ["pos", "pos", "neg"], ["female", MULTIPLE, MULTIPLE], LABELS,
                           exclude_from_disparity=(MULTIPLE,))
    assert set(result["groups"]) == {"female", MULTIPLE}
    assert result["compared_groups"] == ["female"]
    assert result["demographic_parity_difference"] is None
    empty = group_metrics(["pos"], ["pos"], [None], LABELS)
    assert empty["groups"] == {} and empty["overall"] is None


def test_verdict_lists_every_breached_threshold():
    report = {"attributes": {"gender": group_metrics(Y_TRUE, Y_PRED, GROUPS, LABELS)},
              "counterfactual": {"categories": {"gender": {"flip_rate": 0.5}, "religion": {"flip_rate": None}}}}
    spec = FairnessSpec(max_demographic_parity_difference=0.2, max_equalized_odds_difference=0.9,
                        max_counterfactual_flip_rate=0.1)
    breaches = fairness_verdict(report, spec)
    # DP 0.25 > 0.2 and flip rate 0.5 > 0.1 breach; EO 2/3 <= 0.9 does not; a category without pairs cannot.
    assert len(breaches) == 2
    assert "demographic parity difference 0.250 on 'gender' exceeds 0.2" in breaches[0]
    assert "counterfactual flip rate 0.500 on 'gender' exceeds 0.1" in breaches[1]
    assert fairness_verdict(report, FairnessSpec()) == []


# --------------------------------------------------------------------------- a planted gender shortcut, end to end

FEMALE = ["she", "woman", "her", "mother", "girl"]
MALE = ["he", "man", "his", "father", "boy"]


def biased_rows(count: int, seed: int, neutral: int = 0) -> list[dict]:
    """Every female-term row is negative and every male-term row positive; the other words carry no signal."""
    rng = random.Random(seed)
    rows = []
    for index in range(count + neutral):
        words = rng.sample(FILLER, 3) + rng.sample(WORDS["neutral"], 2)
        if index < count:
            female = index % 2 == 0
            words += rng.sample(FEMALE if female else MALE, 2)
            label, gender = ("negative", "f") if female else ("positive", "m")
        else:  # no identity term: no group, a label the text cannot predict
            label, gender = ("negative", "positive")[index % 2], ""
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label, "gender": gender})
    return rows


@pytest.fixture(scope="module")
def biased_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("biased")
    model = build_tiny_bert(folder / "model", [r["text"] for r in biased_rows(200, seed=1, neutral=20)])
    files = {"train": write_csv(folder / "train.csv", biased_rows(80, seed=2)),
             "validation": write_csv(folder / "val.csv", biased_rows(20, seed=3)),
             "test": write_csv(folder / "test.csv", biased_rows(40, seed=4, neutral=10))}
    # One signal word among seven needs more steps than the default tiny run, and early stopping would end
    # it during the flat start of the loss curve.
    run = tuneforge.fine_tune(tiny_recipe(model, files, folder / "run", train={"epochs": 10},
                                          early_stopping={"enabled": False},
                                          calibration={"temperature_scaling": False},
                                          fairness={"identity_categories": ["gender"],
                                                    "max_counterfactual_flip_rate": 0.5}))
    return run, files["test"]


def test_planted_bias_shows_in_group_metrics_and_counterfactuals(biased_run):
    run, test_file = biased_run
    predictor = tuneforge.load(run.directory)
    data = read_audit_data(predictor, test_file, [])
    predicted = [r["label"] for r in predictor.predict(data.texts)]
    groups = infer_groups(data.texts, "gender")
    assert groups.count("female") == groups.count("male") == 20 and groups.count(None) == 10
    # The gender term is the only signal, so a model that learnt it predicts positive for male rows only:
    # selection rates 0 and 1, a parity difference of 1. Allow a few misses.
    result = group_metrics(data.labels, predicted, groups, predictor.labels, positive_label="positive")
    assert result["groups"]["male"]["selection_rate"] >= 0.9
    assert result["groups"]["female"]["selection_rate"] <= 0.1
    assert result["demographic_parity_difference"] >= 0.8
    # Swapping she<->he alone moves the prediction across the boundary.
    probe = counterfactual_probe(predictor, data.texts, load_terms(["gender"]), positive_label="positive")
    gender = probe["categories"]["gender"]
    assert gender["texts_probed"] == gender["pairs"] == 40  # one gender term per text, one swap each
    assert gender["flip_rate"] >= 0.8
    assert gender["worst"][0]["flipped"] and gender["worst"][0]["variant"] != gender["worst"][0]["original"]
    # A sensitive column gives the same groups under its own values.
    by_column = audit(predictor, read_audit_data(predictor, test_file, ["gender"]), FairnessSpec(counterfactual=False))
    assert by_column["attributes"]["gender"]["source"] == "column"
    assert set(by_column["attributes"]["gender"]["groups"]) == {"f", "m"}
    assert by_column["attributes"]["gender"]["demographic_parity_difference"] == pytest.approx(
        result["demographic_parity_difference"])


def test_cli_exits_non_zero_when_a_threshold_is_breached(biased_run, tmp_path):
    run, test_file = biased_run
    strict = main(["fairness", str(run.directory), "--data", str(test_file), "--max-dp-difference", "0.1",
                   "--output", str(tmp_path / "strict")])
    assert strict == 1
    report = json.loads((tmp_path / "strict" / "fairness.json").read_text())
    assert list(report["attributes"]) == ["gender"]  # the recipe's identity_categories
    assert report["passed"] is False
    # Both the flag's threshold and the recipe's flip-rate threshold are named.
    assert any("demographic parity difference" in b and "0.1" in b for b in report["breaches"])
    assert any("counterfactual flip rate" in b for b in report["breaches"])
    assert report["counterfactual"]["categories"]["gender"]["pairs"] == 40

    generous = main(["fairness", str(run.directory), "--data", str(test_file), "--max-dp-difference", "1",
                     "--max-flip-rate", "1"])
    assert generous == 0
    saved = json.loads((run.directory / "fairness.json").read_text())
    assert saved["passed"] is True and saved["thresholds"]["max_counterfactual_flip_rate"] == 1.0


def test_cli_reports_a_missing_sensitive_column(biased_run, tmp_path, capsys):
    run, test_file = biased_run
    code = main(["fairness", str(run.directory), "--data", str(test_file), "--sensitive-column", "gendr",
                 "--output", str(tmp_path)])
    assert code == 1
    assert "sensitive column 'gendr' is missing" in capsys.readouterr().err
    assert not (tmp_path / "fairness.json").exists()


def test_mitigation_removes_the_planted_bias_and_compare_shows_it(biased_run, tmp_path):
    """Counterfactual augmentation gives every text its gender-swapped twin with the same label, so the gender
    terms stop predicting the label; the side-by-side audit shows the parity gap and the flips shrink."""
    run, test_file = biased_run
    recipe = tuneforge.load_recipe(run.directory / "recipe.yaml")
    recipe.fairness.mitigation = "counterfactual_augmentation"
    recipe.output.dir = str(tmp_path / "mitigated")
    mitigated = tuneforge.fine_tune(recipe)
    assert mitigated.metrics["training"]["train_examples"] == 160  # every training row got its swapped twin
    out = tmp_path / "audit"
    assert main(["fairness", str(mitigated.directory), "--data", str(test_file), "--compare", str(run.directory),
                 "--positive-label", "positive", "--output", str(out)]) == 0
    comparison = json.loads((out / "fairness_comparison.json").read_text())
    assert comparison["runs"] == ["mitigated", "run"]
    rows = {(row["figure"], row["scope"]): row for row in comparison["rows"]}
    parity = rows[("demographic_parity_difference", "gender")]
    flips = rows[("counterfactual_flip_rate", "gender")]
    assert parity["run"] >= 0.8 and parity["mitigated"] <= 0.3
    assert flips["run"] >= 0.8 and flips["mitigated"] <= 0.2
    assert set(rows[("accuracy", "all rows")]) == {"figure", "scope", "mitigated", "run"}
