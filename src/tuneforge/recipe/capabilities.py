"""Which run-kind capabilities a recipe asks for, and the refusal for each one its kind does not declare.

The decision belongs to `tuneforge.kinds`: this module only knows which recipe fields switch a capability on and
how to say no (the fields, the kind, the fix). A kind that gains a capability there loses the refusal here with
no change to this module; a setting the kind's pipeline would skip is refused instead of silently ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tuneforge.kinds import MULTIMODAL, MULTITASK, RunKind
from tuneforge.recipe.freeze import FreezeSpec
from tuneforge.recipe.peft import PeftMethod


@dataclass(frozen=True)
class Refusal:
    """One capability the recipe asks for and its kind lacks."""

    fields: tuple[str, ...]  # the recipe fields that ask for it
    message: str
    fix: str


@dataclass(frozen=True)
class _Request:
    capability: str  # the RunKind attribute that must be true
    fields: tuple[str, ...]
    subject: str  # what is asked for, naming the fields; the message is "subject: does; why not"
    does: str  # what it does, so the refusal says why it needs the capability
    fix: str


def either(names: Sequence[str]) -> str:
    """"a", "a or b", "a, b or c"."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _changed(section: Any, names: Sequence[str], defaults: Any) -> list[str]:
    return [name for name in names if getattr(section, name) != getattr(defaults, name)]


def _requests(recipe: Any, kind: RunKind) -> list[_Request]:
    """Every capability the recipe switches on (the peft method is checked apart: it is a list, not a switch)."""
    requests = []
    frozen = [f"freeze.{name}" for name in _changed(recipe.freeze, ("embeddings", "layers", "all_but_head"),
                                                     FreezeSpec())]
    if frozen:
        requests.append(_Request("freeze", tuple(frozen), either(frozen), "freezes pretrained layers",
                                 f"remove {either(frozen)}: these runs train every weight"))
    if recipe.freeze.gradual_unfreeze:
        alternative = "; freeze.layers or freeze.all_but_head keep layers frozen for the whole run" \
            if kind.freeze else ""
        requests.append(_Request("gradual_unfreeze", ("freeze.gradual_unfreeze",), "freeze.gradual_unfreeze",
                                 "opens one more layer at each epoch", f"remove freeze.gradual_unfreeze{alternative}"))
    domain = recipe.domain
    rules = [f"domain.{name}" for name, on in (("rule_packs", domain.rule_packs), ("rules", domain.rules),
                                               ("functions", domain.functions),
                                               ("unicode_normalization", domain.unicode_normalization != "none"))
             if on]
    if rules:
        requests.append(_Request("domain", tuple(rules), f"domain rules ({', '.join(rules)})",
                                 "rewrite every text before it is tokenised",
                                 "apply the rules to the data files before training (in a tagged file to the words, "
                                 f"never moving them away from their tags), then remove {either(rules)}"))
    adapting = [name for name, on in (("domain.extend_vocabulary", domain.extend_vocabulary),
                                      ("train.stages pretrain", "pretrain" in recipe.train.stages)) if on]
    if adapting:
        requests.append(_Request("domain_model", tuple(adapting), either(adapting),
                                 "adapts the model to the domain (new words, continued pretraining)",
                                 f"remove {either(adapting)}, or adapt the model in a separate single-task text run "
                                 "and name its pretrained/ folder as model.name"))
    if recipe.augment.enabled:
        requests.append(_Request("augment", ("augment.methods",), "augment.methods",
                                 "adds rewritten copies of the training texts",
                                 "remove the augment section, or augment the data file first (`tuneforge augment`)"))
    if recipe.clean.enabled:
        requests.append(_Request("clean", ("clean.enabled",), "clean", "works on text rows and their labels",
                                 "set clean.enabled: false, or clean the texts first with `tuneforge clean`"))
    weighting = [name for name, on in (("loss.class_weights", recipe.loss.class_weights is not None),
                                       ("imbalance.class_weights: on", recipe.imbalance.class_weights == "on"),
                                       ("loss.name: weighted_cross_entropy",
                                        recipe.loss.name == "weighted_cross_entropy")) if on]
    if weighting:
        requests.append(_Request("class_weights", tuple(name.split(":")[0] for name in weighting), either(weighting),
                                 "weights the loss by class",
                                 "remove loss.class_weights, leave imbalance.class_weights at auto or off and use "
                                 "loss.name: auto (or cross_entropy)"))
    if recipe.imbalance.oversample:
        instead = "; imbalance.class_weights: on balances the classes in the loss instead" if kind.class_weights \
            else ""
        requests.append(_Request("oversample", ("imbalance.oversample",), "imbalance.oversample",
                                 "repeats training rows of the smaller classes",
                                 f"set imbalance.oversample: false{instead}"))
    if recipe.fairness.mitigation != "none":
        requests.append(_Request("fairness_mitigation", ("fairness.mitigation",),
                                 f"fairness.mitigation '{recipe.fairness.mitigation}'",
                                 "balances identity groups among training rows of one class each",
                                 "set fairness.mitigation: none"))
    if recipe.evaluation.plugins:
        requests.append(_Request("plugins", ("evaluation.plugins",), "evaluation.plugins",
                                 "score each text's class prediction", "remove evaluation.plugins"))
    if recipe.train.batch_size == "auto":
        requests.append(_Request("batch_size_auto", ("train.batch_size",), "train.batch_size auto",
                                 "sizes the batch by probing the model", "give train.batch_size a number"))
    return requests


def _peft_refusal(recipe: Any, kind: RunKind) -> Refusal | None:
    method = PeftMethod(recipe.peft.method)
    if kind.supports_peft(method.value):
        return None
    does = "puts trained virtual tokens before the input" if method.virtual_tokens else \
        "trains an adapter on the frozen model"
    if kind.peft_methods:
        fix = f"use peft.method: {either(kind.peft_methods)}, or none"
    else:
        fix = "set peft.method: none" + ("; freeze.all_but_head keeps the pretrained weights fixed" if kind.freeze
                                         else "")
    return Refusal(("peft.method",), f"peft.method '{method}': {does}; {_run(recipe, kind)}", fix)


def _run(recipe: Any, kind: RunKind) -> str:
    """Why the recipe has this kind and that it lacks the capability, e.g. "task seq2seq is a generative run"."""
    if kind.name in (MULTITASK, MULTIMODAL) or kind.name == recipe.task:
        return f"{kind.name} runs ({kind.summary}) do not support it"
    return f"task {recipe.task} is a {kind.name} run ({kind.summary}), which does not support it"


def refusals(recipe: Any, kind: RunKind) -> list[Refusal]:
    """Each capability `recipe` asks for that `kind` does not declare (empty: the recipe fits its kind)."""
    found = [refusal for refusal in [_peft_refusal(recipe, kind)] if refusal is not None]
    for request in _requests(recipe, kind):
        if not getattr(kind, request.capability):
            found.append(Refusal(request.fields, f"{request.subject}: {request.does}; {_run(recipe, kind)}",
                                 request.fix))
    return found
