"""The Recipe: every section together, and the rules that span sections.

Which settings a run kind can use is not decided here: one validator asks `tuneforge.kinds` for the recipe's
kind and refuses each capability the kind does not declare (recipe/capabilities.py). The validators left here
check what no kind declares: that the loss fits the task, the language-model options, the stage plan, the
multi-task list and the search space.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tuneforge.kinds import kind_of
from tuneforge.recipe.augment import AugmentSpec
from tuneforge.recipe.auto import AutoSpec
from tuneforge.recipe.capabilities import refusals
from tuneforge.recipe.clean import CleanSpec
from tuneforge.recipe.data import DataSpec
from tuneforge.recipe.domain import DomainSpec, PretrainSpec
from tuneforge.recipe.early_stopping import EarlyStoppingSpec
from tuneforge.recipe.evaluation import CalibrationSpec, EvaluationSpec, FairnessSpec
from tuneforge.recipe.features import FeaturesSpec
from tuneforge.recipe.freeze import FreezeSpec
from tuneforge.recipe.generation import GenerationSpec, LanguageModelSpec
from tuneforge.recipe.imbalance import ImbalanceSpec
from tuneforge.recipe.loss import LossSpec
from tuneforge.recipe.model import ModelSpec
from tuneforge.recipe.multitask import MultitaskSpec, TaskSpec
from tuneforge.recipe.output import OutputSpec, RefreshSpec
from tuneforge.recipe.peft import PeftMethod, PeftSpec
from tuneforge.recipe.preference import PreferenceSpec, preference_problem
from tuneforge.recipe.search import SearchSpec
from tuneforge.recipe.section import Section
from tuneforge.recipe.tasks import GENERATIVE_TASKS, PAIR_TASKS, TaskName, normalise_task
from tuneforge.recipe.train import TrainSpec

CAPABILITY_ERROR = "kind_capability"  # pydantic error type of the refusals; its context lists each one with its fix


class Recipe(Section):
    """A complete, validated description of one fine-tuning run."""

    task: TaskName = Field("classification", description="classification, regression, token-classification "
                                                         "(alias ner: one tag per word, CoNLL files or token lists), "
                                                         "multilabel (several labels per text), pair-classification "
                                                         "(classification of text pairs; needs data.text_pair_column), "
                                                         "seq2seq (text to text, encoder-decoders) or causal-lm "
                                                         "(decoder fine-tuning on prompt/response or chat data).")
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    clean: CleanSpec = Field(default_factory=CleanSpec)
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    domain: DomainSpec = Field(default_factory=DomainSpec)
    pretrain: PretrainSpec = Field(default_factory=PretrainSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    lm: LanguageModelSpec = Field(default_factory=LanguageModelSpec)
    preference: PreferenceSpec = Field(default_factory=PreferenceSpec)
    loss: LossSpec = Field(default_factory=LossSpec)
    freeze: FreezeSpec = Field(default_factory=FreezeSpec)
    peft: PeftSpec = Field(default_factory=PeftSpec)
    early_stopping: EarlyStoppingSpec = Field(default_factory=EarlyStoppingSpec)
    imbalance: ImbalanceSpec = Field(default_factory=ImbalanceSpec)
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)
    fairness: FairnessSpec = Field(default_factory=FairnessSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    features: FeaturesSpec = Field(default_factory=FeaturesSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    refresh: RefreshSpec = Field(default_factory=RefreshSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    auto: AutoSpec = Field(default_factory=AutoSpec)
    tasks: list[TaskSpec] = Field(
        default_factory=list,
        description="Multi-task learning: two or more tasks, each {name, task, data}, trained together with one "
        "shared encoder and one head each; the top-level task and data are then unused. Empty: one task.")
    multitask: MultitaskSpec = Field(default_factory=MultitaskSpec)

    @model_validator(mode="before")
    @classmethod
    def _pair_task(cls, data: Any) -> Any:
        """pair-classification is classification that must have a second text column; checked before the name
        is folded into classification, which would forget that pairs were asked for."""
        if not isinstance(data, dict) or not isinstance(data.get("task"), str):
            return data
        name = data["task"].strip().lower()
        if name not in PAIR_TASKS:
            return data
        section = data.get("data")
        pair = section.get("text_pair_column") if isinstance(section, dict) else \
            getattr(section, "text_pair_column", None)
        if not pair:
            raise ValueError("task pair-classification needs data.text_pair_column, the column with the second text "
                             "of each pair; set it (`--text-pair-column` or `--set data.text_pair_column=COLUMN`), or "
                             "use task: classification for single texts")
        return {**data, "task": PAIR_TASKS[name]}

    @field_validator("task", mode="before")
    @classmethod
    def _normalise_task(cls, value: Any) -> Any:
        return normalise_task(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _loss_fits_task(self) -> Recipe:
        regression_losses = {"mse", "mae", "huber"}
        name = self.loss.name
        if name == "auto":
            return self
        if self.task in GENERATIVE_TASKS:
            raise ValueError(f"{self.task} trains with token-level cross-entropy on the target tokens; set loss.name: "
                             "auto")
        if self.task == "multilabel" and name != "bce":
            raise ValueError(f"loss.name '{name}' does not apply to multilabel; it takes bce (or auto)")
        if self.task != "multilabel" and name == "bce":
            raise ValueError(f"loss.name 'bce' is the multilabel loss; {self.task} does not take it, use auto")
        if self.task == "regression" and name not in regression_losses:
            raise ValueError(f"loss.name '{name}' is a classification loss; regression takes mse, mae or huber")
        if self.task == "token-classification" and name not in ("cross_entropy", "weighted_cross_entropy"):
            weighted = " or weighted_cross_entropy" if kind_of(self).class_weights else ""
            raise ValueError(f"loss.name '{name}' does not apply to token classification; it takes cross_entropy"
                             f"{weighted}")
        if self.task == "classification" and name in regression_losses:
            raise ValueError(
                f"loss.name '{name}' is a regression loss; classification takes cross_entropy, "
                "weighted_cross_entropy or focal"
            )
        return self

    @model_validator(mode="after")
    def _language_model_options(self) -> Recipe:
        """The lm section belongs to causal-lm; prompt methods and packing have limits of their own."""
        if self.task != "causal-lm":
            lm_changed = [f"lm.{name}" for name, field in LanguageModelSpec.model_fields.items()
                          if getattr(self.lm, name) != field.default]
            if lm_changed:
                raise ValueError(f"{', '.join(lm_changed)} apply to task causal-lm only; remove them for {self.task}")
        method = PeftMethod(self.peft.method)
        if self.task == "seq2seq" and method.virtual_tokens:
            raise ValueError(f"peft.method '{method}' is not available for seq2seq; use lora or ia3")
        if self.lm.packing and method.virtual_tokens:
            raise ValueError(f"lm.packing needs position ids, which peft's {method} ignores, so packed "
                             "examples would attend to each other; set lm.packing: false or use peft.method: lora")
        if self.lm.classify and "{text}" not in self.lm.prompt_template:
            raise ValueError("lm.prompt_template must contain {text}, where each text goes")
        return self

    @model_validator(mode="after")
    def _preference_options(self) -> Recipe:
        """The preference section belongs to tasks preference and reward, each option to its method."""
        problem = preference_problem(self)
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _features_fit_task(self) -> Recipe:
        # Multimodal runs train their own fusion model (models/multimodal.py): one class or one score per row.
        if not self.features.enabled:
            return self
        if self.task not in ("classification", "regression"):
            raise ValueError(f"features (multimodal inputs) work with classification and regression; this recipe "
                             f"is {self.task}: remove the features section or change the task")
        if self.data.text_pair_column:
            raise ValueError("features replaces data.text_pair_column: list both text columns in features.text")
        return self

    @model_validator(mode="after")
    def _stages_make_sense(self) -> Recipe:
        stages = self.train.stages
        if stages not in (["finetune"], ["pretrain", "finetune"]):
            raise ValueError(f"train.stages {stages} is not a plan tuneforge runs; use [finetune] or "
                             "[pretrain, finetune]")
        if "pretrain" in stages and not self.pretrain.corpus:
            raise ValueError("train.stages has pretrain but pretrain.corpus is empty; name the unlabelled domain "
                             "text file in pretrain.corpus")
        return self

    @model_validator(mode="after")
    def _multitask_fits(self) -> Recipe:
        if not self.tasks:
            if self.multitask != MultitaskSpec():
                raise ValueError("the multitask section needs a tasks list of two or more tasks")
            return self
        names = [spec.name for spec in self.tasks]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if len(self.tasks) < 2 or repeated:
            raise ValueError("tasks needs two or more tasks with different names" +
                             (f" ({', '.join(repeated)} is repeated)" if repeated else "") +
                             "; for one task use the top-level task and data sections")
        if self.data.train is not None:
            raise ValueError("with tasks, each task carries its own data; move data.train (and the other data "
                             "settings) into the tasks' entries")
        unknown = sorted(set(self.multitask.loss_weights) - set(names))
        if unknown:
            raise ValueError(f"multitask.loss_weights names {', '.join(unknown)}, which is not a task; tasks are "
                             f"{', '.join(names)}")
        if any(weight < 0 for weight in self.multitask.loss_weights.values()):
            raise ValueError("multitask.loss_weights must be 0 or more")
        return self

    @model_validator(mode="after")
    def _capabilities_fit_kind(self) -> Recipe:
        """Each setting the recipe's run kind does not declare is refused, rather than skipped by its pipeline."""
        found = refusals(self, kind_of(self))
        if found:
            raise PydanticCustomError(CAPABILITY_ERROR, "{message}", {
                "message": ". ".join(refusal.message for refusal in found),
                "refusals": [{"fields": ", ".join(refusal.fields), "message": refusal.message, "fix": refusal.fix}
                             for refusal in found]})
        return self

    @model_validator(mode="after")
    def _contrastive_fits(self) -> Recipe:
        """Contrastive pairs come from class labels of single texts; the kind declares whether its runs have them."""
        if self.train.method != "contrastive":
            return self
        kind = kind_of(self)
        if not kind.contrastive or self.task != "classification":
            raise ValueError(f"train.method contrastive makes pairs of texts with the same and different class "
                             f"labels; task {self.task} ({kind.summary}) has no such labels: use train.method: "
                             "standard, or task: classification")
        if self.data.text_pair_column:
            raise ValueError("train.method contrastive embeds single texts; this recipe classifies text pairs "
                             "(data.text_pair_column): use train.method: standard")
        if self.peft.enabled:
            raise ValueError(f"train.method contrastive trains every encoder weight before the head; it cannot be "
                             f"combined with peft.method '{self.peft.method}': set peft.method: none, or train.method: "
                             "standard")
        return self

    @model_validator(mode="after")
    def _peft_owns_freezing(self) -> Recipe:
        # PEFT freezes the whole pretrained model itself; layer freezing on top would either do nothing or
        # silently fight it (gradual unfreezing would reopen base weights the adapter is meant to leave alone).
        if not self.peft.enabled:
            return self
        changed = [f"freeze.{name}" for name, field in FreezeSpec.model_fields.items()
                   if getattr(self.freeze, name) != field.default]
        if changed:
            raise ValueError(
                f"{', '.join(changed)} cannot be combined with peft.method '{self.peft.method}': PEFT already "
                "freezes every pretrained weight and trains only the adapter and the task head; remove the freeze "
                "settings, or set peft.method: none to freeze layers in a full fine-tune"
            )
        return self

    @model_validator(mode="after")
    def _search_space_fits(self) -> Recipe:
        # Each searched path must be a field of this schema and every value it can take must make a valid recipe,
        # so a study fails at load time rather than at trial 7.
        if self.search.space:
            from tuneforge.search.space import space_problems

            problems = space_problems(self)
            if problems:
                raise ValueError("; ".join(problems))
        return self

    # --- derived settings, in one place so every consumer agrees ---------------------------------------
    def loss_name(self) -> str:
        if self.loss.name != "auto":
            return self.loss.name
        return {"regression": "mse", "multilabel": "bce"}.get(self.task, "cross_entropy")

    def early_stopping_metric(self) -> tuple[str, bool]:
        """(metric name, greater_is_better)."""
        metric = self.early_stopping.metric.removeprefix("eval_")
        if metric == "auto":
            metric = {"regression": "rmse", "token-classification": "f1", "multilabel": "f1_micro",
                      "seq2seq": "loss", "causal-lm": "loss", "preference": "loss",
                      "reward": "loss"}.get(self.task, "f1_macro")
        mode = self.early_stopping.mode
        if mode == "auto":
            lower_better = {"rmse", "mse", "mae", "loss"}
            mode = "min" if metric in lower_better or metric.endswith("loss") else "max"
        return metric, mode == "max"

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def section_at(path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The section model that holds the last key of `path` (("train", "epochs") -> TrainSpec); None when the path
    runs through something that is not a section."""
    model: type[BaseModel] = Recipe
    for part in path[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model
