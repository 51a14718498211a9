"""CoNLL reading: sentences split on blank lines, tag in the last column, every bad line reported."""

from __future__ import annotations

import pytest

from tuneforge.data.conll import is_conll, read_conll, sort_tags, tag_problems
from tuneforge.errors import DataError


def test_sentences_tokens_and_last_column_tags(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("-DOCSTART- -X- O O\n\nJohn NNP B-NP B-PER\nlives VBZ B-VP O\nin IN O O\n"
                    "New NNP B-NP B-LOC\nYork NNP I-NP I-LOC\n\n\nBye\tO\n", encoding="utf-8")
    sentences = read_conll(path)
    assert sentences.tokens == [["John", "lives", "in", "New", "York"], ["Bye"]]
    assert sentences.tags == [["B-PER", "O", "O", "B-LOC", "I-LOC"], ["O"]]
    assert sentences.lines == [3, 10]
    assert is_conll(path) and not is_conll(tmp_path / "train.csv")


def test_every_line_without_a_tag_is_reported_with_its_number(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("a O\nlonely\nb O\n\nalone\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_conll(path)
    first, second = caught.value.problems
    assert (first.where, second.where) == (f"{path}:2", f"{path}:5")
    assert "no tag column" in first.message and "token<space or tab>tag" in first.fix


def test_empty_file_and_missing_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no sentences"):
        read_conll(path)
    with pytest.raises(DataError, match="not found"):
        read_conll(tmp_path / "missing.txt")


def test_tag_problems_name_non_bio_and_unseen_tags(tmp_path):
    path = tmp_path / "dev.txt"
    path.write_text("a PER\nb O\n\nc B-MISC\n", encoding="utf-8")
    problems = tag_problems(str(path), read_conll(path), known={"O", "B-PER", "I-PER"})
    assert [(p.where, p.message.split("'")[1]) for p in problems] == [(f"{path}:1", "PER"), (f"{path}:4", "B-MISC")]
    assert "not in BIO form" in problems[0].message and "never occurs in the training file" in problems[1].message


def test_sort_tags_groups_each_type():
    assert sort_tags({"I-PER", "B-LOC", "O", "B-PER", "I-LOC"}) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
