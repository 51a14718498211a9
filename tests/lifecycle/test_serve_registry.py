"""Serving a registered model: versions in every answer, prediction log and /feedback in the store, refused
requests counted by reason, and a promoted version swapped in while the server runs."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.lifecycle.test_serve_app import sample
from tuneforge.lifecycle.feedback import FeedbackStore, default_store_url
from tuneforge.lifecycle.registry import Registry
from tuneforge.lifecycle.serve import RegistrySource, create_app
from tuneforge.lifecycle.settings import ServeSettings

SETTINGS = ServeSettings(max_batch=4, max_text_chars=200, reload_interval=0.2)


@pytest.fixture(scope="module")
def registered(served_runs: dict[str, Path], registry_template: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Registry:
    home = tmp_path_factory.mktemp("serve-home")
    shutil.copyfile(registry_template, home / registry_template.name)
    registry = Registry.local(home)
    registry.register(served_runs["classification"], "shop")  # v1, champion
    registry.register(served_runs["classification"], "shop")  # v2, challenger
    return registry


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeedbackStore:
    return FeedbackStore.open(default_store_url(tmp_path_factory.mktemp("store")))


@pytest.fixture(scope="module")
def client(registered: Registry, store: FeedbackStore) -> Iterator[TestClient]:
    app = create_app(RegistrySource(registered, "shop", "champion"), SETTINGS, store)
    with TestClient(app) as test_client:
        yield test_client


def test_predictions_name_the_version_and_are_logged(client: TestClient, store: FeedbackStore) -> None:
    health = client.get("/health").json()
    assert (health["model"], health["version"], health["alias"], health["feedback_store"]) == \
        ("shop", "1", "champion", True)
    texts = ["good great food", "awful rude place"]
    body = client.post("/predict", json={"texts": texts}).json()
    assert (body["model"], body["version"]) == ("shop", "1")
    ids = [row["id"] for row in body["predictions"]]
    logged = {record.id: record for record in store.predictions(model="shop")}
    for identifier, text, row in zip(ids, texts, body["predictions"], strict=True):
        record = logged[identifier]
        assert (record.text, record.version, record.label) == (text, "1", row["label"])
        assert record.confidence == pytest.approx(max(row["probabilities"].values()))
        assert record.probabilities == pytest.approx(row["probabilities"])


def test_feedback_is_stored_before_it_is_acknowledged(client: TestClient, store: FeedbackStore) -> None:
    [row] = client.post("/predict", json={"texts": ["the food was bland"]}).json()["predictions"]
    by_id = client.post("/feedback", json={"prediction_id": row["id"], "label": "negative"})
    assert by_id.status_code == 201
    by_text = client.post("/feedback", json={"text": "a lovely friendly place", "label": "positive"})
    assert by_text.status_code == 201 and by_text.json()["version"] == "1"
    stored = {record.id: record for record in store.feedback(model="shop")}
    assert stored[by_id.json()["id"]].prediction_id == row["id"]
    assert stored[by_text.json()["id"]].text == "a lovely friendly place"
    corrections = {c.text: c.label for c in store.corrections(model="shop")}
    assert corrections["the food was bland"] == "negative"


@pytest.mark.parametrize(("body", "status", "says", "reason"), [
    ({"text": "good", "label": "joyful"}, 422, "not one of this model's classes: negative, neutral, positive",
     "unknown_label"),
    ({"prediction_id": 999_999, "label": "positive"}, 422, "prediction 999999 was not answered by shop",
     "unknown_prediction"),
    ({"label": "positive"}, 422, "send either prediction_id or text", "schema"),
    ({"text": "good", "prediction_id": 1, "label": "positive"}, 422, "not both", "schema"),
    ({"text": "", "label": "positive"}, 422, "text: String should have at least 1 character", "schema"),
    ({"text": "x" * 201, "label": "positive"}, 413, "the limit is 200", "too_large"),
    ({"text": "good", "label": 3}, 422, "label: Input should be a valid string", "schema"),
])
def test_bad_feedback_is_refused_and_counted(client: TestClient, body: dict, status: int, says: str,
                                             reason: str) -> None:
    before = sample(client.get("/metrics").text, "tuneforge_rejected_requests_total", endpoint="/feedback",
                    reason=reason)
    response = client.post("/feedback", json=body)
    assert response.status_code == status
    assert says in response.json()["error"] and response.json()["fix"]
    after = sample(client.get("/metrics").text, "tuneforge_rejected_requests_total", endpoint="/feedback",
                   reason=reason)
    assert after - before == 1


def test_malformed_predictions_are_counted_by_reason(client: TestClient) -> None:
    def rejected(reason: str) -> float:
        return sample(client.get("/metrics").text, "tuneforge_rejected_requests_total", endpoint="/predict",
                      reason=reason)

    schema, large = rejected("schema"), rejected("too_large")
    assert client.post("/predict", json={"texts": []}).status_code == 422
    assert client.post("/predict", json={"texts": "one"}).status_code == 422
    assert client.post("/predict", content=b"{not json", headers={"content-type": "application/json"}
                       ).status_code == 422
    assert client.post("/predict", json={"texts": ["a"] * 5}).status_code == 413
    assert (rejected("schema") - schema, rejected("too_large") - large) == (3, 1)


def test_a_promoted_version_is_picked_up_without_a_restart(client: TestClient, registered: Registry) -> None:
    assert client.post("/predict", json={"texts": ["good"]}).json()["version"] == "1"
    registered.promote("shop", 2)
    try:
        deadline = time.monotonic() + 30
        while client.get("/health").json()["version"] != "2" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.post("/predict", json={"texts": ["good"]}).json()["version"] == "2"
        metrics = client.get("/metrics").text
        assert sample(metrics, "tuneforge_model_reloads_total", outcome="loaded") == 1
        assert sample(metrics, "tuneforge_model_info", model="shop", version="2") == 1
        assert sample(metrics, "tuneforge_model_info", model="shop", version="1") == 0
    finally:
        registered.rollback("shop")


def test_a_pinned_version_does_not_follow_aliases(registered: Registry) -> None:
    app = create_app(RegistrySource(registered, "shop", "2"), SETTINGS)
    with TestClient(app) as pinned:
        health = pinned.get("/health").json()
        assert (health["version"], health["alias"], health["feedback_store"]) == ("2", None, False)
        answer = pinned.post("/predict", json={"texts": ["good"]}).json()
        assert "id" not in answer["predictions"][0]  # no store, nothing logged
        refused = pinned.post("/feedback", json={"text": "good", "label": "positive"})
        assert refused.status_code == 503 and "--feedback-url" in refused.json()["fix"]


def test_openapi_lists_feedback(client: TestClient) -> None:
    assert "/feedback" in client.get("/openapi.json").json()["paths"]
