"""`tuneforge auto`: data, a model and a wall-clock budget in; one ordinary run directory (or ensemble) out.

One Optuna study (SQLite in the auto directory) runs every trial as a normal `fine_tune` in trials/<n>/:

1. Trial 0 is the recipe as it is, always, and always finishes.
2. The ablation: each strategy on its own (label smoothing, focal loss, class weights, word-shuffling or EDA
   augmentation, few-shot contrastive training when the smallest class has few rows) on top of the recipe, for
   `auto.seeds` seeds with the recipe itself re-run on each seed, so every strategy's effect is measured against
   the same seed, with its spread. These trials are never pruned: a pruned arm would have no effect to report.
3. The strategies that helped, together, as one trial; then Optuna's TPE over the whole space (the strategies,
   the augmentation ratio, learning rate, epochs, batch size, warm-up, scheduler) with successive-halving (ASHA)
   pruning on the per-epoch validation score, until the budget is spent.

Decisions read validation only: the best completed trial is the candidate (with `auto.folds`, the best
`auto.finalists` are retrained on k folds of train + validation and the best mean fold score wins), a mean
ensemble of the best
`auto.ensemble_size` trials replaces it only if it scores higher on validation, and the test split is read once,
at the end, by the chosen run. auto.json holds every trial, the ablation table and how the choice was made; it
is copied into the chosen run, whose report shows it. Trials read the same split files with one datasets cache,
so the tokenised splits of one tokenizer are made once and reused (datasets' fingerprinted map).

Seeds are measured, not searched: picking the luckiest seed on one validation split would only overfit it.
Pooling is not a recipe option, so it is not searched; the head is the model's own.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
from transformers import TrainerCallback

from tuneforge import artifacts
from tuneforge.errors import TuneforgeError
from tuneforge.kinds import TEXT, kind_of
from tuneforge.recipe import Recipe, recipe_from_dict
from tuneforge.run import RunLayout
from tuneforge.search.objective import objective_value
from tuneforge.search.outputs import TrialRow, ranked, trial_row
from tuneforge.search.ranking import check_validation_size, standard_error, validation_rows
from tuneforge.search.space import recipe_data
from tuneforge.search.storage import open_storage, storage_url
from tuneforge.train.contrastive import STAGE_CALLBACKS

AUTO_FILE = "auto.json"
RUN_DIR = "run"
DATA_DIR = "data"
CACHE_DIR = "cache"
TRIALS_DIR = "trials"
STUDY_NAME = "auto"
DEFAULT = "default"
COMBINED = "combined"
RATIOS = (0.5, 1.0, 2.0)


# --------------------------------------------------------------------------------------------- the space


@dataclass
class StrategySpace:
    """The strategies and hyperparameters a trial may change, each with "default" (the recipe as it is) first."""

    recipe: Recipe
    strategies: dict[str, list[str]]  # dimension -> choices, "default" first
    hyperparameters: dict[str, list[Any]]  # recipe path -> categorical choices (the learning rate: low, high)
    search_hyperparameters: bool

    @classmethod
    def build(cls, recipe: Recipe, smallest_class: int | None, wordnet: bool) -> StrategySpace:
        wanted = set(recipe.auto.strategies)
        classification = recipe.task == "classification"
        strategies: dict[str, list[str]] = {}
        if "loss" in wanted and classification:
            strategies["loss"] = [DEFAULT, "label_smoothing", "focal", "class_weights"]
        if "augmentation" in wanted and kind_of(recipe).augment and not recipe.data.text_pair_column:
            strategies["augmentation"] = [DEFAULT, "shuffle", *(["eda"] if wordnet else [])]
        if ("contrastive" in wanted and classification and recipe.train.method == "standard"
                and not recipe.data.text_pair_column and not recipe.peft.enabled and smallest_class is not None
                and smallest_class < recipe.auto.contrastive_rows_per_class):
            strategies["method"] = [DEFAULT, "contrastive"]
        train = recipe.train
        hyper: dict[str, list[Any]] = {
            "train.learning_rate": [train.learning_rate / 4, train.learning_rate * 4],
            "train.epochs": sorted({max(1.0, float(round(train.epochs / 2))), float(train.epochs),
                                    float(round(train.epochs * 2))}),
            "train.warmup_ratio": sorted({0.0, 0.06, 0.1, train.warmup_ratio}),
            "train.lr_scheduler": sorted({"linear", "cosine", train.lr_scheduler}),
        }
        if train.batch_size != "auto":
            hyper["train.batch_size"] = sorted({8, 16, 32, int(train.batch_size)})
        return cls(recipe, strategies, hyper, "hyperparameters" in wanted)

    def default_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {dimension: DEFAULT for dimension in self.strategies}
        if self.search_hyperparameters:
            for path in self.hyperparameters:
                section, name = path.split(".")
                params[path] = getattr(getattr(self.recipe, section), name)
        return params

    def arms(self) -> list[tuple[str, dict[str, Any]]]:
        """(name, params) of each strategy alone on the recipe; contrastive first, as it matters most when it
        is offered at all (small data), then the losses, then augmentation."""
        arms = []
        for dimension in ("method", "loss", "augmentation"):
            for value in self.strategies.get(dimension, [])[1:]:
                params = {**self.default_params(), dimension: value}
                if dimension == "augmentation":
                    params["augmentation_ratio"] = 1.0
                arms.append((f"{dimension}={value}", params))
        return arms

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Define-by-run sampling; a queued trial gets its fixed values back."""
        params: dict[str, Any] = {}
        for dimension, choices in self.strategies.items():
            params[dimension] = trial.suggest_categorical(dimension, choices)
        if params.get("augmentation", DEFAULT) != DEFAULT:
            params["augmentation_ratio"] = trial.suggest_categorical("augmentation_ratio", list(RATIOS))
        if self.search_hyperparameters:
            for path, choices in self.hyperparameters.items():
                if path == "train.learning_rate":
                    params[path] = trial.suggest_float(path, choices[0], choices[1], log=True)
                else:
                    params[path] = trial.suggest_categorical(path, choices)
        return params

    def apply(self, base: dict[str, Any], params: dict[str, Any], seed: int) -> dict[str, Any]:
        """The trial's recipe data: the base with the sampled strategies and values."""
        data = json.loads(json.dumps(base))  # a deep copy of plain data
        for path, value in params.items():
            if "." in path:
                section, name = path.split(".")
                data[section][name] = value
        loss = params.get("loss", DEFAULT)
        if loss == "label_smoothing":
            data["loss"]["name"] = "cross_entropy"
            data["loss"]["label_smoothing"] = 0.1
        elif loss == "focal":
            data["loss"]["name"] = "focal"
        elif loss == "class_weights":
            data["imbalance"]["class_weights"] = "on"
        augmentation = params.get("augmentation", DEFAULT)
        if augmentation != DEFAULT:
            method: dict[str, Any] = {"method": augmentation, "ratio": params.get("augmentation_ratio", 1.0)}
            if augmentation == "shuffle":
                method["words"] = True  # single sentences (tweets, reviews): the words, not the sentences
            data["augment"]["methods"] = [method]
        if params.get("method", DEFAULT) == "contrastive":
            data["train"]["method"] = "contrastive"
        data["train"]["seed"] = seed
        return data


