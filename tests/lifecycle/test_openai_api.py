"""OpenAI's API over a served causal-lm run, driven by the official `openai` client against a real uvicorn server:
completions and streamed chat answer what `tuneforge.load(run).generate` answers, malformed requests get 4xx in
OpenAI's error shape, and concurrent clients are batched without a failure."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

openai = pytest.importorskip("openai")

TOKEN = "test-token"
CHAT = [{"role": "user", "content": "repeat: red cat"}]


class Server:
    """uvicorn on 127.0.0.1 and a port the system picks, in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def served(tiny_llama_chat_run: Path) -> Iterator[tuple[str, str]]:
    """(base URL, model name) of the chat run served with a token."""
    from tuneforge.lifecycle.serve import create_app
    from tuneforge.lifecycle.settings import ServeSettings

    app = create_app(tiny_llama_chat_run, ServeSettings(token=TOKEN, batch_size=16))
    with Server(app) as url:
        yield url, tiny_llama_chat_run.resolve().name


@pytest.fixture(scope="module")
def expected(tiny_llama_chat_run: Path) -> str:
    """What the run answers the chat through `tuneforge.load` (greedy, the recipe's settings)."""
    import tuneforge

    return tuneforge.load(tiny_llama_chat_run).generate([CHAT])[0]


def _client(url: str, key: str = TOKEN):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def test_models_completion_and_streamed_chat(served, expected):
    url, name = served
    client = _client(url)
    assert [model.id for model in client.models.list()] == [name]

    completion = client.completions.create(model=name, prompt="repeat: sun", max_tokens=3)
    choice = completion.choices[0]
    assert isinstance(choice.text, str) and choice.finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens <= 3 and completion.usage.prompt_tokens > 0

    answer = client.chat.completions.create(model=name, messages=CHAT)
    assert answer.choices[0].message.content == expected and answer.choices[0].finish_reason == "stop"

    chunks = list(client.chat.completions.create(model=name, messages=CHAT, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert streamed == expected
    assert len([chunk for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]) >= 2  # in pieces
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens


def test_stream_ends_with_done_and_stops_where_asked(served, expected):
    url, name = served
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.stream("POST", f"{url}/v1/completions", headers=headers, timeout=60,
                      json={"model": name, "prompt": "repeat: moon", "max_tokens": 2, "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)

    client = _client(url)
    first, second = expected.split(" ", 1)
    stopped = client.chat.completions.create(model=name, messages=CHAT, stop=[f" {second}"])
    assert stopped.choices[0].message.content == first and stopped.choices[0].finish_reason == "stop"
    short = client.chat.completions.create(model=name, messages=CHAT, max_tokens=1, n=2)
    assert [choice.finish_reason for choice in short.choices] == ["length", "length"]
    assert short.usage.completion_tokens == 2


def test_malformed_requests_get_4xx_in_openai_shape(served):
    url, name = served
    with pytest.raises(openai.AuthenticationError):
        _client(url, key="wrong").models.list()
    client = _client(url)
    with pytest.raises(openai.NotFoundError, match="GET /v1/models"):
        client.chat.completions.create(model="gpt-4o", messages=CHAT)
    with pytest.raises(openai.BadRequestError, match="log probabilities"):
        client.chat.completions.create(model=name, messages=CHAT, logprobs=True)
    with pytest.raises(openai.BadRequestError, match="unrecognized request argument"):
        client.chat.completions.create(model=name, messages=CHAT, extra_body={"temprature": 0.5})
    with pytest.raises(openai.BadRequestError, match="context is 256 tokens"):
        client.completions.create(model=name, prompt="repeat: red", max_tokens=1000)

    headers = {"Authorization": f"Bearer {TOKEN}"}
    cases = [(b"{not json", 400, "not JSON"), (b'{"model": "%s"}' % name.encode(), 400, "messages: Field required"),
             (b'{"model": "%s", "messages": [{"role": "tool", "content": "x"}]}' % name.encode(), 400, "role"),
             (b'{"model": "%s", "messages": [{"role": "user", "content": "x"}], "n": 0}' % name.encode(), 400, "n:")]
    for body, status, message in cases:
        response = httpx.post(f"{url}/v1/chat/completions", content=body, headers=headers, timeout=60)
        error = response.json()["error"]
        assert response.status_code == status and message in error["message"], (body, response.text)
        assert error["type"] == "invalid_request_error" and set(error) == {"message", "type", "param", "code"}
    unauthorized = httpx.post(f"{url}/v1/completions", json={"model": name, "prompt": "x"}, timeout=60).json()
    assert "bearer token" in unauthorized["error"]["message"]
    assert httpx.post(f"{url}/predict", json={"texts": ["x"]}, headers=headers).status_code == 404
    metrics = httpx.get(f"{url}/metrics", headers=headers).text
    assert 'tuneforge_rejected_requests_total{endpoint="/v1/chat/completions",reason="schema"}' in metrics


def test_concurrent_clients_are_batched_without_failures(served, expected):
    url, name = served
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def batches() -> float:
        lines = httpx.get(f"{url}/metrics", headers=headers).text.splitlines()
        return float(next(line.split()[-1] for line in lines if line.startswith("tuneforge_batch_texts_count")))

    before = batches()

    def client_session(number: int) -> list[str]:
        client = _client(url)
        answers = []
        for request in range(5):
            if (number + request) % 2:
                stream = client.chat.completions.create(model=name, messages=CHAT, stream=True)
                answers.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
            else:
                answers.append(client.chat.completions.create(model=name, messages=CHAT).choices[0].message.content)
        return answers

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = [answer for answers in pool.map(client_session, range(8)) for answer in answers]
    assert len(results) == 40 and set(results) == {expected}  # no failures, and batching changes no answer
    assert batches() - before < 40  # some generate calls answered several requests at once
