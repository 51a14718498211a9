"""`tuneforge augment`, with a recipe and with flags alone: the CSV it writes and the preview it prints."""

from __future__ import annotations

import pandas as pd
import yaml

from tests.conftest import write_csv
from tuneforge.augment.shuffle import split_sentences
from tuneforge.cli.main import main

ROWS = [{"text": f"Review {i} starts here. It ends there.", "label": ("good", "bad")[i % 2], "id": i}
        for i in range(20)]


def sentences(text: str) -> list[str]:
    return sorted(split_sentences(text))


def test_flags_alone_write_originals_then_variants(tmp_path, capsys):
    source = write_csv(tmp_path / "in.csv", ROWS)
    out = tmp_path / "out.csv"
    assert main(["augment", "--data", str(source), "--text-column", "text", "--label-column", "label",
                 "--method", "shuffle", "--ratio", "0.5", "--seed", "3", "--output", str(out),
                 "--set", f"data.cache_dir={tmp_path / 'cache'}"]) == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["text", "label", "id", "augmentation"]
    assert frame["text"][:20].tolist() == [row["text"] for row in ROWS]
    assert (frame["augmentation"][:20] == "original").all()
    new = frame[20:]
    assert len(new) == 10 and (new["augmentation"] == "shuffle").all()
    for _, row in new.iterrows():
        original = ROWS[row["id"]]  # the id column is copied from the original row
        assert row["label"] == original["label"] and sentences(row["text"]) == sentences(original["text"])
    assert "20 rows, 10 new (+10 shuffle)" in capsys.readouterr().out

    again = tmp_path / "again.csv"
    main(["augment", "--data", str(source), "--method", "shuffle", "--ratio", "0.5", "--seed", "3",
          "--output", str(again), "--set", f"data.cache_dir={tmp_path / 'other-cache'}"])
    assert pd.read_csv(again).equals(frame)


def test_recipe_preview_shows_originals_beside_variants(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    write_csv(tmp_path / "train.csv", ROWS)
    recipe.write_text(yaml.safe_dump({
        "data": {"train": "train.csv", "validation_split": 0.2, "cache_dir": str(tmp_path / "cache")},
        "augment": {"methods": [{"method": "shuffle", "ratio": 1}], "seed": 1},
    }))
    out = tmp_path / "aug.csv"
    assert main(["augment", str(recipe), "--preview", "3", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Augmentation preview (3 of 16" in printed and "original" in printed and "variant" in printed
    assert printed.count("shuffle") >= 3 and "It ends there. Review" in printed

    frame = pd.read_csv(out)
    originals = frame[frame["augmentation"] == "original"]
    assert len(originals) == 16 and len(frame) == 32  # the training split only: 20% went to validation
    assert "labels" not in frame.columns


def test_method_flag_replaces_the_recipes_methods(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    write_csv(tmp_path / "train.csv", ROWS)
    recipe.write_text(yaml.safe_dump({"data": {"train": "train.csv", "validation_split": 0.0}}))
    assert main(["augment", str(recipe)]) == 1
    assert "--method" in capsys.readouterr().err
    assert main(["augment", str(recipe), "--method", "shuffle", "--ratio", "0.25"]) == 0
    assert "20 rows, 5 new (+5 shuffle)" in capsys.readouterr().out


def test_unknown_method_and_missing_column_are_errors(tmp_path, capsys):
    source = write_csv(tmp_path / "in.csv", ROWS)
    assert main(["augment", "--data", str(source), "--method", "paraphrase"]) == 1
    assert "use one of" in capsys.readouterr().err
    assert main(["augment", "--data", str(source), "--method", "shuffle", "--label-column", "lbl"]) == 1
    assert "did you mean 'label'" in capsys.readouterr().err
