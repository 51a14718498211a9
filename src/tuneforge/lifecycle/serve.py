"""An HTTP service over a model: `create_app(source, settings)` builds the FastAPI app that `tuneforge serve`
hands to uvicorn. The source is a run directory, or a registered model (`NAME@champion`) whose alias the server
watches: a promoted version is loaded beside the one serving, then swapped in by replacing one reference, so no
request fails and none is answered by a half-loaded model (each request keeps the version it started with).

Every forward pass runs on one dedicated thread: the event loop stays free to answer /health and /metrics while
a batch is scored, and torch never runs two batches at once on a machine with few cores (which would make both
slower than running them in turn). Explanations cost hundreds of forward passes, so they run on a thread and a
copy of the model of their own, a few at a time (a busy server answers 429 with Retry-After): predictions keep
flowing while one is computed. Writes to the feedback store run on a thread of their own and commit before the
answer leaves, so an acknowledged prediction or correction survives the process being killed.

Failures stay with the request that caused them: every text is checked at the schema (valid Unicode), bodies are
counted as they stream in (a chunked upload has no Content-Length to check), and when a batched forward pass
fails its requests are retried one at a time, so one bad request never fails the others batched with it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from tuneforge import __version__
from tuneforge.errors import TuneforgeError
from tuneforge.kinds import KINDS, MULTIMODAL
from tuneforge.lifecycle.settings import ServeSettings, check_exposure, token_matches
from tuneforge.recipe import Recipe
from tuneforge.run import RunLayout, read_kind, read_run_recipe

OPEN_PATHS = ("/health",)  # load balancers probe it without credentials
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
EXAMPLES = {
    "/predict": '{"texts": ["first text", "second text"]}',
    "/explain": '{"text": "one text", "methods": ["ig"]}',
    "/feedback": '{"prediction_id": 12, "label": "positive"} or {"text": "a text", "label": "positive"}',
}
# The widest integer a SQL id column holds; a larger prediction_id cannot name a stored prediction.
MAX_ID = 2**63 - 1
Result = TypeVar("Result")
log = logging.getLogger("tuneforge.serve")


def _unicode_text(text: str) -> str:
    """JSON can carry a lone surrogate ("\\ud800"), which is no text: refuse it at the schema, with the field
    named, rather than let the tokenizer fail on it inside a batch shared with other requests."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"is not valid Unicode text: a lone surrogate at character {error.start} (send UTF-8 "
                         "text; in JSON, \\uD800-\\uDFFF escapes must come in high-low pairs)") from None
    return text


