"""Property-based API testing: schemathesis generates requests from the app's own OpenAPI schema (valid ones
and near-misses) and the server must never answer one with a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402 - after the skip above

from tuneforge.lifecycle.feedback import FeedbackStore  # noqa: E402
from tuneforge.lifecycle.serve import create_app  # noqa: E402
from tuneforge.lifecycle.settings import ServeSettings  # noqa: E402

# Small limits and cheap explanations keep each generated request to milliseconds.
SETTINGS = ServeSettings(max_batch=4, max_text_chars=200, ig_steps=2, shap_evals=8, lime_samples=10)


@pytest.fixture(scope="module")
def api_schema(served_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    store = FeedbackStore.open(f"sqlite:///{tmp_path_factory.mktemp('schema-store') / 'feedback.db'}")
    app = create_app(served_runs["classification"], SETTINGS, store)  # with a store, so /feedback is served too
    api = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app (loads the model) once
    # The first explanation loads the explain copy of the model and imports captum, shap and lime: seconds
    # that belong to no generated request.
    warm = api["/explain"]["POST"].Case(body={"text": "good food", "methods": ["ig", "shap", "lime", "attention"]},
                                         media_type="application/json")
    assert warm.call(timeout=300).status_code == 200
    yield api
    from schemathesis.python import asgi

    asgi.shutdown_lifespans()  # the model threads stop with the module, not at interpreter exit
    store.close()


def _no_server_error(case: Any) -> None:
    response = case.call(timeout=120)  # a slow answer is not what this test looks for
    assert response.status_code < 500, (f"{case.method} {case.path} with {case.body!r} -> "
                                        f"{response.status_code}: {response.text[:500]}")


@pytest.mark.parametrize(("path", "method", "mode"), [
    *((path, "POST", mode) for path in ("/predict", "/explain", "/feedback") for mode in ("positive", "negative")),
    ("/health", "GET", "positive"), ("/metrics", "GET", "positive"),  # nothing in a GET to break
])
def test_no_generated_request_gets_a_server_error(api_schema: Any, path: str, method: str, mode: str) -> None:
    """Requests that fit the schema (positive) and that break it (negative) get 2xx or 4xx, never 5xx."""
    from hypothesis import given
    from schemathesis import GenerationMode

    operation = api_schema[path][method]
    examples = 20 if method == "POST" else 3

    @given(operation.as_strategy(generation_mode=GenerationMode(mode)))
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def check(case: Any) -> None:
        _no_server_error(case)

    check()