def describe(params: dict[str, Any], defaults: dict[str, Any] | None = None) -> str:
    """A trial's strategies and values in one short line: what differs from the recipe."""
    defaults = defaults or {}
    parts = [f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
             for name, value in params.items() if value != DEFAULT and value != defaults.get(name)]
    return ", ".join(parts) or "the recipe as it is"


# ------------------------------------------------------------------------------------------- the splits


@dataclass
class Splits:
    train: str
    validation: str
    test: str | None
    carved: list[str] = field(default_factory=list)  # splits carved from the training file by auto, once


def prepare_splits(recipe: Recipe, folder: Path) -> Splits:
    """The files every trial reads. Splits the recipe carves from train are carved once here, the way data
    preparation carves them (test first, each a share of the whole file, stratified), and written as Parquet, so
    every trial, the ensemble and the final test read the same rows. The test rows are set aside unread."""
    spec = recipe.data
    if not spec.train:
        raise TuneforgeError("auto needs training data", fix="pass --data FILE (or set data.train)")
    carve_test = not spec.test and spec.test_split > 0
    if spec.validation and not carve_test:
        return Splits(spec.train, spec.validation, spec.test)
    import numpy as np
    from sklearn.model_selection import train_test_split

    from tuneforge.data import validation as checks
    from tuneforge.data.loading import read_table

    table = read_table(spec.train, "train", spec.cache_dir)
    keys = [checks.label_key(value) for value in table[spec.label_column]] \
        if recipe.task == "classification" and spec.stratify and spec.label_column in table.column_names else None

    def carve(indices: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
        labels = [keys[i] for i in indices] if keys is not None else None
        counts = {label: labels.count(label) for label in set(labels)} if labels is not None else {}
        held = math.ceil(share * len(indices))
        stratify = labels if labels is not None and min(counts.values()) >= 2 and \
            len(counts) <= held <= len(indices) - len(counts) else None
        keep, out = train_test_split(indices, test_size=share, random_state=spec.split_seed, stratify=stratify)
        return np.sort(keep), np.sort(out)

    folder.mkdir(parents=True, exist_ok=True)
    indices = np.arange(len(table))
    written: dict[str, str] = {}
    carved = []
    if carve_test:
        indices, test_rows = carve(indices, spec.test_split)
        written["test"] = str(folder / "test.parquet")
        table.select(test_rows.tolist()).to_parquet(written["test"])
        carved.append("test")
    if not spec.validation:
        share = spec.validation_split / (1.0 - (spec.test_split if carve_test else 0.0))
        if share <= 0:
            raise TuneforgeError("auto ranks trials on validation data, and this recipe has none",
                                 fix="pass --validation FILE, or set data.validation_split above 0 (e.g. 0.1)")
        indices, validation_rows_ = carve(indices, share)
        written["validation"] = str(folder / "validation.parquet")
        table.select(validation_rows_.tolist()).to_parquet(written["validation"])
        carved.append("validation")
    written["train"] = str(folder / "train.parquet")
    table.select(indices.tolist()).to_parquet(written["train"])
    return Splits(written["train"], written.get("validation", spec.validation or ""),
                  written.get("test", spec.test), carved)


def make_folds(recipe: Recipe, splits: Splits, folder: Path) -> list[tuple[str, str]]:
    """`auto.folds` folds of train + validation (stratified for classification), written once as Parquet."""
    import datasets
    from sklearn.model_selection import KFold, StratifiedKFold

    from tuneforge.data import validation as checks
    from tuneforge.data.loading import read_table

    spec = recipe.data
    tables = [read_table(path, role, spec.cache_dir) for role, path in (("train", splits.train),
                                                                       ("validation", splits.validation))]
    shared = [name for name in tables[0].column_names if name in tables[1].column_names]
    pooled = datasets.concatenate_datasets([table.select_columns(shared).cast(tables[0].select_columns(
        shared).features) for table in tables])
    k = recipe.auto.folds
    if recipe.task == "classification":
        keys = [checks.label_key(value) for value in pooled[spec.label_column]]
        if min(keys.count(key) for key in set(keys)) >= k:
            splitter: Any = StratifiedKFold(n_splits=k, shuffle=True, random_state=spec.split_seed)
            parts = splitter.split(keys, keys)
        else:
            parts = KFold(n_splits=k, shuffle=True, random_state=spec.split_seed).split(keys)
    else:
        parts = KFold(n_splits=k, shuffle=True, random_state=spec.split_seed).split(range(len(pooled)))
    files = []
    for index, (train_rows, held_rows) in enumerate(parts):
        fold = folder / str(index)
        fold.mkdir(parents=True, exist_ok=True)
        pooled.select(sorted(train_rows.tolist())).to_parquet(str(fold / "train.parquet"))
        pooled.select(sorted(held_rows.tolist())).to_parquet(str(fold / "validation.parquet"))
        files.append((str(fold / "train.parquet"), str(fold / "validation.parquet")))
    return files


def smallest_class(recipe: Recipe, train: str) -> int | None:
    if recipe.task != "classification":
        return None
    from collections import Counter

    from tuneforge.data import validation as checks
    from tuneforge.data.loading import read_table

    table = read_table(train, "train", recipe.data.cache_dir)
    counts = Counter(checks.label_key(value) for value in table[recipe.data.label_column])
    return min(counts.values()) if counts else None


def wordnet_available() -> bool:
    from tuneforge.augment.wordnet import find_wordnet

    try:
        find_wordnet(None)
    except TuneforgeError:
        return False
    return True


# --------------------------------------------------------------------------------------------- the clock


@dataclass
class Clock:
    """The budget: trials may run until `deadline`; the rest is kept for the ensemble, the test and the report."""

    started: float
    budget_s: float
    extra_reserve_s: float = 0.0  # cross-validation of the finalists, once a trial's duration is known

    @property
    def reserve_s(self) -> float:
        return min(0.1 * self.budget_s, 120.0) + self.extra_reserve_s

    @property
    def deadline(self) -> float:
        return self.started + self.budget_s - self.reserve_s

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left_for_trials(self) -> float:
        return self.deadline - time.monotonic()


class ReportAndWatchBudget(TrainerCallback):
    """Reports each validation score to the trial (ASHA prunes search trials on it), and stops a trial still
    training when the budget is spent (the default recipe's first trial excepted: it always finishes)."""

    def __init__(self, trial: optuna.Trial, metric: str, clock: Clock, prunable: bool, protected: bool) -> None:
        self.trial = trial
        self.key = f"eval_{metric}"
        self.clock = clock
        self.prunable = prunable
        self.protected = protected
        self.step = 0

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    **kwargs: Any) -> None:
        if not metrics or self.key not in metrics:
            return
        self.step += 1
        self.trial.report(float(metrics[self.key]), self.step)
        if self.prunable and self.trial.should_prune():
            raise optuna.TrialPruned(f"{self.key} {metrics[self.key]:.4f} at evaluation {self.step}")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self.protected and self.clock.left_for_trials() <= 0:
            self.trial.set_user_attr("stopped_by_budget", True)
            raise optuna.TrialPruned("the budget is spent")


