"""The bundled demo: real data and a real pretrained model that ship with the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from tuneforge.recipe import Recipe, recipe_from_dict


def demo_data_dir() -> Path:
    return Path(str(resources.files("tuneforge") / "demo_data" / "nusax_en"))


def demo_recipe(output: Path, overrides: list[str] | None = None) -> Recipe:
    folder = demo_data_dir()
    return recipe_from_dict(
        {
            "task": "classification",
            "model": {"name": "minilm"},
            "data": {"train": str(folder / "train.csv"), "validation": str(folder / "valid.csv"),
                     "test": str(folder / "test.csv")},
            "train": {"epochs": 5, "learning_rate": 1e-4, "batch_size": 16},
            "output": {"dir": str(output), "overwrite": True},
        },
        overrides,
        source="demo recipe",
    )
