"""Which models can be used right now without a network, with their size read from the files.

Parameter counts come from the safetensors headers, so listing never loads weights into memory.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from math import prod
from pathlib import Path

from tuneforge.models.resolve import BUNDLED, bundled_path, is_run_dir


@dataclass(frozen=True)
class ModelInfo:
    name: str
    source: str  # bundled, local, run, hub-cache
    path: str
    architecture: str
    parameters: int | None
    size_bytes: int
    description: str = ""


def safetensors_parameters(path: Path) -> int:
    with path.open("rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_size))
    return sum(prod(entry["shape"]) for key, entry in header.items() if key != "__metadata__")


def describe_folder(folder: Path, name: str, source: str, description: str = "") -> ModelInfo | None:
    config_path = folder / "config.json"
    if not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    weights = sorted(folder.glob("*.safetensors"))
    parameters = sum(safetensors_parameters(w) for w in weights) if weights else None
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    architecture = (config.get("architectures") or [config.get("model_type", "?")])[0]
    return ModelInfo(name, source, str(folder), architecture, parameters, size, description)


def _hub_cache_models(hub_cache: Path) -> Iterable[ModelInfo]:
    for repo in sorted(hub_cache.glob("models--*")):
        snapshots = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)
        if snapshots:
            name = repo.name.removeprefix("models--").replace("--", "/")
            info = describe_folder(snapshots[-1], name, "hub-cache")
            if info is not None:
                yield info


def list_offline_models(search_dirs: Iterable[Path] = (), hub_cache: Path | None = None) -> list[ModelInfo]:
    """Bundled models, model folders and tuneforge runs under `search_dirs`, and the hub cache."""
    found: list[ModelInfo] = []
    for model in BUNDLED:
        folder = bundled_path(model)
        if folder is not None:
            info = describe_folder(folder, model.alias, "bundled", f"{model.hub_id}: {model.description}")
            if info is not None:
                found.append(info)
    for directory in search_dirs:
        if not directory.is_dir():
            continue
        for config in sorted(directory.glob("*/config.json")) + sorted(directory.glob("*/model/config.json")):
            folder = config.parent
            run = folder.parent if folder.name == "model" and is_run_dir(folder.parent) else None
            if folder.name == "model" and run is None:
                continue
            info = describe_folder(folder, str(run or folder), "run" if run else "local")
            if info is not None:
                found.append(info)
    if hub_cache is not None and hub_cache.is_dir():
        found.extend(_hub_cache_models(hub_cache))
    return found