# ----------------------------------------------------------------------------------------------- the plan


@dataclass
class AutoProgress:
    """What the command line shows after each trial."""

    elapsed_s: float
    budget_s: float
    trials_done: int
    best_value: float | None
    best_trial: int | None
    last: TrialRow | None
    last_label: str


@dataclass
class AutoResult:
    directory: Path
    run_dir: Path
    metric: str
    summary: dict[str, Any]  # auto.json

    @property
    def chosen(self) -> dict[str, Any]:
        return self.summary["chosen"]


@dataclass
class Plan:
    recipe: Recipe
    directory: Path
    splits: Splits
    space: StrategySpace
    base: dict[str, Any]
    metric: str
    greater: bool
    clock: Clock
    seeds: list[int]
    validation_rows: int
    warnings: list[str]
    folds: list[tuple[str, str]] = field(default_factory=list)  # (train, validation) files of each fold


def auto_directory(recipe: Recipe) -> Path:
    return Path(recipe.auto.dir or recipe.output.dir or Path("autos") / recipe.task)


def _check(recipe: Recipe) -> None:
    kind = kind_of(recipe)
    if kind.name != TEXT:
        raise TuneforgeError(f"auto covers classification and regression of texts; this recipe is a {kind.name} run "
                             f"({kind.summary})", fix="use `tuneforge search` with a search: section for it")


