"""The report in a real browser (headless Chromium): it renders, and the console stays silent.

Skipped where no Chromium is installed, except under CI (the CI variable set), where it must run: .ci/run
installs Chromium so this check is always made there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.report.samples import add_extras
from tuneforge.report.html import build_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CONSOLE = re.compile(r":CONSOLE[:(]|Uncaught|Refused to (load|apply|execute)")


@pytest.fixture(scope="module")
def browser() -> str:
    found = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but no Chromium binary was found; .ci/run should have installed it")
        pytest.skip("no Chromium binary found (install it: apt-get install chromium); CI makes this a failure")
    return found


def chromium(browser: str, page: Path, profile: Path, *action: str) -> subprocess.CompletedProcess[str]:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               "--enable-logging=stderr", "--v=0", *action, page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def console_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if CONSOLE.search(line)]


def test_console_capture_sees_page_errors(browser: str, tmp_path: Path) -> None:
    """Control: the same capture does report a failing script, so a silent report means something."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><p>x</p><script>missing_function();</script>")
    result = chromium(browser, page, tmp_path / "profile", "--dump-dom")
    assert any("Uncaught" in line for line in console_lines(result)), result.stderr[-2000:]


def test_report_renders_without_console_errors(browser: str, classification_run: Path, tmp_path: Path) -> None:
    add_extras(classification_run)
    report = build_report(classification_run)
    shot = tmp_path / "shot.png"
    result = chromium(browser, report, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000",
                      "--hide-scrollbars")
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 10_000, "the screenshot is missing or empty"
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[1] == 1280 and pixels[..., :3].std() > 0.05, "the page rendered blank"
    assert not console_lines(result), console_lines(result)

    dom = chromium(browser, report, tmp_path / "profile", "--dump-dom")
    assert not console_lines(dom), console_lines(dom)
    for section_id in ("data", "training", "metrics", "calibration", "errors", "fairness", "explanations",
                       "model-card"):
        assert f'id="{section_id}"' in dom.stdout, section_id
    assert dom.stdout.count("<img") == report.read_text(encoding="utf-8").count("<img")
