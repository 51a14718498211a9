"""`tuneforge serve`: answer predictions and explanations for a run over HTTP (FastAPI app, uvicorn server)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from tuneforge.cli.common import quiet_libraries
from tuneforge.errors import TuneforgeError

# Several uvicorn workers each import the app afresh in their own process, so the settings travel in the
# environment; the token keeps to its own documented variable.
SETTINGS_VARIABLE = "TUNEFORGE_SERVE_SETTINGS"
TOKEN_VARIABLE = "TUNEFORGE_TOKEN"
WORKER_START_SECONDS = 120


def worker_app() -> Any:
    """The app factory each uvicorn worker process calls when `--workers` is above 1."""
    quiet_libraries()
    from tuneforge.lifecycle.serve import create_app
    from tuneforge.lifecycle.settings import ServeSettings

    raw = os.environ.get(SETTINGS_VARIABLE)
    if not raw:
        raise TuneforgeError(f"{SETTINGS_VARIABLE} is not set; this factory is for `tuneforge serve --workers N`",
                             fix="start the server with `tuneforge serve RUN_DIR`")
    values = json.loads(raw)
    run_dir = values.pop("run_dir")
    return create_app(run_dir, ServeSettings(**values, token=os.environ.get(TOKEN_VARIABLE) or None))


def register(app: typer.Typer) -> None:
    """Adds the verb to the application."""

    @app.command()
    def serve(
        run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="A run directory."),
        host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback needs a token."),
        port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on."),
        workers: int = typer.Option(1, min=1, help="Server processes, each with its own copy of the model (and its "
                                                    "own /metrics counts)."),
        token: str = typer.Option(None, envvar=TOKEN_VARIABLE, show_default=False,
                                  help="Bearer token every request but /health must carry; required off loopback."),
        max_batch: int = typer.Option(64, min=1, help="Most texts one /predict request may send."),
        max_text_chars: int = typer.Option(10_000, min=1, help="Longest text accepted, in characters."),
        device: str = typer.Option("auto", help="auto, cpu or cuda."),
        log_level: str = typer.Option("info", help="uvicorn log level: critical, error, warning, info, debug."),
    ) -> None:
        """Serve a run over HTTP: POST /predict, POST /explain, GET /health, GET /metrics (Prometheus);
        the API schema is at /openapi.json and interactive docs at /docs."""
        from tuneforge.lifecycle.serve import create_app
        from tuneforge.lifecycle.settings import ServeSettings, check_exposure

        # Cores shared between worker processes: one torch thread pool each, sized to its share.
        threads = max(1, (os.cpu_count() or 1) // workers)
        settings = ServeSettings(host=host, port=port, token=token or None, max_batch=max_batch,
                                 max_text_chars=max_text_chars, device=device, threads=threads)
        check_exposure(settings)
        quiet_libraries()
        import uvicorn

        from tuneforge.cli.display import console

        application = create_app(run_dir, settings)  # checks the run before the server starts
        guarded = "bearer token required" if settings.token else "no token: reachable from this machine only"
        shown = f"[{host}]" if ":" in host else host
        console.print(f"serving {run_dir} on http://{shown}:{port} ({guarded}); docs at /docs",
                      highlight=False, markup=False, soft_wrap=True)
        if workers == 1:
            uvicorn.run(application, host=host, port=port, log_level=log_level)
            return
        values = {key: value for key, value in asdict(settings).items() if key != "token"}
        os.environ[SETTINGS_VARIABLE] = json.dumps({"run_dir": str(run_dir.resolve()), **values})
        if settings.token:
            os.environ[TOKEN_VARIABLE] = settings.token
        # Each worker imports torch and loads the model before it answers uvicorn's health pings; on a small
        # machine that takes far longer than uvicorn's default patience, which would restart workers in a loop.
        uvicorn.run("tuneforge.cli.serve:worker_app", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, timeout_worker_healthcheck=WORKER_START_SECONDS)
