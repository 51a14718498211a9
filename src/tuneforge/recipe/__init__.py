"""The recipe: the one schema every entry point (YAML, CLI flags, Python) is validated against.

Every field has a default and a description; `tuneforge init` and the `--set` overrides are generated from the
schema, so a new option appears everywhere by being added once, in its section's module. Which settings a run
can use follows from its run kind (`tuneforge.kinds`), never from a list kept here.
"""

from tuneforge.recipe.augment import AUGMENT_OPTIONS, AugmentMethod, AugmentMethodSpec, AugmentSpec
from tuneforge.recipe.auto import AUTO_STRATEGIES, AutoSpec, AutoStrategy
from tuneforge.recipe.clean import CleanSpec, FlagOrDrop
from tuneforge.recipe.data import LABEL_SEPARATORS, DataSpec
from tuneforge.recipe.domain import DomainRuleSpec, DomainSpec, PretrainSpec
from tuneforge.recipe.early_stopping import EarlyStoppingSpec
from tuneforge.recipe.evaluation import CalibrationSpec, EvaluationSpec, FairnessSpec
from tuneforge.recipe.features import Combiner, FeaturesSpec
from tuneforge.recipe.freeze import FreezeSpec
from tuneforge.recipe.generation import GenerationSpec, LanguageModelSpec
from tuneforge.recipe.imbalance import ImbalanceSpec
from tuneforge.recipe.loading import load_recipe, recipe_from_dict
from tuneforge.recipe.loss import LossSpec
from tuneforge.recipe.model import DEFAULT_MODEL, ModelSpec
from tuneforge.recipe.multitask import MultitaskSpec, TaskSpec
from tuneforge.recipe.output import OutputSpec, RefreshSpec
from tuneforge.recipe.overrides import apply_overrides, parse_override
from tuneforge.recipe.peft import PeftMethod, PeftSpec
from tuneforge.recipe.preference import PREFERENCE_TASKS, PreferenceSpec
from tuneforge.recipe.schema import Recipe
from tuneforge.recipe.search import SearchParam, SearchParamType, SearchSpec
from tuneforge.recipe.section import Section
from tuneforge.recipe.tasks import (
    GENERATIVE_TASKS,
    PAIR_TASK,
    PAIR_TASKS,
    TASK_ALIASES,
    TASKS,
    TaskName,
    normalise_task,
    resolve_task,
)
from tuneforge.recipe.template import commented_template
from tuneforge.recipe.train import OPTIMIZERS, ContrastiveSpec, DistributedSpec, OptimizerName, TrainSpec

__all__ = [
    "AUGMENT_OPTIONS", "AUTO_STRATEGIES", "DEFAULT_MODEL", "GENERATIVE_TASKS", "LABEL_SEPARATORS", "OPTIMIZERS",
    "PAIR_TASK", "PAIR_TASKS", "TASKS", "TASK_ALIASES", "AugmentMethod", "AugmentMethodSpec", "AugmentSpec", "AutoSpec",
    "AutoStrategy", "CalibrationSpec", "ContrastiveSpec",
    "CleanSpec", "Combiner", "DataSpec", "DistributedSpec", "DomainRuleSpec", "DomainSpec", "EarlyStoppingSpec",
    "EvaluationSpec", "FairnessSpec", "FeaturesSpec", "FlagOrDrop", "FreezeSpec", "GenerationSpec", "ImbalanceSpec",
    "LanguageModelSpec", "LossSpec", "ModelSpec", "MultitaskSpec", "OptimizerName", "OutputSpec", "PeftMethod",
    "PeftSpec", "PretrainSpec", "Recipe", "RefreshSpec", "SearchParam", "SearchParamType", "SearchSpec", "Section",
    "TaskName", "TaskSpec", "TrainSpec", "apply_overrides", "commented_template", "load_recipe", "normalise_task",
    "parse_override", "recipe_from_dict", "resolve_task",
    "PREFERENCE_TASKS", "PreferenceSpec",
]
