"""Everything the report reads from a run directory, loaded leniently.

A report is most wanted when something went wrong, so a missing, truncated or oddly shaped file must not
stop it: each file is read on its own, and a file that cannot be read becomes a note shown in its section.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from tuneforge.errors import TuneforgeError
from tuneforge.run import EXPLANATIONS_DIR, FAIRNESS_FILE, RunLayout

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_IMAGE_BYTES = 8 * 1024 * 1024  # one figure larger than this would make the page unusable
CALIBRATION_FILE = "calibration.json"


@dataclass
class RunInputs:
    root: Path
    recipe: dict[str, Any]
    metrics: dict[str, Any]
    data: dict[str, Any]
    calibration: Any = None  # calibration.json, None when absent
    fairness: Any = None  # fairness.json, None when absent
    explanations: Any = None  # explanations/explanations.json, None when absent
    explanations_html: str | None = None
    global_tokens: Any = None  # explanations/global_tokens.json: per method, per class, the strongest tokens
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)  # section id -> problems met while reading
    created: datetime = field(default_factory=datetime.now)
    used_images: set[Path] = field(default_factory=set)

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.root)

    @property
    def name(self) -> str:
        return self.root.resolve().name

    @property
    def task(self) -> str:
        task = self.metrics.get("task") or self.recipe.get("task") or "classification"
        return str(task)

    @property
    def model_name(self) -> str:
        model = self.recipe.get("model")
        recipe_name = model.get("name") if isinstance(model, dict) else None
        return str(self.metrics.get("model") or recipe_name or "unknown")

    @property
    def labels(self) -> list[str]:
        labels = self.metrics.get("labels") or self.data.get("labels")
        return [str(label) for label in labels] if isinstance(labels, list) else []

    def split(self, role: str) -> dict[str, Any]:
        """The metrics dict of one split, or {} when the split was not evaluated."""
        value = self.metrics.get(role)
        return value if isinstance(value, dict) else {}

    def section(self, name: str) -> dict[str, Any]:
        value = self.recipe.get(name)
        return value if isinstance(value, dict) else {}

    def note(self, section: str, message: str) -> None:
        self.notes.setdefault(section, []).append(message)

    def image(self, path: Path, section: str = "figures") -> str | None:
        """The PNG at `path` as a data URI, so the report stays one self-contained file; None if unusable."""
        if not path.is_file():
            return None
        self.used_images.add(path.resolve())
        try:
            if path.stat().st_size > MAX_IMAGE_BYTES:
                self.note(section, f"{path.name} is larger than {MAX_IMAGE_BYTES // 2**20} MiB and was left out")
                return None
            payload = path.read_bytes()
        except OSError as error:
            self.note(section, f"could not read {path.name}: {error.strerror or error}")
            return None
        if not payload.startswith(PNG_SIGNATURE):
            self.note(section, f"{path.name} is not a PNG image and was left out")
            return None
        return png_uri(payload)

    def unused_images(self) -> list[Path]:
        return [p for p in sorted(self.root.glob("*.png")) if p.resolve() not in self.used_images]


def png_uri(payload: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(payload).decode("ascii")


def _read_json(path: Path, inputs: RunInputs, section: str) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        inputs.note(section, f"{path.name} could not be read ({error}); its content is not shown")
        return None


def _read_dict(path: Path, inputs: RunInputs, section: str) -> dict[str, Any]:
    value = _read_json(path, inputs, section)
    if value is not None and not isinstance(value, dict):
        inputs.note(section, f"{path.name} does not hold a JSON object; its content is not shown")
        return {}
    return value or {}


def _read_recipe(path: Path, inputs: RunInputs) -> dict[str, Any]:
    # Raw YAML rather than the validated Recipe: a report must still render for a run written by an older or
    # newer tuneforge whose recipe no longer validates.
    try:
        value = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        inputs.note("training", f"recipe.yaml could not be read ({error})")
        return {}
    return value if isinstance(value, dict) else {}


def _created(layout: RunLayout) -> datetime:
    for path in (layout.metrics, layout.recipe):
        if path.is_file():
            return datetime.fromtimestamp(path.stat().st_mtime)
    return datetime.now()


def load_run(root: Path) -> RunInputs:
    layout = RunLayout(root)
    if not root.is_dir() or not (layout.recipe.is_file() or layout.metrics.is_file()):
        raise TuneforgeError(f"'{root}' is not a tuneforge run directory (no recipe.yaml or metrics.json)",
                             fix="pass the folder that `tuneforge train` wrote (its --output)")
    inputs = RunInputs(root=root, recipe={}, metrics={}, data={}, created=_created(layout))
    inputs.recipe = _read_recipe(layout.recipe, inputs)
    inputs.metrics = _read_dict(layout.metrics, inputs, "metrics")
    inputs.data = _read_dict(layout.data_summary, inputs, "data")
    inputs.calibration = _read_json(root / CALIBRATION_FILE, inputs, "calibration")
    inputs.fairness = _read_json(root / FAIRNESS_FILE, inputs, "fairness")
    explanations = root / EXPLANATIONS_DIR
    inputs.explanations = _read_json(explanations / "explanations.json", inputs, "explanations")
    inputs.global_tokens = _read_json(explanations / "global_tokens.json", inputs, "explanations")
    fragment = explanations / "explanations.html"
    if fragment.is_file():
        try:
            inputs.explanations_html = fragment.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            inputs.note("explanations", f"explanations.html could not be read ({error.strerror or error})")
    if layout.evaluations.is_dir():
        for path in sorted(layout.evaluations.glob("*.json")):
            value = _read_json(path, inputs, "metrics")
            if isinstance(value, dict):
                inputs.evaluations[path.stem] = value
    return inputs
