"""Token classification (NER and other BIO tagging): word/sub-word label alignment, entity-level metrics, decoding.

Labels live on words, the model sees sub-words: each word's tag goes to its first sub-word and the rest get
-100 (ignored by the loss and the metrics), so a word is counted once however the tokenizer splits it.
Metrics are entity-level through `seqeval` (the CoNLL evaluation), not token accuracy, which rewards the
majority `O` tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import softmax
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities
from transformers import PreTrainedTokenizerBase

NAME = "token-classification"
ALIASES = ("ner",)
PRIMARY_METRICS = ("f1", "precision", "recall")
IGNORE = -100


class AlignLabels:
    """Picklable batch function: tokenise pre-split words and put each word's tag id on its first sub-word."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, label2id: dict[str, int], max_length: int,
                 token_field: str = "tokens", tag_field: str = "tags") -> None:
        self.tokenizer = tokenizer
        self.label2id = label2id
        self.max_length = max_length
        self.token_field = token_field
        self.tag_field = tag_field

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, Any]:
        encoded = self.tokenizer(batch[self.token_field], is_split_into_words=True, truncation=True,
                                 max_length=self.max_length)
        labels = []
        for index, tags in enumerate(batch[self.tag_field]):
            ids = [self.label2id[tag] for tag in tags] if tags is not None else None
            labels.append(first_subword_labels(encoded.word_ids(index), ids))
        encoded["labels"] = labels
        return encoded


def first_subword_labels(word_ids: Sequence[int | None], word_labels: Sequence[int] | None) -> list[int]:
    """One label per sub-word: the word's label on its first piece, -100 on later pieces and special tokens."""
    labels, previous = [], None
    for word in word_ids:
        if word is None or word == previous or word_labels is None:
            labels.append(IGNORE)
        else:
            labels.append(int(word_labels[word]))
        previous = word
    return labels


def _sequences(logits: np.ndarray, labels: np.ndarray, label_names: Sequence[str]
               ) -> tuple[list[list[str]], list[list[str]]]:
    """True and predicted tag sequences over the labelled positions (first sub-words) of each sentence."""
    predicted = np.asarray(logits).argmax(axis=-1)
    truth, guess = [], []
    for true_row, predicted_row in zip(np.asarray(labels), predicted, strict=True):
        keep = true_row != IGNORE
        truth.append([label_names[i] for i in true_row[keep]])
        guess.append([label_names[i] for i in predicted_row[keep]])
    return truth, guess


def compute_metrics(logits: np.ndarray, labels: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    """Entity-level micro precision/recall/F1 (an entity counts when its type and both boundaries agree), per
    entity type, and word-level tag accuracy. seqeval's default mode follows the CoNLL `conlleval` script (a
    stray I- tag opens an entity), as the published NER baselines do, so figures compare with theirs."""
    return entity_metrics(*_sequences(logits, labels, label_names))


def entity_metrics(truth: list[list[str]], guess: list[list[str]]) -> dict[str, Any]:
    """The metrics of `compute_metrics` from tag sequences, e.g. a tagged file against its gold tags."""
    options = {"zero_division": 0}
    report = classification_report(truth, guess, output_dict=True, **options)
    per_type = {kind: {"precision": float(row["precision"]), "recall": float(row["recall"]),
                       "f1": float(row["f1-score"]), "support": int(row["support"])}
                for kind, row in report.items() if not kind.endswith(" avg")}
    return {
        "f1": float(f1_score(truth, guess, **options)),
        "precision": float(precision_score(truth, guess, **options)),
        "recall": float(recall_score(truth, guess, **options)),
        "f1_macro": float(f1_score(truth, guess, average="macro", **options)),
        "token_accuracy": float(accuracy_score(truth, guess)),
        "per_type": per_type,
        "sentences": len(truth),
    }


def decode_words(logits: np.ndarray, word_ids: Sequence[int | None], words: Sequence[str],
                 label_names: Sequence[str]) -> dict[str, Any]:
    """One sentence's prediction: a tag and its probability per word (from the word's first sub-word), and the
    entities as spans of words. Words cut off by max_length get the tag O with probability None."""
    probabilities = softmax(np.asarray(logits, dtype=np.float64), axis=-1)
    first: dict[int, int] = {}
    for position, word in enumerate(word_ids):
        if word is not None and word not in first:
            first[word] = position
    tags, scores = [], []
    for index in range(len(words)):
        position = first.get(index)
        if position is None:
            tags.append("O")
            scores.append(None)
            continue
        best = int(probabilities[position].argmax())
        tags.append(label_names[best])
        scores.append(float(probabilities[position][best]))
    entities = [{"type": kind, "start": start, "end": end + 1, "text": " ".join(words[start:end + 1])}
                for kind, start, end in get_entities(tags)]
    return {"tags": tags, "scores": scores, "entities": entities}
