"""The HTTP service over a tiny trained run: answers, limits, tokens, health, metrics, explanations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_rows
from tuneforge.errors import TuneforgeError
from tuneforge.lifecycle.serve import create_app
from tuneforge.lifecycle.settings import ServeSettings, is_loopback, token_matches

LIMITS = ServeSettings(max_batch=4, max_text_chars=200, ig_steps=8)
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def client(served_runs: dict[str, Path]) -> Iterator[TestClient]:
    with TestClient(create_app(served_runs["classification"], LIMITS)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def guarded(served_runs: dict[str, Path]) -> Iterator[TestClient]:
    settings = ServeSettings(host="0.0.0.0", token=TOKEN)
    with TestClient(create_app(served_runs["classification"], settings)) as test_client:
        yield test_client


def sample(families: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus text; 0 when the series does not exist yet."""
    for family in text_string_to_metric_families(families):
        for item in family.samples:
            if item.name == name and all(item.labels.get(key) == value for key, value in labels.items()):
                return item.value
    return 0.0


def test_predictions_match_the_python_api(client: TestClient, served_runs: dict[str, Path]) -> None:
    import tuneforge

    texts = [row["text"] for row in make_rows(4, seed=9)]
    response = client.post("/predict", json={"texts": texts})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == served_runs["classification"].name
    assert body["predictions"] == tuneforge.load(served_runs["classification"]).predict(texts)
    assert set(body["predictions"][0]) == {"label", "score", "probabilities"}


def test_regression_predictions_are_scores_only(served_runs: dict[str, Path]) -> None:
    import tuneforge

    texts = ["good and great", "bad and awful food"]
    with TestClient(create_app(served_runs["regression"])) as regression:
        predictions = regression.post("/predict", json={"texts": texts}).json()["predictions"]
        assert predictions == tuneforge.load(served_runs["regression"]).predict(texts)
        assert all(set(row) == {"score"} for row in predictions)
        refused = regression.post("/explain", json={"text": texts[0]})
        assert refused.status_code == 422 and "regression" in refused.json()["error"]


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"texts": ["good food"] * 5}, 413, "at most 4"),
    ({"texts": ["good " * 50]}, 413, "texts[0] has 250 characters"),
    ({"texts": []}, 422, "texts: List should have at least 1 item"),
    ({"texts": "good food"}, 422, "texts: Input should be a valid list"),
    ({"texts": ["good", 3]}, 422, "texts.1: Input should be a valid string"),
    ({"text": ["good"]}, 422, "texts: Field required"),
    ({"texts": ["good"], "pairs": ["food"]}, 422, "reads single texts"),
])
def test_bad_requests_say_what_to_fix(client: TestClient, body: dict, status: int, says: str) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == status
    error = response.json()
    assert says in error["error"]
    assert error["fix"]


