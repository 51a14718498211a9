"""`make install` / `make demo` set up what augment, translate and ONNX export need, or say the one command."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = "wordnet-base apertium apertium-eng-spa"
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path} if path else None
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args], capture_output=True, text=True,
                          timeout=60, env=env)


def stubs(folder: Path, uid: int, sudo_ok: bool) -> str:
    """A PATH whose dpkg finds nothing, whose apt-get records its calls, and whose user is `uid`."""
    folder.mkdir()
    log = folder / "calls.log"
    scripts = {"dpkg": "exit 1", "apt-get": f'echo "apt-get $*" >> {log}', "id": f"echo {uid}",
               "sudo": 'if [ "$1" = -n ]; then exit ' + ("0" if sudo_ok else "1") + f'; fi; echo "sudo $*" >> {log}'}
    for name, body in scripts.items():
        script = folder / name
        script.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
        script.chmod(0o755)
    return f"{folder}:{os.environ['PATH']}"


def test_install_and_demo_install_the_extras_and_the_system_packages(tmp_path: Path) -> None:
    for target in ("install", "demo"):
        dry = make("-n", "-B", target, f"VENV={tmp_path / 'venv'}")
        assert dry.returncode == 0, dry.stderr
        assert 'pip install -q -e ".[onnx]"' in dry.stdout
        assert f"apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {PACKAGES}" in dry.stdout


def test_root_installs_the_packages_after_an_update(tmp_path: Path) -> None:
    path = stubs(tmp_path / "bin", uid=0, sudo_ok=False)
    done = make("system-packages", path=path)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "bin" / "calls.log").read_text().splitlines()
    assert calls == ["apt-get update -qq", f"apt-get install -y -qq {PACKAGES}"]


def test_passwordless_sudo_installs_through_sudo(tmp_path: Path) -> None:
    path = stubs(tmp_path / "bin", uid=1000, sudo_ok=True)
    assert make("system-packages", path=path).returncode == 0
    calls = (tmp_path / "bin" / "calls.log").read_text().splitlines()
    assert calls == ["sudo apt-get update -qq",
                     f"sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {PACKAGES}"]


def test_without_rights_one_line_names_the_command(tmp_path: Path) -> None:
    path = stubs(tmp_path / "bin", uid=1000, sudo_ok=False)
    done = make("system-packages", path=path)
    assert done.returncode == 0
    assert done.stdout.strip().splitlines() == [
        f"augment and translate need Debian packages: sudo apt-get update && sudo apt-get install -y {PACKAGES}"]
    assert not (tmp_path / "bin" / "calls.log").exists()
