"""Few-shot contrastive training (train.method: contrastive): pairs, refusals, a tiny run, a real few-shot run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from transformers import TrainerCallback

from tests.conftest import make_rows, tiny_recipe, write_csv
from tuneforge.errors import RecipeError
from tuneforge.predict import Predictor
from tuneforge.recipe import recipe_from_dict
from tuneforge.train.contrastive import REPORT_FILE, STAGE_CALLBACKS, make_pairs
from tuneforge.train.skeleton import fine_tune

ROOT = Path(__file__).resolve().parents[2]
EMOTION = ROOT.parent / "shared" / "data" / "tweeteval" / "emotion"
QUIET = {"calibration": {"temperature_scaling": False}, "evaluation": {"explain_examples": 0},
         "fairness": {"identity_categories": []}}


def test_pairs_are_half_positive_and_say_whether_the_labels_agree():
    texts = [f"text {i}" for i in range(9)]
    labels = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    pairs = make_pairs(texts, labels, iterations=4, max_pairs=10_000, seed=0)
    assert len(pairs) == 4 * 9 * 2
    assert Counter(pairs["label"]) == {1.0: 36, 0.0: 36}
    label_of = dict(zip(texts, labels, strict=True))
    for first, second, score in zip(pairs["sentence1"], pairs["sentence2"], pairs["label"], strict=True):
        assert (label_of[first] == label_of[second]) == (score == 1.0)
        assert score == 0.0 or first != second  # a positive pairs a row with another row of its class
    assert len(make_pairs(texts, labels, iterations=50, max_pairs=25, seed=0)) == 25
    assert make_pairs(texts, labels, 2, 100, seed=1)["sentence2"] == make_pairs(texts, labels, 2, 100, seed=1)[
        "sentence2"]


@pytest.mark.parametrize(("recipe", "message"), [
    ({"task": "regression", "train": {"method": "contrastive"}}, "task regression"),
    ({"task": "multilabel", "train": {"method": "contrastive"}}, "task multilabel"),
    ({"task": "ner", "train": {"method": "contrastive"}}, "task token-classification"),
    ({"task": "pair-classification", "data": {"text_pair_column": "b"}, "train": {"method": "contrastive"}},
     "text pairs"),
    ({"train": {"method": "contrastive"}, "peft": {"method": "lora"}}, "peft.method 'lora'"),
])
def test_contrastive_is_refused_where_there_are_no_class_labels_of_single_texts(recipe, message):
    with pytest.raises(RecipeError, match=message):
        recipe_from_dict(recipe)


def test_a_contrastive_run_trains_predicts_and_loads_as_an_ordinary_classifier(tiny_model, tmp_path):
    files = {"train": write_csv(tmp_path / "train.csv", make_rows(24, seed=2)),  # 8 rows per class
             "validation": write_csv(tmp_path / "val.csv", make_rows(30, seed=3)),
             "test": write_csv(tmp_path / "test.csv", make_rows(30, seed=4))}
    recipe = recipe_from_dict(tiny_recipe(
        tiny_model, files, tmp_path / "run",
        train={"method": "contrastive", "epochs": 2, "learning_rate": 1e-3,
               "contrastive": {"iterations": 10, "learning_rate": 1e-3}},
        **QUIET))
    run = fine_tune(recipe)

    stage = run.metrics["training"]["contrastive"]
    assert run.metrics["training"]["method"] == "contrastive"
    assert stage["loss"] == "cosine" and stage["pairs"] == 24 * 10 * 2 and stage["steps"] > 0
    # the classifier's own features learnt to follow the mean-pooled embedding the pairs shaped
    assert stage["bridge_cosine_after"] > stage["bridge_cosine_before"] + 0.3
    assert stage["head_init"] == "logistic" and stage["head_train_accuracy"] >= 0.75
    assert json.loads((run.directory / REPORT_FILE).read_text()) == stage
    # 6 fine-tuning steps on 24 rows leave the same tiny model at chance (1/3) with train.method standard
    assert run.metrics["test"]["accuracy"] >= 0.5

    predictor = Predictor.from_run(run.directory)  # nothing in the run needs contrastive code to load
    assert predictor.predict(["the food was great and wonderful"])[0]["label"] in {"negative", "neutral", "positive"}


def test_batch_hard_trains_on_the_rows_themselves(tiny_model, tmp_path):
    files = {"train": write_csv(tmp_path / "train.csv", make_rows(24, seed=2)),
             "validation": write_csv(tmp_path / "val.csv", make_rows(12, seed=3))}
    recipe = recipe_from_dict(tiny_recipe(
        tiny_model, files, tmp_path / "run",
        train={"method": "contrastive", "epochs": 1, "contrastive": {"loss": "batch_hard", "batch_size": 12,
                                                                      "head_init": "random"}}, **QUIET))
    stage = fine_tune(recipe).metrics["training"]["contrastive"]
    assert stage["loss"] == "batch_hard" and stage["rows"] == 24 and stage["head_init"] == "random"


def _emotion_rows(split: str, per_class: int | None) -> list[dict]:
    mapping = dict(line.split("\t") for line in (EMOTION / "mapping.txt").read_text().splitlines() if line)
    texts = (EMOTION / f"{split}_text.txt").read_text(encoding="utf-8").splitlines()
    labels = (EMOTION / f"{split}_labels.txt").read_text().split()
    rows, taken = [], Counter()
    for text, label in zip(texts, labels, strict=True):
        name = mapping[label].strip()
        if per_class is None or taken[name] < per_class:
            taken[name] += 1
            rows.append({"text": text, "label": name})
    return rows


@pytest.mark.slow
@pytest.mark.skipif(not EMOTION.is_dir(), reason="needs ../shared/data/tweeteval/emotion")
def test_few_shot_tweeteval_emotion_with_the_bundled_encoder(tmp_path):
    # 8 tweets per class, SetFit's few-shot setting, with the bundled minilm: it runs end to end on real data.
    files = {"train": write_csv(tmp_path / "train.csv", _emotion_rows("train", 8)),
             "validation": write_csv(tmp_path / "val.csv", _emotion_rows("val", 10)),
             "test": write_csv(tmp_path / "test.csv", _emotion_rows("test", 25))}
    recipe = recipe_from_dict({
        "data": {role: str(path) for role, path in files.items()},
        "train": {"method": "contrastive", "epochs": 2, "batch_size": 8, "max_length": 64,
                  "contrastive": {"iterations": 5}},
        "output": {"dir": str(tmp_path / "run")}, **QUIET})
    run = fine_tune(recipe)
    assert run.metrics["training"]["contrastive"]["pairs"] == 32 * 5 * 2
    assert run.metrics["test"]["f1_macro"] > 0.25  # above chance (4 classes) after 32 labelled tweets
    assert len(Predictor.from_run(run.directory).predict(["I am so happy today!"])) == 1


class _StopInTheStage(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        raise RuntimeError("stopped in the contrastive stage")


def test_stage_callbacks_reach_the_contrastive_trainer(tiny_model, tmp_path):
    # how `tuneforge auto` stops a trial whose budget runs out while its encoder is still training on pairs
    files = {"train": write_csv(tmp_path / "train.csv", make_rows(24, seed=2)),
             "validation": write_csv(tmp_path / "val.csv", make_rows(12, seed=3))}
    recipe = recipe_from_dict(tiny_recipe(tiny_model, files, tmp_path / "run", train={"method": "contrastive"},
                                          **QUIET))
    token = STAGE_CALLBACKS.set((_StopInTheStage(),))
    try:
        with pytest.raises(RuntimeError, match="contrastive stage"):
            fine_tune(recipe)
    finally:
        STAGE_CALLBACKS.reset(token)
    assert not (tmp_path / "run" / REPORT_FILE).exists()
