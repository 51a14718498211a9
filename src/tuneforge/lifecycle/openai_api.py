"""OpenAI's API over a served generative run (causal-lm or seq2seq): POST /v1/chat/completions and /v1/completions,
streamed as server-sent events when asked, and GET /v1/models, so the official `openai` client, LangChain and
the other tools written against OpenAI work with a fine-tuned model by changing the base URL.

`create_app` adds these routes to the service it builds for a generative run, so they sit behind the same bearer
token, body limits, request counts and /metrics as the classifier endpoints, and run on the same model thread.

Generation is batched dynamically: while one `generate` call runs, new requests queue, and the next call takes
every waiting row with the same sampling settings (a lone request is never delayed). Inside a call each row stops
on its own (end of sequence, its stop strings, its max_tokens, or its client going away), and its text is sent as
it is decoded. Beam search (generation.num_beams) is not used here: a token is streamed once chosen.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

# The one import of the generative predictor's helpers: prompts are encoded the way training and `tuneforge
# predict` encode them.
from tuneforge.predict.generative import encode_input, is_chat_run
from tuneforge.tasks import causal_lm

log = logging.getLogger("tuneforge.serve")
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
CLASSIFIER_PATHS = ("/predict", "/explain", "/feedback")
STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
                429: "rate_limit_error", 500: "server_error", 503: "server_error"}


def prompt_ids(recipe: Any, tokenizer: Any, value: str | list[dict[str, str]], raw: bool = False) -> list[int]:
    """Token ids to generate from: a chat rendered with the run's template (and system prompt), or a text as the
    run's prompts were built; `raw` continues a text as written (a completion on a chat run)."""
    if raw and isinstance(value, str) and is_chat_run(recipe):
        return causal_lm.prompt_ids(tokenizer, value)
    return encode_input(recipe, tokenizer, value)


def chats_allowed(recipe: Any, tokenizer: Any) -> bool:
    """Chat completions need a decoder that reads chats: a chat run, or a prompt/response run whose tokenizer
    has a chat template."""
    if recipe.task != "causal-lm" or recipe.lm.classify:
        return False
    return is_chat_run(recipe) or bool(getattr(tokenizer, "chat_template", None))


# ------------------------------------------------------------------------------------------------------
# Requests (OpenAI's fields; the ones this server cannot honour are refused by name)
# ------------------------------------------------------------------------------------------------------

class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class Sampling(BaseModel):
    """What both endpoints share."""

    model_config = ConfigDict(extra="forbid")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, description="Not in OpenAI's API (vLLM's name): sample among the k "
                                                      "likeliest tokens.")
    repetition_penalty: float | None = Field(None, gt=0, description="Not in OpenAI's API (vLLM's name).")
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: bool | int | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class ChatRequest(Sampling):
    messages: list[Message] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: dict[str, Any] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None


