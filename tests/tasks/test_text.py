"""Tokenisation is done once: a second run with the same data and tokenizer reuses the cache."""

from __future__ import annotations

from transformers import AutoTokenizer

from tests.conftest import make_rows, write_csv
from tuneforge.data.loading import read_table
from tuneforge.tasks.text import tokenize_dataset


def test_tokenization_is_cached_across_runs(tiny_model, tmp_path):
    path = write_csv(tmp_path / "train.csv", make_rows(40, seed=5))
    cache = str(tmp_path / "cache")

    def tokenized_files(max_length: int) -> list[str]:
        tokenizer = AutoTokenizer.from_pretrained(tiny_model)  # a fresh object, as in a new process
        dataset = read_table(path, cache_dir=cache)
        result = tokenize_dataset(dataset, tokenizer, "text", None, max_length, keep=("label",))
        assert result.column_names[0] in {"label", "input_ids"}
        return [f["filename"] for f in result.cache_files]

    first = tokenized_files(32)
    assert first and first == tokenized_files(32)
    assert tokenized_files(16) != first  # a different setting is tokenized anew, not served stale


def test_pairs_are_encoded_with_both_segments(tiny_model, tmp_path):
    rows = [{"premise": r["text"], "hypothesis": r["text"][::-1], "label": r["label"]} for r in make_rows(6, 1)]
    dataset = read_table(write_csv(tmp_path / "pairs.csv", rows), cache_dir=str(tmp_path / "cache"))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    result = tokenize_dataset(dataset, tokenizer, "premise", "hypothesis", 64, keep=("label",))
    sep = tokenizer.sep_token_id
    assert all(ids.count(sep) == 2 for ids in result["input_ids"])
    assert all(set(types) == {0, 1} for types in result["token_type_ids"])
