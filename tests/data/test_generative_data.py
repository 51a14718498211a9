"""Generative data: columns normalised per task, every problem reported with its file, row and fix."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_csv
from tuneforge.data.generative_data import load_generative, prepare_generative_data
from tuneforge.errors import DataError
from tuneforge.recipe import recipe_from_dict


def _recipe(tmp_path, task: str, **data):
    return recipe_from_dict({"task": task, "data": {"cache_dir": str(tmp_path / "cache"),
                                                    **{k: str(v) for k, v in data.items()}}})


def test_missing_column_names_the_flag(tmp_path):
    path = write_csv(tmp_path / "t.csv", [{"prompt": "a", "reply_text": "b", "respons": "c"}] * 4)
    _, problems = load_generative(_recipe(tmp_path, "causal-lm", train=path))
    assert len(problems) == 1
    assert "'response' is missing" in problems[0].message and "--response-column" in problems[0].fix
    assert "did you mean 'respons'" in problems[0].fix


def test_empty_targets_are_listed_by_row(tmp_path):
    rows = [{"text": "a b", "target": "a b"}, {"text": "c", "target": ""}, {"text": "", "target": "d"}]
    path = write_csv(tmp_path / "t.csv", rows)
    with pytest.raises(DataError) as error:
        prepare_generative_data(_recipe(tmp_path, "seq2seq", train=path))
    messages = {p.message: p.where for p in error.value.problems}
    assert messages["1 empty target text in column 'target'"].endswith("row 2 (line 3)")
    assert messages["1 empty source text in column 'text'"].endswith("row 3 (line 4)")


def test_chats_are_checked_and_kept_as_json(tmp_path):
    good = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    path = tmp_path / "chats.jsonl"
    path.write_text("\n".join(json.dumps({"messages": m}) for m in
                              [good, [{"role": "user", "content": "no answer"}], good, good]) + "\n")
    recipe = _recipe(tmp_path, "causal-lm", train=path, messages_column="messages")
    _, problems = load_generative(recipe)
    assert [p.where.rsplit(": ", 1)[1] for p in problems] == ["line 2"]
    assert "no assistant message" in problems[0].message
    path.write_text("\n".join(json.dumps({"messages": good}) for _ in range(10)) + "\n")
    recipe.lm.system_prompt = "be brief"
    data = prepare_generative_data(recipe)
    assert data.chat and len(data.train) + len(data.validation) == 10
    assert json.loads(data.train["messages"][0])[0] == {"role": "system", "content": "be brief"}


def test_classification_as_text_builds_prompts_and_label_responses(tmp_path):
    rows = [{"text": f"t{i}", "label": ["pos", "neg"][i % 2]} for i in range(10)]
    path = write_csv(tmp_path / "t.csv", rows)
    recipe = recipe_from_dict({"task": "causal-lm", "lm": {"classify": True},
                               "data": {"train": str(path), "validation_split": 0.0}})
    data = prepare_generative_data(recipe)
    assert data.labels == ["neg", "pos"]
    assert data.train[0] == {"prompt": "Text: t0 Label:", "response": " pos", "label": "pos"}


def test_recipe_rejects_options_that_do_not_apply():
    from tuneforge.errors import RecipeError

    with pytest.raises(RecipeError, match="token-level cross-entropy"):
        recipe_from_dict({"task": "seq2seq", "loss": {"name": "focal"}})
    with pytest.raises(RecipeError, match="causal-lm only"):
        recipe_from_dict({"task": "classification", "lm": {"packing": True}})
    with pytest.raises(RecipeError, match="position ids"):
        recipe_from_dict({"task": "causal-lm", "lm": {"packing": True}, "peft": {"method": "prompt_tuning"}})
    with pytest.raises(RecipeError, match="evaluation.plugins"):
        recipe_from_dict({"task": "seq2seq", "evaluation": {"plugins": ["a.b"]}})
    assert recipe_from_dict({"task": "sft"}).early_stopping_metric() == ("loss", False)
