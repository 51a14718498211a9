"""From the recipe's data section to validated, split, label-encoded datasets ready for tokenisation."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
from sklearn.model_selection import train_test_split

from tuneforge.augment.counterfactual import counterfactual_augmentation
from tuneforge.augment.identity import joint_groups, load_terms
from tuneforge.augment.pipeline import augment_split
from tuneforge.data import validation as checks
from tuneforge.data.class_weights import ClassWeights, decide_class_weights
from tuneforge.data.cleaning import clean_loaded, drops_empty_texts
from tuneforge.data.imbalance import imbalance_report, imbalance_warning
from tuneforge.data.language import language_mismatch
from tuneforge.data.loading import read_table
from tuneforge.data.mitigation import group_reweighting
from tuneforge.errors import DataError, Problem, TuneforgeError
from tuneforge.recipe import LABEL_SEPARATORS, Recipe

LABEL_FIELD = "labels"  # the name Transformers models expect
WEIGHT_FIELD = "example_weights"  # optional per-example loss weights (fairness reweighting), mean about 1


@dataclass
class PreparedData:
    train: datasets.Dataset
    validation: datasets.Dataset | None
    test: datasets.Dataset | None
    labels: list[str] | None  # class names in id order; None for regression
    warnings: list[Problem] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    mitigation: dict[str, Any] | None = None  # what bias mitigation changed in the training split
    augmentation: dict[str, int] | None = None  # rows each augmenter added to the training split
    cleaning: dict[str, Any] | None = None  # per split: what the clean: step dropped, flagged or masked, and why
    imbalance: dict[str, Any] | None = None  # class counts, imbalance ratio, rare classes and advice
    class_weights: ClassWeights | None = None  # the run's one class-weights decision (data/class_weights.py)

    def class_counts(self) -> dict[str, int]:
        if self.labels is None or LABEL_FIELD not in self.train.column_names:  # regression, or tags per word
            return {}
        targets = self.train[LABEL_FIELD]
        if targets and isinstance(targets[0], list):  # multilabel: rows carrying each label
            totals = np.asarray(targets, dtype=np.float64).sum(axis=0)
            return {name: int(totals[i]) for i, name in enumerate(self.labels)}
        counts = Counter(targets)
        return {name: counts.get(i, 0) for i, name in enumerate(self.labels)}


def sort_labels(keys: set[str]) -> list[str]:
    """Numeric labels in numeric order (0, 1, 2, 10), names alphabetically: stable across runs and files."""
    def numeric(key: str) -> float | None:
        try:
            return float(key)
        except ValueError:
            return None
    if all(numeric(k) is not None for k in keys):
        return sorted(keys, key=lambda k: numeric(k))
    return sorted(keys)


def label_separator(recipe: Recipe, train_values: list[Any]) -> str | None:
    """The multilabel separator: the recipe's, else the first of '|', ';', ',' found in the training labels."""
    return recipe.data.label_separator or checks.detect_separator(train_values, LABEL_SEPARATORS)


def multi_hot(labels: list[str], label2id: dict[str, int]) -> list[float]:
    vector = [0.0] * len(label2id)
    for label in labels:
        vector[label2id[label]] = 1.0
    return vector


class _EncodeLabels:
    """Picklable (so `datasets` can fingerprint and cache it) label encoder."""

    def __init__(self, column: str, label2id: dict[str, int] | None, multilabel: bool = False,
                 separator: str | None = None) -> None:
        self.column = column
        self.label2id = label2id
        self.multilabel = multilabel
        self.separator = separator

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        values = batch[self.column]
        if self.label2id is None:
            return {LABEL_FIELD: [float(v) for v in values]}
        if self.multilabel:
            return {LABEL_FIELD: [multi_hot(checks.split_labels(v, self.separator), self.label2id) for v in values]}
        return {LABEL_FIELD: [self.label2id[checks.label_key(v)] for v in values]}


def _carve(dataset: datasets.Dataset, fraction: float, stratify_by: list[Any] | None, seed: int
           ) -> tuple[datasets.Dataset, datasets.Dataset]:
    indices = np.arange(len(dataset))
    held_count = int(np.ceil(fraction * len(dataset)))
    classes = len(set(stratify_by)) if stratify_by is not None else 0
    # Stratifying needs a row of every class on both sides; tiny splits fall back to a plain seeded split.
    can_stratify = (stratify_by is not None and min(Counter(stratify_by).values()) >= 2
                    and classes <= held_count <= len(dataset) - classes)
    keep, held = train_test_split(
        indices, test_size=fraction, random_state=seed, stratify=stratify_by if can_stratify else None
    )
    return dataset.select(sorted(keep)), dataset.select(sorted(held))


def _oversample(dataset: datasets.Dataset, seed: int) -> datasets.Dataset:
    labels = np.asarray(dataset[LABEL_FIELD])
    rng = np.random.default_rng(seed)
    target = max(Counter(labels.tolist()).values())
    chosen = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        extra = rng.choice(rows, size=target - len(rows), replace=True) if len(rows) < target else []
        chosen.extend(rows.tolist() + list(extra))
    return dataset.select(sorted(int(i) for i in chosen))