Text = Annotated[str, AfterValidator(_unicode_text)]
# The length check stays on the string itself, so its message stays pydantic's own "String should have ...".
NonEmptyText = Annotated[str, Field(min_length=1), AfterValidator(_unicode_text)]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[Text] = Field(..., min_length=1, description="Texts to score (at most the server's max batch).")
    pairs: list[Text] | None = Field(None, description="The second text of each pair, one per text; only for runs "
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

    text: Text = Field(..., description="The text to explain.")
    methods: list[Literal["ig", "shap", "lime", "attention"]] = Field(
        default_factory=lambda: ["ig"], min_length=1, max_length=4,
        description="Attribution methods: ig (Integrated Gradients), shap, lime, attention (rollout).")
    label: Text | None = Field(None, description="Explain this class instead of the predicted one.")
    pair: Text | None = Field(None, description="The second text, for runs trained on text pairs.")


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

    label: NonEmptyText = Field(..., description="The correct class.")
    prediction_id: int | None = Field(None, ge=1, le=MAX_ID,
                                      description="The `id` of a prediction this server answered.")
    text: NonEmptyText | None = Field(None, description="The text, when correcting no logged prediction.")
    pair: Text | None = Field(None, description="The second text, with `text`, for runs trained on text pairs.")

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
    run_dir: str | None = Field(None, description="The served run folder; only for callers the server would answer "
                                                  "on its other endpoints (never for a request without its token).")
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

    def __init__(self, status: int, error: str, fix: str = "", reason: str = "refused",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.fix, self.reason = status, error, fix, reason
        self.headers = headers


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
        self.explain_executor: ThreadPoolExecutor | None = None
        self.explaining = 0  # explanations running or waiting for an explain thread
        self.explain_seconds = 1.0  # how long the last one took: the Retry-After a busy server answers
        self.explainer: tuple[Loaded, Any] | None = None  # the explain threads' own copy of the served model
        self.explainer_lock = threading.Lock()
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
            except Exception as error:
                # Which request broke the pass is unknown: each is scored alone, so only that one fails.
                if len(group) > 1:
                    await self.predict_one_by_one(group, limit)
                elif not first.future.done():
                    first.future.set_exception(error)
                continue
            self.batch_texts.observe(len(texts))
            start = 0
            for item in group:
                if not item.future.done():
                    item.future.set_result(rows[start:start + len(item.texts)])
                start += len(item.texts)

    async def predict_one_by_one(self, group: list[Queued], limit: int) -> None:
        """Answer each request of a failed batch on its own: the innocent ones get their rows, the bad one its
        error."""
        for item in group:
            if item.future.done():
                continue
            try:
                rows = await self.on_model_thread(item.loaded.predictor.predict, item.texts, item.pairs, limit)
            except Exception as error:
                log.warning("a /predict request failed on its own: %s: %s", type(error).__name__, error)
                if not item.future.done():
                    item.future.set_exception(error)
                continue
            self.batch_texts.observe(len(item.texts))
            if not item.future.done():
                item.future.set_result(rows)

    async def explain(self, loaded: Loaded, work: Callable[[Any], Result]) -> Result:
        """Run `work(predictor)` on an explain thread with the explain copy of `loaded`; refused with 429 and
        Retry-After when every explain thread is taken, so explanations never queue without bound."""
        assert self.explain_executor is not None, "the app has not started; use it inside its lifespan"
        if self.explaining >= self.settings.explain_workers:
            wait = max(1, math.ceil(self.explain_seconds))
            raise Refusal(429, f"the server is computing {self.explaining} explanation(s), as many as it runs at "
                               "once", fix=f"retry in {wait} s (Retry-After), or restart the server with more "
                                       "--explain-workers", reason="busy", headers={"Retry-After": str(wait)})
        self.explaining += 1
        start = time.perf_counter()

        def run() -> Result:
            return work(self.explain_predictor(loaded))

        try:
            return await asyncio.get_running_loop().run_in_executor(self.explain_executor, run)
        finally:
            self.explaining -= 1
            self.explain_seconds = time.perf_counter() - start

    def explain_predictor(self, loaded: Loaded) -> Any:
        """A second copy of the served model for explanations, loaded on the first /explain of each version:
        attribution methods hook into the model's layers, which must never touch a prediction running beside."""
        with self.explainer_lock:
            if self.explainer is None or self.explainer[0] is not loaded:
                self.explainer = None  # the previous version's copy goes before the next one loads
                self.explainer = (loaded, self.load(loaded.root, loaded.version, loaded.recipe).predictor)
            return self.explainer[1]

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

    def health(self, authorized: bool) -> dict[str, Any]:
        """What is served; the run folder only for an `authorized` caller, since /health answers anyone."""
        loaded = self.current
        root, version, recipe = (loaded.root, loaded.version, loaded.recipe) if loaded else self.pending
        return {
            "status": "ok" if loaded is not None else "loading",
            "run_dir": str(Path(root).resolve()) if authorized else None,
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

    def authorized(self, request: Request) -> bool:
        """Whether the request may use every endpoint: the server wants no token, or it carries the token."""
        token = self.settings.token
        return not token or token_matches(request.headers.get("authorization"), token)

    def body_too_large(self, size: int, counted: bool = False) -> JSONResponse:
        what = f"more than {self.max_body_bytes} bytes" if counted else f"{size} bytes"
        return _problem(413, f"the request body has {what}, more than any valid request",
                        fix=f"send at most {self.settings.max_batch} texts of at most "
                            f"{self.settings.max_text_chars} characters each")

    def guard(self, request: Request) -> JSONResponse | None:
        """The answer to a request that must not reach an endpoint (no token, oversized body), else None."""
        if request.url.path not in OPEN_PATHS and not self.authorized(request):
            request.state.reason = "unauthorized"
            return _problem(401, "missing or wrong bearer token",
                            fix="send the header 'Authorization: Bearer <token>' with the server's token",
                            headers={"WWW-Authenticate": "Bearer"})
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body_bytes:
            request.state.reason = "too_large"
            return self.body_too_large(int(length))
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


class BodyLimit:
    """Reads a request body as it streams in and answers 413 once it passes the largest valid request, before
    anything parses it: a chunked upload carries no Content-Length for the guard to check."""

    def __init__(self, app: Any, service: Service) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, chunks, size = self.service.max_body_bytes, [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: the app sees that first
                waiting = [message]
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                scope.setdefault("state", {})["reason"] = "too_large"
                await self.service.body_too_large(size, counted=True)(scope, receive, send)
                return
            if not message.get("more_body", False):
                waiting = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
                break

        async def replay() -> dict[str, Any]:
            return waiting.pop() if waiting else await receive()

        await self.app(scope, replay, send)


def _check_run(root: Path) -> Recipe:
    """Fail before the server starts (or before a new version replaces the served one), with a fix."""
    recipe = read_run_recipe(root)
    kind = read_kind(root, recipe)
    if not kind.serve_routes:  # the run kind declares what it serves (kinds.py)
        served = ", ".join(name for name, other in KINDS.items() if other.serve_routes)
        raise TuneforgeError(f"{kind.name} runs ({kind.summary}) are not served; '{root}' is one; served kinds: "
                             f"{served}", fix="use `tuneforge predict` or `tuneforge evaluate` for this run")
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
        service.explain_executor = ThreadPoolExecutor(max_workers=settings.explain_workers,
                                                      thread_name_prefix="tuneforge-explain")
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
            service.current = service.explainer = None
            service.executor.shutdown(wait=True)
            service.store_executor.shutdown(wait=True)
            service.explain_executor.shutdown(wait=True)

    app = FastAPI(title=f"tuneforge: {service.name}", version=__version__, lifespan=lifespan,
                  description=f"Predictions, explanations and feedback for the {service.pending[2].task} model "
                              f"'{service.name}'.")
    app.state.service = service
    errors = {413: {"model": ErrorBody}, 422: {"model": ErrorBody}}
    # Counted bytes, for bodies without a Content-Length (chunked): added first, so the guard below wraps it.
    app.add_middleware(BodyLimit, service=service)
    kind = read_kind(service.pending[0], service.pending[2])
    if kind.name == MULTIMODAL:  # typed feature columns: /predict and /explain take rows
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
        return _problem(refusal.status, refusal.error, refusal.fix, headers=refusal.headers)

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

    if "v1" in kind.serve_routes:  # OpenAI's chat and text completions answer instead of /predict
        from tuneforge.lifecycle.openai_api import add_openai_routes  # torch, through the generative predictor

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

    @app.post("/explain", response_model=ExplainResponse, response_model_exclude_none=True,
              responses={**errors, 429: {"model": ErrorBody, "description": "Every explain thread is busy; "
                                         "retry after the Retry-After header's seconds."}})
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
        [result] = await service.explain(loaded, lambda predictor: explain_texts(predictor, [body.text],
                                                                                  explain_settings, pairs))
        return {"model": service.name, "version": loaded.version, "text": result.text,
                "prediction": result.prediction,
                "explanations": {method: attribution.to_dict() for method, attribution in result.attributions.items()}}

    @app.get("/health", response_model=Health)
    async def health(request: Request) -> dict[str, Any]:
        """Liveness and what is served (model name and version); open without a token, and then without the
        run folder's path."""
        return service.health(service.authorized(request))

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."}})
    async def metrics() -> Response:
        """Request counts (refused ones by reason), latencies, predictions per label, feedback and reloads."""
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    known_paths = {getattr(route, "path", "") for route in app.routes}
    return app
