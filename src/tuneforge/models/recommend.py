"""Rank catalog models and a training method for a task, its data and the memory at hand.

Each candidate gets the first training method, in an order set by the amount of data, whose estimated peak
memory (models.estimate) fits the budget, trying smaller batches before giving up; then a score from simple,
stated preferences:

- family for the task: encoders for classification, regression, tagging and extractive QA; decoders and
  encoder-decoders for generation (encoder-decoders first for summarisation and translation);
- language: a non-English language needs a model that lists it (a regional multilingual model beats a
  100-language one); English data prefers English models; unknown language prefers multilingual models;
- domain: a model pretrained on the requested domain first, other specialised models last;
- size for the data: a few hundred rows fine-tune a small model well and overfit a large one, tens of
  thousands can feed a larger one;
- time per epoch on this device, availability offline, a stated licence.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from tuneforge.errors import TuneforgeError
from tuneforge.models.catalog import CatalogEntry, find_entry
from tuneforge.models.estimate import Estimate, TrainingSetup, estimate, shape_task
from tuneforge.models.shapes import GENERATION_TASKS, ModelShape, build_meta_model, model_shape, shape_of
from tuneforge.recipe import PeftMethod

BATCH_SIZES = (16, 8, 4)
FEW_ROWS, MANY_ROWS = 500, 20_000
# Preferred parameter range by rows of training data (inclusive bounds).
SIZE_BANDS = ((FEW_ROWS, 20e6, 150e6), (5_000, 20e6, 450e6), (50_000, 60e6, 1.6e9), (math.inf, 60e6, 9e9))
FAMILY_FIT = {
    "classification": {"encoder": 3, "encoder-decoder": 1, "decoder": 1},
    "regression": {"encoder": 3, "encoder-decoder": 1, "decoder": 1},
    "token-classification": {"encoder": 3},
    "question-answering": {"encoder": 3},
    "generation": {"decoder": 3, "encoder-decoder": 2},
    "summarization": {"encoder-decoder": 3, "decoder": 2},
    "translation": {"encoder-decoder": 3, "decoder": 2},
    "seq2seq": {"encoder-decoder": 3},  # the recipe's tasks: what `tuneforge train --task` loads for each
    "causal-lm": {"decoder": 3},
}
REGIONAL = 30  # a multilingual model listing at most this many languages counts as regional


@dataclass(frozen=True)
class RecommendRequest:
    """The task, the data and the machine, as the recommender needs them."""

    task: str  # a task `tuneforge train` takes (ner, multilabel ...), or a catalog task (generation ...)
    rows: int
    memory_bytes: int
    device: str = "cpu"
    language: str | None = None  # ISO 639-1; None when unknown
    domain: str | None = None
    max_length: int = 128
    tokens_per_row: float | None = None
    device_flops: float = 0.0
    device_source: str = ""
    precision: str = "fp32"

    @property
    def model_task(self) -> str:
        """The catalog's name for the task's model (a multilabel classifier is a classifier)."""
        return shape_task(self.task)

    @property
    def regime(self) -> str:
        return "few" if self.rows < FEW_ROWS else "many" if self.rows >= MANY_ROWS else "some"


@dataclass(frozen=True)
class Candidate:
    entry: CatalogEntry
    method: str | None  # None when no method fits the budget
    batch_size: int
    estimate: Estimate | None
    score: float
    reason: str  # one line: why this model and method
    gradient_checkpointing: bool = False

    @property
    def fits(self) -> bool:
        return self.method is not None


@dataclass(frozen=True)
class Recommendation:
    request: RecommendRequest
    candidates: tuple[Candidate, ...]  # ranked: fitting ones first, best score first
    skipped: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (model, why it was not considered)


def method_order(request: RecommendRequest, parameters: int, family: str | None) -> list[str]:
    """Training methods to try, best first, for this much data and a model this big."""
    small = parameters <= 150e6
    if request.regime == "few":
        order = ["full", "lora", "freeze"] if small else ["lora", "freeze", "qlora"]
    elif request.regime == "some":
        order = ["full", "lora", "qlora"] if parameters <= 450e6 else ["lora", "qlora", "full"]
    else:
        order = ["full", "lora", "qlora"]
    if request.model_task in GENERATION_TASKS or family != "encoder":
        order = [method for method in order if method != "freeze"]  # nothing new to train on a frozen LM
    if request.device != "cuda":
        order = [method for method in order if method != "qlora"]  # bitsandbytes 4-bit needs CUDA
    return order


def _setup(request: RecommendRequest, method: str, batch: int, checkpointing: bool = False) -> TrainingSetup:
    return TrainingSetup(task=request.model_task, batch_size=batch, max_length=request.max_length, method=method,
                         precision=request.precision, device=request.device, rows=request.rows,  # type: ignore[arg-type]
                         tokens_per_row=request.tokens_per_row, gradient_checkpointing=checkpointing)


def fitting_setup(shape: ModelShape, request: RecommendRequest, order: Sequence[str]
                  ) -> tuple[str | None, int, bool, Estimate | None]:
    """(method, batch size, gradient checkpointing, estimate) of the first method that fits the budget, trying
    batch 16, 8 and 4, then batch 4 with gradient checkpointing; (None, 0, False, smallest estimate) if none."""
    smallest: Estimate | None = None
    for method in order:
        tries = [(batch, False) for batch in BATCH_SIZES] + [(BATCH_SIZES[-1], True)]
        for batch, checkpointing in tries:
            if method == "freeze" and checkpointing:
                continue
            try:
                result = estimate(shape, _setup(request, method, batch, checkpointing), request.device_flops,
                                  request.device_source)
            except TuneforgeError:
                break  # e.g. no layers for LoRA: try the next method
            if smallest is None or result.memory.peak < smallest.memory.peak:
                smallest = result
            if result.memory.peak <= request.memory_bytes:
                return method, batch, checkpointing, result
    return None, 0, False, smallest


def _size_score(parameters: int, rows: int) -> tuple[float, str]:
    for limit, low, high in SIZE_BANDS:
        if rows < limit:
            if parameters < low:
                return -1.5 * math.log10(low / parameters), "small for this much data"
            if parameters > high:
                return -1.5 * math.log10(parameters / high), f"large for {rows:,} rows"
            return 0.0, f"right-sized for {rows:,} rows"
    return 0.0, ""


def _language_score(entry: CatalogEntry, language: str | None) -> tuple[float, str] | None:
    """Score and words for the language fit; None when the model cannot serve the language."""
    if language is None:
        if entry.multilingual:
            return 1.0, f"multilingual ({len(entry.languages)} languages) for data of unknown language"
        return 0.0, "language unknown: check it is in " + ", ".join(entry.languages[:3])
    if not entry.supports_language(language):
        return None
    if language == "en":
        return (1.0, "English model") if not entry.multilingual else (0.0, "covers English")
    regional = len(entry.languages) <= REGIONAL
    if not entry.multilingual:
        return 3.5, f"pretrained on {language}"
    if regional:
        return 3.0, f"covers {language} among {len(entry.languages)} languages"
    return 2.0, f"covers {language} ({len(entry.languages)} languages)"


def _domain_score(entry: CatalogEntry, domain: str | None) -> tuple[float, str]:
    specialised = entry.domain not in (None, "general", "multilingual")
    if domain is None:
        return (-1.5, f"{entry.domain} model") if specialised else (0.0, "")
    if entry.domain == domain:
        return 3.0, f"pretrained on {domain} text"
    return (-3.0, f"{entry.domain}, not {domain}") if specialised else (0.0, "general-domain")


def _time_score(result: Estimate | None) -> float:
    if result is None or result.time is None:
        return 0.0
    hours = result.time.seconds_per_epoch / 3600
    return -3.0 if hours > 24 else -2.0 if hours > 6 else -1.0 if hours > 1 else 0.0


def describe_method(method: str, batch: int, checkpointing: bool) -> str:
    words = {"full": "full fine-tuning", "freeze": "frozen body, head only", "lora": "LoRA", "qlora": "QLoRA"}
    text = f"{words[method]}, batch {batch}"
    return text + " + gradient checkpointing" if checkpointing else text


def recipe_settings(method: str) -> list[str]:
    """The recipe fields (`--set` assignments) that train the way an estimate method is sized."""
    if method == "freeze":
        return ["freeze.all_but_head=true"]
    peft = PeftMethod(method) if method in PeftMethod.names() else PeftMethod.NONE
    return [f"peft.method={peft}"] if peft.enabled else []


def _method_reason(method: str, request: RecommendRequest, first_choice: str) -> str:
    if method != first_choice:
        return f"{method} because {first_choice} does not fit {request.memory_bytes / 2**30:.0f} GiB"
    if method == "full":
        return "full fine-tuning fits"
    if method == "freeze":
        return "few rows: train the head on frozen features"
    return "few rows for this size: LoRA" if request.regime == "few" else "LoRA keeps memory low"


def evaluate_candidate(entry: CatalogEntry, shape: ModelShape, request: RecommendRequest) -> Candidate | None:
    """Score one model for the request; None when it cannot serve the task or the language."""
    fit = FAMILY_FIT.get(request.model_task, {}).get(entry.family or "")
    language = _language_score(entry, request.language)
    if fit is None or language is None:
        return None
    order = method_order(request, shape.parameters, entry.family)
    if not order:
        return None
    method, batch, checkpointing, result = fitting_setup(shape, request, order)
    size, size_words = _size_score(shape.parameters, request.rows)
    domain, domain_words = _domain_score(entry, request.domain)
    score = fit + language[0] + domain + size + _time_score(result)
    score += 0.5 if entry.offline else 0.0
    score -= 0.5 if entry.licence is None else 0.25 if str(entry.licence).startswith("llama") else 0.0
    parts = [f"{entry.family} for {request.task}", language[1], domain_words, size_words]
    if method is None:
        needed = result.memory.peak / 2**30 if result else float("nan")
        parts.append(f"needs {needed:.1f} GiB even at its smallest; budget {request.memory_bytes / 2**30:.1f} GiB")
        score -= 10
    else:
        parts.append(_method_reason(method, request, order[0]))
    if entry.licence is None:
        parts.append("licence not stated: check before use")
    reason = "; ".join(part for part in parts if part)
    return Candidate(entry, method, batch, result, round(score, 2), reason, checkpointing)


@functools.lru_cache(maxsize=512)
def _catalog_shape(name: str, task: str) -> ModelShape:
    """Shapes of curated models, built once per process (a meta build takes tens of milliseconds)."""
    entry = find_entry(name)
    assert entry is not None
    model = build_meta_model({"model_type": entry.architecture, **entry.config}, task)
    return shape_of(model, entry.name, task)


def _shape(entry: CatalogEntry, task: str) -> ModelShape:
    if entry.config and find_entry(entry.name) is not None:
        return _catalog_shape(entry.name, task)
    return model_shape(entry.path or entry.name, task)[0]


def recommend(request: RecommendRequest, entries: Sequence[CatalogEntry], limit: int = 5) -> Recommendation:
    """The best `limit` candidates for the request among `entries` (fitting ones first)."""
    candidates: list[Candidate] = []
    skipped: list[tuple[str, str]] = []
    for entry in entries:
        if request.model_task not in entry.tasks:
            continue
        if request.language is not None and not entry.languages:
            skipped.append((entry.name, "languages unknown"))
            continue
        try:
            shape = _shape(entry, request.model_task)
        except TuneforgeError as error:
            skipped.append((entry.name, error.message))
            continue
        candidate = evaluate_candidate(entry, shape, request)
        if candidate is not None:
            candidates.append(candidate)
    if not candidates and request.language is not None:
        raise TuneforgeError(
            f"no model in the catalog lists the language '{request.language}' for {request.task}",
            fix="pass --language with another code if the detection was wrong, or pick a broad multilingual model "
                "such as FacebookAI/xlm-roberta-base (tuneforge models --domain multilingual)",
        )
    candidates.sort(key=lambda c: (not c.fits, -c.score, c.entry.parameters or 0))
    return Recommendation(request, tuple(candidates[:limit]), tuple(skipped))
