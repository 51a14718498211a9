"""The service under hostile or unlucky requests: broken Unicode, huge ids, streamed bodies, slow explanations,
and a failing forward pass that must fail only the request that caused it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tuneforge.lifecycle.feedback import FeedbackStore
from tuneforge.lifecycle.serve import create_app
from tuneforge.lifecycle.settings import ServeSettings

LIMITS = ServeSettings(max_batch=4, max_text_chars=200, ig_steps=4)
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def client(served_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    store = FeedbackStore.open(f"sqlite:///{tmp_path_factory.mktemp('store') / 'feedback.db'}")
    with TestClient(create_app(served_runs["classification"], LIMITS, store)) as test_client:
        yield test_client
    store.close()


def raw_post(client: TestClient, path: str, json_text: str):
    """JSON text sent as is: a lone surrogate escape cannot be built from a Python str and re-encoded."""
    return client.post(path, content=json_text.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize(("path", "body", "field", "says"), [
    ("/predict", '{"texts": ["good food", "bad \\ud800 food"]}', "texts.1", "lone surrogate"),
    ("/predict", '{"texts": ["good food"], "pairs": ["\\udfff"]}', "pairs.0", "lone surrogate"),
    ("/explain", '{"text": "x \\ud83d"}', "text", "lone surrogate"),
    # A field with a length limit is parsed by pydantic's own string check, which refuses it first.
    ("/feedback", '{"text": "\\ud800", "label": "positive"}', "text", "valid string"),
])
def test_a_lone_surrogate_is_refused_at_the_schema_naming_the_field(client: TestClient, path: str, body: str,
                                                                      field: str, says: str) -> None:
    response = raw_post(client, path, body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert f"{field}: " in error and says in error


def test_a_failing_batch_fails_only_the_request_that_broke_it(client: TestClient) -> None:
    service = client.app.state.service
    loaded = service.current

    class Fragile:
        """The served predictor, except that a text with 'boom' breaks the whole forward pass."""

        labels = loaded.predictor.labels

        def predict(self, texts: list[str], pairs: list[str] | None, batch_size: int) -> list[dict]:
            if any("boom" in text for text in texts):
                raise ValueError("the tokenizer choked")
            return loaded.predictor.predict(texts, pairs, batch_size)

    fragile = replace(loaded, predictor=Fragile())
    texts = [f"good food {index}" for index in range(29)] + ["boom"]

    async def burst() -> list[object]:
        return await asyncio.gather(*(service.predict(fragile, [text], None) for text in texts),
                                    return_exceptions=True)

    answers = client.portal.call(burst)
    failed = [text for text, answer in zip(texts, answers, strict=True) if isinstance(answer, Exception)]
    assert failed == ["boom"]
    assert all(isinstance(answer, list) and answer[0]["label"] for answer in answers[:-1])


def test_an_out_of_range_prediction_id_is_a_client_error(client: TestClient) -> None:
    response = client.post("/feedback", json={"prediction_id": 10**30, "label": "positive"})
    assert response.status_code == 422
    assert "prediction_id" in response.json()["error"]
    # Within the schema's range but beyond any stored id: still the caller's mistake, never a 500.
    response = client.post("/feedback", json={"prediction_id": 2**62, "label": "positive"})
    assert response.status_code == 422 and "was not answered" in response.json()["error"]


def test_a_chunked_body_is_counted_and_refused_past_the_limit(client: TestClient) -> None:
    # Straight through ASGI, as a server hands over a chunked upload: no Content-Length, 20 chunks of 1 MB.
    pulled, sent = [], []

    async def receive() -> dict:
        pulled.append(1)
        if len(pulled) > 20:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": b'{"texts": ["' if len(pulled) == 1 else b"a" * 1_000_000,
                "more_body": len(pulled) < 20}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/predict", "raw_path": b"/predict", "root_path": "", "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
             "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}
    client.portal.call(client.app, scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    assert start["status"] == 413
    assert b"the request body has more than" in body and b"at most 4 texts" in body
    assert len(pulled) < 5  # refused while the body was still streaming, not after reading 20 MB
    metrics = client.get("/metrics").text
    assert 'tuneforge_rejected_requests_total{endpoint="/predict",reason="too_large"}' in metrics


def test_a_small_chunked_body_still_reaches_the_endpoint(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"texts": ['
        yield b'"good food"]}'

    response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 200 and len(response.json()["predictions"]) == 1


def test_an_explanation_does_not_stall_predictions_and_a_second_one_is_told_to_retry(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import tuneforge.explain.pipeline as pipeline

    started, release = threading.Event(), threading.Event()
    real = pipeline.explain_texts
    used = []

    def slow_explain(predictor, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 - the real function's arguments
        used.append(predictor)
        started.set()
        release.wait(timeout=30)
        return real(predictor, *args, **kwargs)

    monkeypatch.setattr(pipeline, "explain_texts", slow_explain)
    answers: dict[str, object] = {}
    first = threading.Thread(target=lambda: answers.update(first=client.post("/explain", json={"text": "good"})))
    first.start()
    try:
        assert started.wait(timeout=60)
        begin = time.perf_counter()
        predicted = client.post("/predict", json={"texts": ["good food"]})
        waited = time.perf_counter() - begin
        busy = client.post("/explain", json={"text": "bad food"})
    finally:
        release.set()
        first.join(timeout=60)
    assert predicted.status_code == 200 and waited < 10  # answered while the explanation was still running
    assert busy.status_code == 429 and int(busy.headers["retry-after"]) >= 1
    assert "retry" in busy.json()["fix"]
    assert answers["first"].status_code == 200
    assert used[0] is not client.app.state.service.current.predictor  # its own copy of the model


@pytest.fixture(scope="module")
def guarded(served_runs: dict[str, Path]) -> Iterator[TestClient]:
    with TestClient(create_app(served_runs["classification"], ServeSettings(host="0.0.0.0", token=TOKEN))) as test:
        yield test


def test_health_without_the_token_names_no_path(guarded: TestClient, served_runs: dict[str, Path]) -> None:
    anonymous = guarded.get("/health")
    assert anonymous.status_code == 200
    assert anonymous.json()["run_dir"] is None
    assert str(served_runs["classification"].resolve()) not in anonymous.text
    assert anonymous.json()["model"] == served_runs["classification"].name
    authorized = guarded.get("/health", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert authorized["run_dir"] == str(served_runs["classification"].resolve())
