"""`tuneforge serve`: answer predictions, explanations and feedback over HTTP (FastAPI app, uvicorn server), for a
run directory or a registered model followed by alias."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from tuneforge.cli.common import quiet_libraries, trust_option
from tuneforge.cli.registry import FEEDBACK_VARIABLE, open_registry, registry_option, tuneforge_home
from tuneforge.errors import TuneforgeError

# Several uvicorn workers each import the app afresh in their own process, so the settings travel in the
# environment; the token keeps to its own documented variable.
SETTINGS_VARIABLE = "TUNEFORGE_SERVE_SETTINGS"
TOKEN_VARIABLE = "TUNEFORGE_TOKEN"
WORKER_START_SECONDS = 120


def build_app(target: str, registry_uri: str | None, feedback_url: str | None, settings: Any) -> Any:
    """The app for a run folder or NAME[@alias|@version], with its feedback store (None: no store)."""
    from tuneforge.lifecycle.serve import RegistrySource, create_app

    source: Any
    if Path(target).is_dir():
        source = Path(target)
    else:
        from tuneforge.lifecycle.registry import parse_model_ref

        name, ref = parse_model_ref(target)
        source = RegistrySource(open_registry(registry_uri), name, ref)
    store = None
    if feedback_url:
        from tuneforge.lifecycle.feedback import FeedbackStore

        store = FeedbackStore.open(feedback_url)
    return create_app(source, settings, store)


def worker_app() -> Any:
    """The app factory each uvicorn worker process calls when `--workers` is above 1."""
    quiet_libraries()
    from tuneforge.lifecycle.settings import ServeSettings

    raw = os.environ.get(SETTINGS_VARIABLE)
    if not raw:
        raise TuneforgeError(f"{SETTINGS_VARIABLE} is not set; this factory is for `tuneforge serve --workers N`",
                             fix="start the server with `tuneforge serve RUN_DIR`")
    values = json.loads(raw)
    target, registry_uri, feedback_url = values.pop("target"), values.pop("registry_uri"), values.pop("feedback_url")
    settings = ServeSettings(**values, token=os.environ.get(TOKEN_VARIABLE) or None)
    return build_app(target, registry_uri, feedback_url, settings)


def register(app: typer.Typer) -> None:
    """Adds the verb to the application."""

    @app.command()
    def serve(
        target: str = typer.Argument(..., metavar="MODEL_OR_RUN_DIR",
                                     help="A run directory, or a registered model: NAME (its champion), "
                                          "NAME@ALIAS (followed: a promoted version is picked up live) or "
                                          "NAME@VERSION (pinned)."),
        host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback needs a token."),
        port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on."),
        workers: int = typer.Option(1, min=1, help="Server processes, each with its own copy of the model (and its "
                                                    "own /metrics counts)."),
        token: str = typer.Option(None, envvar=TOKEN_VARIABLE, show_default=False,
                                  help="Bearer token every request but /health must carry; required off loopback."),
        max_batch: int = typer.Option(64, min=1, help="Most texts one /predict request may send."),
        max_text_chars: int = typer.Option(10_000, min=1, help="Longest text accepted, in characters."),
        device: str = typer.Option("auto", help="auto, cpu or cuda."),
        threads: int = typer.Option(None, min=1, show_default=False,
                                    help="torch threads per worker (default: the cores shared among the workers)."),
        explain_workers: int = typer.Option(1, min=1, help="Explanations computed at once, on their own copy of the "
                                                           "model so predictions keep flowing; more get 429."),
        registry_uri: str = registry_option(),
        reload_interval: float = typer.Option(10.0, min=0, help="Seconds between checks of the followed alias; "
                                                                "0 turns hot reload off."),
        feedback_url: str = typer.Option(None, envvar=FEEDBACK_VARIABLE, show_default=False,
                                         help="Feedback store (SQLAlchemy URL, e.g. postgresql://...); default: "
                                              "SQLite feedback.db in the tuneforge home folder."),
        no_store: bool = typer.Option(False, "--no-store", help="Keep no feedback store: no prediction log and no "
                                                                "/feedback."),
        log_predictions: bool = typer.Option(True, "--log-predictions/--no-log-predictions",
                                             help="Store every answered prediction (input, output, confidence, "
                                                  "version)."),
        log_level: str = typer.Option("info", help="uvicorn log level: critical, error, warning, info, debug."),
        trust_run_code: bool = trust_option(),
    ) -> None:
        """Serve a model over HTTP: POST /predict, /explain, /feedback, GET /health, /metrics (Prometheus);
        the API schema is at /openapi.json and interactive docs at /docs."""
        from tuneforge.lifecycle.feedback import default_store_url
        from tuneforge.lifecycle.settings import ServeSettings, check_exposure

        # Cores shared between worker processes: one torch thread pool each, sized to its share.
        threads = threads or max(1, (os.cpu_count() or 1) // workers)
        settings = ServeSettings(host=host, port=port, token=token or None, max_batch=max_batch,
                                 max_text_chars=max_text_chars, device=device, threads=threads,
                                 explain_workers=explain_workers, reload_interval=reload_interval,
                                 log_predictions=log_predictions,
                                 trust_run_code=trust_run_code)
        check_exposure(settings)
        quiet_libraries()
        import uvicorn

        from tuneforge.cli.display import console

        store_url = None if no_store else (feedback_url or default_store_url(tuneforge_home()))
        application = build_app(target, registry_uri, store_url, settings)  # checks the model before serving
        service = application.state.service
        guarded = "bearer token required" if settings.token else "no token: reachable from this machine only"
        shown = f"[{host}]" if ":" in host else host
        what = f"{service.name} version {service.pending[1]}" if service.pending[1] else target
        follows = f", following @{service.source.alias}" if service.source.alias and reload_interval else ""
        console.print(f"serving {what}{follows} on http://{shown}:{port} ({guarded}); docs at /docs",
                      highlight=False, markup=False, soft_wrap=True)
        if store_url:
            from tuneforge.lifecycle.feedback import FeedbackStore

            console.print(f"feedback store: {FeedbackStore.open(store_url).url}", highlight=False, markup=False,
                          soft_wrap=True)
        if workers == 1:
            uvicorn.run(application, host=host, port=port, log_level=log_level)
            return
        values = {key: value for key, value in asdict(settings).items() if key != "token"}
        target_value = str(Path(target).resolve()) if Path(target).is_dir() else target
        os.environ[SETTINGS_VARIABLE] = json.dumps({"target": target_value, "registry_uri": registry_uri,
                                                    "feedback_url": store_url, **values})
        if settings.token:
            os.environ[TOKEN_VARIABLE] = settings.token
        # Each worker imports torch and loads the model before it answers uvicorn's health pings; on a small
        # machine that takes far longer than uvicorn's default patience, which would restart workers in a loop.
        uvicorn.run("tuneforge.cli.serve:worker_app", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, timeout_worker_healthcheck=WORKER_START_SECONDS)
