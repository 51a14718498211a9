"""Capability refusals come from the run kinds' declarations: a setting is refused exactly where the recipe's kind
does not declare it, and the refusal names the field, the kind and the fix."""

from __future__ import annotations

import dataclasses

import pytest

from tuneforge.errors import RecipeError
from tuneforge.kinds import GENERATIVE, KINDS, MULTILABEL, MULTIMODAL, MULTITASK, TAGGING, TEXT, kind_of
from tuneforge.recipe import PeftMethod, Recipe, recipe_from_dict

# One recipe of each kind a recipe can make (an ensemble is built from finished runs, not from a recipe).
BASES = {
    TEXT: {"task": "classification"},
    MULTILABEL: {"task": "multilabel"},
    TAGGING: {"task": "ner"},
    GENERATIVE: {"task": "causal-lm"},
    MULTIMODAL: {"features": {"numeric": ["age"]}},
    MULTITASK: {"tasks": [{"name": "a"}, {"name": "b"}]},
}
# Each switchable capability, the recipe fragment that asks for it, and the field its refusal must name.
USES = {
    "freeze": ({"freeze": {"layers": 1}}, "freeze.layers"),
    "gradual_unfreeze": ({"freeze": {"gradual_unfreeze": True}}, "freeze.gradual_unfreeze"),
    "domain": ({"domain": {"rule_packs": ["legal"]}}, "domain.rule_packs"),
    "domain_model": ({"domain": {"extend_vocabulary": True}}, "domain.extend_vocabulary"),
    "augment": ({"augment": {"methods": [{"method": "shuffle"}]}}, "augment.methods"),
    "clean": ({"clean": {"enabled": True}}, "clean.enabled"),
    "class_weights": ({"imbalance": {"class_weights": "on"}}, "imbalance.class_weights"),
    "oversample": ({"imbalance": {"oversample": True}}, "imbalance.oversample"),
    "fairness_mitigation": ({"fairness": {"mitigation": "reweight"}}, "fairness.mitigation"),
    "plugins": ({"evaluation": {"plugins": ["mypackage.checks:score"]}}, "evaluation.plugins"),
    "batch_size_auto": ({"train": {"batch_size": "auto"}}, "train.batch_size"),
}


def _outcome(data: dict) -> Recipe | RecipeError:
    try:
        return recipe_from_dict(data)
    except RecipeError as error:
        return error


@pytest.mark.parametrize("kind", list(BASES))
@pytest.mark.parametrize("capability", list(USES))
def test_a_setting_is_refused_exactly_where_the_kind_does_not_declare_it(kind, capability):
    fragment, field = USES[capability]
    outcome = _outcome({**BASES[kind], **fragment})
    if getattr(KINDS[kind], capability):
        assert isinstance(outcome, Recipe), outcome
        assert kind_of(outcome).name == kind
        return
    assert isinstance(outcome, RecipeError)
    [problem] = outcome.problems
    assert problem.where.endswith(field)
    assert field.split(".")[0] in problem.message and kind in problem.message
    assert problem.fix


@pytest.mark.parametrize("kind", list(BASES))
@pytest.mark.parametrize("method", PeftMethod.names())
def test_peft_methods_follow_the_kind(kind, method):
    outcome = _outcome({**BASES[kind], "peft": {"method": method}})
    if KINDS[kind].supports_peft(method):
        assert isinstance(outcome, Recipe), outcome
        return
    [problem] = outcome.problems
    assert problem.where.endswith("peft.method") and f"'{method}'" in problem.message and kind in problem.message
    allowed = KINDS[kind].peft_methods
    assert all(name in problem.fix for name in allowed) if allowed else "peft.method: none" in problem.fix


def test_declaring_a_capability_lifts_the_refusal(monkeypatch):
    augmented = {**BASES[TAGGING], "augment": {"methods": [{"method": "shuffle"}]}}
    assert isinstance(_outcome(augmented), RecipeError)
    monkeypatch.setitem(KINDS, TAGGING, dataclasses.replace(KINDS[TAGGING], augment=True))
    assert recipe_from_dict(augmented).augment.enabled


def test_every_refusal_of_a_recipe_is_its_own_problem():
    problems = _outcome({**BASES[MULTITASK], "peft": {"method": "lora"}, "clean": {"enabled": True},
                         "augment": {"methods": [{"method": "shuffle"}]}, "loss": {"class_weights": "balanced"}}
                        ).problems
    assert [p.where.split(": ", 1)[1] for p in problems] == ["peft.method", "augment.methods", "loss.class_weights"]
    assert all("multitask runs" in p.message and p.fix for p in problems)


def test_weighted_cross_entropy_asks_for_class_weights():
    weighted = {"loss": {"name": "weighted_cross_entropy"}}
    assert recipe_from_dict({**BASES[TEXT], **weighted}).loss_name() == "weighted_cross_entropy"
    outcome = _outcome({**BASES[MULTIMODAL], **weighted})
    assert isinstance(outcome, Recipe) == KINDS[MULTIMODAL].class_weights


def test_refusals_name_the_task_when_the_kind_is_not_the_task():
    [problem] = _outcome({"task": "seq2seq", "augment": {"methods": [{"method": "shuffle"}]}}).problems
    assert "task seq2seq is a generative run" in problem.message


def test_default_settings_are_never_refused():
    for kind, base in BASES.items():
        assert kind_of(recipe_from_dict(base)).name == kind