def _base_data(recipe: Recipe, splits: Splits, directory: Path) -> dict[str, Any]:
    data = recipe_data(recipe)
    data["data"].update({"train": splits.train, "validation": splits.validation, "test": None,
                         "test_split": 0.0, "cache_dir": recipe.data.cache_dir or str(directory / CACHE_DIR)})
    data["output"] = {**data.get("output", {}), "overwrite": True}
    data["evaluation"] = {**data.get("evaluation", {}), "explain_examples": 0}
    return data


def plan_auto(recipe: Recipe, budget_s: float | None = None) -> Plan:
    _check(recipe)
    clock = Clock(time.monotonic(), budget_s if budget_s is not None else recipe.auto.budget_minutes * 60)
    directory = auto_directory(recipe)
    directory.mkdir(parents=True, exist_ok=True)
    splits = prepare_splits(recipe, directory / DATA_DIR)
    rows = validation_rows(recipe.model_copy(update={"data": recipe.data.model_copy(
        update={"validation": splits.validation})}))
    folds = make_folds(recipe, splits, directory / DATA_DIR / "folds") if recipe.auto.folds else []
    try:  # under 30 rows one split cannot rank trials: refused, unless cross-validation makes the choice
        warning = check_validation_size(rows, "strategies")
    except TuneforgeError as refused:
        if not folds:
            raise
        warning = (f"{refused.message}; the trials are still searched on it, but the choice among the best "
                   f"{recipe.auto.finalists} is made by {recipe.auto.folds}-fold cross-validation")
    space = StrategySpace.build(recipe, smallest_class(recipe, splits.train), wordnet_available())
    metric, greater = recipe.early_stopping_metric()
    seeds = [recipe.train.seed + offset for offset in range(recipe.auto.seeds)]
    return Plan(recipe, directory, splits, space, _base_data(recipe, splits, directory), metric, greater, clock,
                seeds, rows, [warning] if warning else [], folds)


def _queue(study: optuna.Study, params: dict[str, Any], arm: str, seed: int) -> None:
    study.enqueue_trial(params, user_attrs={"arm": arm, "seed": seed})


