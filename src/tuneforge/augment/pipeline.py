"""Augment a training split: the registry of augmenters, ratios, seeds, de-duplication and the cache.

Caching is an explicit content-hash file rather than `datasets.Dataset.map`: the key hashes the split's
texts (the data fingerprint) with the augment settings, so it holds whichever step made the split (carved,
oversampled, in memory or not), and the whole split is needed at once anyway, to drop variants that
duplicate another text anywhere in it. Computing the same variants twice costs seconds (WordNet) to minutes
(translation), so the second run of a recipe reads them back instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from tuneforge import artifacts
from tuneforge.augment.back_translation import BackTranslation
from tuneforge.augment.base import Augmenter, normalise
from tuneforge.augment.contextual import ContextualReplacement
from tuneforge.augment.eda import EasyDataAugmentation
from tuneforge.augment.generation import LanguageModelGeneration
from tuneforge.augment.shuffle import SentenceShuffle
from tuneforge.augment.synonym import SynonymReplacement
from tuneforge.augment.wordnet import load_wordnet
from tuneforge.errors import TuneforgeError
from tuneforge.recipe import AugmentMethodSpec, AugmentSpec, Recipe

CACHE_VERSION = 1  # bump when an augmenter's output for the same settings changes

REGISTRY: dict[str, Callable[[AugmentMethodSpec], Augmenter]] = {
    "synonym": lambda spec: SynonymReplacement(load_wordnet(spec.wordnet_dir), spec.fraction),
    "eda": lambda spec: EasyDataAugmentation(load_wordnet(spec.wordnet_dir), spec.alpha_sr, spec.alpha_ri,
                                             spec.alpha_rs, spec.alpha_rd),
    "shuffle": lambda spec: SentenceShuffle(words=spec.words),
    "back_translation": lambda spec: BackTranslation(spec.pivots, spec.source_language, spec.models,
                                                     spec.batch_size, spec.timeout),
    "generation": lambda spec: LanguageModelGeneration(
        spec.model or "", spec.mode, spec.filter_model, spec.min_confidence, spec.examples_per_prompt,
        spec.max_new_tokens, spec.temperature, spec.top_p, spec.batch_size, spec.tries),
    "contextual": lambda spec: ContextualReplacement(spec.model or "", spec.fraction, spec.top_k, spec.batch_size),
}


@dataclass
class Augmented:
    """New rows in order: their text, the index of the original they vary, and the method that made them."""

    texts: list[str]
    origins: list[int]
    methods: list[str]
    method_names: list[str]
    details: dict[str, Any] = field(default_factory=dict)  # per method, e.g. generation's kept/dropped counts

    def summary(self) -> dict[str, int]:
        """{method: rows added}, every configured method listed, in recipe order."""
        counts = Counter(self.methods)
        return {name: counts.get(name, 0) for name in self.method_names}

    def without(self, keys: set[str]) -> Augmented:
        keep = [i for i, text in enumerate(self.texts) if normalise(text) not in keys]
        return Augmented([self.texts[i] for i in keep], [self.origins[i] for i in keep],
                         [self.methods[i] for i in keep], self.method_names, self.details)


def variant_counts(size: int, ratio: float, rng: random.Random) -> list[int]:
    """Variants wanted per original: floor(ratio) each, plus one for a random round(frac * size) of them."""
    base = math.floor(ratio)
    counts = [base] * size
    for index in rng.sample(range(size), round((ratio - base) * size)):
        counts[index] += 1
    return counts


def cache_key(texts: list[str], spec: AugmentSpec, labels: list[str] | None = None) -> str:
    digest = hashlib.sha256(json.dumps({"version": CACHE_VERSION, "augment": spec.model_dump(mode="json")},
                                       sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x1e")
    if labels is not None and needs_labels(spec):  # only label-aware methods depend on the labels
        for label in labels:
            digest.update(label.encode("utf-8") + b"\x1f")
    return digest.hexdigest()


def needs_labels(spec: AugmentSpec) -> bool:
    return any(method.method == "generation" for method in spec.methods)


def default_cache_dir() -> Path:
    """Beside the tokenised data, in the `datasets` cache (what data.cache_dir defaults to)."""
    return Path(datasets.config.HF_DATASETS_CACHE)


def _compute(texts: list[str], spec: AugmentSpec, labels: list[str] | None = None) -> Augmented:
    seen = {normalise(text) for text in texts}
    new_texts: list[str] = []
    origins: list[int] = []
    methods: list[str] = []
    details: dict[str, Any] = {}
    for method in spec.methods:
        # One generator per method, seeded by its name: adding a method leaves the others' variants alone.
        rng = random.Random(f"{spec.seed}:{method.method}")
        counts = variant_counts(len(texts), method.ratio, rng)
        augmenter = REGISTRY[method.method](method)
        if getattr(augmenter, "needs_labels", False):
            variants = augmenter.augment(texts, counts, rng, labels=labels)
        else:
            variants = augmenter.augment(texts, counts, rng)
        if hasattr(augmenter, "stats"):
            details[method.method] = augmenter.stats.as_dict()
        for index, (found, wanted) in enumerate(zip(variants, counts, strict=True)):
            for variant in found[:wanted]:
                key = normalise(variant)
                if key and key not in seen:
                    seen.add(key)
                    new_texts.append(variant)
                    origins.append(index)
                    methods.append(method.method)
    return Augmented(new_texts, origins, methods, [m.method for m in spec.methods], details)


def augment_texts(texts: list[str], spec: AugmentSpec, cache_dir: str | Path | None = None,
                  held_out: Iterable[str] = (), labels: list[str] | None = None) -> Augmented:
    """Variants of `texts` per `spec`, read from the cache when this split and these settings ran before.

    Variants equal to a text of `held_out` (validation, test) are dropped: they would leak evaluation data
    into training. `labels` (one per text) are needed by label-aware methods (generation).
    """
    names = [m.method for m in spec.methods]
    if needs_labels(spec) and labels is None:
        raise TuneforgeError("generation needs the label of every text to augment (for its prompts and its "
                             "label filter)", fix="give the data a label column (data.label_column)")
    path = Path(cache_dir or default_cache_dir()) / "tuneforge-augment" / f"{cache_key(texts, spec, labels)}.json"
    augmented = None
    if path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            augmented = Augmented(stored["texts"], stored["origins"], stored["methods"], names,
                                  stored.get("details", {}))
        except (OSError, ValueError, KeyError):
            augmented = None  # a damaged cache file is recomputed
    if augmented is None:
        augmented = _compute(texts, spec, labels)
        try:
            artifacts.write_json(path, {"texts": augmented.texts, "origins": augmented.origins,
                                        "methods": augmented.methods, "details": augmented.details})
        except OSError:
            pass  # a read-only cache only costs the recomputation next time
    return augmented.without({normalise(text) for text in held_out})


def augment_dataset(train: datasets.Dataset, spec: AugmentSpec, text_column: str, cache_dir: str | None = None,
                    held_out: Iterable[str] = (), label_column: str | None = None
                    ) -> tuple[datasets.Dataset, Augmented]:
    """The split with its new rows appended; each copies its original's other columns, label included."""
    labels = [str(v) for v in train[label_column]] if label_column and label_column in train.column_names else None
    augmented = augment_texts([str(text) for text in train[text_column]], spec, cache_dir, held_out, labels)
    if not augmented.texts:
        return train, augmented
    extra: dict[str, Any] = train.select(augmented.origins).to_dict()
    extra[text_column] = augmented.texts
    return datasets.concatenate_datasets([train, datasets.Dataset.from_dict(extra, features=train.features)]), \
        augmented


