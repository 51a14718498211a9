"""A run's model as a standalone folder another tool loads without tuneforge: `tuneforge export`."""

from __future__ import annotations

import shutil
from pathlib import Path

from tuneforge import artifacts
from tuneforge.errors import TuneforgeError
from tuneforge.models.peft import merge_adapter
from tuneforge.run import RunLayout, read_run_recipe


def export_run(run_dir: str | Path, output: str | Path, merge: bool = False, overwrite: bool = False) -> Path:
    """Write the run's model to `output`: base + adapter merged (`merge`), else the adapter of a PEFT run
    (peft layout) or the full model of any other run (Transformers layout); atomically either way."""
    layout = RunLayout(Path(run_dir))
    read_run_recipe(layout.root)  # a folder that is no run fails here, with its own fix
    target = Path(output)
    if target.resolve() in (layout.root.resolve(), layout.model.resolve(), layout.adapter.resolve()):
        raise TuneforgeError(f"--output {target} is part of the run it exports", fix="choose a folder outside it")
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise TuneforgeError(f"{target} already exists and is not empty",
                             fix="choose a new --output folder, or pass --overwrite to replace it")
    if merge:
        return merge_adapter(layout.root, target)
    if not (layout.has_adapter() or layout.has_model()):
        raise TuneforgeError(f"run '{layout.root}' has no trained model yet (no model/ or adapter/ folder)",
                             fix="finish training first; resume an interrupted run with `tuneforge train --resume`")
    source = layout.adapter if layout.has_adapter() else layout.model
    artifacts.write_directory(target, lambda folder: shutil.copytree(source, folder))
    return target
