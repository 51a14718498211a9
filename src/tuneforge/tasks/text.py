"""Tokenisation shared by the sequence-level tasks: no padding here, the collator pads each batch."""

from __future__ import annotations

from typing import Any

import datasets
from transformers import PreTrainedTokenizerBase


class Tokenize:
    """Picklable batch tokenizer, so `datasets` fingerprints it and reuses the cached result on the next run."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, text_column: str, pair_column: str | None,
                 max_length: int) -> None:
        self.tokenizer = tokenizer
        self.text_column = text_column
        self.pair_column = pair_column
        self.max_length = max_length

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, Any]:
        texts = [str(t) for t in batch[self.text_column]]
        pairs = [str(t) for t in batch[self.pair_column]] if self.pair_column else None
        return self.tokenizer(texts, pairs, truncation=True, max_length=self.max_length)


def tokenize_dataset(dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, text_column: str,
                     pair_column: str | None, max_length: int, keep: tuple[str, ...] = ("labels",),
                     desc: str = "tokenizing") -> datasets.Dataset:
    drop = [c for c in dataset.column_names if c not in keep]
    return dataset.map(Tokenize(tokenizer, text_column, pair_column, max_length), batched=True,
                       remove_columns=drop, desc=desc)
