"""Fixtures for the augmenters: the real WordNet database and Apertium, skipped where absent unless CI is set."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def require(what: str, present: bool, install: str) -> None:
    """Skip on a developer machine without the resource; under CI (the CI variable set) fail instead."""
    if present:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {what} is missing; .ci/run should have installed it ({install})")
    pytest.skip(f"{what} is not installed ({install}); under CI this is a failure")


@pytest.fixture(scope="session")
def wordnet():
    from tuneforge.augment.wordnet import load_wordnet
    from tuneforge.errors import TuneforgeError

    try:
        return load_wordnet()
    except TuneforgeError:
        require("the WordNet database", False, "apt-get install wordnet-base")


@pytest.fixture(scope="session")
def apertium() -> str:
    binary = shutil.which("apertium")
    require("the apertium command", binary is not None, "apt-get install apertium apertium-eng-spa")
    modes = subprocess.run([binary, "-l"], capture_output=True, text=True, timeout=30).stdout.split()
    require("Apertium's English-Spanish pair", {"eng-spa", "spa-eng"} <= set(modes), "apt-get install apertium-eng-spa")
    return binary