def load_and_check(recipe: Recipe) -> tuple[dict[str, tuple[str, datasets.Dataset]], list[Problem]]:
    """Load every split named in the recipe and collect all problems; never raises for data content."""
    spec = recipe.data
    problems: list[Problem] = []
    if not spec.train:
        problems.append(Problem(where="data.train", message="no training file given",
                                fix="set data.train in the recipe or pass --data FILE"))
        return {}, problems

    loaded: dict[str, tuple[str, datasets.Dataset]] = {}
    for role in ("train", "validation", "test"):
        path = getattr(spec, role)
        if not path:
            continue
        try:
            loaded[role] = (path, read_table(path, role, spec.cache_dir))
        except DataError as error:
            problems += error.problems

    required = [spec.text_column, spec.label_column] + ([spec.text_pair_column] if spec.text_pair_column else [])
    usable: dict[str, tuple[str, datasets.Dataset]] = {}
    for role, (path, dataset) in loaded.items():
        column_problems = checks.check_columns(path, dataset.column_names, required)
        problems += column_problems
        if not column_problems:
            usable[role] = (path, dataset)

    audited = "test" if "test" in usable else "train"  # the fairness audit reads the test split
    if recipe.fairness.sensitive_columns and audited in usable:
        path, dataset = usable[audited]
        problems += checks.check_columns(path, dataset.column_names, recipe.fairness.sensitive_columns,
                                         fix="add the column to the file, or fix fairness.sensitive_columns (leave "
                                             "it empty to infer groups from identity terms)",
                                         kind="sensitive column")

    for role, (path, dataset) in usable.items():
        text_problems = checks.check_texts(path, spec.text_column, dataset[spec.text_column])
        if role == "train" and recipe.clean.enabled:
            if drops_empty_texts(recipe):  # cleaning drops them and lists each in the data report
                text_problems = [p for p in text_problems if "every text is empty" in p.message]
        problems += text_problems
        if spec.text_pair_column:
            problems += checks.check_texts(path, spec.text_pair_column, dataset[spec.text_pair_column])
        labels = dataset[spec.label_column]
        if recipe.task != "multilabel":  # for multilabel an empty cell is a text with no label
            problems += checks.check_labels_present(path, spec.label_column, labels)
        if recipe.task == "regression":
            problems += checks.check_regression_targets(path, spec.label_column, labels)

    if recipe.task == "classification" and "train" in usable:
        path, train = usable["train"]
        counts = Counter(checks.label_key(v) for v in train[spec.label_column] if not checks.is_blank(v))
        problems += checks.check_class_counts(path, spec.label_column, counts, spec.min_examples_per_class)
        problems += _rare_class_warning(recipe, path, dict(counts))
        for role in ("validation", "test"):
            if role in usable:
                other_path, other = usable[role]
                problems += checks.check_unseen_labels(other_path, spec.label_column, other[spec.label_column],
                                                       set(counts))

    if recipe.task == "multilabel" and "train" in usable:
        path, train = usable["train"]
        separator = label_separator(recipe, train[spec.label_column])
        rows = [checks.split_labels(v, separator) for v in train[spec.label_column]]
        problems += checks.check_multilabel_train(path, spec.label_column, rows, spec.min_examples_per_class)
        problems += _rare_class_warning(recipe, path, dict(Counter(label for labels in rows for label in labels)))
        known = {label for labels in rows for label in labels}
        for role in ("validation", "test"):
            if role in usable and known:
                other_path, other = usable[role]
                other_rows = [checks.split_labels(v, separator) for v in other[spec.label_column]]
                problems += checks.check_unseen_multilabels(other_path, spec.label_column, other_rows, known)

    keys = {
        role: (path, [checks.text_key(t, p) for t, p in zip(
            dataset[spec.text_column],
            dataset[spec.text_pair_column] if spec.text_pair_column else [None] * len(dataset),
            strict=True)])
        for role, (path, dataset) in usable.items()
    }
    for first, second in (("train", "validation"), ("train", "test"), ("validation", "test")):
        if first in keys and second in keys:
            problems += checks.check_overlap(keys[first], keys[second])
    if spec.language and "train" in usable:
        path, train = usable["train"]
        problems += language_mismatch(spec.language, path, train.select(range(min(500, len(train))))[spec.text_column])
    return usable, problems


