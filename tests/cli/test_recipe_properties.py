"""Property-based: any YAML text, any mapping and any --set override give a Recipe or a TuneforgeError (what
the command line turns into a message and an exit code), never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
import yaml  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402 - after the skip above
from hypothesis import strategies as st  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from tuneforge.errors import TuneforgeError  # noqa: E402
from tuneforge.recipe import Recipe, load_recipe, recipe_from_dict  # noqa: E402

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
FOLDER = Path(tempfile.mkdtemp(prefix="tuneforge-recipe-properties-"))


def _sections() -> dict[str, list[str]]:
    """Each section of the schema and its field names, so generated recipes mostly hit real fields."""
    found = {}
    for name, field in Recipe.model_fields.items():
        annotation = field.annotation
        found[name] = list(annotation.model_fields) if isinstance(annotation, type) and \
            issubclass(annotation, BaseModel) else []
    return found


SECTIONS = _sections()
scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**12), st.floats(allow_nan=True),
                   st.text(max_size=12), st.sampled_from(["auto", "classification", "regression", "-1", "1e-5",
                                                          "cpu", "", "lora", "none"]))
value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                         max_size=3), max_leaves=5)


@st.composite
def recipes(draw: Any) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)) | st.text(max_size=6), max_size=4)):
        fields = SECTIONS.get(section) or []
        if fields and draw(st.booleans()):
            keys = draw(st.lists(st.sampled_from(fields) | st.text(max_size=6), max_size=4))
            data[section] = {key: draw(value) for key in keys}
        else:
            data[section] = draw(value)
    return data


def parses_or_refuses(build: Any) -> None:
    try:
        result = build()
    except TuneforgeError as error:
        assert error.message
        return
    assert isinstance(result, Recipe)


@SETTINGS
@given(data=recipes())
def test_any_mapping_gives_a_recipe_or_a_tuneforge_error(data: dict[str, Any]) -> None:
    parses_or_refuses(lambda: recipe_from_dict(data, source="generated"))


@SETTINGS
@given(overrides=st.lists(st.one_of(
    st.builds(lambda section, key, raw: f"{section}.{key}={raw}", st.sampled_from(sorted(SECTIONS)),
              st.text(max_size=8), st.text(max_size=10)),
    st.text(max_size=20)), max_size=3))
def test_any_override_gives_a_recipe_or_a_tuneforge_error(overrides: list[str]) -> None:
    parses_or_refuses(lambda: recipe_from_dict({}, overrides, source="generated"))


@SETTINGS
@given(text=st.one_of(st.text(max_size=80), recipes().map(lambda data: yaml.safe_dump(data, allow_unicode=True))))
def test_any_yaml_file_gives_a_recipe_or_a_tuneforge_error(text: str) -> None:
    path = FOLDER / "recipe.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    parses_or_refuses(lambda: load_recipe(path))
