"""Attention weights, rollout and their heatmaps."""

from __future__ import annotations

import numpy as np
import pytest

from tuneforge.explain import attention_maps, attention_rollout
from tuneforge.explain.attention import plot_attention_grid, plot_rollout

TEXT = "the zorblax food was lovely"


def test_attention_maps_cover_every_layer_head_and_token(trigger_predictor):
    model = trigger_predictor.model
    before = model.config._attn_implementation
    reference = trigger_predictor.predict([TEXT])[0]["probabilities"]
    maps = attention_maps(trigger_predictor, TEXT)
    tokens = trigger_predictor.tokenizer.tokenize(TEXT)
    assert maps.tokens == ["[CLS]", *tokens, "[SEP]"]
    assert maps.special == [True] + [False] * len(tokens) + [True]
    assert maps.weights.shape == (2, 2, len(tokens) + 2, len(tokens) + 2)  # tiny BERT: 2 layers, 2 heads
    np.testing.assert_allclose(maps.weights.sum(axis=-1), 1.0, atol=1e-5)
    # The switch to eager attention is temporary and changes nothing the predictor computes.
    assert model.config._attn_implementation == before
    after = trigger_predictor.predict([TEXT])[0]["probabilities"]
    assert after == pytest.approx(reference, abs=1e-6)


def test_rollout_rows_sum_to_one(trigger_predictor):
    rollout = attention_rollout(attention_maps(trigger_predictor, TEXT).weights)
    np.testing.assert_allclose(rollout.sum(axis=-1), 1.0, atol=1e-6)
    assert (rollout >= 0).all()
    random = np.random.default_rng(0).random((3, 4, 6, 6))
    random /= random.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(attention_rollout(random).sum(axis=-1), 1.0, atol=1e-9)


def test_rollout_follows_the_formula():
    rng = np.random.default_rng(1)
    weights = rng.random((2, 3, 4, 4))
    weights /= weights.sum(axis=-1, keepdims=True)
    layers = [0.5 * layer.mean(axis=0) + 0.5 * np.eye(4) for layer in weights]
    np.testing.assert_allclose(attention_rollout(weights), layers[1] @ layers[0])
    np.testing.assert_allclose(attention_rollout(weights[:1], residual=0.0), weights[0].mean(axis=0))


def test_heatmaps_are_written_atomically(trigger_predictor, tmp_path):
    maps = attention_maps(trigger_predictor, TEXT)
    plot_attention_grid(maps, tmp_path / "heads.png")
    plot_rollout(maps, tmp_path / "rollout.png")
    for name in ("heads.png", "rollout.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heads.png", "rollout.png"]  # no temporaries left
