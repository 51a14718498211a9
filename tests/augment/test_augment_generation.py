"""Generation with a language model: prompts, the label filter, counts, seeds, and the recipe/CLI plumbing.

The generators are tiny and randomly initialised, so they write garbage: the tests assert what the filter
does with it (drops what a classifier does not give the original's label) rather than its quality.
"""

from __future__ import annotations

import random

import pandas as pd
import pytest

from tests.conftest import make_rows, write_csv
from tuneforge.augment.generation import (
    LanguageModelGeneration,
    first_line,
    fit_default_filter,
    prompt_for,
)
from tuneforge.errors import TuneforgeError

ROWS = make_rows(30, seed=7)
TEXTS = [row["text"] for row in ROWS]
LABELS = [row["label"] for row in ROWS]


def everything_is(label: str, confidence: float = 0.99):
    return lambda texts: [(label, confidence)] * len(texts)


def test_prompts() -> None:
    assert prompt_for("paraphrase", False, "good food", "positive", []) == "Paraphrase: good food\nParaphrase:"
    assert prompt_for("paraphrase", True, "good food", "positive", []) == "paraphrase: good food"
    assert prompt_for("label_conditioned", False, "x", "positive", ["a b", "c d"]) == \
        "Examples of positive texts:\n- a b\n- c d\n-"
    assert prompt_for("label_conditioned", True, "x", "positive", ["a b", "c d"]) == \
        "write a positive text like: a b | c d"
    assert first_line("\n  lovely   food \nmore") == "lovely food"


def test_planted_filter_keeps_only_its_label(tiny_gpt2) -> None:
    augmenter = LanguageModelGeneration(str(tiny_gpt2), tries=2, max_new_tokens=8,
                                        label_filter=everything_is("positive"))
    counts = [1] * len(TEXTS)
    results = augmenter.augment(TEXTS, counts, random.Random(0), labels=LABELS)
    stats = augmenter.stats
    assert stats.generated == 2 * len(TEXTS)
    assert stats.kept + sum(stats.dropped.values()) == stats.generated
    assert stats.dropped["off_label"] >= 2 * LABELS.count("negative")  # every non-positive original's candidate
    for label, found, wanted in zip(LABELS, results, counts, strict=True):
        assert len(found) <= wanted
        if label != "positive":
            assert found == []
    assert stats.kept == sum(len(found) for found in results) > 0
    assert all(text not in TEXTS for found in results for text in found)


def test_low_confidence_is_dropped(tiny_gpt2) -> None:
    augmenter = LanguageModelGeneration(str(tiny_gpt2), tries=1, max_new_tokens=6, min_confidence=0.9,
                                        label_filter=everything_is("positive", 0.6))
    results = augmenter.augment(TEXTS[:6], [1] * 6, random.Random(0), labels=LABELS[:6])
    assert results == [[]] * 6
    assert augmenter.stats.kept == 0 and augmenter.stats.dropped["low_confidence"] >= 2


def test_default_filter_is_a_classifier_of_the_training_split() -> None:
    predict = fit_default_filter(TEXTS, LABELS)
    (label, confidence), (other, _) = predict(["great lovely wonderful food", "awful terrible rude service"])
    assert label == "positive" and other == "negative" and confidence > 0.5


class PlantedGenerator(LanguageModelGeneration):
    """The real filter and bookkeeping around fixed generations: one on-label and one off-label per prompt."""

    def _model(self):
        return None, None, False

    def _generate(self, prompts, rng):
        out = []
        for index, _ in enumerate(prompts):
            out.append("excellent happy lovely friendly" if index % 2 == 0 else "awful terrible rude horrible")
        return out


def test_default_filter_drops_off_label_generations() -> None:
    positive = [i for i, label in enumerate(LABELS) if label == "positive"][:3]
    augmenter = PlantedGenerator("unused", tries=2)
    results = augmenter.augment(TEXTS, [1 if i in positive else 0 for i in range(len(TEXTS))], random.Random(0),
                                labels=LABELS)
    assert results[positive[0]] == ["excellent happy lovely friendly"]
    assert augmenter.stats.dropped["off_label"] == 3  # the negative candidate of each positive original
    assert augmenter.stats.dropped["duplicate"] == 2  # the same text again for the second and third original


