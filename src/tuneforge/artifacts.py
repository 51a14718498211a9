"""Atomic writes: a reader (or a crash) never sees half a file in the run directory.

A write that fails because the disk is full (ENOSPC, or the same error as torch's zip writer and safetensors
word it) becomes one `TuneforgeError` naming the folder and roughly the space it needed; the previous file or
folder is left as it was and the partial temporary is removed, so the failure itself frees what it used.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError

DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
# How libraries that do not raise OSError report a full disk: safetensors (Rust), torch's zip writer, HDF5, ...
DISK_FULL_WORDS = ("no space left", "os error 28", "unexpected pos", "disk quota exceeded", "not enough space",
                   "file write failed")


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` (or an error it was raised from) says the disk or the user's quota is full."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return True
        if any(words in str(current).lower() for words in DISK_FULL_WORDS):
            return True
        current = current.__cause__ or current.__context__
    return False


def _size(path: Path) -> int:
    """Bytes in a file or folder; 0 when it is gone."""
    try:
        if path.is_dir():
            return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
        return path.stat().st_size if path.exists() else 0
    except OSError:
        return 0


def _amount(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def disk_full_error(folder: Path, needed: int, error: BaseException) -> TuneforgeError:
    """The message for a write that ran out of space: where, how much it needed and how much is left."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    left = f"; {_amount(free)} free there now" if free is not None else ""
    needs = f"about {_amount(needed)}" if needed else "more space"
    return TuneforgeError(
        f"the disk is full: writing to {folder} needed {needs}{left} ({str(error).splitlines()[0][:200]})",
        fix=f"free {needs} on that disk (old runs, checkpoints and caches are the usual candidates) or write "
            "somewhere else (--output); the previous file was left as it was")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, Exception) and is_disk_full(error):
            raise disk_full_error(path.parent, len(text.encode("utf-8")), error) from error
        raise


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=float) + "\n")


def write_with(path: Path, writer: Callable[[Path], None]) -> None:
    """Let `writer` fill a temporary file of the same suffix, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        writer(temporary)
        os.replace(temporary, path)
    except Exception as error:
        if is_disk_full(error):  # what was written so far, or the file it replaces: the size to expect
            raise disk_full_error(path.parent, max(_size(temporary), _size(path)), error) from error
        raise
    finally:
        temporary.unlink(missing_ok=True)


def write_directory(path: Path, writer: Callable[[Path], None]) -> None:
    """Fill a sibling temporary folder, then swap it in, so `path` is always whole or absent."""
    staging = path.with_name(f".{path.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        writer(staging)
    except Exception as error:
        needed = max(_size(staging), _size(path))
        shutil.rmtree(staging, ignore_errors=True)  # a half-written copy helps nobody and holds the space
        if is_disk_full(error):
            raise disk_full_error(path.parent, needed, error) from error
        raise
    old = path.with_name(f".{path.name}.old")
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(staging, path)
    shutil.rmtree(old, ignore_errors=True)
