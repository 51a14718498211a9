"""The documentation cannot drift from the code: runnable blocks run, links resolve, every verb is listed.

A fenced ```bash block in docs/ is runnable when the line right before it is `<!-- runnable -->` (it must exit 0)
or `<!-- runnable exit=N -->` (it must exit N). Each runs with `bash -e -o pipefail` in a fresh temporary folder
holding the bundled demo data as train.csv, valid.csv and test.csv, with this environment's bin folder first on
PATH, TUNEFORGE_HOME in the temporary folder and the Hugging Face hub offline (see docs/development.md).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
DEMO_DATA = ROOT / "src" / "tuneforge" / "demo_data" / "nusax_en"
DEMO_FILES = {"train.csv": "train.csv", "valid.csv": "valid.csv", "test.csv": "test.csv"}
BLOCK_TIMEOUT_S = 120
README_MAX_LINES = 150

FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w-]*)")
MARKER = re.compile(r"^<!--\s*runnable(?:\s+exit=(\d+))?\s*-->\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`+[^`]*`+")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    runnable: bool
    expected_exit: int

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def parse(path: Path) -> tuple[list[Block], list[str]]:
    """Fenced blocks of a Markdown file, and its lines outside fences (for links and headings)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks: list[Block] = []
    prose: list[str] = []
    fence: str | None = None
    start, language, body, marker = 0, "", [], None
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if fence is None:
            opened = FENCE.match(stripped)
            if opened:
                fence, start, language, body = opened.group(1), number, opened.group(2), []
                previous = lines[number - 2].strip() if number > 1 else ""
                marker = MARKER.match(previous)
                continue
            prose.append(line)
            continue
        if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
            blocks.append(Block(path, start, language, "\n".join(body) + "\n", marker is not None,
                                int(marker.group(1) or 0) if marker else 0))
            fence = None
            continue
        body.append(line)
    assert fence is None, f"{path.relative_to(ROOT)}:{start}: a code block is never closed"
    return blocks, prose


def slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension gives a heading (its default slugify)."""
    text = INLINE_CODE.sub(lambda code: code.group(0).strip("`"), heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    _, prose = parse(path)
    return {slug(line.lstrip("#").strip()) for line in prose if re.match(r"^#{1,6}\s", line)}


def runnable_blocks() -> list[Block]:
    return [block for path in sorted(DOCS.glob("*.md")) for block in parse(path)[0] if block.runnable]


def run_in_demo_folder(code: str, folder: Path) -> subprocess.CompletedProcess[str]:
    for source, target in DEMO_FILES.items():
        shutil.copy(DEMO_DATA / source, folder / target)
    home = folder / ".tuneforge-home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update({
        "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
        "TUNEFORGE_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "COLUMNS": "120",
    })
    for variable in ("TUNEFORGE_TOKEN", "TUNEFORGE_REGISTRY_URI", "TUNEFORGE_FEEDBACK_URL"):
        env.pop(variable, None)
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], cwd=folder, env=env, text=True,
                          capture_output=True, timeout=BLOCK_TIMEOUT_S)


# ----------------------------------------------------------------------------------------------- runnable blocks

def test_the_docs_have_runnable_blocks_and_every_marker_sits_on_a_bash_block():
    found = runnable_blocks()
    assert len(found) >= 5, f"only {len(found)} runnable blocks found: is the marker convention still parsed?"
    for block in found:
        assert block.language in ("bash", "sh", "console"), f"{block.name}: a runnable block must be ```bash"
    for path in markdown_files():
        lines = path.read_text(encoding="utf-8").split("\n")
        blocks, _ = parse(path)
        openings = {block.line for block in blocks}
        for number, line in enumerate(lines, 1):
            inside = any(block.line < number <= block.line + block.code.count("\n") for block in blocks)
            if MARKER.match(line.strip()) and not inside:
                assert number + 1 in openings, \
                    f"{path.relative_to(ROOT)}:{number}: a runnable marker must be right before a code fence"


@pytest.mark.parametrize("block", runnable_blocks(), ids=lambda block: block.name)
def test_runnable_block(block: Block, tmp_path: Path):
    done = run_in_demo_folder(block.code, tmp_path)
    assert done.returncode == block.expected_exit, (
        f"{block.name} exited {done.returncode}, expected {block.expected_exit}\n--- code\n{block.code}"
        f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")


def test_the_readme_recipe_is_a_valid_recipe_for_the_demo_data(tmp_path: Path):
    recipes = [block for block in parse(README)[0] if block.language in ("yaml", "yml")]
    assert recipes, "README.md has no ```yaml recipe block"
    (tmp_path / "recipe.yaml").write_text(recipes[0].code, encoding="utf-8")
    done = run_in_demo_folder("tuneforge validate recipe.yaml", tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


# ----------------------------------------------------------------------------------------------- links and pages

@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_points_to_a_file_that_exists(path: Path):
    _, prose = parse(path)
    broken = []
    for line in prose:
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
                continue  # http:, https:, mailto: ...
            file_part, _, anchor = target.partition("#")
            destination = (path.parent / file_part).resolve() if file_part else path
            if not destination.exists():
                broken.append(f"{target}: no such file")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                broken.append(f"{target}: no heading with anchor #{anchor}")
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)


def test_every_page_is_in_the_mkdocs_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(nav: object) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, list):
            return [page for item in nav for page in pages(item)]
        if isinstance(nav, dict):
            return [page for value in nav.values() for page in pages(value)]
        return []

    listed = pages(config["nav"])
    on_disk = sorted(path.name for path in DOCS.glob("*.md"))
    assert sorted(listed) == on_disk
    assert config["theme"]["name"] == "material"


def test_the_readme_is_a_front_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    assert "make demo" in text and "make test" in text
    assert text.index("make demo") < text.index("make test")


# ----------------------------------------------------------------------------------------------- drift checks

def test_every_verb_is_on_the_command_line_page():
    import typer

    from tuneforge.cli.main import app

    def verbs(command: object, prefix: str) -> list[str]:
        found = []
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            if getattr(sub, "hidden", False):
                continue
            if getattr(sub, "commands", None):
                found += verbs(sub, f"{prefix} {name}")
            else:
                found.append(f"{prefix} {name}")
        return found

    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    missing = [verb for verb in verbs(typer.main.get_command(app), "tuneforge")
               if not re.search(rf"`{re.escape(verb)}(\s|`)", page)]
    assert not missing, f"docs/cli.md lacks: {', '.join(missing)}"


def table_rows(path: Path, skip_sections: tuple[str, ...] = ()) -> list[str]:
    """Table rows (not the |---| rules) outside code blocks, leaving out the `## ` sections named."""
    _, prose = parse(path)
    rows, section = [], ""
    for line in prose:
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("|") and section not in skip_sections and not re.match(r"^\|[\s:|-]+\|$", line.strip()):
            rows.append(line.strip())
    return rows


def test_strategy_tables_are_the_benchmark_tables():
    benchmark_rows = set(table_rows(DOCS / "benchmarks.md"))
    copied = table_rows(DOCS / "strategies.md", skip_sections=("At a glance",))
    assert len(copied) > 40
    differing = [row for row in copied if row not in benchmark_rows]
    assert not differing, "rows in docs/strategies.md that differ from docs/benchmarks.md:\n" + "\n".join(differing)
