"""Preference data: pairs of text, pairs of chats (explicit or implicit prompt, lists or JSON text in CSV cells) and
KTO's unpaired rows become TRL's columns; every bad row is reported with its file, row and column and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import write_csv
from tuneforge.data.preference_data import PAIRS, UNPAIRED, load_preference, prepare_preference_data
from tuneforge.errors import DataError, RecipeError
from tuneforge.recipe import Recipe, recipe_from_dict


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _recipe(tmp_path: Path, train: Path, task: str = "preference", **preference: object) -> Recipe:
    data = {"train": str(train), "validation_split": 0.0, "cache_dir": str(tmp_path / "cache")}
    recipe: dict = {"task": task, "data": data}
    if preference:
        recipe["preference"] = preference
    return recipe_from_dict(recipe)


def _chat(*turns: str) -> list[dict]:
    return [{"role": role, "content": text} for role, text in zip(("user", "assistant") * 4, turns, strict=False)]


TEXT_PAIRS = [{"prompt": f"say {i}\n", "chosen": f"yes {i}", "rejected": f"no {i}"} for i in range(6)]


def test_text_pairs_keep_their_three_columns_and_carve_a_validation_split(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "pairs.csv", TEXT_PAIRS)
    recipe = recipe_from_dict({"task": "preference", "data": {"train": str(train), "validation_split": 0.34,
                                                             "cache_dir": str(tmp_path / "cache")}})
    data = prepare_preference_data(recipe)
    assert data.layout == PAIRS and not data.chat and data.paired
    assert data.train.column_names == ["prompt", "chosen", "rejected"]
    assert len(data.train) + len(data.validation) == 6 and len(data.validation) == 3
    assert data.sources["validation"].endswith("(carved)")


def test_chat_pairs_with_an_implicit_prompt_split_at_the_turns_both_open_with(tmp_path: Path) -> None:
    rows = [{"chosen": _chat("hi", "hello there"), "rejected": _chat("hi", "go away")}] * 3
    data = prepare_preference_data(_recipe(tmp_path, _jsonl(tmp_path / "chats.jsonl", rows)))
    assert data.chat
    row = data.train[0]
    assert row["prompt"] == [{"role": "user", "content": "hi"}]
    assert row["chosen"] == [{"role": "assistant", "content": "hello there"}]
    assert row["rejected"] == [{"role": "assistant", "content": "go away"}]


def test_chat_pairs_in_csv_cells_take_a_text_prompt_as_one_user_turn(tmp_path: Path) -> None:
    rows = [{"prompt": "hi", "chosen": json.dumps(_chat("x")[:0] + [{"role": "assistant", "content": "hello"}]),
             "rejected": json.dumps([{"role": "assistant", "content": "bye"}])}] * 2
    data = prepare_preference_data(_recipe(tmp_path, write_csv(tmp_path / "chats.csv", rows)))
    assert data.chat and data.train[0]["prompt"] == [{"role": "user", "content": "hi"}]


def test_unpaired_rows_read_true_false_labels_for_kto(tmp_path: Path) -> None:
    rows = [{"prompt": "p", "completion": "good one", "label": "true"},
            {"prompt": "p", "completion": "bad one", "label": "False"},
            {"prompt": "q", "completion": "fine", "label": 1}]
    train = _jsonl(tmp_path / "kto.jsonl", [{**r, "label": str(r["label"])} for r in rows])
    data = prepare_preference_data(_recipe(tmp_path, train, method="kto"))
    assert data.layout == UNPAIRED and data.train["label"] == [True, False, True]


def test_each_bad_row_is_named_with_its_line_column_and_fix(tmp_path: Path) -> None:
    rows = [dict(row) for row in TEXT_PAIRS]
    rows[1]["chosen"] = ""
    rows[3]["rejected"] = "  "
    rows[4]["rejected"] = rows[4]["chosen"]
    train = write_csv(tmp_path / "pairs.csv", rows)
    with pytest.raises(DataError) as raised:
        prepare_preference_data(_recipe(tmp_path, train))
    problems = {problem.where: problem for problem in raised.value.problems}
    chosen = problems[f"{train}: column 'chosen'"]
    assert "empty chosen response" in chosen.message and "row 2 (line 3)" in chosen.message and chosen.fix
    assert "row 4 (line 5)" in problems[f"{train}: column 'rejected'"].message
    _, found = load_preference(_recipe(tmp_path, train))
    same = [p for p in found if "same chosen and rejected" in p.message]
    assert same and same[0].severity == "warning" and "row 5 (line 6)" in same[0].message


def test_jsonl_rows_are_named_by_their_line_and_broken_chats_say_what_is_wrong(tmp_path: Path) -> None:
    rows = [{"prompt": "hi", "chosen": [{"role": "assistant", "content": "a"}],
             "rejected": [{"role": "assistant", "content": "b"}]},
            {"prompt": "hi", "chosen": [{"role": "assistant", "content": "a"}],
             "rejected": [{"role": "robot", "content": "b"}]},
            {"prompt": "hi", "chosen": [{"role": "user", "content": "a"}],
             "rejected": [{"role": "assistant", "content": "b"}]}]
    train = _jsonl(tmp_path / "chats.jsonl", rows)
    with pytest.raises(DataError) as raised:
        prepare_preference_data(_recipe(tmp_path, train))
    messages = {problem.message: problem for problem in raised.value.problems}
    role = next(p for m, p in messages.items() if "role 'robot'" in m)
    assert "line 2" in role.message and role.where.endswith("column 'rejected'") and "role" in role.fix
    assistant = next(p for m, p in messages.items() if "no assistant message" in m)
    assert "line 3" in assistant.message and assistant.where.endswith("column 'chosen'")


def test_missing_columns_name_the_file_and_both_layouts(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "bad.csv", [{"prompt": "p", "chosen": "a", "other": "b"}])
    with pytest.raises(DataError) as raised:
        prepare_preference_data(_recipe(tmp_path, train))
    [problem] = raised.value.problems
    assert problem.where == str(train) and "'rejected' is missing" in problem.message
    assert "preference.rejected_column" in problem.fix and "completion" in problem.fix


def test_unpaired_rows_are_refused_for_pair_methods_and_need_both_labels(tmp_path: Path) -> None:
    rows = [{"prompt": "p", "completion": "c", "label": "true"}] * 3
    train = _jsonl(tmp_path / "kto.jsonl", rows)
    with pytest.raises(DataError) as raised:
        prepare_preference_data(_recipe(tmp_path, train))  # dpo
    assert any("method dpo learns from pairs" in p.message and "kto" in p.fix for p in raised.value.problems)
    with pytest.raises(DataError) as raised:
        prepare_preference_data(_recipe(tmp_path, train, method="kto"))
    assert any("every training completion is desirable" in p.message for p in raised.value.problems)
    bad = _jsonl(tmp_path / "labels.jsonl", [{"prompt": "p", "completion": "c", "label": "maybe"},
                                             {"prompt": "p", "completion": "d", "label": "false"}])
    with pytest.raises(DataError) as raised:
        prepare_preference_data(_recipe(tmp_path, bad, method="kto"))
    [problem] = raised.value.problems
    assert problem.where.endswith("column 'label'") and "line 1" in problem.message and "true" in problem.fix


def test_files_written_in_different_layouts_are_refused(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "text.csv", TEXT_PAIRS)
    chats = _jsonl(tmp_path / "chats.jsonl", [{"chosen": _chat("hi", "a"), "rejected": _chat("hi", "b")}])
    recipe = recipe_from_dict({"task": "preference", "data": {"train": str(train), "validation": str(chats),
                                                             "cache_dir": str(tmp_path / "cache")}})
    with pytest.raises(DataError) as raised:
        prepare_preference_data(recipe)
    [problem] = raised.value.problems
    assert problem.where == str(chats) and "paired chats" in problem.message and "paired texts" in problem.message


def test_chats_with_no_shared_opening_need_a_prompt_column(tmp_path: Path) -> None:
    train = _jsonl(tmp_path / "chats.jsonl", [{"chosen": _chat("hi", "a"), "rejected": _chat("hello", "b")}])
    with pytest.raises(DataError) as raised:
        prepare_preference_data(_recipe(tmp_path, train))
    [problem] = raised.value.problems
    assert "share no opening turn" in problem.message and "'prompt' column" in problem.fix


@pytest.mark.parametrize(("recipe", "says"), [
    ({"task": "preference", "preference": {"method": "dpo", "simpo_gamma": 1.0}}, "option of method simpo"),
    ({"task": "preference", "preference": {"method": "kto", "loss_type": "ipo"}}, "not a kto loss"),
    ({"task": "reward", "preference": {"method": "orpo"}}, "options of task preference"),
    ({"task": "preference", "preference": {"center_rewards_coefficient": 0.01}}, "applies to task reward"),
    ({"task": "causal-lm", "preference": {"beta": 0.5}}, "options of tasks preference and reward"),
    ({"task": "preference", "loss": {"name": "focal"}}, "loss.name: auto"),
    ({"task": "reward", "train": {"batch_size": "auto"}}, "batch_size"),
    ({"task": "preference", "peft": {"method": "prompt_tuning"}}, "prompt_tuning"),
])
def test_the_recipe_refuses_options_the_task_or_method_does_not_read(recipe: dict, says: str) -> None:
    with pytest.raises(RecipeError) as raised:
        recipe_from_dict(recipe)
    assert says in str(raised.value)


def test_each_method_takes_its_own_options() -> None:
    recipe = recipe_from_dict({"task": "preference", "preference": {"method": "simpo", "simpo_gamma": 1.0,
                                                                     "cpo_alpha": 0.0, "beta": 2.0}})
    assert recipe.preference.simpo_gamma == 1.0 and recipe.early_stopping_metric() == ("loss", False)
    assert recipe_from_dict({"task": "reward-model"}).task == "reward"
