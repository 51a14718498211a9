"""Text metrics on fixed strings (known answers) and the recipe's generation settings."""

from __future__ import annotations

import pytest

from tuneforge.recipe import GenerationSpec
from tuneforge.tasks.generation import generation_kwargs, text_metrics


def test_identical_texts_score_full_marks():
    texts = ["the cat sat on the mat", "a quick brown fox jumps"]
    metrics = text_metrics(texts, texts)
    assert metrics["bleu"] == pytest.approx(100.0)
    assert metrics["chrf"] == pytest.approx(100.0)
    for name in ("rouge1", "rouge2", "rougeL"):
        assert metrics[name] == pytest.approx(100.0)
    assert metrics["exact_match"] == 1.0
    assert metrics["examples"] == 2


def test_disjoint_texts_score_zero():
    metrics = text_metrics(["xyz qqq"], ["the cat sat"])
    assert metrics["bleu"] == 0.0
    assert metrics["rouge1"] == 0.0
    assert metrics["exact_match"] == 0.0


def test_rouge1_of_a_partial_match():
    # 2 of 2 predicted unigrams are in the 3-word reference: P = 1, R = 2/3, F1 = 0.8
    metrics = text_metrics(["the cat"], ["the cat sat"])
    assert metrics["rouge1"] == pytest.approx(80.0)
    assert metrics["rouge2"] == pytest.approx(100.0 * 2 * (1 * 0.5) / 1.5)  # bigram P = 1, R = 1/2
    assert 0.0 < metrics["chrf"] < 100.0


def test_bleu_matches_the_published_definition_on_a_known_pair():
    # sacrebleu's own example: 4-gram precisions with brevity penalty 1 for the same length
    import sacrebleu

    hypothesis, reference = ["The dog bit the man ."], ["The dog bit the man ."]
    assert text_metrics(hypothesis, reference)["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(hypothesis, [reference]).score)
    near = text_metrics(["The dog bit the guy ."], ["The dog bit the man ."])["bleu"]
    assert 0.0 < near < 100.0


def test_greedy_generation_leaves_out_sampling_settings():
    class Tok:
        pad_token_id, eos_token_id = 0, 2

    greedy = generation_kwargs(GenerationSpec(temperature=0.5), Tok())
    assert "temperature" not in greedy and greedy["do_sample"] is False
    sampled = generation_kwargs(GenerationSpec(do_sample=True, temperature=0.5, top_p=0.9), Tok())
    assert sampled["temperature"] == 0.5 and sampled["top_p"] == 0.9 and sampled["eos_token_id"] == 2
    assert generation_kwargs(GenerationSpec(), Tok(), max_new_tokens=3)["max_new_tokens"] == 3