class CompletionRequest(Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None


class ApiError(Exception):
    """A request refused in OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 reason: str = "refused") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.reason = status, message, param, code, reason


def _error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": STATUS_TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def _parse(kind: type[BaseModel], raw: bytes) -> Any:
    """The body as `kind`, or a 400 naming the first fields that are wrong (OpenAI answers 400, not 422)."""
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(400, f"the body is not JSON: {error}", code="invalid_json", reason="schema") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", reason="schema")
    try:
        return kind.model_validate(body)
    except ValidationError as error:
        problems = error.errors()
        first = ".".join(str(part) for part in problems[0]["loc"])
        text = "; ".join(f"{'.'.join(str(p) for p in item['loc']) or 'body'}: "
                         + ("unrecognized request argument" if item["type"] == "extra_forbidden" else item["msg"])
                         for item in problems[:5])
        raise ApiError(400, f"invalid request: {text}", param=first or None, reason="schema") from None


def _refuse_unsupported(body: Sampling) -> None:
    """OpenAI features this server has no way to honour: refused, never silently ignored."""
    checks = [("logprobs", bool(body.logprobs), "log probabilities are not returned by this server"),
              ("logit_bias", bool(body.logit_bias), "logit_bias is not supported"),
              ("presence_penalty", body.presence_penalty != 0, "presence_penalty is not supported; send "
                                                               "repetition_penalty (above 1 discourages repeats)"),
              ("frequency_penalty", body.frequency_penalty != 0, "frequency_penalty is not supported; send "
                                                                 "repetition_penalty (above 1 discourages repeats)")]
    if isinstance(body, ChatRequest):
        checks += [("tools", bool(body.tools) or body.tool_choice not in (None, "none"),
                    "tool calls are not supported by this model"),
                   ("response_format", (body.response_format or {}).get("type", "text") != "text",
                    "only response_format {\"type\": \"text\"} is supported")]
    if isinstance(body, CompletionRequest):
        checks += [("echo", body.echo, "echo is not supported"), ("suffix", body.suffix is not None,
                                                                   "suffix (insertion) is not supported"),
                   ("best_of", (body.best_of or 1) > 1, "best_of is not supported; send n for several choices")]
    for param, refused, message in checks:
        if refused:
            raise ApiError(400, message, param=param, code="unsupported_parameter")


# ------------------------------------------------------------------------------------------------------
# Rows being generated, and the batching generator
# ------------------------------------------------------------------------------------------------------

@dataclass
class Row:
    """One choice being generated: its prompt, where its text goes and when it stops."""

    prompt: list[int]
    max_tokens: int
    stop: list[str]
    index: int
    emit: Callable[[int, str, Any], None]  # (choice index, kind, value), called on the model thread
    strip_leading: bool = False
    tokens: list[int] = field(default_factory=list)
    sent: str = ""
    done: bool = False
    cancelled: bool = False

    def finish(self, reason: str) -> None:
        if not self.done:
            self.done = True
            self.emit(self.index, "end", (reason, len(self.tokens)))

    def add(self, token: int, tokenizer: Any, eos: set[int]) -> None:
        """Take the next token: send the text it completes, or finish on EOS, a stop string or max_tokens."""
        if self.done:
            return
        if self.cancelled:
            self.finish("cancelled")
            return
        if token in eos:
            self.finish("stop")
            return
        self.tokens.append(token)
        text = tokenizer.decode(self.tokens, skip_special_tokens=True)
        if self.strip_leading:
            text = text.lstrip()
        if text.endswith("\ufffd") and len(self.tokens) < self.max_tokens:
            return  # a character split across tokens: wait for the rest of its bytes
        hits = [text.find(stop) for stop in self.stop if stop and stop in text]
        if hits:
            self._send(text[:min(hits)])
            self.finish("stop")
            return
        if len(self.tokens) >= self.max_tokens:
            self._send(text)
            self.finish("length")
            return
        held = max((k for stop in self.stop for k in range(len(stop), 0, -1) if text.endswith(stop[:k])),
                   default=0)  # the start of a stop string that may still complete
        self._send(text[:len(text) - held])

    def _send(self, text: str) -> None:
        if len(text) > len(self.sent) and text.startswith(self.sent):
            self.emit(self.index, "text", text[len(self.sent):])
            self.sent = text


@dataclass
class Job:
    """A batch's unit: rows that share a version of the model and sampling settings."""

    loaded: Any
    settings: tuple[tuple[str, Any], ...]
    seed: int | None
    rows: list[Row]


class _RowsStop:
    """A stopping criterion that is the rows' bookkeeping: generate calls it with every new token, each row
    takes its own and reports whether it is done, so rows stop independently within one batch."""

    def __init__(self, rows: list[Row], tokenizer: Any, eos: set[int]) -> None:
        self.rows, self.tokenizer, self.eos = rows, tokenizer, eos

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        last = input_ids[:, -1].tolist()
        for row, token in zip(self.rows, last, strict=True):
            row.add(token, self.tokenizer, self.eos)
        return torch.tensor([row.done for row in self.rows], dtype=torch.bool, device=input_ids.device)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {int(value) for value in ids if value is not None}


def generate_rows(loaded: Any, rows: list[Row], settings: dict[str, Any], seed: int | None) -> None:
    """One batched `generate` call for `rows` (on the model thread); every row ends with an "end" event."""
    import torch
    from transformers import StoppingCriteriaList

    from tuneforge.tasks.generation import generation_kwargs

    predictor = loaded.predictor
    model, tokenizer, device = predictor.model, predictor.tokenizer, predictor.device
    decoder_only = loaded.recipe.task == "causal-lm"
    eos = _eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
    width = max(len(row.prompt) for row in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for position, row in enumerate(rows):
        span = slice(width - len(row.prompt), width) if decoder_only else slice(0, len(row.prompt))
        ids[position, span] = torch.tensor(row.prompt)
        mask[position, span] = 1
    spec = loaded.recipe.generation.model_copy(update={"num_beams": 1})
    kwargs = generation_kwargs(spec, tokenizer, **settings)
    kwargs.update(max_new_tokens=max(row.max_tokens for row in rows), eos_token_id=sorted(eos), pad_token_id=pad,
                  stopping_criteria=StoppingCriteriaList([_RowsStop(rows, tokenizer, eos)]))
    if seed is not None:
        torch.manual_seed(seed)
    try:
        with torch.inference_mode():
            model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
    except Exception as error:
        for row in rows:
            if not row.done:
                row.done = True
                row.emit(row.index, "error", error)
        raise
    for row in rows:
        row.finish("length")  # stopped by the call's own max_new_tokens


class Generator:
    """Dynamic batching of generate calls on the service's model thread (see the module's docstring)."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.queue: deque[Job] = deque()
        self.runner: asyncio.Task[None] | None = None
        registry = service.registry
        self.tokens = Counter("tuneforge_generated_tokens", "Tokens generated, by endpoint.", ["endpoint"],
                              registry=registry)
        self.prompt_tokens = Counter("tuneforge_prompt_tokens", "Prompt tokens read, by endpoint.", ["endpoint"],
                                     registry=registry)
        self.first_token = Histogram("tuneforge_time_to_first_token_seconds", "From request to its first text.",
                                     buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                     registry=registry)

    def submit(self, job: Job) -> None:
        self.queue.append(job)
        if self.runner is None or self.runner.done():
            self.runner = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        limit = self.service.settings.batch_size
        while self.queue:
            first = self.queue.popleft()
            group = [first]
            size = len(first.rows)
            for job in list(self.queue):  # compatible jobs join, in arrival order, up to the batch size
                if job.loaded is first.loaded and job.settings == first.settings and job.seed == first.seed and \
                        size + len(job.rows) <= limit:
                    self.queue.remove(job)
                    group.append(job)
                    size += len(job.rows)
            rows = [row for job in group for row in job.rows if not row.cancelled]
            for job in group:
                for row in job.rows:
                    if row.cancelled:
                        row.finish("cancelled")
            if not rows:
                continue
            self.service.batch_texts.observe(len(rows))
            try:
                await self.service.on_model_thread(generate_rows, first.loaded, rows, dict(first.settings),
                                                   first.seed)
            except Exception:  # the rows got the error; the next batch still runs
                log.exception("a generate call failed for %d row(s)", len(rows))


# ------------------------------------------------------------------------------------------------------
# The endpoints
# ------------------------------------------------------------------------------------------------------

@dataclass
class Prepared:
    """A validated request, ready to queue: prompts (one per choice group) and the sampling settings."""

    prompts: list[list[int]]
    max_tokens: int
    settings: dict[str, Any]
    stop: list[str]


class OpenAIRoutes:
    def __init__(self, service: Any, settings: Any) -> None:
        self.service, self.settings = service, settings
        self.generator = Generator(service)
        self.created = int(time.time())

    # -- checks -------------------------------------------------------------------------------------------

    def loaded(self, body: Sampling) -> Any:
        loaded = self.service.model()
        if body.model != self.service.name:
            raise ApiError(404, f"the model '{body.model}' does not exist on this server; it serves "
                                f"'{self.service.name}' (GET /v1/models)", param="model", code="model_not_found",
                           reason="unknown_model")
        return loaded

    def check_length(self, text: str, param: str) -> None:
        limit = self.settings.max_text_chars
        if len(text) > limit:
            raise ApiError(413, f"{param} has {len(text)} characters; this server takes at most {limit}",
                           param=param, code="string_too_long", reason="too_large")

    def prepare(self, loaded: Any, body: Sampling, prompts: list[list[int]], max_tokens: int | None) -> Prepared:
        recipe, model = loaded.recipe, loaded.predictor.model
        if body.n * len(prompts) > self.settings.max_batch:
            raise ApiError(400, f"{body.n * len(prompts)} choices in one request; this server makes at most "
                                f"{self.settings.max_batch}", param="n", reason="too_large")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        if len(stop) > 4:
            raise ApiError(400, "at most 4 stop sequences", param="stop")
        context = None if recipe.task == "seq2seq" else getattr(model.config, "max_position_embeddings", None) \
            or getattr(model.config, "n_positions", None)
        wanted = max_tokens or recipe.generation.max_new_tokens
        longest = max(len(ids) for ids in prompts)
        if context is not None:
            if longest + (max_tokens or 1) > context:
                raise ApiError(400, f"this model's context is {context} tokens; the prompt has {longest} and "
                                    f"{max_tokens or 1} more were asked for", param="messages"
                               if isinstance(body, ChatRequest) else "prompt", code="context_length_exceeded")
            wanted = min(wanted, context - longest)
        generation = recipe.generation
        temperature = body.temperature if body.temperature is not None else (
            generation.temperature if generation.do_sample else 0.0)
        settings: dict[str, Any] = {"do_sample": temperature > 0}
        if temperature > 0:
            settings.update(temperature=temperature, top_p=body.top_p or generation.top_p,
                            top_k=generation.top_k if body.top_k is None else body.top_k)
        if body.repetition_penalty is not None:
            settings["repetition_penalty"] = body.repetition_penalty
        return Prepared(prompts, wanted, settings, stop)

    # -- running ------------------------------------------------------------------------------------------

    def start(self, loaded: Any, body: Sampling, prepared: Prepared, chat: bool
              ) -> tuple[asyncio.Queue[tuple[int, str, Any]], list[Row]]:
        """Queue one row per (prompt, choice); their events arrive on the returned queue."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[int, str, Any]] = asyncio.Queue()

        def emit(index: int, kind: str, value: Any) -> None:  # from the model thread
            loop.call_soon_threadsafe(events.put_nowait, (index, kind, value))

        rows = [Row(ids, prepared.max_tokens, prepared.stop, index=position * body.n + choice, emit=emit,
                    strip_leading=chat)
                for position, ids in enumerate(prepared.prompts) for choice in range(body.n)]
        self.generator.submit(Job(loaded, tuple(sorted(prepared.settings.items())), body.seed, rows))
        return events, rows

    async def collect(self, events: asyncio.Queue[tuple[int, str, Any]], count: int
                      ) -> list[tuple[str, str, int]]:
        """(text, finish reason, tokens) per row, once all have ended."""
        texts = [""] * count
        ends: list[tuple[str, int] | None] = [None] * count
        while any(end is None for end in ends):
            index, kind, value = await events.get()
            if kind == "text":
                texts[index] += value
            elif kind == "end":
                ends[index] = value
            else:
                raise ApiError(500, f"generation failed: {type(value).__name__}: {value}", code="generation_failed",
                               reason="failed")
        return [(texts[i], *ends[i]) for i in range(count)]  # type: ignore[misc]

    def finished(self, endpoint: str, started: float, prompt_tokens: int, completion_tokens: int,
                 reasons: list[str]) -> dict[str, int]:
        """The request log line and token counters; returns OpenAI's usage object."""
        self.generator.prompt_tokens.labels(endpoint=endpoint).inc(prompt_tokens)
        self.generator.tokens.labels(endpoint=endpoint).inc(completion_tokens)
        log.info("%s %s: %d prompt + %d generated tokens in %.2f s (%s)", endpoint, self.service.name,
                 prompt_tokens, completion_tokens, time.perf_counter() - started, ", ".join(reasons))
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}

    def stream(self, endpoint: str, events: asyncio.Queue[tuple[int, str, Any]], rows: list[Row],
               chunk: Callable[[int, str | None, str | None], dict[str, Any]], prompt_tokens: int,
               include_usage: bool, started: float, base: dict[str, Any]) -> StreamingResponse:
        """Server-sent events in OpenAI's chunk format, then `data: [DONE]`; a client that goes away cancels its
        rows, which then stop at their next token."""

        async def events_out() -> AsyncIterator[str]:
            ended: dict[int, tuple[str, int]] = {}
            first = True
            try:
                if endpoint == "/v1/chat/completions":
                    for row in rows:
                        yield _sse({**base, "choices": [chunk(row.index, "", None) | {"delta": {
                            "role": "assistant", "content": ""}}]})
                while len(ended) < len(rows):
                    index, kind, value = await events.get()
                    if kind == "text":
                        if first:
                            self.generator.first_token.observe(time.perf_counter() - started)
                            first = False
                        yield _sse({**base, "choices": [chunk(index, value, None)]})
                    elif kind == "end":
                        ended[index] = value
                        yield _sse({**base, "choices": [chunk(index, None, value[0])]})
                    else:
                        log.error("generation failed mid-stream: %s", value)
                        yield _sse(_error_body(500, f"generation failed: {value}"))
                        return
                usage = self.finished(endpoint, started, prompt_tokens, sum(n for _, n in ended.values()),
                                      [reason for reason, _ in ended.values()])
                if include_usage:
                    yield _sse({**base, "choices": [], "usage": usage})
                yield "data: [DONE]\n\n"
            finally:
                for row in rows:
                    row.cancelled = True  # no-op for finished rows; a disconnected client stops the rest

        return StreamingResponse(events_out(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def chat(self, request: Request) -> Response:
        started = time.perf_counter()
        body: ChatRequest = _parse(ChatRequest, await request.body())
        _refuse_unsupported(body)
        loaded = self.loaded(body)
        recipe, tokenizer = loaded.recipe, loaded.predictor.tokenizer
        if not chats_allowed(recipe, tokenizer):
            raise ApiError(400, f"this {recipe.task} run was not trained on chats and its tokenizer has no chat "
                                "template", param="messages", code="chat_not_supported",
                           reason="refused")
        messages = [{"role": ROLES[m.role], "content": m.text()} for m in body.messages]
        for position, message in enumerate(messages):
            self.check_length(message["content"], f"messages.{position}.content")
        if messages[-1]["role"] == "assistant":
            raise ApiError(400, "the last message is the assistant's; the model answers after a user message",
                           param="messages")
        try:
            ids = prompt_ids(recipe, tokenizer, messages)
        except Exception as error:  # a template that refuses this conversation (e.g. roles out of order)
            raise ApiError(400, f"the chat template could not render these messages: {error}",
                           param="messages") from None
        prepared = self.prepare(loaded, body, [ids], body.max_completion_tokens or body.max_tokens)
        events, rows = self.start(loaded, body, prepared, chat=True)
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": self.service.name,
                "system_fingerprint": loaded.version}
        if body.stream:
            def chunk(index: int, text: str | None, reason: str | None) -> dict[str, Any]:
                return {"index": index, "delta": {} if text is None else {"content": text}, "logprobs": None,
                        "finish_reason": reason}

            include = bool(body.stream_options and body.stream_options.include_usage)
            return self.stream("/v1/chat/completions", events, rows, chunk, len(ids), include, started,
                               {**base, "object": "chat.completion.chunk"})
        results = await self.collect(events, len(rows))
        usage = self.finished("/v1/chat/completions", started, len(ids), sum(n for *_, n in results),
                              [reason for _, reason, _ in results])
        return JSONResponse({**base, "object": "chat.completion", "usage": usage, "choices": [
            {"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None,
             "finish_reason": reason} for i, (text, reason, _) in enumerate(results)]})

    async def completions(self, request: Request) -> Response:
        started = time.perf_counter()
        body: CompletionRequest = _parse(CompletionRequest, await request.body())
        _refuse_unsupported(body)
        loaded = self.loaded(body)
        recipe, tokenizer = loaded.recipe, loaded.predictor.tokenizer
        prompt = body.prompt
        if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
            prompt = [prompt]  # type: ignore[list-item]
        if not prompt:
            raise ApiError(400, "prompt is empty", param="prompt")
        prompts: list[list[int]] = []
        for position, value in enumerate(prompt):
            if isinstance(value, str):
                self.check_length(value, f"prompt.{position}")
                prompts.append(prompt_ids(recipe, tokenizer, value, raw=True))
            else:
                size = getattr(loaded.predictor.model.config, "vocab_size", None) or len(tokenizer)
                if not value or any(not 0 <= token < size for token in value):
                    raise ApiError(400, f"prompt.{position} must hold token ids between 0 and {size - 1}",
                                   param="prompt")
                prompts.append(list(value))
        prepared = self.prepare(loaded, body, prompts, body.max_tokens)
        events, rows = self.start(loaded, body, prepared, chat=False)
        base = {"id": f"cmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": self.service.name,
                "object": "text_completion", "system_fingerprint": loaded.version}
        prompt_tokens = sum(len(ids) for ids in prompts)
        if body.stream:
            def chunk(index: int, text: str | None, reason: str | None) -> dict[str, Any]:
                return {"index": index, "text": text or "", "logprobs": None, "finish_reason": reason}

            include = bool(body.stream_options and body.stream_options.include_usage)
            return self.stream("/v1/completions", events, rows, chunk, prompt_tokens, include, started, base)
        results = await self.collect(events, len(rows))
        usage = self.finished("/v1/completions", started, prompt_tokens, sum(n for *_, n in results),
                              [reason for _, reason, _ in results])
        return JSONResponse({**base, "usage": usage, "choices": [
            {"index": i, "text": text, "logprobs": None, "finish_reason": reason}
            for i, (text, reason, _) in enumerate(results)]})

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [self.model_card()]}

    def model_card(self) -> dict[str, Any]:
        return {"id": self.service.name, "object": "model", "created": self.created, "owned_by": "tuneforge"}


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


class OpenAIErrors(BaseHTTPMiddleware):
    """Answers the service's own refusals under /v1 (no token, body too large, still loading) in OpenAI's error
    shape, so OpenAI clients show their message; other paths keep the service's shape."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        if not request.url.path.startswith("/v1/") or response.status_code < 400 or \
                "application/json" not in response.headers.get("content-type", ""):
            return response
        raw = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
        headers = {key: value for key, value in response.headers.items() if key.lower() != "content-length"}
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return Response(raw, status_code=response.status_code, headers=headers)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            message = body["error"] + (f". Fix: {body['fix']}" if body.get("fix") else "")
            body = _error_body(response.status_code, message)
        return JSONResponse(body, status_code=response.status_code, headers=headers)


def add_openai_routes(app: FastAPI, service: Any, settings: Any) -> None:
    """Register the /v1 routes (and answers for the classifier paths, which a generative run has not) on the
    service's app; called by `create_app` before its own routes, so these answer their paths."""
    routes = OpenAIRoutes(service, settings)
    app.state.openai = routes
    app.add_middleware(OpenAIErrors)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        request.state.reason = error.reason
        return JSONResponse(_error_body(error.status, error.message, error.param, error.code),
                            status_code=error.status)

    @app.post("/v1/chat/completions", tags=["openai"])
    async def chat_completions(request: Request) -> Response:
        """OpenAI's chat completion: `messages` rendered with the run's chat template; `stream: true` sends
        `chat.completion.chunk` events and `data: [DONE]`."""
        return await routes.chat(request)

    @app.post("/v1/completions", tags=["openai"])
    async def completions(request: Request) -> Response:
        """OpenAI's text completion: `prompt` (a text, texts or token ids) continued; streamed with
        `stream: true`."""
        return await routes.completions(request)

    @app.get("/v1/models", tags=["openai"])
    async def models() -> dict[str, Any]:
        """The served model, as OpenAI lists models."""
        return routes.models()

    @app.get("/v1/models/{model_id}", tags=["openai"])
    async def model(model_id: str) -> dict[str, Any]:
        if model_id != service.name:
            raise ApiError(404, f"the model '{model_id}' does not exist on this server", param="model",
                           code="model_not_found", reason="unknown_model")
        return routes.model_card()

    for path in CLASSIFIER_PATHS:
        async def not_here(request: Request) -> JSONResponse:
            request.state.reason = "not_found"
            return JSONResponse({"error": f"{request.url.path} belongs to classifier runs; this one generates text",
                                 "fix": "POST /v1/chat/completions or /v1/completions (OpenAI's API)"},
                                status_code=404)

        app.add_api_route(path, not_here, methods=["POST"], include_in_schema=False)
