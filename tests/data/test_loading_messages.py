"""An unreadable file is reported at the line (and column) an editor shows, with advice for its format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tuneforge.data.loading import read_table, row_label
from tuneforge.data.validation import check_texts
from tuneforge.errors import DataError, Problem


def problem_of(path: Path, tmp_path: Path) -> Problem:
    with pytest.raises(DataError) as raised:
        read_table(path, cache_dir=str(tmp_path / "cache"))
    [problem] = raised.value.problems
    return problem


def rows(count: int) -> list[str]:
    return [json.dumps({"text": f"text {index}", "label": "positive"}) for index in range(count)]


def test_a_broken_jsonl_line_is_named_by_its_line_and_column(tmp_path: Path) -> None:
    lines = rows(20)
    lines[13] = '{"text": "unterminated, "label": "positive"}'  # line 14 of the file
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problem = problem_of(path, tmp_path)
    assert f"{path}: line 14, column " in problem.where
    assert "row 13" not in str(problem) and "not valid JSON" in problem.message
    assert "JSON" in problem.fix and "delimiter" not in problem.fix


def test_a_jsonl_line_that_is_not_an_object_says_so(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(rows(2) + ["[1, 2]"]) + "\n", encoding="utf-8")
    problem = problem_of(path, tmp_path)
    assert problem.where == f"{path}: line 3" and "holds a JSON list, not a JSON object" in problem.message


def test_a_broken_json_document_gives_its_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    path.write_text('[\n  {"text": "a", "label": "x"},\n  {"text": "b" "label": "y"}\n]\n', encoding="utf-8")
    problem = problem_of(path, tmp_path)
    assert problem.where == f"{path}: line 3, column 16"
    assert "JSON" in problem.fix and "delimiter" not in problem.fix


def test_a_file_that_is_not_utf8_gets_encoding_advice(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes("text,label\ngood food,positive\ncaf\u00e9 au lait,neutral\n".encode("latin-1"))
    problem = problem_of(path, tmp_path)
    assert problem.where == f"{path}: line 3, column 4"
    assert "not UTF-8" in problem.message
    assert "UTF-8" in problem.fix and "delimiter" not in problem.fix


def test_jsonl_rows_are_named_by_their_file_line_even_after_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "test.jsonl"
    lines = rows(3)
    lines[2] = json.dumps({"text": "", "label": "positive"})
    path.write_text(f"{lines[0]}\n\n{lines[1]}\n\n{lines[2]}\n", encoding="utf-8")
    table = read_table(path, cache_dir=str(tmp_path / "cache"))
    assert row_label(path, 2) == "line 5"
    [problem] = check_texts(str(path), "text", table["text"])
    assert "line 5" in problem.message


@pytest.mark.parametrize(("content", "says"), [("null\n", "line 1: holds null"), ("null\nnull\n", "line 1: holds null"),
                                              ("42\n", "line 1: holds a number"), ("\n  \n", "only blank lines")])
def test_a_jsonl_file_without_objects_is_refused_before_the_reader_crashes(tmp_path: Path, content: str,
                                                                           says: str) -> None:
    # pyarrow's JSON reader dies with a segmentation fault on all-null lines, so this runs in its own process.
    path = tmp_path / "train.jsonl"
    path.write_text(content, encoding="utf-8")
    script = ("import sys; from tuneforge.data.loading import read_table; from tuneforge.errors import DataError\n"
              f"try: read_table({str(path)!r}, cache_dir={str(tmp_path / 'cache')!r})\n"
              "except DataError as error: print(error.problems[0])")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert says in done.stdout


@pytest.mark.parametrize("label", ['{"": null, "\\u0000": null}', '{"\\u0000": {}}'])
def test_objects_whose_keys_cannot_be_read_are_refused_at_loading(tmp_path: Path, label: str) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(f'{{"text": "fine", "label": {label}}}\n', encoding="utf-8")
    problem = problem_of(path, tmp_path)
    assert problem.where == f"{path}: column 'label'" and "keys that repeat or contain a NUL" in problem.message
