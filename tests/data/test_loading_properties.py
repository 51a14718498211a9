"""Property-based: whatever bytes a CSV or JSONL file holds, loading and checking it gives a table or a
TuneforgeError (with a fix), never another exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402 - after the skip above
from hypothesis import strategies as st  # noqa: E402

from tuneforge.data import validation as checks  # noqa: E402
from tuneforge.data.loading import read_table  # noqa: E402
from tuneforge.errors import TuneforgeError  # noqa: E402

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
CACHE = tempfile.mkdtemp(prefix="tuneforge-properties-")

cell = st.one_of(st.text(max_size=12), st.sampled_from(["", "NA", "None", '"', "a,b", "\n", "\t", "é", "\x00"]))
csv_text = st.lists(st.lists(cell, min_size=1, max_size=4).map(",".join), min_size=1, max_size=6).map("\n".join)
json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=3), max_leaves=6)
jsonl_line = st.one_of(
    st.fixed_dictionaries({"text": json_value, "label": json_value}).map(json.dumps),
    json_value.map(json.dumps),
    st.text(max_size=20),  # not JSON at all
)
jsonl_text = st.lists(jsonl_line, min_size=1, max_size=6).map("\n".join)
raw_bytes = st.binary(max_size=200)


def load_and_check(path: Path) -> None:
    """Read the file and run the checks training runs on its text and label columns."""
    try:
        table = read_table(path, cache_dir=CACHE)
        problems = checks.check_columns(str(path), table.column_names, ["text", "label"])
        if not problems:
            problems += checks.check_texts(str(path), "text", table["text"])
            problems += checks.check_labels_present(str(path), "label", table["label"])
        for problem in problems:
            assert problem.message and problem.where
    except TuneforgeError as error:
        assert error.message


def write(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


@SETTINGS
@given(content=st.one_of(csv_text.map(lambda text: text.encode("utf-8", "surrogatepass")), raw_bytes))
def test_any_csv_gives_a_table_or_a_tuneforge_error(tmp_path: Path, content: bytes) -> None:
    load_and_check(write(tmp_path, "train.csv", b"text,label\n" + content))


@SETTINGS
@given(content=st.one_of(jsonl_text.map(lambda text: text.encode("utf-8", "surrogatepass")), raw_bytes))
def test_any_jsonl_gives_a_table_or_a_tuneforge_error(tmp_path: Path, content: bytes) -> None:
    load_and_check(write(tmp_path, "train.jsonl", content))
