"""Load test of `tuneforge serve` on loopback: throughput and latency under concurrent clients, zero failures.

Fine-tunes the bundled `minilm` briefly on the bundled NusaX English sentiment data, registers it in a scratch
registry, starts `tuneforge serve NAME@champion` as a real server process on 127.0.0.1, and sends a bounded
number of one-text /predict requests from concurrent clients, twice: with the default prediction log (SQLite in
WAL mode, one fsync per request before answering) and without a store. The baseline is the same model called
in-process (`Predictor.predict`, one text per call, no HTTP), one client at a time:

    python bench/serve.py                        # about 4 minutes on 2 cores
    python bench/serve.py --clients 20 --requests 2000 --json /tmp/serve.json

Every request goes to 127.0.0.1 only, and the loops stop after `--requests`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per server setting (default 2000)")
    parser.add_argument("--baseline-requests", type=int, default=300,
                        help="in-process calls for the baseline, one at a time (default 300)")
    parser.add_argument("--max-steps", type=int, default=30, help="training steps for the served run (default 30)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return parser.parse_args(argv)


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


async def load(url: str, texts: list[str], clients: int, requests: int) -> dict[str, Any]:
    """`clients` tasks share one bounded queue of `requests` one-text /predict calls."""
    import httpx

    latencies: list[float] = []
    failures: dict[str, int] = {}
    versions: set[str] = set()
    counter = iter(range(requests))

    async def client(session: httpx.AsyncClient) -> None:
        for index in counter:
            started = time.perf_counter()
            try:
                response = await session.post("/predict", json={"texts": [texts[index % len(texts)]]})
                ok = response.status_code == 200
                if ok:
                    versions.add(str(response.json()["version"]))
                key = "ok" if ok else str(response.status_code)
            except httpx.HTTPError as error:
                key = type(error).__name__
            latencies.append(time.perf_counter() - started)
            if key != "ok":
                failures[key] = failures.get(key, 0) + 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as session:
        for warm in texts[:5]:
            await session.post("/predict", json={"texts": [warm]})
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {"requests": requests, "failed": sum(failures.values()), "failures": failures,
            "throughput": requests / elapsed, "p50_ms": 1000 * percentile(latencies, 0.5),
            "p99_ms": 1000 * percentile(latencies, 0.99), "versions": sorted(versions)}


def in_process(run_dir: Path, texts: list[str], requests: int) -> dict[str, Any]:
    """The baseline: the same predictions without a server, one text per call, one caller."""
    import torch

    import tuneforge

    torch.set_num_threads(os.cpu_count() or 1)
    predictor = tuneforge.load(run_dir, device="cpu")
    for warm in texts[:5]:
        predictor.predict([warm])
    latencies = []
    started = time.perf_counter()
    for index in range(requests):
        begin = time.perf_counter()
        predictor.predict([texts[index % len(texts)]])
        latencies.append(time.perf_counter() - begin)
    elapsed = time.perf_counter() - started
    return {"requests": requests, "failed": 0, "failures": {}, "throughput": requests / elapsed,
            "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * percentile(latencies, 0.99),
            "versions": []}


def serve(home: Path, extra: list[str], texts: list[str], clients: int, requests: int) -> dict[str, Any]:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {**os.environ, "TUNEFORGE_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    log = home / f"server-{port}.log"
    with log.open("wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", "tuneforge.cli.main", "serve", "sentiment@champion",
                                    "--port", str(port), "--log-level", "warning", *extra],
                                   stdout=handle, stderr=subprocess.STDOUT, env=environment)
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).json().get("status") == "ok":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        return asyncio.run(load(url, texts, clients, requests))
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import tuneforge
    from tuneforge.cli.common import quiet_libraries
    from tuneforge.demo import demo_recipe
    from tuneforge.lifecycle.feedback import FeedbackStore, default_store_url
    from tuneforge.lifecycle.registry import Registry
    from tuneforge.predict.io import read_texts

    quiet_libraries()
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch) / "home"
        recipe = demo_recipe(Path(scratch) / "run", [
            f"train.max_steps={args.max_steps}", "evaluation.explain_examples=0", "fairness.counterfactual=false",
            "train.save_checkpoints=false"])
        run = tuneforge.fine_tune(recipe, on_warnings=lambda problems: None)
        Registry.local(home).register(run.directory, "sentiment")
        texts, _ = read_texts(recipe.data.test, recipe.data.text_column)
        texts = [str(text) for text in texts]
        rows = [("in-process Predictor.predict, 1 caller (baseline)", in_process(run.directory, texts,
                                                                                   args.baseline_requests))]
        rows.append(("tuneforge serve, predictions logged (SQLite WAL)",
                     serve(home, [], texts, args.clients, args.requests)))
        logged = FeedbackStore.open(default_store_url(home)).count_predictions(model="sentiment")
        rows.append(("tuneforge serve --no-store", serve(home, ["--no-store"], texts, args.clients, args.requests)))
    host = machine()
    baseline = rows[0][1]["throughput"]
    print(f"tuneforge serve on loopback: minilm fine-tuned {args.max_steps} steps on NusaX English; one text per "
          f"request, {args.clients} concurrent clients, {args.requests} requests per server setting, "
          f"{args.baseline_requests} in-process calls")
    print(f"machine: {host['cpu']}, {host['cores']} cores, torch {host['torch']}; the load generator shares the "
          "cores with the server")
    print("\n| setting | requests | failed | requests/s | vs baseline | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in rows:
        print(f"| {name} | {row['requests']} | {row['failed']} | {row['throughput']:.1f} | "
              f"×{row['throughput'] / baseline:.2f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} |")
    print(f"\npredictions in the store after the logged run: {logged} (requests plus warm-up)")
    failures = {name: row["failures"] for name, row in rows if row["failures"]}
    if failures:
        print(f"failures: {failures}")
    if args.json:
        args.json.write_text(json.dumps({"machine": host, "rows": dict(rows), "logged": logged}, indent=2),
                             encoding="utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