def _queue_plan(study: optuna.Study, plan: Plan) -> None:
    """Trial 0 (the recipe), then each strategy alone on every seed, the recipe re-run on each further seed."""
    default = plan.space.default_params()
    _queue(study, default, DEFAULT, plan.seeds[0])
    for index, seed in enumerate(plan.seeds):
        if index:
            _queue(study, default, DEFAULT, seed)
        for name, params in plan.space.arms():
            _queue(study, params, name, seed)


class Objective:
    """One trial: the strategy space's values applied to the base recipe, trained by `fine_tune`."""

    def __init__(self, plan: Plan, callbacks: Sequence[TrainerCallback]) -> None:
        self.plan = plan
        self.callbacks = list(callbacks)

    def __call__(self, trial: optuna.Trial) -> float:
        from tuneforge.train.skeleton import TrainingInterrupted, fine_tune

        plan = self.plan
        params = plan.space.suggest(trial)
        arm = trial.user_attrs.get("arm")
        seed = int(trial.user_attrs.get("seed", plan.seeds[0]))
        folder = plan.directory / TRIALS_DIR / str(trial.number)
        trial.set_user_attr("run_dir", str(folder))
        trial.set_user_attr("seed", seed)
        data = plan.space.apply(plan.base, params, seed)
        data["output"]["dir"] = str(folder)
        protected = arm == DEFAULT and seed == plan.seeds[0] and not _completed(trial.study)
        watch = ReportAndWatchBudget(trial, plan.metric, plan.clock, prunable=arm is None, protected=protected)
        stage = STAGE_CALLBACKS.set((watch,))  # the contrastive stage trains before the fine-tune's Trainer
        try:
            recipe = recipe_from_dict(data, source=f"auto trial {trial.number}")
            run = fine_tune(recipe, callbacks=[watch, *self.callbacks])
        except optuna.TrialPruned:
            shutil.rmtree(RunLayout(folder).checkpoints, ignore_errors=True)
            raise
        except (TrainingInterrupted, KeyboardInterrupt):
            # KeyboardInterrupt, not an error: the study catches errors (a failing strategy must not end the
            # study) but lets this through, and run_auto keeps the best finished trial.
            trial.set_user_attr("interrupted", True)
            raise KeyboardInterrupt from None
        except Exception as error:
            trial.set_user_attr("error", f"{type(error).__name__}: {error}")
            raise
        finally:
            STAGE_CALLBACKS.reset(stage)
        shutil.rmtree(RunLayout(folder).checkpoints, ignore_errors=True)
        return objective_value(run.metrics, plan.metric)


def _completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]


def _best(study: optuna.Study, greater: bool) -> optuna.trial.FrozenTrial | None:
    done = _completed(study)
    if not done:
        return None
    return max(done, key=lambda t: t.value if greater else -t.value)


# ------------------------------------------------------------------------------------------ the ablation


def ablation_table(trials: Sequence[Any], greater: bool, defaults: dict[str, Any] | None = None
                   ) -> list[dict[str, Any]]:
    """Each strategy's measured effect on validation: the mean over seeds of (strategy - recipe) on the same
    seed, with the standard deviation of those differences (None from one seed), from completed trials."""
    scores: dict[str, dict[int, float]] = {}
    for trial in trials:
        arm = trial.user_attrs.get("arm")
        if trial.state.name == "COMPLETE" and arm is not None:
            scores.setdefault(arm, {}).setdefault(int(trial.user_attrs.get("seed", 0)), float(trial.value))
    default = scores.get(DEFAULT, {})
    rows = []
    if default:
        values = list(default.values())
        rows.append({"strategy": DEFAULT, "seeds": len(values), "mean": statistics.fmean(values),
                     "effect": 0.0, "spread": statistics.stdev(values) if len(values) > 1 else None,
                     "note": "the recipe as it is; spread: over seeds"})
    for arm, by_seed in scores.items():
        if arm == DEFAULT:
            continue
        paired = [value - default[seed] for seed, value in by_seed.items() if seed in default]
        rows.append({"strategy": arm, "seeds": len(paired), "mean": statistics.fmean(by_seed.values()),
                     "effect": statistics.fmean(paired) if paired else None,
                     "spread": statistics.stdev(paired) if len(paired) > 1 else None,
                     "note": "effect: vs the recipe on the same seed" if arm != COMBINED else
                     "the strategies that helped, together"})
    searched = [t for t in trials if t.state.name == "COMPLETE" and t.user_attrs.get("arm") is None]
    if searched and default:
        best = max(searched, key=lambda t: t.value if greater else -t.value)
        rows.append({"strategy": f"search (trial {best.number})", "seeds": 1, "mean": float(best.value),
                     "effect": float(best.value) - statistics.fmean(default.values()), "spread": None,
                     "note": f"best of {len(searched)} searched trials: {describe(dict(best.params), defaults)}"})
    return rows


