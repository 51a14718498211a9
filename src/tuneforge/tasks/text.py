"""Tokenisation shared by the sequence-level tasks: no padding here, the collator pads each batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets
from transformers import PreTrainedTokenizerBase


class Tokenize:
    """Picklable batch tokenizer, so `datasets` fingerprints it and reuses the cached result on the next run."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, text_column: str, pair_column: str | None,
                 max_length: int, rules: Callable[[str], str] | None = None) -> None:
        self.tokenizer = tokenizer
        self.text_column = text_column
        self.pair_column = pair_column
        self.max_length = max_length
        self.rules = rules  # domain preprocessing, the same function the Predictor applies

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, Any]:
        texts = [str(t) for t in batch[self.text_column]]
        pairs = [str(t) for t in batch[self.pair_column]] if self.pair_column else None
        if self.rules is not None:
            texts = [self.rules(t) for t in texts]
            pairs = [self.rules(t) for t in pairs] if pairs is not None else None
        return self.tokenizer(texts, pairs, truncation=True, max_length=self.max_length)


def tokenize_dataset(dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, text_column: str,
                     pair_column: str | None, max_length: int, keep: tuple[str, ...] = ("labels",),
                     desc: str = "tokenizing", rules: Callable[[str], str] | None = None) -> datasets.Dataset:
    drop = [c for c in dataset.column_names if c not in keep]
    return dataset.map(Tokenize(tokenizer, text_column, pair_column, max_length, rules), batched=True,
                       remove_columns=drop, desc=desc)
