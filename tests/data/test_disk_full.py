"""A write that runs out of disk space is one clear error, and the file it was replacing survives untouched."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tuneforge import artifacts
from tuneforge.errors import TuneforgeError


def full(*_: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def leftovers(folder: Path) -> list[str]:
    return sorted(item.name for item in folder.iterdir() if item.name.startswith("."))


def test_write_text_on_a_full_disk_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "run" / "metrics.json"
    artifacts.write_json(target, {"accuracy": 0.9})
    monkeypatch.setattr(artifacts.os, "fsync", full)
    with pytest.raises(TuneforgeError) as raised:
        artifacts.write_json(target, {"accuracy": 0.95, "notes": "x" * 5120})
    message = raised.value.message
    assert "the disk is full" in message and str(target.parent) in message
    assert "about 5.0 KB" in message and "free there now" in message
    assert "free about 5.0 KB" in raised.value.fix
    assert target.read_text(encoding="utf-8") == '{\n  "accuracy": 0.9\n}\n'
    assert leftovers(target.parent) == []


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4608 vs 4501"),
    Exception("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: \"No space left on "
              "device\" }) (os error 28)"),
])
def test_write_with_names_the_folder_and_the_size(tmp_path: Path, failure: Exception) -> None:
    target = tmp_path / "predictions.csv"
    target.write_text("id,label\n1,positive\n", encoding="utf-8")

    def writer(temporary: Path) -> None:
        temporary.write_bytes(b"x" * 3000)  # some of it got written before the disk filled up
        raise failure

    with pytest.raises(TuneforgeError, match="the disk is full") as raised:
        artifacts.write_with(target, writer)
    assert str(tmp_path) in raised.value.message and "2.9 KB" in raised.value.message
    assert target.read_text(encoding="utf-8") == "id,label\n1,positive\n"
    assert leftovers(tmp_path) == []


def test_write_directory_on_a_full_disk_keeps_the_previous_folder(tmp_path: Path) -> None:
    model = tmp_path / "model"
    artifacts.write_directory(model, lambda folder: (folder.mkdir(), (folder / "weights").write_bytes(b"1" * 2048)))

    def writer(folder: Path) -> None:
        folder.mkdir()
        (folder / "weights").write_bytes(b"2" * 100)
        full()

    with pytest.raises(TuneforgeError, match="the disk is full") as raised:
        artifacts.write_directory(model, writer)
    assert "about 2.0 KB" in raised.value.message  # the size of the folder it was replacing
    assert (model / "weights").read_bytes() == b"1" * 2048
    assert leftovers(tmp_path) == []  # the half-written staging folder is gone, freeing its space


def test_other_failures_pass_through_unchanged(tmp_path: Path) -> None:
    def writer(_: Path) -> None:
        raise ValueError("not a disk problem")

    with pytest.raises(ValueError, match="not a disk problem"):
        artifacts.write_with(tmp_path / "x.csv", writer)
    with pytest.raises(PermissionError):
        artifacts.write_with(tmp_path / "y.csv", lambda _: (_ for _ in ()).throw(PermissionError(errno.EACCES, "no")))
    assert not artifacts.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert os.listdir(tmp_path) == []
