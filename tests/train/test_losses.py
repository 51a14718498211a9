"""Task losses against plain-torch references, their batch normalisation, and class-weight resolution."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tuneforge.data.class_weights import balanced_class_weights, resolve_class_weights
from tuneforge.recipe import Recipe, recipe_from_dict
from tuneforge.train.losses import build_loss

# Four examples, three classes: confident-right, confident-wrong, unsure and uniform rows.
LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0], [-2.0, 1.5, 0.0], [1.0, 1.0, 1.0]])
CLASS_LABELS = torch.tensor([0, 0, 1, 2])
CLASS_WEIGHTS = [0.5, 2.0, 3.0]
# Residuals -0.5, 1.5, 0.0, -3.0: both sides of a Huber delta of 1.
PREDICTIONS = torch.tensor([[1.5], [1.5], [-2.0], [0.0]])
TARGETS = torch.tensor([2.0, 0.0, -2.0, 3.0])

CLASSIFICATION_LOSSES = [
    ("cross_entropy", {}),
    ("weighted_cross_entropy", {}),
    ("cross_entropy", {"label_smoothing": 0.2}),
    ("focal", {"focal_gamma": 2.0}),
]
REGRESSION_LOSSES = [("mse", {}), ("mae", {}), ("huber", {"huber_delta": 1.0})]


def recipe(task: str = "classification", **loss) -> Recipe:
    return recipe_from_dict({"task": task, "loss": loss})


def per_example_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    log_p = torch.log(torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True))
    return -log_p[torch.arange(len(labels)), labels]


def out(logits: torch.Tensor) -> dict:
    return {"logits": logits}


# --- values against independent references -------------------------------------------------------------

def test_cross_entropy_is_the_mean_negative_log_likelihood():
    loss = build_loss(recipe(name="cross_entropy"))(out(LOGITS), CLASS_LABELS)
    expected = per_example_nll(LOGITS, CLASS_LABELS).mean()
    assert torch.allclose(loss, expected, atol=1e-6)


def test_auto_loss_is_cross_entropy_for_classification_and_mse_for_regression():
    classification = build_loss(recipe())(out(LOGITS), CLASS_LABELS)
    assert torch.allclose(classification, per_example_nll(LOGITS, CLASS_LABELS).mean(), atol=1e-6)
    regression = build_loss(recipe("regression"))(out(PREDICTIONS), TARGETS)
    assert torch.allclose(regression, ((PREDICTIONS.squeeze(1) - TARGETS) ** 2).mean(), atol=1e-6)


def test_outputs_may_be_a_dict_or_an_object_with_logits():
    loss = build_loss(recipe(name="cross_entropy"))
    assert torch.equal(loss(out(LOGITS), CLASS_LABELS), loss(SimpleNamespace(logits=LOGITS), CLASS_LABELS))


@pytest.mark.parametrize("name", ["cross_entropy", "weighted_cross_entropy"])
def test_class_weights_scale_each_example_and_divide_by_the_example_count(name):
    loss = build_loss(recipe(name=name), CLASS_WEIGHTS)(out(LOGITS), CLASS_LABELS)
    weights = torch.tensor(CLASS_WEIGHTS)[CLASS_LABELS]
    expected = (weights * per_example_nll(LOGITS, CLASS_LABELS)).sum() / len(CLASS_LABELS)
    assert torch.allclose(loss, expected, atol=1e-6)
    # Not torch's weighted mean (divided by the summed weights): that would change with the batch's class mix.
    weighted_mean = (weights * per_example_nll(LOGITS, CLASS_LABELS)).sum() / weights.sum()
    assert not torch.allclose(loss, weighted_mean, atol=1e-3)


def test_label_smoothing_mixes_the_target_with_a_uniform_distribution():
    eps = 0.2
    loss = build_loss(recipe(name="cross_entropy", label_smoothing=eps))(out(LOGITS), CLASS_LABELS)
    log_p = torch.log_softmax(LOGITS, dim=1)
    classes = LOGITS.shape[1]
    target = torch.full_like(LOGITS, eps / classes)
    target[torch.arange(len(CLASS_LABELS)), CLASS_LABELS] += 1 - eps
    expected = -(target * log_p).sum(dim=1).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    assert not torch.allclose(loss, per_example_nll(LOGITS, CLASS_LABELS).mean(), atol=1e-3)


def test_focal_with_gamma_zero_is_cross_entropy():
    focal = build_loss(recipe(name="focal", focal_gamma=0.0))(out(LOGITS), CLASS_LABELS)
    cross_entropy = build_loss(recipe(name="cross_entropy"))(out(LOGITS), CLASS_LABELS)
    assert torch.allclose(focal, cross_entropy, atol=1e-6)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_down_weights_easy_examples(gamma):
    loss = build_loss(recipe(name="focal", focal_gamma=gamma))(out(LOGITS), CLASS_LABELS)
    nll = per_example_nll(LOGITS, CLASS_LABELS)
    p = torch.exp(-nll)
    expected = ((1 - p) ** gamma * nll).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    assert loss < nll.mean()


def test_focal_applies_class_weights_per_example():
    gamma = 2.0
    loss = build_loss(recipe(name="focal", focal_gamma=gamma), CLASS_WEIGHTS)(out(LOGITS), CLASS_LABELS)
    nll = per_example_nll(LOGITS, CLASS_LABELS)
    weights = torch.tensor(CLASS_WEIGHTS)[CLASS_LABELS]
    expected = (weights * (1 - torch.exp(-nll)) ** gamma * nll).sum() / len(CLASS_LABELS)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_mse_and_mae():
    residual = PREDICTIONS.squeeze(1) - TARGETS
    mse = build_loss(recipe("regression", name="mse"))(out(PREDICTIONS), TARGETS)
    mae = build_loss(recipe("regression", name="mae"))(out(PREDICTIONS), TARGETS)
    assert torch.allclose(mse, (residual**2).mean(), atol=1e-6)
    assert torch.allclose(mae, residual.abs().mean(), atol=1e-6)


@pytest.mark.parametrize("delta", [0.5, 1.0, 2.0])
def test_huber_is_quadratic_inside_delta_and_linear_outside(delta):
    loss = build_loss(recipe("regression", name="huber", huber_delta=delta))(out(PREDICTIONS), TARGETS)
    r = (PREDICTIONS.squeeze(1) - TARGETS).abs()
    per_example = torch.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta))
    assert torch.allclose(loss, per_example.mean(), atol=1e-6)


def test_huber_with_a_delta_beyond_every_residual_is_half_the_mse():
    huber = build_loss(recipe("regression", name="huber", huber_delta=100.0))(out(PREDICTIONS), TARGETS)
    mse = build_loss(recipe("regression", name="mse"))(out(PREDICTIONS), TARGETS)
    assert torch.allclose(huber, 0.5 * mse, atol=1e-6)


def test_regression_accepts_flat_predictions_and_integer_targets():
    loss = build_loss(recipe("regression", name="mse"))
    reference = loss(out(PREDICTIONS), TARGETS)
    assert torch.equal(loss(out(PREDICTIONS.squeeze(1)), TARGETS), reference)
    assert torch.equal(loss(out(PREDICTIONS), TARGETS.long()), reference)


# --- normalisation by num_items_in_batch (what makes gradient accumulation exact) ----------------------

ALL_LOSSES = [("classification", n, kw) for n, kw in CLASSIFICATION_LOSSES] + [
    ("regression", n, kw) for n, kw in REGRESSION_LOSSES
]


def inputs_for(task: str) -> tuple[torch.Tensor, torch.Tensor]:
    return (LOGITS, CLASS_LABELS) if task == "classification" else (PREDICTIONS, TARGETS)


@pytest.mark.parametrize(("task", "name", "options"), ALL_LOSSES)
@pytest.mark.parametrize("split", [2, 1, 3])
def test_parts_normalised_by_the_full_count_sum_to_the_full_batch_loss(task, name, options, split):
    weights = CLASS_WEIGHTS if task == "classification" and name != "cross_entropy" else None
    loss = build_loss(recipe(task, name=name, **options), weights)
    logits, labels = inputs_for(task)
    full = loss(out(logits), labels)
    # The Trainer passes the count as a tensor; both forms must work.
    for count in (len(labels), torch.tensor(len(labels))):
        parts = loss(out(logits[:split]), labels[:split], count) + loss(out(logits[split:]), labels[split:], count)
        assert torch.allclose(parts, full, atol=1e-6), (name, split)


@pytest.mark.parametrize(("task", "name", "options"), ALL_LOSSES)
def test_accumulated_gradients_equal_full_batch_gradients(task, name, options):
    weights = CLASS_WEIGHTS if task == "classification" and name != "cross_entropy" else None
    loss = build_loss(recipe(task, name=name, **options), weights)
    logits, labels = inputs_for(task)

    full_logits = logits.clone().requires_grad_(True)
    loss(out(full_logits), labels).backward()

    micro_logits = logits.clone().requires_grad_(True)
    count = torch.tensor(len(labels))
    for part in (slice(0, 1), slice(1, 4)):  # unequal micro-batches
        loss(out(micro_logits[part]), labels[part], count).backward()
    assert torch.allclose(micro_logits.grad, full_logits.grad, atol=1e-6)


@pytest.mark.parametrize(("task", "name", "options"), ALL_LOSSES)
def test_without_a_count_the_loss_is_the_batch_mean(task, name, options):
    loss = build_loss(recipe(task, name=name, **options))
    logits, labels = inputs_for(task)
    counted = loss(out(logits), labels, len(labels))
    assert torch.allclose(loss(out(logits), labels), counted, atol=1e-7)
    assert torch.allclose(loss(out(logits), labels, 2 * len(labels)), counted / 2, atol=1e-7)


# --- class weights --------------------------------------------------------------------------------------

LABELS = ["a", "b", "c"]
IMBALANCED = [10, 30, 60]
EVEN = [20, 20, 20]


def inverse_frequency(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [total / (len(counts) * c) for c in counts]


def classification_recipe(loss: dict | None = None, imbalance: dict | None = None) -> Recipe:
    return recipe_from_dict({"task": "classification", "loss": loss or {}, "imbalance": imbalance or {}})


def test_balanced_class_weights_are_inverse_frequency_with_mean_one_per_example():
    weights = balanced_class_weights(IMBALANCED)
    assert weights == pytest.approx(inverse_frequency(IMBALANCED))
    assert sum(w * c for w, c in zip(weights, IMBALANCED, strict=True)) / sum(IMBALANCED) == pytest.approx(1.0)
    assert balanced_class_weights(EVEN) == pytest.approx([1.0, 1.0, 1.0])


def test_explicit_weights_are_used_in_label_order_and_missing_labels_weigh_one():
    chosen = classification_recipe({"class_weights": {"c": 0.25, "a": 4.0}})
    assert resolve_class_weights(chosen, LABELS, IMBALANCED) == [4.0, 1.0, 0.25]


def test_explicit_weights_win_over_the_imbalance_switch():
    chosen = classification_recipe({"class_weights": {"b": 2.0}}, {"class_weights": "on"})
    assert resolve_class_weights(chosen, LABELS, IMBALANCED) == [1.0, 2.0, 1.0]


def test_balanced_weights_follow_the_class_counts():
    balanced = classification_recipe({"class_weights": "balanced"}, {"class_weights": "off"})
    assert resolve_class_weights(balanced, LABELS, IMBALANCED) == pytest.approx(inverse_frequency(IMBALANCED))
    assert resolve_class_weights(balanced, LABELS, EVEN) == pytest.approx([1.0, 1.0, 1.0])


def test_weighted_cross_entropy_without_weights_uses_balanced_ones():
    weighted = classification_recipe({"name": "weighted_cross_entropy"}, {"class_weights": "off"})
    assert resolve_class_weights(weighted, LABELS, IMBALANCED) == pytest.approx(inverse_frequency(IMBALANCED))


def test_imbalance_switch_on_and_off():
    on = classification_recipe(imbalance={"class_weights": "on"})
    assert resolve_class_weights(on, LABELS, IMBALANCED) == pytest.approx(inverse_frequency(IMBALANCED))
    assert resolve_class_weights(on, LABELS, EVEN) == pytest.approx([1.0, 1.0, 1.0])
    off = classification_recipe(imbalance={"class_weights": "off"})
    assert resolve_class_weights(off, LABELS, IMBALANCED) is None


@pytest.mark.parametrize(
    ("counts", "threshold", "weighted"),
    [
        ([10, 20], 1.5, True),  # ratio 2 above the threshold
        ([10, 15], 1.5, True),  # exactly at it: "at least ratio_threshold times"
        ([10, 14], 1.5, False),  # ratio 1.4 below it
        ([10, 20], 3.0, False),  # a higher threshold tolerates the same data
        ([10, 10], 1.0, True),  # threshold 1 weights any data
    ],
)
def test_auto_weights_start_at_the_ratio_threshold(counts, threshold, weighted):
    auto = classification_recipe(imbalance={"class_weights": "auto", "ratio_threshold": threshold})
    weights = resolve_class_weights(auto, ["x", "y"], counts)
    if weighted:
        assert weights == pytest.approx(inverse_frequency(counts))
    else:
        assert weights is None


def test_auto_weights_are_the_default_for_imbalanced_data():
    assert resolve_class_weights(classification_recipe(), LABELS, IMBALANCED) == pytest.approx(
        inverse_frequency(IMBALANCED))
    assert resolve_class_weights(classification_recipe(), LABELS, EVEN) is None


def test_oversampling_turns_auto_weights_off():
    oversampled = classification_recipe(imbalance={"class_weights": "auto", "oversample": True})
    assert resolve_class_weights(oversampled, LABELS, IMBALANCED) is None


@pytest.mark.parametrize("loss_name", ["cross_entropy", "focal", "mse"])
def test_example_weights_scale_each_example(loss_name):
    from tuneforge.recipe import recipe_from_dict
    from tuneforge.train.losses import build_loss

    task = "regression" if loss_name == "mse" else "classification"
    loss = build_loss(recipe_from_dict({"task": task, "loss": {"name": loss_name}}))
    torch.manual_seed(0)
    logits = torch.randn(4, 1 if task == "regression" else 3)
    labels = torch.randn(4) if task == "regression" else torch.tensor([0, 1, 2, 1])
    outputs = {"logits": logits}
    weights = torch.tensor([0.5, 2.0, 1.0, 0.0])
    per_example = torch.stack([loss(outputs_i, labels[i:i + 1], num_items_in_batch=1)
                               for i, outputs_i in enumerate({"logits": logits[i:i + 1]} for i in range(4))])
    weighted = loss(outputs, labels, num_items_in_batch=4, weights=weights)
    assert torch.allclose(weighted, (per_example * weights).sum() / 4, atol=1e-6)
    assert torch.allclose(loss(outputs, labels, num_items_in_batch=4, weights=torch.ones(4)),
                          loss(outputs, labels, num_items_in_batch=4), atol=1e-6)
