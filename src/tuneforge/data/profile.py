"""What a training file says about the run it needs: how many rows, how long the texts, which language.

Token counts are estimated without a tokenizer (one token per about four characters of a word, one per CJK
character, two special tokens per text): good to about a third for WordPiece/BPE vocabularies, enough to size
memory and time before a model is chosen.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from tuneforge.data.conll import is_conll, read_conll
from tuneforge.data.language import LanguageGuess, detect_language
from tuneforge.errors import DataError, Problem

SAMPLE = 2000  # rows read for lengths and language; the row count covers the whole file
_WORD = re.compile(r"\S+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


@dataclass(frozen=True)
class DataProfile:
    path: str
    rows: int
    text_column: str
    token_lengths: tuple[int, ...]  # estimated tokens of the sampled rows, sorted
    language: LanguageGuess
    labels: int | None  # distinct values of the label column, when there is one

    def quantile(self, share: float) -> int:
        if not self.token_lengths:
            return 0
        index = min(len(self.token_lengths) - 1, max(0, math.ceil(share * len(self.token_lengths)) - 1))
        return self.token_lengths[index]

    def padded_tokens(self, batch_size: int, max_length: int) -> float:
        """Tokens per row after padding each batch to its longest text (dynamic padding): about the
        batch_size/(batch_size+1) quantile of the lengths, capped at max_length."""
        return float(min(max_length, max(1, self.quantile(batch_size / (batch_size + 1)))))

    def suggested_max_length(self, context: int | None = None) -> int:
        """The smallest power of two from 32 that holds 95% of the texts, within the model's context."""
        needed = max(32, self.quantile(0.95))
        length = 2 ** math.ceil(math.log2(needed))
        return min(length, context or 512, 512)


def estimate_tokens(text: str) -> int:
    cjk = len(_CJK.findall(text))
    words = sum(max(1, math.ceil(len(word) / 4)) for word in _WORD.findall(_CJK.sub(" ", text)))
    return 2 + words + cjk


def profile_conll(path: str | Path) -> DataProfile:
    """A CoNLL file (a token per line, sentences between blank lines): a row is a sentence, `labels` the tags."""
    sentences = read_conll(path)
    texts = [" ".join(tokens) for tokens in sentences.tokens[:SAMPLE]]
    tags = {tag for row in sentences.tags for tag in row}
    return DataProfile(path=str(path), rows=len(sentences), text_column="tokens",
                       token_lengths=tuple(sorted(estimate_tokens(text) for text in texts)),
                       language=detect_language(texts), labels=len(tags) or None)


def profile_data(path: str | Path, text_column: str = "text", label_column: str | None = "label",
                 conll: bool | None = None) -> DataProfile:
    """Read a training file (any format `tuneforge train` reads) and describe it; `conll` None reads CoNLL by
    suffix (.conll, .bio, .iob ...; .txt only when asked, since a .txt may hold one text per line)."""
    from tuneforge.data.loading import read_table

    if conll or (conll is None and is_conll(path) and Path(path).suffix.lower() != ".txt"):
        return profile_conll(path)
    table = read_table(path)
    columns = list(table.column_names)
    if text_column not in columns:
        textual = [name for name in columns if str(table.features[name]) == "Value('string')"
                   or getattr(table.features[name], "dtype", "") == "string"]
        if not textual:
            raise DataError([Problem(where=str(path), message=f"no column '{text_column}' and no text column",
                                     fix="name the text column with --text-column")])
        text_column = textual[0]
    sample = table.select(range(min(SAMPLE, len(table))))
    texts = [str(text) for text in sample[text_column] if text is not None]
    labels = None
    if label_column and label_column in columns:
        labels = len(set(sample[label_column]))
    return DataProfile(path=str(path), rows=len(table), text_column=text_column,
                       token_lengths=tuple(sorted(estimate_tokens(text) for text in texts)),
                       language=detect_language(texts), labels=labels)