def augment_split(train: datasets.Dataset, recipe: Recipe, held_out: Iterable[datasets.Dataset | None] = ()
                  ) -> tuple[datasets.Dataset, dict[str, Any] | None]:
    """The recipe's augment step on the training split: (augmented split, {method: rows added}) or no change."""
    if not recipe.augment.enabled:
        return train, None
    spec = recipe.data
    if spec.text_pair_column:
        raise TuneforgeError("augmentation rewrites single texts; this recipe has text pairs, whose label depends on "
                             "how the two texts relate", fix="remove the augment section for sentence-pair tasks")
    if needs_labels(recipe.augment) and recipe.task not in ("classification", "multilabel"):
        raise TuneforgeError(f"generation keeps a generated text only if a classifier gives it the original's "
                             f"label, which a {recipe.task} target is not",
                             fix="remove generation from augment.methods for this task")
    held_texts = [str(text) for split in held_out if split is not None for text in split[spec.text_column]]
    train, augmented = augment_dataset(train, recipe.augment, spec.text_column, spec.cache_dir, held_texts,
                                       spec.label_column)
    summary: dict[str, Any] = augmented.summary()
    for name, detail in augmented.details.items():  # e.g. generation_filter: generated, kept, dropped by reason
        summary[f"{name}_filter"] = detail
    return train, summary
