"""`tuneforge --help`, `--version` and every verb's `--help` start without the heavy libraries.

They run in a fresh interpreter, because the test process itself has long imported torch. One interpreter walks
the whole command tree (sub-apps included) and reports, per invocation, which heavy modules it pulled in, so a
failure names the verb that regressed.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "datasets", "sklearn")

SCRIPT = f"""
import contextlib, io, json, sys

import typer

from tuneforge.cli.main import app, main

HEAVY = {HEAVY!r}


def heavy():
    return sorted(name for name in HEAVY if name in sys.modules)


def paths(command, prefix):
    yield prefix
    if hasattr(command, "commands"):  # a group (typer may ship its own click, so no isinstance)
        for name, sub in command.commands.items():
            yield from paths(sub, [*prefix, name])


report = {{}}
codes = {{}}
for argv in [["--version"], *([*path, "--help"] for path in paths(typer.main.get_command(app), []))]:
    with contextlib.redirect_stdout(io.StringIO()):
        codes[" ".join(argv)] = main(argv)
    report[" ".join(argv)] = heavy()
print(json.dumps({{"heavy": report, "codes": codes}}))
"""


def test_help_and_version_import_no_heavy_library():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result["codes"].values()) == {0}, result["codes"]
    assert "--help" in result["heavy"] and "train --help" in result["heavy"] and "registry list --help" in \
        result["heavy"]
    assert {argv: found for argv, found in result["heavy"].items() if found} == {}