def prepare_data(recipe: Recipe) -> PreparedData:
    """Validate, split and encode; raises `DataError` listing every error, returns warnings alongside."""
    loaded, problems = load_and_check(recipe)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise DataError(problems)
    warnings = [p for p in problems if p.severity == "warning"]
    spec = recipe.data
    cleaning = None
    if recipe.clean.enabled:
        loaded, cleaning, found = clean_loaded(loaded, recipe)
        warnings += found

    label_names: list[str] | None = None
    label2id: dict[str, int] | None = None
    if recipe.task == "classification":
        train_values = loaded["train"][1][spec.label_column]
        label_names = sort_labels({checks.label_key(v) for v in train_values})
        label2id = {name: i for i, name in enumerate(label_names)}

    separator = None
    if recipe.task == "multilabel":
        train_values = loaded["train"][1][spec.label_column]
        separator = label_separator(recipe, train_values)
        label_names = sort_labels({label for v in train_values for label in checks.split_labels(v, separator)})
        label2id = {name: i for i, name in enumerate(label_names)}

    encoder = _EncodeLabels(spec.label_column, label2id, recipe.task == "multilabel", separator)
    encoded = {role: ds.map(encoder, batched=True, desc=f"encoding {role} labels")
               for role, (_, ds) in loaded.items()}

    train = encoded["train"]
    stratify = spec.stratify and recipe.task == "classification"
    validation = encoded.get("validation")
    test = encoded.get("test")
    if test is None and spec.test_split > 0:
        train, test = _carve(train, spec.test_split, train[LABEL_FIELD] if stratify else None, spec.split_seed)
    if validation is None and spec.validation_split > 0:
        # Both fractions are shares of the whole training file, whichever split was carved first.
        carved_test = spec.test_split if "test" not in encoded and spec.test_split > 0 else 0.0
        share = spec.validation_split / (1.0 - carved_test)
        train, validation = _carve(train, share, train[LABEL_FIELD] if stratify else None, spec.split_seed)
    # The imbalance report describes the split as it came from the data; the warning came from load_and_check
    # (the whole file), so that `tuneforge validate` shows it too.
    counts = PreparedData(train=train, validation=None, test=None, labels=label_names).class_counts() \
        if label_names else {}
    if recipe.task == "classification" and recipe.imbalance.oversample:
        train = _oversample(train, recipe.train.seed)
    # Augmentation sees the balanced split (variants keep the balance) and mitigation sees the variants.
    train, augmentation = augment_split(train, recipe, (validation, test))
    train, mitigation = _mitigate(train, recipe)

    sources = {role: path for role, (path, _) in loaded.items()}
    prepared = PreparedData(train=train, validation=validation, test=test, labels=label_names, warnings=warnings,
                            sources=sources, mitigation=mitigation, augmentation=augmentation, cleaning=cleaning)
    if label_names:  # decided on the split the loss sees (after oversampling and augmentation), once
        prepared.class_weights = decide_class_weights(recipe, label_names, list(prepared.class_counts().values()),
                                                      rows=len(train))
        prepared.imbalance = imbalance_report(counts, recipe, prepared.class_weights.on)
    return prepared


def _rare_class_warning(recipe: Recipe, path: str, counts: dict[str, int]) -> list[Problem]:
    """The imbalance report's warning with advice, when a class of the training file is rare."""
    found = imbalance_warning(imbalance_report(counts, recipe), f"{path}: column '{recipe.data.label_column}'")
    return [found] if found else []


def _mitigate(train: datasets.Dataset, recipe: Recipe) -> tuple[datasets.Dataset, dict[str, Any] | None]:
    """Training-time bias mitigation from the recipe's fairness section; evaluation splits stay untouched."""
    fairness, spec = recipe.fairness, recipe.data
    if fairness.mitigation == "none":
        return train, None
    terms = load_terms(fairness.identity_categories, fairness.identity_terms_file)
    texts = train[spec.text_column]
    if fairness.mitigation == "reweight":
        column = next((c for c in fairness.sensitive_columns if c in train.column_names), None)
        groups = train[column] if column else joint_groups(texts, terms)
        weights = group_reweighting(groups, train[LABEL_FIELD])
        grouped = Counter(str(g) for g in groups if g is not None)
        summary = {"method": "reweight", "groups_from": column or "identity terms", "groups": dict(grouped),
                   "weight_min": float(weights.min()), "weight_max": float(weights.max())}
        return train.add_column(WEIGHT_FIELD, weights.tolist()), summary
    if spec.text_pair_column:
        raise TuneforgeError("counterfactual augmentation swaps terms in single texts; this recipe has text pairs",
                             fix="use fairness.mitigation: reweight for sentence-pair tasks")
    augmented, labels = counterfactual_augmentation(texts, train[LABEL_FIELD], terms)
    added = len(augmented) - len(texts)
    summary = {"method": "counterfactual_augmentation", "added_rows": added}
    if added == 0:
        return train, summary
    core = train.select_columns([spec.text_column, spec.label_column, LABEL_FIELD])
    raw_label = dict(zip(core[LABEL_FIELD], core[spec.label_column], strict=True))
    extra = datasets.Dataset.from_dict(
        {spec.text_column: augmented[len(texts):], spec.label_column: [raw_label[i] for i in labels[len(texts):]],
         LABEL_FIELD: labels[len(texts):]},
        features=core.features,
    )
    return datasets.concatenate_datasets([core, extra]), summary
