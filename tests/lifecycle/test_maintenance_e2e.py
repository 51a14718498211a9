"""The whole maintenance loop through the real entry points: train v1 and register it, serve it in a separate
process, predict and correct over HTTP, kill -9 the server in the middle of a stream of feedback, restart it,
find every acknowledged correction stored, refresh, and see the running server answer with v2."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import make_rows, write_csv
from tuneforge.cli.main import main
from tuneforge.lifecycle.feedback import FeedbackStore, default_store_url

pytestmark = pytest.mark.slow  # two server processes start (torch, Transformers, MLflow imports): about a minute


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(target: str, port: int, home: Path, log: Path) -> subprocess.Popen:
    environment = {**os.environ, "TUNEFORGE_HOME": str(home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with log.open("ab") as handle:
        return subprocess.Popen([sys.executable, "-m", "tuneforge.cli.main", "serve", target, "--port", str(port),
                                 "--reload-interval", "0.5", "--log-level", "warning"],
                                stdout=handle, stderr=subprocess.STDOUT, env=environment)


def wait_healthy(process: subprocess.Popen, url: str, log: Path, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            health = httpx.get(f"{url}/health", timeout=2).json()
            if health["status"] == "ok":
                return health
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"the server did not come up in {timeout} s:\n{log.read_text()[-3000:]}")


def test_train_serve_feedback_kill_restart_refresh(tiny_model: Path, tmp_path: Path, registry_template: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / registry_template.name).write_bytes(registry_template.read_bytes())
    monkeypatch.setenv("TUNEFORGE_HOME", str(home))
    data = tmp_path / "data"
    recipe = {
        "model": {"name": str(tiny_model)},
        "data": {"train": str(write_csv(data / "train.csv", make_rows(150, seed=2))),
                 "validation": str(write_csv(data / "val.csv", make_rows(15, seed=3)))},
        "train": {"epochs": 4, "batch_size": 8, "learning_rate": 1e-2, "max_length": 32, "warmup_ratio": 0.0},
        "evaluation": {"explain_examples": 0},
        "fairness": {"counterfactual": False, "identity_categories": []},
        "refresh": {"gate": str(write_csv(data / "gate.csv", make_rows(30, seed=7))), "margin": 1.0},
    }
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe))

    # v1: trained and registered in one command; the first version becomes the champion
    assert main(["train", str(recipe_file), "--output", str(tmp_path / "v1"), "--register", "shop"]) == 0

    log, port = tmp_path / "server.log", free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server("shop@champion", port, home, log)
    try:
        assert wait_healthy(server, url, log)["version"] == "1"
        answer = httpx.post(f"{url}/predict", json={"texts": ["good great food", "rude awful staff"]}).json()
        assert answer["version"] == "1" and len(answer["predictions"]) == 2
        first = httpx.post(f"{url}/feedback", json={"prediction_id": answer["predictions"][1]["id"],
                                                    "label": "negative"})
        assert first.status_code == 201
        refused = httpx.post(f"{url}/feedback", json={"text": "good", "label": "joyful"})
        assert refused.status_code == 422 and "negative, neutral, positive" in refused.json()["error"]

        # a stream of corrections, and kill -9 in the middle of it
        acknowledged = [first.json()["id"]]
        stop = threading.Event()

        def send() -> None:
            with httpx.Client(base_url=url, timeout=5) as client:
                index = 0
                while not stop.is_set():
                    try:
                        response = client.post("/feedback", json={"text": f"lovely friendly place {index}",
                                                                   "label": "positive"})
                    except httpx.HTTPError:
                        return
                    if response.status_code == 201:
                        acknowledged.append(response.json()["id"])
                    index += 1

        sender = threading.Thread(target=send)
        sender.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 15 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
        stop.set()
        sender.join(timeout=30)
        assert len(acknowledged) >= 15
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    stored = {record.id for record in FeedbackStore.open(default_store_url(home)).feedback(model="shop")}
    assert set(acknowledged) <= stored

    server = start_server("shop", port, home, log)  # a bare name follows the champion too
    try:
        assert wait_healthy(server, url, log)["version"] == "1"
        # v2: re-fine-tuned on the data plus the corrections, judged against v1, promoted (margin 1.0)
        assert main(["refresh", "shop", "--recipe", str(recipe_file), "--output", str(tmp_path / "v2")]) == 0
        assert main(["registry", "show", "shop@champion"]) == 0
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/health").json()["version"] != "2" and time.monotonic() < deadline:
            time.sleep(0.2)
        answer = httpx.post(f"{url}/predict", json={"texts": ["good great food"]}).json()
        assert answer["version"] == "2"
    finally:
        server.terminate()
        server.wait(timeout=60)