def test_seed_decides_the_generations(tiny_gpt2) -> None:
    def run(seed: int) -> list[list[str]]:
        augmenter = LanguageModelGeneration(str(tiny_gpt2), tries=1, max_new_tokens=6,
                                            label_filter=everything_is("positive"))
        return augmenter.augment(TEXTS[:6], [1] * 6, random.Random(seed), labels=["positive"] * 6)

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_label_conditioned_with_a_seq2seq_model(tiny_t5) -> None:
    augmenter = LanguageModelGeneration(str(tiny_t5), mode="label_conditioned", tries=2, max_new_tokens=6,
                                        label_filter=everything_is("neutral"))
    results = augmenter.augment(TEXTS[:9], [1] * 9, random.Random(0), labels=LABELS[:9])
    assert augmenter.stats.generated == 18
    assert all(found == [] for found, label in zip(results, LABELS[:9], strict=True) if label != "neutral")


def test_missing_labels_and_unloadable_model_are_clear_errors(tmp_path) -> None:
    with pytest.raises(TuneforgeError, match="needs each text's label"):
        LanguageModelGeneration("x").augment(TEXTS, [1] * len(TEXTS), random.Random(0))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(TuneforgeError, match="could not load the generator"):
        LanguageModelGeneration(str(tmp_path), label_filter=everything_is("a")).augment(
            TEXTS[:2], [1, 1], random.Random(0), labels=LABELS[:2])


def test_cli_generation_with_the_default_filter(tiny_gpt2, tmp_path, capsys) -> None:
    from tuneforge.cli.main import main

    source = write_csv(tmp_path / "in.csv", ROWS)
    out = tmp_path / "out.csv"
    code = main(["augment", "--data", str(source), "--method", "generation", "--model", str(tiny_gpt2),
                 "--ratio", "0.5", "--output", str(out), "--set", f"data.cache_dir={tmp_path / 'cache'}"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    frame = pd.read_csv(out)
    assert (frame["augmentation"][:30] == "original").all()
    assert (frame["augmentation"][30:] == "generation").all()
    assert "generation: 45 generated" in printed.out  # 15 originals x 3 tries
    kept = int(printed.out.split(" kept")[0].split()[-1])
    assert len(frame) == 30 + kept


def test_pipeline_reports_filter_counts_and_caches_them(tiny_gpt2, tmp_path) -> None:
    from tuneforge.augment.pipeline import augment_texts
    from tuneforge.recipe import AugmentSpec

    spec = AugmentSpec.model_validate({"methods": [{"method": "generation", "model": str(tiny_gpt2), "ratio": 0.3,
                                                    "tries": 2, "max_new_tokens": 6}], "seed": 1})
    with pytest.raises(TuneforgeError, match="needs the label"):
        augment_texts(TEXTS, spec, tmp_path)
    first = augment_texts(TEXTS, spec, tmp_path, labels=LABELS)
    detail = first.details["generation"]
    assert detail["generated"] == 18  # round(0.3 x 30) originals x 2 tries
    assert detail["kept"] == len(first.texts)
    assert detail["kept"] + sum(detail["dropped"].values()) == 18
    again = augment_texts(TEXTS, spec, tmp_path, labels=LABELS)  # from the cache
    assert again.texts == first.texts and again.details == first.details
    assert len(list((tmp_path / "tuneforge-augment").glob("*.json"))) == 1
    augment_texts(TEXTS, spec, tmp_path, labels=list(reversed(LABELS)))
    assert len(list((tmp_path / "tuneforge-augment").glob("*.json"))) == 2  # labels are part of the cache key


@pytest.mark.slow
def test_a_tuneforge_run_as_the_filter(tiny_model, tiny_gpt2, tmp_path) -> None:
    import tuneforge
    from tests.conftest import tiny_recipe
    from tuneforge.augment.generation import run_filter

    files = {"train": write_csv(tmp_path / "train.csv", make_rows(90, seed=2)),
             "validation": write_csv(tmp_path / "val.csv", make_rows(30, seed=3))}
    run = tuneforge.fine_tune(tiny_recipe(tiny_model, files, tmp_path / "run"))
    predict = run_filter(str(run.directory))
    [(label, confidence)] = predict(["great lovely wonderful happy"])
    assert label == "positive" and 0 < confidence <= 1
    augmenter = LanguageModelGeneration(str(tiny_gpt2), filter_model=str(run.directory), tries=1, max_new_tokens=6)
    augmenter.augment(TEXTS[:6], [1] * 6, random.Random(0), labels=LABELS[:6])
    assert augmenter.stats.generated == 6
    assert augmenter.stats.kept + sum(augmenter.stats.dropped.values()) == 6
