"""Token classification: sub-word alignment, entity-level metrics against hand-counted values, decoding."""

from __future__ import annotations

import numpy as np
import pytest

from tuneforge.tasks.token_classification import IGNORE, compute_metrics, decode_words, first_subword_labels

NAMES = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def one_hot(ids: list[int]) -> np.ndarray:
    logits = np.full((len(ids), len(NAMES)), -5.0)
    logits[np.arange(len(ids)), ids] = 5.0
    return logits


def test_first_subword_carries_the_word_label():
    # [CLS] Jo ##hn lives [SEP]: word ids None 0 0 1 None
    assert first_subword_labels([None, 0, 0, 1, None], [3, 0]) == [IGNORE, 3, IGNORE, 0, IGNORE]
    assert first_subword_labels([None, 0, None], None) == [IGNORE, IGNORE, IGNORE]


def test_alignment_with_a_real_tokenizer(tiny_model):
    from transformers import AutoTokenizer

    from tuneforge.tasks.token_classification import AlignLabels

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    align = AlignLabels(tokenizer, {name: i for i, name in enumerate(NAMES)}, max_length=32)
    batch = align({"tokens": [["the", "xyzzyplugh", "food"]], "tags": [["O", "B-PER", "O"]]})
    labels = batch["labels"][0]
    assert len(labels) == len(batch["input_ids"][0])
    assert [label for label in labels if label != IGNORE] == [0, 3, 0]  # one label per word
    assert labels[0] == labels[-1] == IGNORE  # [CLS] and [SEP]


def test_entity_metrics_match_hand_counts():
    # Sentence 1: truth LOC(0-1), PER(3); predicted LOC(0-1) right, PER missed.
    # Sentence 2: truth PER(0-1); predicted PER(0) only: wrong boundary, so a false positive and a miss.
    truth = [[1, 2, 0, 3, IGNORE], [3, 4, 0, IGNORE, IGNORE]]
    predicted = [[1, 2, 0, 0, 0], [3, 0, 0, 0, 0]]
    logits = np.stack([one_hot(row) for row in predicted])
    metrics = compute_metrics(logits, np.array(truth), NAMES)
    # 3 true entities, 2 predicted, 1 correct.
    assert metrics["precision"] == pytest.approx(1 / 2)
    assert metrics["recall"] == pytest.approx(1 / 3)
    assert metrics["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert metrics["per_type"]["LOC"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert metrics["per_type"]["PER"]["support"] == 2 and metrics["per_type"]["PER"]["f1"] == 0.0
    assert metrics["token_accuracy"] == pytest.approx(5 / 7)  # 7 labelled words; B-PER and I-PER missed
    assert metrics["sentences"] == 2


def test_decode_words_gives_tags_scores_and_entity_spans():
    words = ["Ada", "Lovelace", "visited", "Paris", "today"]
    word_ids = [None, 0, 1, 1, 2, 3, None]  # "today" was cut off by max_length
    logits = one_hot([0, 3, 4, 4, 0, 1, 0])
    result = decode_words(logits, word_ids, words, NAMES)
    assert result["tags"] == ["B-PER", "I-PER", "O", "B-LOC", "O"]
    assert result["scores"][-1] is None and result["scores"][0] == pytest.approx(1.0, abs=1e-3)
    assert result["entities"] == [{"type": "PER", "start": 0, "end": 2, "text": "Ada Lovelace"},
                                  {"type": "LOC", "start": 3, "end": 4, "text": "Paris"}]
