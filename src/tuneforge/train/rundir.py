"""The run directory while a run writes it: created, guarded by a lock, resumed, and never overwritten by accident.

One process writes a run directory at a time: the lock is an advisory `flock` on `.lock` holding the writer's
PID, released by the kernel when that process ends however it ends, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tuneforge.errors import TuneforgeError
from tuneforge.recipe import Recipe
from tuneforge.run import RunLayout

LOCK_FILE = ".lock"


class RunDirectoryBusy(TuneforgeError):
    """Another process is writing this run directory."""


def default_run_dir(recipe: Recipe) -> Path:
    return Path("runs") / f"{recipe.task}-{time.strftime('%Y%m%d-%H%M%S')}"


@contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """Hold the run directory for this process; a second writer is refused with the holder's PID."""
    root.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = (root / LOCK_FILE).open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunDirectoryBusy(f"{root} is being written by another tuneforge process (PID {holder})",
                                   fix="wait for it to finish (or stop it), or choose another --output") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock


def prepare_run_dir(recipe: Recipe, resume: bool, force: bool = False) -> tuple[RunLayout, Path | None]:
    """The run's layout and, when resuming, the checkpoint to continue from.

    A folder holding a run is never replaced unless output.overwrite; resuming a finished run is refused unless
    `force` (it would redo the post-training steps); a resumed log is cut back to the checkpoint's step so
    re-run steps are not logged twice.
    """
    layout = RunLayout(Path(recipe.output.dir or default_run_dir(recipe)))
    if resume:
        checkpoint = layout.last_checkpoint()
        if checkpoint is None:
            raise TuneforgeError(f"there is no checkpoint to resume in {layout.checkpoints}",
                                 fix="start the run again without --resume")
        if layout.is_finished() and not force:
            raise TuneforgeError(f"{layout.root} holds a finished run; resuming it would redo its evaluation and "
                                 "report", fix="pass --force to resume it anyway (for example with more epochs), "
                                               "or train into a new --output")
        truncate_log(layout.log, checkpoint_step(checkpoint))
        return layout, checkpoint
    if layout.root.exists() and (layout.is_finished() or layout.last_checkpoint() is not None):
        if not recipe.output.overwrite:
            raise TuneforgeError(f"{layout.root} already holds a run",
                                 fix="pass --resume to continue it, --overwrite to replace it, or choose another "
                                     "--output")
        for child in layout.root.iterdir():  # the lock file stays: this process holds it
            if child.name != LOCK_FILE:
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.log.unlink(missing_ok=True)
    return layout, None


def checkpoint_step(checkpoint: Path) -> int:
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    return int(state.get("global_step", 0))


def truncate_log(log: Path, step: int) -> None:
    """Drop log records after `step`: the resumed run logs those steps again."""
    if not log.is_file():
        return
    kept = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line).get("step", 0)) <= step:
                kept.append(line)
        except (ValueError, AttributeError):
            continue  # a line cut by a crash
    from tuneforge import artifacts

    artifacts.write_text(log, "".join(line + "\n" for line in kept))
