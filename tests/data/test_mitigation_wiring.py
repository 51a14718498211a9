"""Fairness mitigation in data preparation: weights or swapped copies reach the training split only."""

from __future__ import annotations

import numpy as np
import pytest

import tuneforge
from tests.conftest import tiny_recipe, write_csv
from tuneforge.data.prepare import LABEL_FIELD, WEIGHT_FIELD, prepare_data
from tuneforge.errors import TuneforgeError

# "she" rows are mostly negative and "he" rows mostly positive: group and label are correlated.
ROWS = ([{"text": f"she said it was fine {i}", "label": "neg"} for i in range(6)]
        + [{"text": f"she said it was fine {i}", "label": "pos"} for i in range(6, 8)]
        + [{"text": f"he said it was fine {i}", "label": "pos"} for i in range(10, 16)]
        + [{"text": f"he said it was fine {i}", "label": "neg"} for i in range(16, 18)]
        + [{"text": f"the weather was fine {i}", "label": lab} for i, lab in enumerate(["neg", "pos"] * 3)])


def recipe_with(data_recipe, tmp_path, mitigation: str):
    recipe = data_recipe(train=write_csv(tmp_path / "train.csv", ROWS),
                         validation=write_csv(tmp_path / "val.csv", ROWS[:6]))
    recipe.fairness.mitigation = mitigation
    recipe.fairness.identity_categories = ["gender"]
    return recipe


def test_reweighting_balances_labels_within_each_group(data_recipe, tmp_path):
    data = prepare_data(recipe_with(data_recipe, tmp_path, "reweight"))
    weights = np.asarray(data.train[WEIGHT_FIELD])
    labels = np.asarray(data.train[LABEL_FIELD])
    texts = data.train["text"]
    for word in ("she", "he"):
        rows = np.asarray([t.startswith(word + " ") for t in texts])
        positive_share = weights[rows & (labels == 1)].sum() / weights[rows].sum()
        assert positive_share == pytest.approx(0.5)  # 2/8 or 6/8 before weighting
    assert set(weights[[t.startswith("the ") for t in texts]]) == {1.0}  # no group: weight 1
    assert WEIGHT_FIELD not in data.validation.column_names
    assert data.mitigation["method"] == "reweight" and data.mitigation["groups_from"] == "identity terms"


def test_counterfactual_augmentation_adds_swapped_copies(data_recipe, tmp_path):
    data = prepare_data(recipe_with(data_recipe, tmp_path, "counterfactual_augmentation"))
    texts = data.train["text"]
    assert len(texts) == len(ROWS) + 16  # every gendered row gets its swapped twin (none exists already)
    assert "he said it was fine 0" in texts and "she said it was fine 0" in texts
    twin = texts.index("he said it was fine 0", len(ROWS))
    assert data.train[LABEL_FIELD][twin] == data.train[LABEL_FIELD][texts.index("she said it was fine 0")]
    assert len(data.validation) == 6
    assert data.mitigation == {"method": "counterfactual_augmentation", "added_rows": 16}


def test_augmentation_refuses_text_pairs(data_recipe, tmp_path):
    rows = [{**r, "other": "x"} for r in ROWS]
    recipe = data_recipe(train=write_csv(tmp_path / "train.csv", rows), text_pair_column="other")
    recipe.fairness.mitigation = "counterfactual_augmentation"
    with pytest.raises(TuneforgeError, match="reweight"):
        prepare_data(recipe)


def test_reweighted_training_runs_end_to_end(tiny_model, tmp_path):
    files = {"train": write_csv(tmp_path / "train.csv", ROWS), "validation": write_csv(tmp_path / "val.csv", ROWS)}
    run = tuneforge.fine_tune(tiny_recipe(tiny_model, files, tmp_path / "run", train={"max_steps": 3},
                                          fairness={"mitigation": "reweight", "identity_categories": ["gender"]}))
    assert run.metrics["training"]["global_steps"] == 3
    assert '"method": "reweight"' in run.layout.data_summary.read_text()
