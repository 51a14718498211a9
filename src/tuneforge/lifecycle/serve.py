"""An HTTP service over a model: `create_app(source, settings)` builds the FastAPI app that `tuneforge serve`
hands to uvicorn. The source is a run directory, or a registered model (`NAME@champion`) whose alias the server
watches: a promoted version is loaded beside the one serving, then swapped in by replacing one reference, so no
request fails and none is answered by a half-loaded model (each request keeps the version it started with).

Every forward pass runs on one dedicated thread: the event loop stays free to answer /health and /metrics while
a batch is scored, and torch never runs two batches at once on a machine with few cores (which would make both
slower than running them in turn). Writes to the feedback store run on a thread of their own and commit before
the answer leaves, so an acknowledged prediction or correction survives the process being killed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tuneforge import __version__
from tuneforge.errors import TuneforgeError
from tuneforge.lifecycle.settings import ServeSettings, check_exposure, token_matches
from tuneforge.recipe import GENERATIVE_TASKS, Recipe
from tuneforge.run import RunLayout, read_run_recipe

SERVED_TASKS = ("classification", "regression", "seq2seq", "causal-lm")  # generative ones: lifecycle/openai_api.py
OPEN_PATHS = ("/health",)  # load balancers probe it without credentials
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
EXAMPLES = {
    "/predict": '{"texts": ["first text", "second text"]}',
    "/explain": '{"text": "one text", "methods": ["ig"]}',
    "/feedback": '{"prediction_id": 12, "label": "positive"} or {"text": "a text", "label": "positive"}',
}
Result = TypeVar("Result")
log = logging.getLogger("tuneforge.serve")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(..., min_length=1, description="Texts to score (at most the server's max batch).")
    pairs: list[str] | None = Field(None, description="The second text of each pair, one per text; only for runs "
                                                      "trained on text pairs.")


class Prediction(BaseModel):
    label: str | None = Field(None, description="Predicted class (classification).")
    score: float = Field(..., description="Probability of the predicted class, or the regression output.")
    probabilities: dict[str, float] | None = Field(None, description="Calibrated probability per class.")
    id: int | None = Field(None, description="The logged prediction's id; send it to /feedback to correct it.")


class PredictResponse(BaseModel):
    model: str = Field(..., description="The served model's name (registered name, or the run's folder name).")
    version: str | None = Field(None, description="The registered version that answered (None for a run folder).")
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
    version: str | None = None
    text: str
    prediction: Prediction
    explanations: dict[str, TokenScores]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(..., min_length=1, description="The correct class.")
    prediction_id: int | None = Field(None, ge=1, description="The `id` of a prediction this server answered.")
    text: str | None = Field(None, min_length=1, description="The text, when correcting no logged prediction.")
    pair: str | None = Field(None, description="The second text, with `text`, for runs trained on text pairs.")

    @model_validator(mode="after")
    def _one_target(self) -> FeedbackRequest:
        if (self.prediction_id is None) == (self.text is None):
            raise ValueError("send either prediction_id or text, not both or neither")
        if self.pair is not None and self.text is None:
            raise ValueError("pair goes with text")
        return self


class FeedbackResponse(BaseModel):
    id: int = Field(..., description="The stored feedback's id.")
    model: str
    version: str | None
    label: str
    prediction_id: int | None = None


class Health(BaseModel):
    status: str
    run_dir: str
    model: str = Field(..., description="The served model's name.")
    version: str | None = Field(None, description="The registered version served now (None for a run folder).")
    alias: str | None = Field(None, description="The alias the server follows, for a registered model.")
    base_model: str = Field(..., description="The pretrained model the run was fine-tuned from.")
    task: str
    labels: list[str] | None
    uptime_seconds: float
    limits: dict[str, int]
    feedback_store: bool = Field(..., description="Whether predictions and feedback are stored.")
    tuneforge_version: str


class ErrorBody(BaseModel):
    error: str
    fix: str = ""
    detail: list[dict[str, Any]] | None = None


class Refusal(Exception):
    """A request the server will not run, with the HTTP status and what the caller should change."""

    def __init__(self, status: int, error: str, fix: str = "", reason: str = "refused") -> None:
        super().__init__(error)
        self.status, self.error, self.fix, self.reason = status, error, fix, reason


def _problem(status: int, error: str, fix: str = "", detail: list[dict[str, Any]] | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=error, fix=fix, detail=detail).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


# -- where the model comes from ---------------------------------------------------------------------------------

class ModelSource(Protocol):
    """A served model: its name, what version is current (cheap, polled) and a local run directory for it."""

    name: str
    alias: str | None

    def current(self) -> str | None: ...

    def fetch(self) -> tuple[Path, str | None]: ...


@dataclass
class RunDirSource:
    """One run directory; never changes."""

    root: Path
    alias: str | None = None

    @property
    def name(self) -> str:
        return self.root.resolve().name

    def current(self) -> str | None:
        return None

    def fetch(self) -> tuple[Path, str | None]:
        return self.root, None


@dataclass
class RegistrySource:
    """A registered model followed by alias (hot reload) or pinned to a version number."""

    registry: Any
    name: str
    ref: str

    @property
    def alias(self) -> str | None:
        return None if self.ref.lstrip("vV").isdigit() else self.ref

    def current(self) -> str | None:
        if self.alias is None:
            return self.ref.lstrip("vV")
        version = self.registry.alias_version(self.name, self.alias)
        return None if version is None else str(version)

    def fetch(self) -> tuple[Path, str | None]:
        info, folder = self.registry.run_dir(self.name, self.ref)
        return folder, str(info.version)


@dataclass
class Queued:
    """One /predict request waiting for the model thread."""

    loaded: Loaded
    texts: list[str]
    pairs: list[str] | None
    future: asyncio.Future[list[dict[str, Any]]]


@dataclass(frozen=True)
class Loaded:
    """What one request is answered with: the predictor and the version it came from, replaced as a whole."""

    predictor: Any
    recipe: Recipe
    root: Path
    version: str | None


class Service:
    """The served model and what the endpoints share: limits, threads, the feedback store and the metrics."""

    def __init__(self, source: ModelSource, root: Path, version: str | None, recipe: Recipe,
                 settings: ServeSettings, store: Any = None) -> None:
        self.source = source
        self.name = source.name
        self.settings = settings
        self.store = store
        self.pending: tuple[Path, str | None, Recipe] | None = (root, version, recipe)
        self.current: Loaded | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.store_executor: ThreadPoolExecutor | None = None
        self.queue: deque[Queued] = deque()
        self.arrived: asyncio.Event | None = None
        self.started = time.monotonic()
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("tuneforge_requests", "HTTP requests, by endpoint and status code.",
                                ["endpoint", "status"], registry=self.registry)
        self.rejected = Counter("tuneforge_rejected_requests", "Requests refused with a 4xx answer, by endpoint and "
                                "reason (schema, too_large, unauthorized, unknown_label, refused, not_found).",
                                ["endpoint", "reason"], registry=self.registry)
        self.latency = Histogram("tuneforge_request_seconds", "Time to answer a request, by endpoint.",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.predictions = Counter("tuneforge_predictions", "Texts predicted, by predicted label "
                                   "(regression runs count under 'score').", ["label"], registry=self.registry)
        self.feedback = Counter("tuneforge_feedback", "Corrections stored, by corrected label.", ["label"],
                                registry=self.registry)
        self.reloads = Counter("tuneforge_model_reloads", "Model swaps, by outcome (loaded or failed).", ["outcome"],
                               registry=self.registry)
        self.batch_texts = Histogram("tuneforge_batch_texts", "Texts per forward pass (concurrent requests are "
                                     "scored together).", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                                     registry=self.registry)
        self.served = Gauge("tuneforge_model_info", "1 for the model version being served.", ["model", "version"],
                            registry=self.registry)
        # The biggest body a valid request can have: every text and pair at full length, each character escaped.
        self.max_body_bytes = settings.max_batch * settings.max_text_chars * 2 * 6 + 65_536

    @property
    def recipe(self) -> Recipe:
        return self.model().recipe

    def model(self) -> Loaded:
        if self.current is None:
            raise Refusal(503, "the model is still loading", fix="retry in a few seconds (GET /health says when)",
                          reason="loading")
        return self.current

    def load(self, root: Path, version: str | None, recipe: Recipe) -> Loaded:
        from tuneforge.predict import Predictor

        return Loaded(Predictor.from_run(root, self.settings.device,
                                            trust_run_code=self.settings.trust_run_code), recipe, root, version)

    def swap(self, loaded: Loaded) -> None:
        """One reference assignment: requests that already hold the old model finish on it."""
        previous, self.current = self.current, loaded
        if previous is not None:
            self.served.labels(model=self.name, version=str(previous.version)).set(0)
        self.served.labels(model=self.name, version=str(loaded.version)).set(1)
        for label in loaded.predictor.labels or ["score"]:
            self.predictions.labels(label=label)  # every series exists from the start, at zero

    async def refresh_model(self) -> bool:
        """Load the source's current version if it is not the one served; True when a new one was swapped in."""
        wanted = await asyncio.to_thread(self.source.current)
        if wanted is None or self.current is None or wanted == self.current.version:
            return False
        try:
            # Fetch and load on a worker thread, beside the model thread that keeps answering with the old one.
            root, version = await asyncio.to_thread(self.source.fetch)
            recipe = await asyncio.to_thread(_check_run, root)
            loaded = await asyncio.to_thread(self.load, root, version, recipe)
        except Exception:
            self.reloads.labels(outcome="failed").inc()
            log.exception("could not load version %s of %s; still serving version %s", wanted, self.name,
                          self.current.version)
            return False
        self.swap(loaded)
        self.reloads.labels(outcome="loaded").inc()
        log.info("now serving %s version %s", self.name, loaded.version)
        return True

    async def watch(self) -> None:
        interval = self.settings.reload_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh_model()
            except Exception:  # a registry that is briefly unreachable must not stop the watching
                log.exception("could not check the registry for a new version of %s", self.name)

    async def predict(self, loaded: Loaded, texts: list[str], pairs: list[str] | None) -> list[dict[str, Any]]:
        """Rows for `texts`, scored together with whatever other requests are waiting (see `batch_loop`)."""
        assert self.arrived is not None, "the app has not started; use it inside its lifespan"
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self.queue.append(Queued(loaded, texts, pairs, future))
        self.arrived.set()
        return await future

    async def batch_loop(self) -> None:
        """Dynamic batching, written here because the server's model thread is the only place that knows what is
        waiting: while one forward pass runs, new requests queue up, and the next pass takes all of them (in
        arrival order, same model version and pair shape, up to the batch size). A lone request is never delayed.
        """
        assert self.arrived is not None
        limit = self.settings.batch_size
        while True:
            if not self.queue:
                self.arrived.clear()
                await self.arrived.wait()
                continue
            first = self.queue.popleft()
            group, size = [first], len(first.texts)
            while self.queue:
                item = self.queue[0]
                if item.loaded is not first.loaded or (item.pairs is None) != (first.pairs is None) or \
                        size + len(item.texts) > limit:
                    break
                group.append(self.queue.popleft())
                size += len(item.texts)
            group = [item for item in group if not item.future.done()]  # callers that gave up
            if not group:
                continue
            texts = [text for item in group for text in item.texts]
            pairs = None if first.pairs is None else [pair for item in group for pair in item.pairs or []]
            try:
                rows = await self.on_model_thread(first.loaded.predictor.predict, texts, pairs, limit)
            except Exception as error:  # every waiting request gets the failure, the loop goes on
                for item in group:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            self.batch_texts.observe(len(texts))
            start = 0
            for item in group:
                if not item.future.done():
                    item.future.set_result(rows[start:start + len(item.texts)])
                start += len(item.texts)

    async def on_model_thread(self, function: Callable[..., Result], *args: Any) -> Result:
        assert self.executor is not None, "the app has not started; use it inside its lifespan"
        return await asyncio.get_running_loop().run_in_executor(self.executor, partial(function, *args))

    async def on_store_thread(self, function: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
        assert self.store_executor is not None, "the app has not started; use it inside its lifespan"
        return await asyncio.get_running_loop().run_in_executor(self.store_executor,
                                                                partial(function, *args, **kwargs))

    def check_texts(self, recipe: Recipe, texts: Sequence[str], pairs: Sequence[str] | None,
                    field: str = "texts") -> None:
        """Limits and the pair contract, checked before any work is queued."""
        limit = self.settings.max_batch
        if len(texts) > limit:
            raise Refusal(413, f"{len(texts)} texts in one request; this server takes at most {limit}",
                          fix=f"split them into requests of at most {limit} texts (or restart the server with a "
                              "larger --max-batch)", reason="too_large")
        for name, values in ((field, texts), ("pairs" if field == "texts" else "pair", pairs or [])):
            for index, text in enumerate(values):
                if len(text) > self.settings.max_text_chars:
                    where = f"{name}[{index}]" if field == "texts" else name
                    raise Refusal(413, f"{where} has {len(text)} characters; the limit is "
                                       f"{self.settings.max_text_chars}",
                                  fix="shorten or split it (the model reads only its first "
                                      f"{recipe.train.max_length} tokens anyway), or restart the server with "
                                      "a larger --max-text-chars", reason="too_large")
        pair_column = recipe.data.text_pair_column
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
        loaded = self.current
        root, version, recipe = (loaded.root, loaded.version, loaded.recipe) if loaded else self.pending
        return {
            "status": "ok" if loaded is not None else "loading",
            "run_dir": str(Path(root).resolve()),
            "model": self.name,
            "version": version,
            "alias": self.source.alias,
            "base_model": recipe.model.name,
            "task": recipe.task,
            "labels": getattr(loaded.predictor, "labels", None) if loaded else None,
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "limits": {"max_batch": self.settings.max_batch, "max_text_chars": self.settings.max_text_chars},
            "feedback_store": self.store is not None,
            "tuneforge_version": __version__,
        }

    def guard(self, request: Request) -> JSONResponse | None:
        """The answer to a request that must not reach an endpoint (no token, oversized body), else None."""
        token = self.settings.token
        if token and request.url.path not in OPEN_PATHS and not token_matches(request.headers.get("authorization"),
                                                                                 token):
            request.state.reason = "unauthorized"
            return _problem(401, "missing or wrong bearer token",
                            fix="send the header 'Authorization: Bearer <token>' with the server's token",
                            headers={"WWW-Authenticate": "Bearer"})
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body_bytes:
            request.state.reason = "too_large"
            return _problem(413, f"the request body has {int(length)} bytes, more than any valid request",
                            fix=f"send at most {self.settings.max_batch} texts of at most "
                                f"{self.settings.max_text_chars} characters each")
        return None

    async def store_feedback(self, loaded: Loaded, body: FeedbackRequest) -> dict[str, Any]:
        if self.store is None:
            raise Refusal(503, "this server keeps no feedback store", reason="no_store",
                          fix="restart it with a feedback store (--feedback-url), without --no-store")
        labels = loaded.predictor.labels
        if labels is None:
            raise Refusal(422, f"feedback takes a class label; this is a {loaded.recipe.task} model",
                          fix="send corrections for classification models only", reason="unknown_label")
        if body.label not in labels:
            raise Refusal(422, f"label '{body.label}' is not one of this model's classes: {', '.join(labels)}",
                          fix=f"send one of: {', '.join(labels)}", reason="unknown_label")
        if body.prediction_id is not None:
            record = await self.on_store_thread(self.store.prediction, body.prediction_id)
            if record is None or record.model != self.name:
                raise Refusal(422, f"prediction {body.prediction_id} was not answered by {self.name}",
                              fix="send the id from this server's /predict answer, or the text itself",
                              reason="unknown_prediction")
        if body.text is not None:
            self.check_texts(loaded.recipe, [body.text], None if body.pair is None else [body.pair], field="text")
        stored = await self.on_store_thread(self.store.add_feedback, self.name, body.label,
                                            prediction_id=body.prediction_id, text=body.text, pair=body.pair,
                                            source=f"serve:{loaded.version or 'run'}")
        self.feedback.labels(label=body.label).inc()
        return {"id": stored.id, "model": self.name, "version": loaded.version, "label": body.label,
                "prediction_id": body.prediction_id}


def _check_run(root: Path) -> Recipe:
    """Fail before the server starts (or before a new version replaces the served one), with a fix."""
    recipe = read_run_recipe(root)
    if recipe.task not in SERVED_TASKS:
        raise TuneforgeError(f"serving supports {', '.join(SERVED_TASKS)} runs; '{root}' is a {recipe.task} run",
                             fix="use `tuneforge predict` for this run")
    if not RunLayout(root).is_finished():
        raise TuneforgeError(f"run '{root}' has not finished training (no model or no metrics.json)",
                             fix=f"finish it first: `tuneforge train --resume --output {root}`")
    return recipe


def create_app(source: str | Path | ModelSource, settings: ServeSettings | None = None, store: Any = None
               ) -> FastAPI:
    """The service for a run directory or a registered model (`RegistrySource`); the model loads when the app
    starts (uvicorn, or `with TestClient(app)`). `store` (a `FeedbackStore`) enables prediction logging and
    /feedback."""
    settings = settings or ServeSettings()
    check_exposure(settings)
    if isinstance(source, (str, Path)):
        source = RunDirSource(Path(source))
    root, version = source.fetch()
    service = Service(source, root, version, _check_run(root), settings, store)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tuneforge-model")
        service.store_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tuneforge-store")
        watcher = None
        service.arrived = asyncio.Event()
        batcher = asyncio.create_task(service.batch_loop())
        try:
            if settings.threads:
                import torch

                torch.set_num_threads(settings.threads)
            assert service.pending is not None
            service.swap(await service.on_model_thread(service.load, *service.pending))
            service.started = time.monotonic()
            if source.alias is not None and settings.reload_interval > 0:
                watcher = asyncio.create_task(service.watch())
            yield
        finally:
            for task in (watcher, batcher):
                if task is not None:
                    task.cancel()
                    with suppress(asyncio.CancelledError):
                        await task
            service.current = None
            service.executor.shutdown(wait=True)
            service.store_executor.shutdown(wait=True)

    app = FastAPI(title=f"tuneforge: {service.name}", version=__version__, lifespan=lifespan,
                  description=f"Predictions, explanations and feedback for the {service.pending[2].task} model "
                              f"'{service.name}'.")
    app.state.service = service
    errors = {413: {"model": ErrorBody}, 422: {"model": ErrorBody}}
    if service.pending[2].features.enabled:  # typed feature columns: /predict and /explain take rows
        from tuneforge.lifecycle.multimodal_serve import add_multimodal_routes

        add_multimodal_routes(app, service, settings, errors)  # registered first, so they answer those paths

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
            if 400 <= status < 500:
                reason = getattr(request.state, "reason", None) or ("not_found" if status in (404, 405) else
                                                                     "refused")
                service.rejected.labels(endpoint=endpoint, reason=reason).inc()

    @app.exception_handler(Refusal)
    async def refused(request: Request, refusal: Refusal) -> JSONResponse:
        request.state.reason = refusal.reason
        return _problem(refusal.status, refusal.error, refusal.fix)

    @app.exception_handler(TuneforgeError)
    async def user_error(request: Request, error: TuneforgeError) -> JSONResponse:
        request.state.reason = "refused"
        return _problem(422, error.message, error.fix)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        request.state.reason = "schema"
        detail = [{"loc": [str(part) for part in item.get("loc", ())], "msg": item.get("msg", ""),
                   "type": item.get("type", "")} for item in error.errors()]
        issues = "; ".join(f"{'.'.join(p for p in item['loc'] if p != 'body') or 'body'}: {item['msg']}"
                           for item in detail[:5])
        example = EXAMPLES.get(request.url.path)
        fix = f"send JSON like {example}" if example else "send JSON that fits the schema"
        return _problem(422, f"the request does not fit the schema: {issues}",
                        fix=f"{fix}; the full schema is at /openapi.json", detail=detail)

    if service.pending[2].task in GENERATIVE_TASKS:  # OpenAI's chat and text completions answer instead of /predict
        from tuneforge.lifecycle.openai_api import add_openai_routes  # it builds on this module's Service

        add_openai_routes(app, service, settings)

    @app.post("/predict", response_model=PredictResponse, response_model_exclude_none=True, responses=errors)
    async def predict(body: PredictRequest) -> dict[str, Any]:
        """Labels with probabilities (classification) or scores (regression), in the order of `texts`; each
        logged prediction carries its `id` for /feedback."""
        loaded = service.model()  # this request's version, whatever is promoted meanwhile
        service.check_texts(loaded.recipe, body.texts, body.pairs)
        rows = await service.predict(loaded, body.texts, body.pairs)
        if service.store is not None and settings.log_predictions:
            ids = await service.on_store_thread(service.store.log_predictions, service.name, loaded.version,
                                                body.texts, rows, body.pairs)
            rows = [{**row, "id": identifier} for row, identifier in zip(rows, ids, strict=True)]
        for row in rows:
            service.predictions.labels(label=row.get("label", "score")).inc()
        return {"model": service.name, "version": loaded.version, "predictions": rows}

    @app.post("/feedback", response_model=FeedbackResponse, status_code=201, responses=errors)
    async def feedback(body: FeedbackRequest) -> dict[str, Any]:
        """Store a corrected label for a prediction (`prediction_id`) or a text; answered once it is on disk.
        Accepted corrections join the next `tuneforge refresh` training set."""
        return await service.store_feedback(service.model(), body)

    @app.post("/explain", response_model=ExplainResponse, response_model_exclude_none=True, responses=errors)
    async def explain(body: ExplainRequest) -> dict[str, Any]:
        """Token attributions for one text: how much each token pushed the model towards the explained class."""
        from tuneforge.explain.pipeline import ExplainSettings, explain_texts

        loaded = service.model()
        if loaded.recipe.task != "classification":
            raise Refusal(422, f"token attributions explain class probabilities; this is a {loaded.recipe.task} "
                               "run", fix="use POST /predict for its scores")
        service.check_texts(loaded.recipe, [body.text], None if body.pair is None else [body.pair], field="text")
        methods = tuple(dict.fromkeys(body.methods))
        explain_settings = ExplainSettings(methods=methods, label=body.label, ig_steps=settings.ig_steps,
                                           shap_evals=settings.shap_evals, lime_samples=settings.lime_samples)
        pairs = None if body.pair is None else [body.pair]
        [result] = await service.on_model_thread(explain_texts, loaded.predictor, [body.text], explain_settings,
                                                 pairs)
        return {"model": service.name, "version": loaded.version, "text": result.text,
                "prediction": result.prediction,
                "explanations": {method: attribution.to_dict() for method, attribution in result.attributions.items()}}

    @app.get("/health", response_model=Health)
    async def health() -> dict[str, Any]:
        """Liveness and what is served (model name and version); open without a token."""
        return service.health()

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."}})
    async def metrics() -> Response:
        """Request counts (refused ones by reason), latencies, predictions per label, feedback and reloads."""
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    known_paths = {getattr(route, "path", "") for route in app.routes}
    return app