def _helpful(table: list[dict[str, Any]], greater: bool) -> list[str]:
    sign = 1 if greater else -1
    return [row["strategy"] for row in table if "=" in row["strategy"] and row["effect"] is not None
            and sign * row["effect"] > 0]


def _queue_combination(study: optuna.Study, plan: Plan, done: set[str]) -> None:
    """Once every queued strategy trial has run, the helpful ones together (one per dimension, the best)."""
    trials = study.get_trials(deepcopy=False)
    if COMBINED in done or any(t.user_attrs.get("arm") == COMBINED or
                               (t.state.name in ("WAITING", "RUNNING") and t.user_attrs.get("arm")) for t in trials):
        return
    done.add(COMBINED)
    table = ablation_table(trials, plan.greater, plan.space.default_params())
    sign = 1 if plan.greater else -1
    chosen: dict[str, tuple[float, str]] = {}
    for name in _helpful(table, plan.greater):
        dimension, value = name.split("=", 1)
        effect = next(row["effect"] for row in table if row["strategy"] == name)
        if dimension not in chosen or sign * effect > sign * chosen[dimension][0]:
            chosen[dimension] = (effect, value)
    if len(chosen) < 2:  # one helpful strategy was measured alone already
        return
    params = {**plan.space.default_params(), **{dimension: value for dimension, (_, value) in chosen.items()}}
    if params.get("augmentation", DEFAULT) != DEFAULT:
        params["augmentation_ratio"] = 1.0
    _queue(study, params, COMBINED, plan.seeds[0])


# ------------------------------------------------------------------------------------------------- run


