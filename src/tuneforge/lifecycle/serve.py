"""An HTTP service over one run directory: `create_app(run_dir, settings)` builds the FastAPI app that
`tuneforge serve` hands to uvicorn.

The model is loaded once, when the app starts, and every forward pass runs on one dedicated thread: the event
loop stays free to answer /health and /metrics while a batch is scored, and torch never runs two batches at once
on a machine with few cores (which would make both slower than running them in turn).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from tuneforge import __version__
from tuneforge.errors import TuneforgeError
from tuneforge.lifecycle.settings import ServeSettings, check_exposure, token_matches
from tuneforge.recipe import Recipe
from tuneforge.run import RunLayout, read_run_recipe

SERVED_TASKS = ("classification", "regression")
OPEN_PATHS = ("/health",)  # load balancers probe it without credentials
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
EXAMPLES = {
    "/predict": '{"texts": ["first text", "second text"]}',
    "/explain": '{"text": "one text", "methods": ["ig"]}',
}
Result = TypeVar("Result")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(..., min_length=1, description="Texts to score (at most the server's max batch).")
    pairs: list[str] | None = Field(None, description="The second text of each pair, one per text; only for runs "
                                                      "trained on text pairs.")


class Prediction(BaseModel):
    label: str | None = Field(None, description="Predicted class (classification).")
    score: float = Field(..., description="Probability of the predicted class, or the regression output.")
    probabilities: dict[str, float] | None = Field(None, description="Calibrated probability per class.")


class PredictResponse(BaseModel):
    model: str
    predictions: list[Prediction]


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., description="The text to explain.")
    methods: list[Literal["ig", "shap", "lime", "attention"]] = Field(
        default_factory=lambda: ["ig"], min_length=1,
        description="Attribution methods: ig (Integrated Gradients), shap, lime, attention (rollout).")
    label: str | None = Field(None, description="Explain this class instead of the predicted one.")
    pair: str | None = Field(None, description="The second text, for runs trained on text pairs.")


class TokenScores(BaseModel):
    tokens: list[str]
    scores: list[float] = Field(..., description="One signed score per token, towards `label`.")
    label: str
    probability: float
    level: str = Field(..., description="token (word pieces) or word (LIME).")
    delta: float | None = Field(None, description="Integrated Gradients' convergence delta.")


class ExplainResponse(BaseModel):
    model: str
    text: str
    prediction: Prediction
    explanations: dict[str, TokenScores]


class Health(BaseModel):
    status: str
    run_dir: str
    model: str = Field(..., description="The served run's name.")
    base_model: str = Field(..., description="The pretrained model the run was fine-tuned from.")
    task: str
    labels: list[str] | None
    uptime_seconds: float
    limits: dict[str, int]
    version: str


class ErrorBody(BaseModel):
    error: str
    fix: str = ""
    detail: list[dict[str, Any]] | None = None


class Refusal(Exception):
    """A request the server will not run, with the HTTP status and what the caller should change."""

    def __init__(self, status: int, error: str, fix: str = "") -> None:
        super().__init__(error)
        self.status, self.error, self.fix = status, error, fix


def _problem(status: int, error: str, fix: str = "", detail: list[dict[str, Any]] | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=error, fix=fix, detail=detail).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


class Service:
    """The loaded run and what the endpoints share: limits, the model thread and the Prometheus metrics."""

    def __init__(self, root: Path, recipe: Recipe, settings: ServeSettings) -> None:
        self.root = root
        self.recipe = recipe
        self.settings = settings
        self.name = root.resolve().name
        self.predictor: Any = None
        self.executor: ThreadPoolExecutor | None = None
        self.started = time.monotonic()
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("tuneforge_requests", "HTTP requests, by endpoint and status code.",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("tuneforge_request_seconds", "Time to answer a request, by endpoint.",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.predictions = Counter("tuneforge_predictions", "Texts predicted, by predicted label "
                                   "(regression runs count under 'score').", ["label"], registry=self.registry)
        # The biggest body a valid request can have: every text and pair at full length, each character escaped.
        self.max_body_bytes = settings.max_batch * settings.max_text_chars * 2 * 6 + 65_536

    def load(self) -> Any:
        if self.settings.threads:
            import torch

            torch.set_num_threads(self.settings.threads)
        from tuneforge.predict import Predictor

        return Predictor.from_run(self.root, self.settings.device)

    async def on_model_thread(self, function: Callable[..., Result], *args: Any) -> Result:
        assert self.executor is not None, "the app has not started; use it inside its lifespan"
        return await asyncio.get_running_loop().run_in_executor(self.executor, partial(function, *args))

    def check_texts(self, texts: Sequence[str], pairs: Sequence[str] | None, field: str = "texts") -> None:
        """Limits and the pair contract, checked before any work is queued."""
        limit = self.settings.max_batch
        if len(texts) > limit:
            raise Refusal(413, f"{len(texts)} texts in one request; this server takes at most {limit}",
                          fix=f"split them into requests of at most {limit} texts (or restart the server with a "
                              "larger --max-batch)")
        for name, values in ((field, texts), ("pairs" if field == "texts" else "pair", pairs or [])):
            for index, text in enumerate(values):
                if len(text) > self.settings.max_text_chars:
                    where = f"{name}[{index}]" if field == "texts" else name
                    raise Refusal(413, f"{where} has {len(text)} characters; the limit is "
                                       f"{self.settings.max_text_chars}",
                                  fix="shorten or split it (the model reads only its first "
                                      f"{self.recipe.train.max_length} tokens anyway), or restart the server with "
                                      "a larger --max-text-chars")
        pair_column = self.recipe.data.text_pair_column
        pair_field = "pairs" if field == "texts" else "pair"
        if pair_column and pairs is None:
            raise Refusal(422, "this run was trained on text pairs, and the request has no second texts",
                          fix=f"send '{pair_field}' beside '{field}' (the run's '{pair_column}' column)")
        if not pair_column and pairs is not None:
            raise Refusal(422, "this run reads single texts, and the request has second texts",
                          fix=f"leave out '{pair_field}'")
        if pairs is not None and len(pairs) != len(texts):
            raise Refusal(422, f"{len(texts)} texts but {len(pairs)} pairs", fix="send one pair per text")

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.predictor is not None else "loading",
            "run_dir": str(self.root.resolve()),
            "model": self.name,
            "base_model": self.recipe.model.name,
            "task": self.recipe.task,
            "labels": getattr(self.predictor, "labels", None),
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "limits": {"max_batch": self.settings.max_batch, "max_text_chars": self.settings.max_text_chars},
            "version": __version__,
        }

    def guard(self, request: Request) -> JSONResponse | None:
        """The answer to a request that must not reach an endpoint (no token, oversized body), else None."""
        token = self.settings.token
        if token and request.url.path not in OPEN_PATHS and not token_matches(request.headers.get("authorization"),
                                                                                 token):
            return _problem(401, "missing or wrong bearer token",
                            fix="send the header 'Authorization: Bearer <token>' with the server's token",
                            headers={"WWW-Authenticate": "Bearer"})
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body_bytes:
            return _problem(413, f"the request body has {int(length)} bytes, more than any valid request",
                            fix=f"send at most {self.settings.max_batch} texts of at most "
                                f"{self.settings.max_text_chars} characters each")
        return None


def _check_run(root: Path) -> Recipe:
    """Fail before the server starts, with a fix, rather than inside the server's startup."""
    recipe = read_run_recipe(root)
    if recipe.task not in SERVED_TASKS:
        raise TuneforgeError(f"serving supports {' and '.join(SERVED_TASKS)} runs; '{root}' is a {recipe.task} run",
                             fix="use `tuneforge predict` for this run")
    if not RunLayout(root).is_finished():
        raise TuneforgeError(f"run '{root}' has not finished training (no model or no metrics.json)",
                             fix=f"finish it first: `tuneforge train --resume --output {root}`")
    return recipe


