"""Run kinds: what kind of run a recipe makes, decided once, and what each kind supports.

Every consumer asks here instead of comparing `recipe.task` itself: the recipe derives its refusals from these
declarations, the training skeleton asks them before it switches a step on, and predict, evaluate, serve,
explain and report read the kind a run directory was written with (`run_kind.json`). A new kind is one entry
here plus one pipeline module; nothing else compares task names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tuneforge.errors import TuneforgeError

TEXT = "text"
MULTILABEL = "multilabel"
TAGGING = "token-classification"
GENERATIVE = "generative"
MULTIMODAL = "multimodal"
MULTITASK = "multitask"
ENSEMBLE = "ensemble"
PREFERENCE = "preference"
REWARD = "reward"

ALL_PEFT = ("lora", "qlora", "ia3", "prompt_tuning", "prefix_tuning")
WEIGHT_PEFT = ("lora", "qlora", "ia3")  # methods that change weights, not the input (no virtual tokens)


@dataclass(frozen=True)
class RunKind:
    """One kind of run and the capabilities it declares.

    `peft_methods` are the peft.method values it trains with (empty: none); `domain` covers rule packs, rules,
    functions and unicode normalisation, `domain_model` vocabulary extension and continued pretraining;
    `class_weights` whether a loss weight per class exists; `contrastive` whether its class labels can make
    contrastive pairs (train.method: contrastive); `nproc` whether torchrun may start several
    processes; `report_sections` the report sections that can have content; `serve_routes` what `tuneforge serve`
    answers for it (`v1`: the OpenAI-compatible routes; none: not served).
    """

    name: str
    tasks: tuple[str, ...]
    summary: str
    peft_methods: tuple[str, ...] = ()
    freeze: bool = True
    gradual_unfreeze: bool = True
    domain: bool = False
    domain_model: bool = False
    augment: bool = False
    clean: bool = False
    class_weights: bool = False
    oversample: bool = False
    fairness_mitigation: bool = False
    calibration: bool = False
    contrastive: bool = False
    plugins: bool = False
    nproc: bool = False
    batch_size_auto: bool = True
    report_sections: tuple[str, ...] = ()
    serve_routes: tuple[str, ...] = ()

    def supports_peft(self, method: str) -> bool:
        return method == "none" or method in self.peft_methods

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# Section ids of report.html (report/html.py); a section a kind does not list is never drawn for its runs.
_CLASSIFIER_SECTIONS = ("data", "training", "metrics", "plugins", "calibration", "errors", "fairness", "explanations",
                        "figures")

KINDS: dict[str, RunKind] = {kind.name: kind for kind in (
    RunKind(TEXT, ("classification", "regression"), "one label or one score per text or text pair",
            peft_methods=ALL_PEFT, domain=True, domain_model=True, augment=True, clean=True, class_weights=True,
            oversample=True, fairness_mitigation=True, calibration=True, contrastive=True, plugins=True, nproc=True,
            report_sections=(*_CLASSIFIER_SECTIONS, "auto"), serve_routes=("predict", "explain", "feedback")),
    RunKind(MULTILABEL, ("multilabel",), "several labels per text, one threshold each",
            peft_methods=ALL_PEFT, domain=True, domain_model=True, augment=True, clean=True, class_weights=True,
            plugins=True, nproc=True, report_sections=_CLASSIFIER_SECTIONS),
    RunKind(TAGGING, ("token-classification",), "one tag per word",
            peft_methods=WEIGHT_PEFT, domain_model=True, class_weights=True, nproc=True,
            report_sections=("data", "training", "metrics", "figures")),
    RunKind(GENERATIVE, ("seq2seq", "causal-lm"), "a model that writes text",
            peft_methods=ALL_PEFT, gradual_unfreeze=False, nproc=True,
            report_sections=("data", "training", "metrics", "figures"), serve_routes=("v1",)),
    RunKind(MULTIMODAL, ("classification", "regression"), "text fused with tabular, image or audio columns",
            gradual_unfreeze=False, class_weights=True, calibration=True, plugins=True,
            report_sections=("data", "training", "metrics", "plugins", "calibration", "errors", "explanations",
                             "figures"),
            serve_routes=("predict", "explain", "feedback")),
    RunKind(MULTITASK, ("multitask",), "several tasks over one shared encoder, one head each",
            gradual_unfreeze=False, freeze=False, clean=True, oversample=True, calibration=True, plugins=True,
            report_sections=("data", "training", "metrics", "figures")),
    # Trained by TRL's trainers (train/pipelines/preference.py): one process, a batch size given as a number (a
    # pair is two sequences plus the reference model's pass, which the estimate does not size), LoRA-style PEFT.
    RunKind(PREFERENCE, ("preference",), "a decoder tuned on chosen and rejected responses (DPO, ORPO, KTO, SimPO)",
            peft_methods=WEIGHT_PEFT, gradual_unfreeze=False, batch_size_auto=False,
            report_sections=("data", "training", "metrics", "figures")),
    RunKind(REWARD, ("reward",), "a reward model: one score per response, higher for the preferred one",
            peft_methods=WEIGHT_PEFT, gradual_unfreeze=False, batch_size_auto=False,
            report_sections=("data", "training", "metrics", "figures")),
    RunKind(ENSEMBLE, ("classification", "regression"), "several finished runs combined",
            freeze=False, gradual_unfreeze=False, batch_size_auto=False,
            report_sections=("metrics", "calibration", "errors", "auto", "figures"),
            serve_routes=("predict", "feedback")),
)}


def kind_of(recipe: Any) -> RunKind:
    """The kind of run a recipe makes; the one place that reads task, tasks and features to decide it."""
    if recipe.tasks:
        return KINDS[MULTITASK]
    if recipe.features.enabled:
        return KINDS[MULTIMODAL]
    for kind in (KINDS[GENERATIVE], KINDS[PREFERENCE], KINDS[REWARD], KINDS[TAGGING], KINDS[MULTILABEL],
                 KINDS[TEXT]):
        if recipe.task in kind.tasks:
            return kind
    raise TuneforgeError(f"task '{recipe.task}' belongs to no run kind",
                         fix=f"use one of {', '.join(sorted({t for k in KINDS.values() for t in k.tasks}))}")