def test_pair_runs_take_one_pair_per_text(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    service = client.app.state.service
    data = service.recipe.data.model_copy(update={"text_pair_column": "second"})
    monkeypatch.setattr(service, "current", replace(service.current,
                                                    recipe=service.recipe.model_copy(update={"data": data})))
    texts, pairs = ["good food", "bad food"], ["lovely place", "rude staff"]
    response = client.post("/predict", json={"texts": texts, "pairs": pairs})
    assert response.json()["predictions"] == service.current.predictor.predict(texts, pairs)
    missing = client.post("/predict", json={"texts": texts})
    assert missing.status_code == 422 and "'pairs'" in missing.json()["fix"]
    uneven = client.post("/predict", json={"texts": texts, "pairs": pairs[:1]})
    assert uneven.status_code == 422 and uneven.json()["error"] == "2 texts but 1 pairs"
    too_long = client.post("/predict", json={"texts": texts, "pairs": [pairs[0], "x" * 201]})
    assert too_long.status_code == 413 and "pairs[1]" in too_long.json()["error"]


def test_an_oversized_body_is_refused_before_parsing(client: TestClient) -> None:
    response = client.post("/predict", content=b'{"texts": ["' + b"a" * 100_000 + b'"]}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "at most 4 texts" in response.json()["fix"]


def test_loopback_needs_no_token(client: TestClient) -> None:
    assert client.post("/predict", json={"texts": ["good"]}).status_code == 200
    assert client.get("/metrics").status_code == 200


def test_exposed_server_refuses_to_start_without_a_token(served_runs: dict[str, Path]) -> None:
    with pytest.raises(TuneforgeError) as raised:
        create_app(served_runs["classification"], ServeSettings(host="0.0.0.0"))
    assert "--token" in raised.value.fix and "TUNEFORGE_TOKEN" in raised.value.fix


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN])
def test_exposed_server_demands_the_token(guarded: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path in (("post", "/predict"), ("post", "/explain"), ("get", "/metrics"), ("get", "/openapi.json")):
        response = guarded.request(method, path, json={"texts": ["good"]}, headers=headers)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in response.json()["fix"]


def test_exposed_server_answers_the_token(guarded: TestClient) -> None:
    assert guarded.get("/health").status_code == 200  # probes need no credentials
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert guarded.post("/predict", json={"texts": ["good"]}, headers=headers).status_code == 200
    metrics = guarded.get("/metrics", headers=headers).text
    assert sample(metrics, "tuneforge_requests_total", endpoint="/predict", status="401") >= 1
    assert sample(metrics, "tuneforge_requests_total", endpoint="/predict", status="200") >= 1


def test_health_describes_the_run(client: TestClient, served_runs: dict[str, Path]) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert health["run_dir"] == str(served_runs["classification"].resolve())
    assert health["task"] == "classification"
    assert health["labels"] == ["negative", "neutral", "positive"]
    assert health["model"] == served_runs["classification"].name
    assert health["uptime_seconds"] >= 0
    assert health["limits"] == {"max_batch": 4, "max_text_chars": 200}
    assert health["version"] is None and health["alias"] is None and health["feedback_store"] is False


def test_metrics_count_requests_latency_and_labels(client: TestClient) -> None:
    before = client.get("/metrics")
    assert before.headers["content-type"].startswith("text/plain")
    response = client.post("/predict", json={"texts": ["good food", "bad food", "a table"]})
    labels = [row["label"] for row in response.json()["predictions"]]
    client.post("/predict", json={"texts": []})
    after = client.get("/metrics").text

    def grew(name: str, **where: str) -> float:
        return sample(after, name, **where) - sample(before.text, name, **where)

    assert grew("tuneforge_requests_total", endpoint="/predict", status="200") == 1
    assert grew("tuneforge_requests_total", endpoint="/predict", status="422") == 1
    assert grew("tuneforge_request_seconds_count", endpoint="/predict") == 2
    assert sum(grew("tuneforge_predictions_total", label=label) for label in set(labels)) == 3
    assert sample(after, "tuneforge_predictions_total", label="positive") >= 0  # every label is a series


def test_unknown_paths_share_one_metrics_label(client: TestClient) -> None:
    assert client.get("/no/such/path").status_code == 404
    assert sample(client.get("/metrics").text, "tuneforge_requests_total", endpoint="other", status="404") >= 1


def test_explain_gives_one_score_per_token(client: TestClient) -> None:
    text = "the food was lovely and friendly"
    response = client.post("/explain", json={"text": text, "methods": ["ig"]})
    assert response.status_code == 200
    body = response.json()
    attribution = body["explanations"]["ig"]
    tokenizer = client.app.state.service.current.predictor.tokenizer
    assert attribution["tokens"] == tokenizer.tokenize(text)
    assert len(attribution["scores"]) == len(attribution["tokens"])
    assert attribution["label"] == body["prediction"]["label"]


@pytest.mark.parametrize(("body", "says"), [
    ({"text": "good", "methods": ["magic"]}, "methods.0: Input should be"),
    ({"text": "good", "methods": []}, "methods: List should have at least 1 item"),
    ({"text": "good", "label": "joyful"}, "label 'joyful' is not one of this run's classes"),
    ({"texts": ["good"]}, "text: Field required"),
])
def test_explain_refusals_say_what_to_fix(client: TestClient, body: dict, says: str) -> None:
    response = client.post("/explain", json=body)
    assert response.status_code == 422
    assert says in response.json()["error"]


def test_openapi_schema_lists_the_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/explain", "/health", "/metrics"} <= set(paths)


def test_a_run_without_a_model_is_refused_before_serving(served_runs: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_bytes((served_runs["classification"] / "recipe.yaml").read_bytes())
    with pytest.raises(TuneforgeError, match="has not finished training"):
        create_app(tmp_path)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("example.com", False),
])
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_token_comparison() -> None:
    assert token_matches(f"Bearer {TOKEN}", TOKEN) and token_matches(f"bearer {TOKEN}", TOKEN)
    assert not token_matches(None, TOKEN) and not token_matches(f"Bearer {TOKEN}x", TOKEN)
    assert not token_matches(TOKEN, TOKEN)


def test_concurrent_requests_share_one_forward_pass(client: TestClient) -> None:
    import asyncio
    from dataclasses import replace

    service = client.app.state.service
    loaded = service.current
    passes: list[int] = []

    class Recording:
        """The served predictor, with the size of each forward pass recorded."""

        labels = loaded.predictor.labels

        def predict(self, texts: list[str], pairs: list[str] | None, batch_size: int) -> list[dict]:
            passes.append(len(texts))
            return loaded.predictor.predict(texts, pairs, batch_size)

    recorded = replace(loaded, predictor=Recording())
    texts = ["good food", "bad rude food", "a table", "lovely friendly place"]

    async def burst() -> list[list[dict]]:
        return await asyncio.gather(*(service.predict(recorded, [text], None) for text in texts))

    answers = client.portal.call(burst)
    assert passes == [4]
    for text, [row] in zip(texts, answers, strict=True):
        [alone] = loaded.predictor.predict([text])
        assert row["label"] == alone["label"] and row["score"] == pytest.approx(alone["score"], abs=1e-5)