def create_app(run_dir: str | Path, settings: ServeSettings | None = None) -> FastAPI:
    """The service for one run; the model loads when the app starts (uvicorn, or `with TestClient(app)`)."""
    settings = settings or ServeSettings()
    check_exposure(settings)
    root = Path(run_dir)
    service = Service(root, _check_run(root), settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tuneforge-model")
        try:
            service.predictor = await service.on_model_thread(service.load)
            for label in service.predictor.labels or ["score"]:
                service.predictions.labels(label=label)  # every series exists from the start, at zero
            service.started = time.monotonic()
            yield
        finally:
            service.predictor = None
            service.executor.shutdown(wait=True)

    app = FastAPI(title=f"tuneforge: {service.name}", version=__version__, lifespan=lifespan,
                  description=f"Predictions and explanations from the {service.recipe.task} run '{service.name}'.")
    app.state.service = service
    errors = {413: {"model": ErrorBody}, 422: {"model": ErrorBody}}

    @app.middleware("http")
    async def guard_and_measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        endpoint = request.url.path if request.url.path in known_paths else "other"  # bounded label values
        status = 500
        try:
            response = service.guard(request) or await call_next(request)
            status = response.status_code
            return response
        finally:
            service.requests.labels(endpoint=endpoint, status=str(status)).inc()
            service.latency.labels(endpoint=endpoint).observe(time.perf_counter() - start)

    @app.exception_handler(Refusal)
    async def refused(_: Request, refusal: Refusal) -> JSONResponse:
        return _problem(refusal.status, refusal.error, refusal.fix)

    @app.exception_handler(TuneforgeError)
    async def user_error(_: Request, error: TuneforgeError) -> JSONResponse:
        return _problem(422, error.message, error.fix)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        detail = [{"loc": [str(part) for part in item.get("loc", ())], "msg": item.get("msg", ""),
                   "type": item.get("type", "")} for item in error.errors()]
        issues = "; ".join(f"{'.'.join(p for p in item['loc'] if p != 'body') or 'body'}: {item['msg']}"
                           for item in detail[:5])
        example = EXAMPLES.get(request.url.path)
        fix = f"send JSON like {example}" if example else "send JSON that fits the schema"
        return _problem(422, f"the request does not fit the schema: {issues}",
                        fix=f"{fix}; the full schema is at /openapi.json", detail=detail)

    @app.post("/predict", response_model=PredictResponse, response_model_exclude_none=True, responses=errors)
    async def predict(body: PredictRequest) -> dict[str, Any]:
        """Labels with probabilities (classification) or scores (regression), in the order of `texts`."""
        service.check_texts(body.texts, body.pairs)
        rows = await service.on_model_thread(service.predictor.predict, body.texts, body.pairs,
                                             settings.batch_size)
        for row in rows:
            service.predictions.labels(label=row.get("label", "score")).inc()
        return {"model": service.name, "predictions": rows}

    @app.post("/explain", response_model=ExplainResponse, response_model_exclude_none=True, responses=errors)
    async def explain(body: ExplainRequest) -> dict[str, Any]:
        """Token attributions for one text: how much each token pushed the model towards the explained class."""
        from tuneforge.explain.pipeline import ExplainSettings, explain_texts

        if service.recipe.task != "classification":
            raise Refusal(422, f"token attributions explain class probabilities; this is a {service.recipe.task} "
                               "run", fix="use POST /predict for its scores")
        service.check_texts([body.text], None if body.pair is None else [body.pair], field="text")
        methods = tuple(dict.fromkeys(body.methods))
        explain_settings = ExplainSettings(methods=methods, label=body.label, ig_steps=settings.ig_steps,
                                           shap_evals=settings.shap_evals, lime_samples=settings.lime_samples)
        pairs = None if body.pair is None else [body.pair]
        [result] = await service.on_model_thread(explain_texts, service.predictor, [body.text], explain_settings,
                                                 pairs)
        return {"model": service.name, "text": result.text, "prediction": result.prediction,
                "explanations": {method: attribution.to_dict() for method, attribution in result.attributions.items()}}

    @app.get("/health", response_model=Health)
    async def health() -> dict[str, Any]:
        """Liveness and what is served; open without a token."""
        return service.health()

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."}})
    async def metrics() -> Response:
        """Request counts, latencies and predictions per label, for Prometheus to scrape."""
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    known_paths = {getattr(route, "path", "") for route in app.routes}
    return app
