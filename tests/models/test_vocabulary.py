"""Vocabulary extension: which words are mined, how their embeddings start, how much shorter inputs get."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tuneforge.models.vocabulary import extend_vocabulary, initialise_embeddings, mine_terms

CORPUS = ["cardiomyopathy was seen in the echocardiogram"] * 4 + ["no cardiomyopathy today"] * 2 + \
         ["a single rarewordious mention"]


def test_mining_keeps_frequent_words_split_into_many_pieces(tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    pieces = {word: len(tokenizer.tokenize(word)) for word in ("cardiomyopathy", "echocardiogram", "the", "today")}
    terms = mine_terms(CORPUS, tokenizer, max_terms=10, min_frequency=3, min_pieces=3)
    assert "cardiomyopathy" in terms and terms["cardiomyopathy"] == pieces["cardiomyopathy"]
    assert "rarewordious" not in terms  # once only
    assert "the" not in terms  # already a token
    # Ranked by tokens saved: frequency x (pieces - 1).
    counts = Counter(word for text in CORPUS for word in text.split())
    saved = {w: counts[w] * (terms[w] - 1) for w in terms}
    assert list(terms) == sorted(terms, key=lambda w: (-saved[w], w))
    assert mine_terms(CORPUS, tokenizer, max_terms=1, min_frequency=3, min_pieces=3).keys() <= terms.keys()


def test_new_tokens_start_at_the_mean_of_their_pieces_and_shorten_texts(tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    old_embeddings = model.get_input_embeddings().weight.detach().clone()
    old_size = len(tokenizer)
    old_pieces, report = extend_vocabulary(tokenizer, CORPUS, 10, 3, 3)
    assert report.added and report.tokens_per_text_after < report.tokens_per_text_before
    assert 0 < report.reduction < 1

    initialise_embeddings(model, tokenizer, old_pieces)
    embeddings = model.get_input_embeddings().weight
    assert embeddings.shape[0] == len(tokenizer) == old_size + len(report.added)
    for word, pieces in old_pieces.items():
        new_id = tokenizer.convert_tokens_to_ids(word)
        assert new_id >= old_size
        assert torch.allclose(embeddings[new_id], old_embeddings[pieces].mean(dim=0))
    assert torch.equal(embeddings[:old_size], old_embeddings)  # old rows untouched
    # The word is one token now, but only as a whole word.
    assert tokenizer.tokenize("cardiomyopathy") == ["cardiomyopathy"]
    assert len(tokenizer.tokenize("cardiomyopathyx")) > 1
