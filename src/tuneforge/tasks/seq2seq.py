"""Sequence-to-sequence (summarisation, translation, rewriting) with encoder-decoders: the source text feeds the
encoder, the target's tokens are the decoder's labels, and every target ends in the end-of-sequence token so a
fine-tuned model learns to stop."""

from __future__ import annotations

from typing import Any

NAME = "seq2seq"


def target_ids(tokenizer: Any, target: str, max_length: int) -> list[int]:
    """The target's tokens, ending in EOS even when cut (a T5 tokenizer adds it; a bare one may not)."""
    ids = list(tokenizer(text_target=target, truncation=True, max_length=max_length)["input_ids"])
    eos = tokenizer.eos_token_id
    if eos is not None and (not ids or ids[-1] != eos):
        ids = ids[:max_length - 1] + [eos]
    return ids


def source_ids(tokenizer: Any, source: str, max_length: int) -> list[int]:
    return list(tokenizer(source, truncation=True, max_length=max_length)["input_ids"])


class TokenizeSeq2Seq:
    """Picklable batch tokenizer (datasets fingerprints it and reuses the cached result on the next run)."""

    def __init__(self, tokenizer: Any, max_length: int, target_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.target_length = target_length

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        sources = [source_ids(self.tokenizer, text, self.max_length) for text in batch["source"]]
        targets = [target_ids(self.tokenizer, text, self.target_length) for text in batch["target"]]
        return {"input_ids": sources, "attention_mask": [[1] * len(ids) for ids in sources], "labels": targets,
                "truncated": [len(ids) >= self.max_length for ids in sources]}
