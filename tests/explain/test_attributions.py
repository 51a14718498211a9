"""Token attributions: shape of the results, and whether each method finds a planted trigger word."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from tests.explain.conftest import TRIGGER, trigger_rows
from tuneforge.errors import TuneforgeError
from tuneforge.explain import (
    Attribution,
    global_token_importance,
    integrated_gradients,
    lime_attribution,
    rollout_attribution,
    shap_attribution,
)

METHODS = {
    "ig": lambda predictor, text, **kw: integrated_gradients(predictor, text, n_steps=32, **kw),
    "shap": lambda predictor, text, **kw: shap_attribution(predictor, text, max_evals=100, **kw),
    "lime": lambda predictor, text, **kw: lime_attribution(predictor, text, num_samples=150, **kw),
    "attention": lambda predictor, text, **kw: rollout_attribution(predictor, text, **kw),
}
HELD_OUT = trigger_rows(16, seed=7)
POSITIVE_TEXTS = [row["text"] for row in HELD_OUT if row["label"] == "positive"]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_one_finite_score_per_token(trigger_predictor, method):
    text = "the zorblax service, was very lovely today"  # punctuation and a word piece the vocabulary lacks
    attribution = METHODS[method](trigger_predictor, text)
    assert attribution.method == method
    assert len(attribution.tokens) == len(attribution.scores) > 0
    assert all(math.isfinite(score) for score in attribution.scores)
    if method == "lime":
        assert attribution.level == "word"
        assert attribution.tokens == ["the", "zorblax", "service", "was", "very", "lovely", "today"]
    else:
        assert attribution.tokens == trigger_predictor.tokenizer.tokenize(text)  # word pieces, specials left out
    prediction = trigger_predictor.predict([text])[0]
    assert attribution.label == prediction["label"]
    assert attribution.probability == pytest.approx(prediction["score"], abs=1e-5)


@pytest.mark.parametrize("method", ["ig", "shap", "lime"])
def test_planted_trigger_is_the_most_influential_token(trigger_predictor, method):
    """The trigger alone decides the label; random or misaligned scores would rank it first ~1 time in 7."""
    assert len(POSITIVE_TEXTS) == 8
    firsts = []
    for text in POSITIVE_TEXTS:
        attribution = METHODS[method](trigger_predictor, text)
        assert attribution.label == "positive"
        token, score = attribution.top(1)[0]
        firsts.append(token == TRIGGER and score > 0)  # and it speaks for the class, not against it
    assert sum(firsts) >= (8 if method == "ig" else 7), firsts


def test_integrated_gradients_converges_and_explains_a_named_class(trigger_predictor):
    text = POSITIVE_TEXTS[0]
    for_class = integrated_gradients(trigger_predictor, text, n_steps=64)
    assert abs(for_class.delta) < 0.05  # the scores add up to the change in probability from the baseline
    against = integrated_gradients(trigger_predictor, text, label="negative", n_steps=64)
    assert against.label == "negative"
    assert against.probability == pytest.approx(1 - for_class.probability, abs=1e-5)
    scores = dict(zip(against.tokens, against.scores, strict=True))
    assert scores[TRIGGER] == min(against.scores) < 0  # the trigger is the strongest evidence against "negative"


def test_unknown_label_and_regression_runs_are_user_errors(trigger_predictor):
    with pytest.raises(TuneforgeError, match="not one of") as error:
        integrated_gradients(trigger_predictor, "a text", label="neutral")
    assert "negative, positive" in error.value.fix
    regression = SimpleNamespace(labels=None, recipe=SimpleNamespace(task="regression"))
    for method in (integrated_gradients, shap_attribution, lime_attribution):
        with pytest.raises(TuneforgeError, match="regression") as error:
            method(regression, "a text")
        assert "attention" in error.value.fix


def test_global_token_importance_ranks_by_mean_score_per_class():
    attributions = [
        Attribution("ig", ["good", "the"], [0.6, 0.1], "positive", 0.9),
        Attribution("ig", ["the", "good", "good"], [-0.1, 0.2, 0.4], "positive", 0.8),
        Attribution("ig", ["bad", "the"], [0.5, 0.3], "negative", 0.7),
    ]
    result = global_token_importance(attributions)
    assert result["positive"] == [("good", pytest.approx(0.4), 3), ("the", pytest.approx(0.0), 2)]
    assert [item.token for item in result["negative"]] == ["bad", "the"]
    assert global_token_importance(attributions, min_count=3)["positive"] == [("good", pytest.approx(0.4), 3)]
    assert len(global_token_importance(attributions, top=1)["negative"]) == 1


def test_global_importance_over_positive_texts_finds_the_trigger(trigger_predictor):
    attributions = [integrated_gradients(trigger_predictor, text, n_steps=16) for text in POSITIVE_TEXTS]
    top = global_token_importance(attributions)["positive"][0]
    assert top.token == TRIGGER and top.count == len(POSITIVE_TEXTS)
