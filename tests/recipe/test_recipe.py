"""The recipe schema: defaults, error reporting, `--set` overrides, the commented template, derived settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from tuneforge.errors import RecipeError
from tuneforge.recipe import Recipe, commented_template, load_recipe, parse_override, recipe_from_dict


def _problems(data: dict, overrides: list[str] | None = None) -> list:
    with pytest.raises(RecipeError) as caught:
        recipe_from_dict(data, overrides)
    return caught.value.problems


def _sections() -> dict[str, type[BaseModel]]:
    return {name: field.annotation for name, field in Recipe.model_fields.items()
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)}


# --- defaults ------------------------------------------------------------------------------------------

def test_every_field_has_a_default():
    recipe = Recipe()
    assert recipe == recipe_from_dict({})
    assert recipe.task == "classification"
    assert recipe.data.train is None
    for section_name, section in _sections().items():
        for name, field in section.model_fields.items():
            assert not field.is_required(), f"{section_name}.{name} has no default"
            assert field.description, f"{section_name}.{name} has no description"


def test_an_empty_recipe_file_is_the_default_recipe(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("# nothing but a comment\n", encoding="utf-8")
    assert load_recipe(path) == Recipe()


# --- errors --------------------------------------------------------------------------------------------

def test_unknown_key_names_the_path_and_suggests_the_closest_key():
    [problem] = _problems({"train": {"learning_rat": 1e-4}})
    assert "train.learning_rat" in problem.where
    assert "did you mean 'learning_rate'" in problem.fix


def test_unknown_key_in_another_section_suggests_from_that_section():
    [problem] = _problems({"early_stopping": {"patiense": 3}})
    assert "early_stopping.patiense" in problem.where
    assert "did you mean 'patience'" in problem.fix


def test_unknown_top_level_section_lists_the_known_sections():
    [problem] = _problems({"optimiser": {"lr": 1}})
    assert problem.where.endswith("optimiser")
    for section in Recipe.model_fields:
        assert section in problem.fix


def test_bad_literal_lists_the_allowed_values():
    [problem] = _problems({"train": {"precision": "fp8"}})
    assert "train.precision" in problem.where
    allowed = ("auto", "fp32", "bf16", "fp16")
    for value in allowed:
        assert f"'{value}'" in problem.fix
    assert "fp8" not in problem.fix


def test_several_problems_are_reported_together():
    problems = _problems({
        "train": {"learning_rat": 1e-4, "precision": "fp8", "batch_size": 0},
        "model": {"nme": "x"},
    })
    wheres = [p.where for p in problems]
    assert len(problems) == 4
    for path in ("train.learning_rat", "train.precision", "train.batch_size", "model.nme"):
        assert any(w.endswith(path) for w in wheres), (path, wheres)


def test_problems_name_the_recipe_file(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("train:\n  learning_rat: 0.001\n", encoding="utf-8")
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    [problem] = caught.value.problems
    assert problem.where == f"{path}: train.learning_rat"


def test_yaml_syntax_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("task: classification\ntrain:\n  learning_rate: 0.1\n  batch_size: 8: 9\n", encoding="utf-8")
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    [problem] = caught.value.problems
    assert problem.where.startswith(f"{path}:4:"), problem.where  # the 4th line holds the error
    assert "YAML" in problem.message
    assert problem.fix


def test_missing_recipe_file_is_a_recipe_error(tmp_path):
    with pytest.raises(RecipeError) as caught:
        load_recipe(tmp_path / "nope.yaml")
    [problem] = caught.value.problems
    assert "nope.yaml" in problem.where
    assert problem.fix


def test_a_recipe_must_be_a_mapping(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("- task\n- train\n", encoding="utf-8")
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert str(path) in caught.value.problems[0].where


@pytest.mark.parametrize("loss", ["focal", "cross_entropy", "weighted_cross_entropy"])
def test_regression_rejects_classification_losses(loss):
    [problem] = _problems({"task": "regression", "loss": {"name": loss}})
    assert f"'{loss}'" in problem.message
    assert "regression" in problem.message


@pytest.mark.parametrize("loss", ["mse", "mae", "huber"])
def test_classification_rejects_regression_losses(loss):
    [problem] = _problems({"task": "classification", "loss": {"name": loss}})
    assert f"'{loss}'" in problem.message


@pytest.mark.parametrize(("task", "loss"), [("regression", "huber"), ("classification", "focal")])
def test_matching_losses_are_accepted(task, loss):
    assert recipe_from_dict({"task": task, "loss": {"name": loss}}).loss_name() == loss


def test_splits_must_leave_training_data():
    problems = _problems({"data": {"validation_split": 0.5, "test_split": 0.45}})
    assert any("10%" in p.message for p in problems)


def test_task_is_normalised():
    assert recipe_from_dict({"task": " Regression "}).task == "regression"


# --- --set overrides -----------------------------------------------------------------------------------

def test_override_scientific_notation_gives_a_float():
    recipe = recipe_from_dict({}, ["train.learning_rate=3e-5"])
    assert isinstance(recipe.train.learning_rate, float)
    assert recipe.train.learning_rate == pytest.approx(3e-5)


def test_parse_override_reads_scientific_notation_as_a_number():
    path, value = parse_override("train.learning_rate=3e-5")
    assert path == ["train", "learning_rate"]
    assert isinstance(value, float) and value == pytest.approx(3e-5)


@pytest.mark.parametrize(("assignment", "expected"), [
    ("train.epochs=5", 5.0),
    ("train.group_by_length=false", False),
    ("train.lr_scheduler=cosine", "cosine"),
    ("model.revision=main", "main"),
    ("data.text_pair_column=", None),
])
def test_override_values_are_read_as_yaml(assignment, expected):
    key, _ = assignment.split("=", 1)
    section, field = key.split(".")
    recipe = recipe_from_dict({}, [assignment])
    assert getattr(getattr(recipe, section), field) == expected


def test_override_of_a_text_field_with_a_numeric_looking_value():
    recipe = recipe_from_dict({}, ["data.label_column=1"])
    assert recipe.data.label_column == "1"


def test_override_of_a_list_of_texts_is_read_as_a_list():
    recipe = recipe_from_dict({}, ["fairness.identity_categories=[gender, religion]",
                                   "fairness.sensitive_columns=[region]", "evaluation.plugins=[pkg.mod:check]"])
    assert recipe.fairness.identity_categories == ["gender", "religion"]
    assert recipe.fairness.sensitive_columns == ["region"] and recipe.evaluation.plugins == ["pkg.mod:check"]


def test_overrides_win_over_the_file_and_leave_other_fields(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("train:\n  epochs: 2\n  batch_size: 4\n", encoding="utf-8")
    recipe = load_recipe(path, ["train.epochs=7"])
    assert recipe.train.epochs == 7
    assert recipe.train.batch_size == 4


def test_override_creates_missing_sections():
    recipe = recipe_from_dict({}, ["early_stopping.patience=5", "loss.class_weights.positive=2.5"])
    assert recipe.early_stopping.patience == 5
    assert recipe.loss.class_weights == {"positive": 2.5}


def test_override_of_an_unknown_field_is_reported_like_a_file_key():
    [problem] = _problems({}, ["train.learning_rat=0.1"])
    assert "train.learning_rat" in problem.where
    assert "did you mean 'learning_rate'" in problem.fix


@pytest.mark.parametrize("assignment", ["train.learning_rate", "just-a-word"])
def test_override_without_equals_sign_is_an_error(assignment):
    [problem] = _problems({}, [assignment])
    assert assignment in problem.where
    assert "KEY=VALUE" in problem.message
    assert problem.fix


def test_override_with_empty_key_is_an_error():
    [problem] = _problems({}, ["=3"])
    assert "empty key" in problem.message


def test_override_through_a_value_that_is_not_a_section():
    [problem] = _problems({"task": "classification"}, ["task.name=x"])
    assert "'task' is not a section" in problem.message


# --- relative data paths -------------------------------------------------------------------------------

def test_relative_data_paths_resolve_against_the_recipe_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project" / "recipes"
    folder.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    absolute = str(tmp_path / "abs" / "test.csv")
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump({"data": {"train": "data/train.csv", "validation": "../val.csv",
                                             "test": absolute},
                                    "fairness": {"identity_terms_file": "terms.yaml"}}), encoding="utf-8")
    recipe = load_recipe(path)
    assert Path(recipe.fairness.identity_terms_file) == (folder / "terms.yaml").resolve()
    assert Path(recipe.data.train) == (folder / "data" / "train.csv").resolve()
    assert Path(recipe.data.validation) == (tmp_path / "project" / "val.csv").resolve()
    assert recipe.data.test == absolute


def test_remote_data_paths_are_left_alone(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("data:\n  train: hf://datasets/org/name/train.csv\n", encoding="utf-8")
    assert load_recipe(path).data.train == "hf://datasets/org/name/train.csv"


def test_recipe_from_dict_without_base_dir_keeps_paths():
    assert recipe_from_dict({"data": {"train": "data/train.csv"}}).data.train == "data/train.csv"


# --- the commented template ----------------------------------------------------------------------------

@pytest.mark.parametrize("task", ["classification", "regression"])
def test_template_round_trips_to_the_default_recipe(task, tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(commented_template(task), encoding="utf-8")
    loaded = load_recipe(path)
    assert loaded == Recipe(task=task)
    assert loaded == recipe_from_dict({"task": task})


def test_template_carries_values_given_to_init(tmp_path):
    train = str(tmp_path / "data" / "train.csv")
    path = tmp_path / "recipe.yaml"
    path.write_text(commented_template("regression", data__train=train, model__name="my-model"), encoding="utf-8")
    loaded = load_recipe(path)
    assert loaded.task == "regression"
    assert loaded.data.train == train
    assert loaded.model.name == "my-model"
    assert loaded.model_copy(update={"data": Recipe().data, "model": Recipe().model}) == Recipe(task="regression")


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_template_comments_every_field_of_every_section(task):
    lines = commented_template(task).splitlines()

    def comment_before(pattern: str) -> str:
        matches = [i for i, line in enumerate(lines) if re.fullmatch(pattern, line)]
        assert len(matches) == 1, f"{pattern!r} appears {len(matches)} times"
        index = matches[0]
        assert index > 0 and lines[index - 1].lstrip().startswith("# "), f"no comment above {lines[index]!r}"
        return lines[index - 1]

    assert Recipe.model_fields["task"].description in comment_before(r"task: .*")
    for section_name, section in _sections().items():
        assert f"{section_name}:" in lines
        start = lines.index(f"{section_name}:")
        block = lines[start + 1:]
        end = next((i for i, line in enumerate(block) if not line.startswith("  ")), len(block))
        keys = [line.strip().split(":")[0] for line in block[:end] if not line.lstrip().startswith("#")]
        assert keys == list(section.model_fields), section_name
        for name, field in section.model_fields.items():
            comment = block[keys.index(name) * 2]  # each key follows its own comment line
            assert comment.startswith("  # ")
            assert field.description in comment, f"{section_name}.{name}"


def test_template_lists_the_choices_of_literal_fields():
    text = commented_template()
    assert "[auto | fp32 | bf16 | fp16]" in text
    assert "[linear | cosine | constant | constant_with_warmup]" in text


def test_template_sets_the_task():
    assert "task: regression" in commented_template("regression").splitlines()


# --- derived settings ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("task", "expected"), [("classification", "cross_entropy"), ("regression", "mse")])
def test_loss_name_auto(task, expected):
    assert Recipe(task=task).loss_name() == expected


@pytest.mark.parametrize(("task", "expected"), [
    ("classification", ("f1_macro", True)),
    ("regression", ("rmse", False)),
])
def test_early_stopping_metric_auto(task, expected):
    assert Recipe(task=task).early_stopping_metric() == expected


@pytest.mark.parametrize(("task", "metric", "greater_is_better"), [
    ("classification", "accuracy", True),
    ("classification", "loss", False),
    ("classification", "eval_loss", False),  # Trainer's prefixed name is accepted too
    ("regression", "mae", False),
    ("regression", "mse", False),
    ("regression", "r2", True),
    ("regression", "pearson", True),
])
def test_early_stopping_mode_auto_follows_the_metric(task, metric, greater_is_better):
    recipe = recipe_from_dict({"task": task, "early_stopping": {"metric": metric}})
    assert recipe.early_stopping_metric() == (metric.removeprefix("eval_"), greater_is_better)


@pytest.mark.parametrize(("mode", "greater_is_better"), [("max", True), ("min", False)])
def test_early_stopping_explicit_mode_wins(mode, greater_is_better):
    recipe = recipe_from_dict({"task": "regression", "early_stopping": {"mode": mode}})
    assert recipe.early_stopping_metric() == ("rmse", greater_is_better)


def test_early_stopping_mode_auto_understands_the_eval_prefix():
    recipe = recipe_from_dict({"task": "regression", "early_stopping": {"metric": "eval_rmse"}})
    assert recipe.early_stopping_metric() == ("rmse", False)