def run_auto(recipe: Recipe, *, budget_s: float | None = None, callbacks: Sequence[TrainerCallback] = (),
             on_progress: Callable[[AutoProgress], None] | None = None) -> AutoResult:
    """Run (or continue) the auto study the recipe's auto section describes within the budget, then choose,
    score the test split once and write the run, auto.json and the report. `budget_s` overrides
    auto.budget_minutes; Ctrl-C stops the trials and keeps the best finished one."""
    plan = plan_auto(recipe, budget_s)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url(None, plan.directory))
    study = optuna.create_study(
        study_name=STUDY_NAME, storage=storage, direction="maximize" if plan.greater else "minimize",
        load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=recipe.search.seed, n_startup_trials=4),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3))
    if not study.get_trials(deepcopy=False):
        _queue_plan(study, plan)
    labels: dict[int, str] = {}
    queued_combination: set[str] = set()

    def report(last: TrialRow | None = None) -> None:
        if on_progress is None:
            return
        best = _best(study, plan.greater)
        on_progress(AutoProgress(plan.clock.elapsed(), plan.clock.budget_s,
                                 sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials(deepcopy=False)),
                                 best.value if best else None, best.number if best else None, last,
                                 labels.get(last.number, "") if last else ""))

    def after_trial(study_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        labels[trial.number] = trial.user_attrs.get("arm") or describe(dict(trial.params),
                                                                        plan.space.default_params())
        if trial.user_attrs.get("arm") == DEFAULT and trial.state.name == "FAIL" and not _completed(study_):
            study_.stop()  # the recipe itself fails: every other trial would too
            return
        _queue_combination(study_, plan, queued_combination)
        report(trial_row(trial))
        durations = [t.duration.total_seconds() for t in study_.get_trials(deepcopy=False)
                     if t.state.name == "COMPLETE" and t.duration is not None]
        expected = statistics.median(durations) if durations else 0.0
        plan.clock.extra_reserve_s = len(plan.folds) * recipe.auto.finalists * expected
        if plan.clock.left_for_trials() < 0.5 * expected:  # the next trial would mostly be cut short
            study_.stop()

    interrupted = False
    report()
    if plan.clock.left_for_trials() > 0:
        try:
            study.optimize(Objective(plan, callbacks), timeout=max(1.0, plan.clock.left_for_trials()),
                           callbacks=[after_trial], catch=(Exception,), gc_after_trial=True)
        except KeyboardInterrupt:
            interrupted = True
    default_failure = next((t.user_attrs.get("error") for t in study.get_trials(deepcopy=False)
                            if t.user_attrs.get("arm") == DEFAULT and t.state.name == "FAIL"), None)
    if not _completed(study):
        if default_failure:
            raise TuneforgeError(f"the recipe itself (trial 0) failed: {default_failure}",
                                 fix="run it alone with `tuneforge train` to see the problem, fix it, then run auto "
                                     "again")
        raise TuneforgeError("no trial finished within the budget", fix="raise --budget (trial 0, the recipe as it "
                             "is, always finishes, so the budget ran out while it was being prepared)")
    return _finish(plan, study, interrupted)


def _better(value: float, than: float, greater: bool) -> bool:
    return value > than if greater else value < than


def _finish(plan: Plan, study: optuna.Study, interrupted: bool) -> AutoResult:
    """Choose on validation, read the test split once with the chosen run, write auto.json and the report."""
    trials = study.get_trials(deepcopy=False)
    rows = ranked([trial_row(t) for t in trials], plan.greater)
    completed = [row for row in rows if row.state == "COMPLETE"]
    best = completed[0]
    cross_validation = None if interrupted else _cross_validate(plan, study, completed)
    if cross_validation and cross_validation["chosen"] is not None:
        best = next(row for row in completed if row.number == cross_validation["chosen"])
    final = plan.directory / RUN_DIR
    shutil.rmtree(final, ignore_errors=True)
    ensemble = _try_ensemble(plan, completed, best, final, interrupted)
    kept = bool(ensemble and ensemble.get("kept"))
    if not kept:
        shutil.copytree(best.run_dir, final)
    chosen_value = ensemble["validation"] if kept else best.value
    test = _score_test(plan, final)
    defaults = plan.space.default_params()
    table = ablation_table(trials, plan.greater, defaults)
    by_number = {t.number: t for t in trials}
    decision = (f"chosen on the validation split ({plan.validation_rows} rows: a score near 0.8 is known to about "
                f"±{standard_error(plan.validation_rows):.2f}) by {plan.metric} "
                f"({'higher' if plan.greater else 'lower'} is better), among {len(completed)} completed trials: "
                f"trial {best.number} ({describe(best.params, defaults)}) scored {best.value:.4f}")
    if cross_validation and cross_validation["chosen"] is not None:
        scored = cross_validation["finalists"]
        means = ", ".join(f"trial {entry['trial']}: {entry['mean']:.4f}" for entry in scored)
        decision = (f"chosen by {len(plan.folds)}-fold cross-validation over train + validation "
                    f"({cross_validation['rows']} rows) among the {len(scored)} best trials on validation "
                    f"({means}), by mean {plan.metric}: trial {best.number} ({describe(best.params, defaults)}), "
                    f"{best.value:.4f} on validation")
    elif cross_validation:
        decision += f"; cross-validation not done: {cross_validation['skipped']}"
    if ensemble and "skipped" in ensemble:
        decision += f"; no ensemble: {ensemble['skipped']}"
    elif ensemble:
        decision += (f"; the mean ensemble of the best {len(ensemble['members'])} scored {ensemble['validation']:.4f}"
                     f" and was {'kept' if ensemble['kept'] else 'not kept'}")
    decision += ("; the test split was read once, by the chosen run, after the choice" if test else
                 "; there is no test split")
    summary = {
        "metric": plan.metric, "greater_is_better": plan.greater, "budget_seconds": round(plan.clock.budget_s, 1),
        "elapsed_seconds": round(plan.clock.elapsed(), 1), "interrupted": interrupted,
        "validation_rows": plan.validation_rows, "splits": asdict(plan.splits), "warnings": plan.warnings,
        "decision": decision,
        "chosen": {"kind": "ensemble" if kept else "trial", "trial": best.number,
                   "validation": chosen_value, "run_dir": str(final), "trial_run_dir": best.run_dir},
        "ensemble": ensemble, "cross_validation": cross_validation, "test": test, "ablation": table,
        "trials": [{"number": row.number, "state": row.state, "value": row.value,
                    "arm": by_number[row.number].user_attrs.get("arm"),
                    "seed": by_number[row.number].user_attrs.get("seed"),
                    "strategy": describe(row.params, defaults), "params": row.params, "evaluations": row.evaluations,
                    "duration_s": row.duration_s, "run_dir": row.run_dir,
                    "stopped_by_budget": bool(by_number[row.number].user_attrs.get("stopped_by_budget")),
                    "error": by_number[row.number].user_attrs.get("error")}
                   for row in sorted(rows, key=lambda r: r.number)],
    }
    artifacts.write_json(plan.directory / AUTO_FILE, summary)
    artifacts.write_json(final / AUTO_FILE, summary)
    from tuneforge.report.html import build_report

    build_report(final)
    return AutoResult(plan.directory, final, plan.metric, summary)


class _OutOfTime(Exception):
    pass


class _StopAtBudget(TrainerCallback):
    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.clock.elapsed() > self.clock.budget_s:
            raise _OutOfTime


def _cross_validate(plan: Plan, study: optuna.Study, completed: list[TrialRow]) -> dict[str, Any] | None:
    """Each of the best `auto.finalists` trials' recipes trained on every fold; the best mean fold score is
    chosen among the finalists whose folds all finished within the budget."""
    if not plan.folds:
        return None
    from tuneforge.train.skeleton import fine_tune

    finalists = completed[:plan.recipe.auto.finalists]
    if len(finalists) < 2:
        return {"chosen": None, "skipped": "fewer than two trials completed", "finalists": []}
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    scored = []
    try:
        for row in finalists:
            trial = trials[row.number]
            scores = []
            for index, (train, validation) in enumerate(plan.folds):
                data = plan.space.apply(plan.base, dict(trial.params), int(trial.user_attrs.get("seed",
                                                                                                plan.seeds[0])))
                data["data"].update({"train": train, "validation": validation})
                folder = plan.directory / "cross_validation" / str(row.number) / str(index)
                data["output"]["dir"] = str(folder)
                run = fine_tune(recipe_from_dict(data, source=f"auto fold {index} of trial {row.number}"),
                                callbacks=[_StopAtBudget(plan.clock)])
                shutil.rmtree(RunLayout(folder).checkpoints, ignore_errors=True)
                scores.append(objective_value(run.metrics, plan.metric))
            scored.append({"trial": row.number, "scores": scores, "mean": statistics.fmean(scores),
                           "spread": statistics.stdev(scores)})
    except _OutOfTime:
        pass  # the finalists scored so far still compare
    from tuneforge.data.loading import read_table

    rows = sum(len(read_table(path, "validation")) for _, path in plan.folds)
    if len(scored) < 2:
        return {"chosen": None, "skipped": "the budget ran out before two finalists were cross-validated",
                "finalists": scored, "rows": rows}
    best = max(scored, key=lambda entry: entry["mean"] if plan.greater else -entry["mean"])
    return {"chosen": best["trial"], "finalists": scored, "rows": rows}


def _try_ensemble(plan: Plan, completed: list[TrialRow], best: TrialRow, final: Path, interrupted: bool
                  ) -> dict[str, Any] | None:
    """A mean ensemble of the best trials, built in `final`; kept only when it beats the best trial on
    validation. The mean fits nothing on validation, so the comparison is not won by fitting to it."""
    size = plan.recipe.auto.ensemble_size
    members = [row for row in completed[:size] if row.run_dir]
    if size < 2:
        return None
    if interrupted:
        return {"skipped": "interrupted"}
    if len(members) < 2:
        return {"skipped": "fewer than two trials completed"}
    if plan.clock.elapsed() > plan.clock.budget_s:
        return {"skipped": "the budget was spent"}
    from tuneforge.ensemble.build import build_ensemble

    run = build_ensemble([row.run_dir for row in members], "mean", final, validation=plan.splits.validation,
                         overwrite=True, trust_run_code=True)
    value = float(run.metrics["validation"][plan.metric])
    kept = _better(value, best.value, plan.greater)
    if not kept:
        shutil.rmtree(final, ignore_errors=True)
    return {"method": "mean", "members": [row.number for row in members], "validation": value,
            "best_single": best.value, "kept": kept}


def _score_test(plan: Plan, final: Path) -> dict[str, Any] | None:
    """The one reading of the test split: the chosen run scores it, into its metrics.json and predictions."""
    if not plan.splits.test:
        return None
    import pandas as pd

    from tuneforge.evaluate.scoring import score_file
    from tuneforge.predict import Predictor

    layout = RunLayout(final)
    predictor = Predictor.from_run(final, plan.recipe.train.device, trust_run_code=True)  # trained here, by auto
    metrics, predictions = score_file(predictor, plan.splits.test)
    stored = json.loads(layout.metrics.read_text(encoding="utf-8"))
    stored["test"] = metrics
    artifacts.write_json(layout.metrics, stored)
    frame = pd.DataFrame(predictions)
    artifacts.write_with(layout.test_predictions, lambda target: frame.to_csv(target, index=False))
    labels = stored.get("labels")
    if labels and "confusion_matrix" in metrics:
        from tuneforge.train.pipelines.classifier import confusion_plots

        confusion_plots(layout, stored, labels)
    return {key: value for key, value in metrics.items() if isinstance(value, (int, float)) and value is not None}
