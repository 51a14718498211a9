"""One vocabulary each for PEFT methods, tasks and optimisers: every other list is derived from it or checked here."""

from __future__ import annotations

import pytest

from tuneforge import kinds
from tuneforge.errors import TuneforgeError
from tuneforge.recipe import (
    OPTIMIZERS,
    TASK_ALIASES,
    TASKS,
    PeftMethod,
    PeftSpec,
    TrainSpec,
    recipe_from_dict,
    resolve_task,
)


def test_peft_methods_and_their_properties():
    assert PeftMethod.names() == ("none", "lora", "qlora", "ia3", "prompt_tuning", "prefix_tuning")
    assert [m.value for m in PeftMethod if m.mergeable] == ["lora", "qlora", "ia3"]
    assert [m.value for m in PeftMethod if m.virtual_tokens] == ["prompt_tuning", "prefix_tuning"]
    assert {m.estimate_method for m in PeftMethod} == {"full", "lora", "qlora"}
    assert not PeftMethod.NONE.enabled and PeftMethod.NONE.adapter_type is None


def test_the_recipe_field_is_the_enum_and_reads_like_its_name():
    spec = recipe_from_dict({"peft": {"method": "ia3"}}).peft
    assert spec.method is PeftMethod.IA3 and spec.method == "ia3"
    assert f"{spec.method}" == str(spec.method) == "ia3"
    assert recipe_from_dict({"peft": {"method": "ia3"}}).model_dump(mode="json")["peft"]["method"] == "ia3"
    assert "method: ia3" in recipe_from_dict({"peft": {"method": "ia3"}}).to_yaml()
    assert PeftSpec().enabled is False and PeftSpec(method="lora").enabled


def test_run_kinds_name_only_known_methods():
    enabled = {m.value for m in PeftMethod if m.enabled}
    assert set(kinds.ALL_PEFT) == enabled
    assert set(kinds.WEIGHT_PEFT) == {m.value for m in PeftMethod if m.enabled and not m.virtual_tokens}
    for kind in kinds.KINDS.values():
        assert set(kind.peft_methods) <= enabled, kind.name


def test_models_use_the_one_vocabulary():
    from tuneforge.models import estimate, peft

    assert peft.MERGEABLE == ("lora", "qlora", "ia3") and peft.MERGEABLE_PEFT_TYPES == ("LORA", "IA3")
    assert {m.estimate_method for m in PeftMethod} <= set(estimate.METHODS)
    assert set(estimate.OPTIMIZER_STATES) == set(OPTIMIZERS)
    assert TrainSpec().optimizer in OPTIMIZERS


@pytest.mark.parametrize(("name", "expected"), [
    ("ner", ("token-classification", False)), (" Multi-Label ", ("multilabel", False)),
    ("pair-classification", ("classification", True)), ("sft", ("causal-lm", False)),
    ("regression", ("regression", False)),
])
def test_resolve_task_reads_every_name_the_recipe_takes(name, expected):
    assert resolve_task(name) == expected


def test_every_alias_names_a_task_and_unknown_names_get_the_list():
    assert set(TASK_ALIASES.values()) <= set(TASKS)
    with pytest.raises(TuneforgeError) as refused:
        resolve_task("summarization")
    assert "unknown task 'summarization'" in refused.value.message
    assert "causal-lm" in refused.value.fix and "pair-classification" in refused.value.fix
