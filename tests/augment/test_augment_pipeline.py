"""The augment step: ratios, seeds, de-duplication, the cache, the recipe section and the training split."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

import tuneforge
from tests.conftest import tiny_recipe, write_csv
from tuneforge.augment import pipeline
from tuneforge.augment.base import normalise
from tuneforge.augment.pipeline import augment_texts, variant_counts
from tuneforge.data.prepare import LABEL_FIELD, prepare_data
from tuneforge.errors import RecipeError, TuneforgeError
from tuneforge.recipe import AugmentSpec, Recipe, recipe_from_dict

REVIEWS = ["The food was great. The staff were friendly.", "The room was dirty. The staff were rude.",
           "Lovely view. Quiet nights. Good breakfast.", "Cold soup. Slow service.",
           "We loved it. We will come back!", "Never again. It was awful."]


def spec(*methods: dict, seed: int = 0) -> AugmentSpec:
    return AugmentSpec.model_validate({"methods": list(methods), "seed": seed})


@pytest.mark.parametrize("ratio", [0.5, 1.0, 1.5, 3.0])
def test_ratio_sets_the_number_of_variants_wanted(ratio):
    counts = variant_counts(10, ratio, random.Random(0))
    assert sum(counts) == round(ratio * 10)
    assert set(counts) <= {int(ratio), int(ratio) + 1}


def test_same_seed_same_rows_other_seed_other_rows(tmp_path):
    shuffle = {"method": "shuffle", "ratio": 2}
    first = augment_texts(REVIEWS, spec(shuffle, seed=1), tmp_path / "a")
    again = augment_texts(REVIEWS, spec(shuffle, seed=1), tmp_path / "b")  # another cache: computed anew
    other = augment_texts(REVIEWS, spec(shuffle, seed=2), tmp_path / "c")
    assert first.texts == again.texts and first.origins == again.origins
    assert first.texts != other.texts


def test_duplicates_of_originals_and_of_each_other_are_dropped(tmp_path):
    # Swapping the two sentences of the first text gives the second text: that variant must go.
    texts = ["It was good. We ate.", "We ate. It was good.", "Rain today. Sun tomorrow."]
    added = augment_texts(texts, spec({"method": "shuffle", "ratio": 1}), tmp_path)
    keys = [normalise(text) for text in added.texts]
    assert len(keys) == len(set(keys))
    assert not set(keys) & {normalise(text) for text in texts}
    assert added.texts == ["Sun tomorrow. Rain today."] and added.summary() == {"shuffle": 1}


def test_variants_equal_to_held_out_texts_are_dropped(tmp_path):
    texts = ["It was good. We ate.", "Rain today. Sun tomorrow."]
    added = augment_texts(texts, spec({"method": "shuffle"}), tmp_path, held_out=["we ate. it was good."])
    assert added.texts == ["Sun tomorrow. Rain today."]


def test_second_run_reads_the_cache(tmp_path, monkeypatch):
    settings = spec({"method": "shuffle", "ratio": 1})
    first = augment_texts(REVIEWS, settings, tmp_path)
    assert len(list((tmp_path / "tuneforge-augment").glob("*.json"))) == 1

    def fail(_spec):
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setitem(pipeline.REGISTRY, "shuffle", fail)
    assert augment_texts(REVIEWS, settings, tmp_path).texts == first.texts
    with pytest.raises(AssertionError):  # other settings are another cache entry
        augment_texts(REVIEWS, spec({"method": "shuffle", "ratio": 2}), tmp_path)


def test_adding_a_method_leaves_the_others_variants_alone(tmp_path, wordnet):
    alone = augment_texts(REVIEWS, spec({"method": "shuffle"}), tmp_path)
    both = augment_texts(REVIEWS, spec({"method": "synonym"}, {"method": "shuffle"}), tmp_path)
    shuffled = [t for t, m in zip(both.texts, both.methods, strict=True) if m == "shuffle"]
    assert set(shuffled) <= set(alone.texts) and len(shuffled) >= len(alone.texts) - 1


# --- the recipe section ---------------------------------------------------------------------------------

def test_default_recipe_does_not_augment():
    assert Recipe().augment.methods == [] and not Recipe().augment.enabled


@pytest.mark.parametrize(("methods", "expected"), [
    ([{"method": "shuffle", "fraction": 0.5}], "fraction is an option of synonym and contextual, not of shuffle"),
    ([{"method": "synonym"}, {"method": "synonym"}], "synonym is listed more than once"),
    ([{"method": "back_translation", "pivots": ["spa"], "models": {"cat": ["a", "b"]}}], "models.cat"),
    ([{"method": "synonym", "ratio": 0}], "greater than 0"),
    ([{"method": "paraphrase"}], "use one of"),
])
def test_recipe_errors_name_the_field_and_the_fix(methods, expected):
    with pytest.raises(RecipeError) as error:
        recipe_from_dict({"augment": {"methods": methods}})
    assert "augment.methods" in str(error.value) and expected in str(error.value)


def test_methods_can_be_set_from_the_command_line():
    recipe = recipe_from_dict({}, ["augment.methods=[{method: eda, ratio: 0.5}]", "augment.seed=4"])
    assert recipe.augment.methods[0].method == "eda" and recipe.augment.methods[0].ratio == 0.5
    assert recipe.augment.seed == 4


# --- data preparation ------------------------------------------------------------------------------------

ROWS = [{"text": text, "label": "pos" if i % 2 == 0 else "neg", "source": f"s{i}"}
        for i, text in enumerate(REVIEWS)] + [
    {"text": f"Row {i} is here. It has two sentences.", "label": ("pos", "neg")[i % 2], "source": f"r{i}"}
    for i in range(14)]


def augmented_recipe(data_recipe, tmp_path, **augment):
    recipe = data_recipe(train=write_csv(tmp_path / "train.csv", ROWS), validation_split=0.25, test_split=0.15)
    recipe.augment = AugmentSpec.model_validate({"methods": [{"method": "shuffle", "ratio": 1}], **augment})
    return recipe


def test_only_the_training_split_grows_and_labels_follow_their_original(data_recipe, tmp_path):
    recipe = augmented_recipe(data_recipe, tmp_path)
    plain_recipe = recipe.model_copy(deep=True)
    plain_recipe.augment = AugmentSpec()
    plain, augmented = prepare_data(plain_recipe), prepare_data(recipe)

    assert augmented.validation["text"] == plain.validation["text"]
    assert augmented.test["text"] == plain.test["text"]
    originals = len(plain.train)
    assert augmented.train["text"][:originals] == plain.train["text"]
    added = len(augmented.train) - originals
    assert added == originals and augmented.augmentation == {"shuffle": added}
    assert plain.augmentation is None
    by_source = {row["source"]: row for row in plain.train}
    for row in augmented.train.select(range(originals, len(augmented.train))):
        original = by_source[row["source"]]  # other columns are copied from the original row
        assert row[LABEL_FIELD] == original[LABEL_FIELD] and row["label"] == original["label"]
        assert row["text"] != original["text"]
        assert Counter(row["text"].replace(".", "").split()) == Counter(original["text"].replace(".", "").split())


def test_text_pairs_are_refused(data_recipe, tmp_path):
    rows = [{**row, "other": "x"} for row in ROWS]
    recipe = data_recipe(train=write_csv(tmp_path / "train.csv", rows), text_pair_column="other")
    recipe.augment = AugmentSpec.model_validate({"methods": [{"method": "shuffle"}]})
    with pytest.raises(TuneforgeError, match="text pairs"):
        prepare_data(recipe)


def test_run_data_summary_records_the_rows_added(tiny_model, tmp_path):
    held_out = [{"text": f"Held out {i}.", "label": ("pos", "neg")[i % 2], "source": "v"} for i in range(4)]
    files = {"train": write_csv(tmp_path / "train.csv", ROWS), "validation": write_csv(tmp_path / "val.csv", held_out)}
    recipe = tiny_recipe(tiny_model, files, tmp_path / "run", train={"max_steps": 1},
                         augment={"methods": [{"method": "shuffle", "ratio": 0.5}]},
                         data={"cache_dir": str(tmp_path / "cache")})
    run = tuneforge.fine_tune(recipe)
    summary = json.loads(run.layout.data_summary.read_text())
    assert summary["augmentation"] == {"shuffle": 10}
    assert summary["rows"]["train"] == len(ROWS) + 10
