"""Which models can be fine-tuned: a curated list of well-known hub models, and what is usable offline now.

Parameter counts of local folders come from the safetensors headers, so listing never loads weights into memory;
the curated list (`known_models.yaml`) holds the published figures and the hyperparameters that let
`models.shapes` build any of them on the `meta` device without downloading.
"""

from __future__ import annotations

import functools
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from math import prod
from pathlib import Path
from typing import Any, Literal

import yaml

from tuneforge.models.resolve import BUNDLED, bundled_path, is_run_dir


@dataclass(frozen=True)
class ModelInfo:
    name: str
    source: str  # bundled, local, run, hub-cache
    path: str
    architecture: str
    parameters: int | None
    size_bytes: int
    description: str = ""


def safetensors_parameters(path: Path) -> int:
    with path.open("rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_size))
    return sum(prod(entry["shape"]) for key, entry in header.items() if key != "__metadata__")


def describe_folder(folder: Path, name: str, source: str, description: str = "") -> ModelInfo | None:
    config_path = folder / "config.json"
    if not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    weights = sorted(folder.glob("*.safetensors"))
    parameters = sum(safetensors_parameters(w) for w in weights) if weights else None
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    architecture = (config.get("architectures") or [config.get("model_type", "?")])[0]
    return ModelInfo(name, source, str(folder), architecture, parameters, size, description)


def _hub_cache_models(hub_cache: Path) -> Iterable[ModelInfo]:
    for repo in sorted(hub_cache.glob("models--*")):
        snapshots = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)
        if snapshots:
            name = repo.name.removeprefix("models--").replace("--", "/")
            info = describe_folder(snapshots[-1], name, "hub-cache")
            if info is not None:
                yield info


def list_offline_models(search_dirs: Iterable[Path] = (), hub_cache: Path | None = None) -> list[ModelInfo]:
    """Bundled models, model folders and tuneforge runs under `search_dirs`, and the hub cache."""
    found: list[ModelInfo] = []
    for model in BUNDLED:
        folder = bundled_path(model)
        if folder is not None:
            info = describe_folder(folder, model.alias, "bundled", f"{model.hub_id}: {model.description}")
            if info is not None:
                found.append(info)
    for directory in search_dirs:
        if not directory.is_dir():
            continue
        for config in sorted(directory.glob("*/config.json")) + sorted(directory.glob("*/model/config.json")):
            folder = config.parent
            run = folder.parent if folder.name == "model" and is_run_dir(folder.parent) else None
            if folder.name == "model" and run is None:
                continue
            info = describe_folder(folder, str(run or folder), "run" if run else "local")
            if info is not None:
                found.append(info)
    if hub_cache is not None and hub_cache.is_dir():
        found.extend(_hub_cache_models(hub_cache))
    return found


# ------------------------------------------------------------------------------------------------------
# The curated catalog: well-known hub models, merged with what is available offline now
# ------------------------------------------------------------------------------------------------------

FAMILIES = ("encoder", "decoder", "encoder-decoder")
DOMAINS = ("general", "biomedical", "legal", "financial", "code", "multilingual")
TASKS = ("classification", "regression", "token-classification", "question-answering", "generation",
         "summarization", "translation", "seq2seq", "causal-lm")  # the last two: the recipe's generative tasks
DEFAULT_TASKS = {
    "encoder": ("classification", "regression", "token-classification", "question-answering"),
    "decoder": ("generation", "classification", "regression", "causal-lm"),
    "encoder-decoder": ("generation", "summarization", "translation", "classification", "seq2seq"),
}
# Architectures by family, for folders that are not in the curated list (their config names only the type).
_ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "xlm-roberta-xl", "deberta", "deberta-v2", "distilbert",
                  "electra", "albert", "camembert", "mpnet", "modernbert", "mobilebert", "longformer", "big_bird",
                  "ernie", "rembert", "flaubert", "xlm", "funnel", "squeezebert", "nomic_bert"}
_DECODER_TYPES = {"gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "mixtral", "qwen2", "qwen3", "phi",
                  "phi3", "gemma", "gemma2", "gemma3_text", "opt", "bloom", "falcon", "olmo", "olmo2", "smollm3",
                  "stablelm", "starcoder2", "codegen", "granite"}
_ENCODER_DECODER_TYPES = {"t5", "mt5", "umt5", "longt5", "bart", "mbart", "pegasus", "marian", "led", "m2m_100",
                          "blenderbot", "prophetnet", "plbart", "nllb-moe"}
# ISO 639 codes that name the same language (model cards use both).
LANGUAGE_ALIASES = {"iw": "he", "fil": "tl", "nb": "no", "in": "id", "ji": "yi", "zh-hant": "zh", "zh-hans": "zh"}
KNOWN_MODELS_FILE = "known_models.yaml"
MULTILINGUAL_MIN = 10  # languages a model must list to count as multilingual
Availability = Literal["bundled", "local", "run", "hub-cache", "hub"]


@dataclass(frozen=True)
class CatalogEntry:
    """One model a user can fine-tune, with what matters for choosing it; `availability` says whether it can be
    used without a network now (bundled, local, run, hub-cache) or must be downloaded (hub)."""

    name: str
    family: str | None
    architecture: str
    parameters: int | None
    languages: tuple[str, ...]
    domain: str | None
    licence: str | None
    context_length: int | None
    tasks: tuple[str, ...]
    description: str = ""
    aliases: tuple[str, ...] = ()
    availability: Availability = "hub"
    path: str | None = None
    config: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def offline(self) -> bool:
        return self.availability != "hub"

    @property
    def multilingual(self) -> bool:
        """Pretrained for many languages (T5's four translation languages do not make it multilingual)."""
        return len(self.languages) >= MULTILINGUAL_MIN

    def supports_language(self, code: str) -> bool:
        wanted = normalise_language(code)
        return any(normalise_language(language) == wanted for language in self.languages)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "aliases": list(self.aliases), "family": self.family,
                "architecture": self.architecture, "parameters": self.parameters, "languages": list(self.languages),
                "domain": self.domain, "licence": self.licence, "context_length": self.context_length,
                "tasks": list(self.tasks), "available_offline": self.offline, "availability": self.availability,
                "path": self.path, "description": self.description}


def normalise_language(code: str) -> str:
    code = code.strip().lower().replace("_", "-")
    return LANGUAGE_ALIASES.get(code, code)


def _entry_from_yaml(item: dict[str, Any]) -> CatalogEntry:
    family = item["family"]
    return CatalogEntry(
        name=item["name"], family=family, architecture=item["architecture"], parameters=item.get("parameters"),
        languages=tuple(str(code) for code in item.get("languages") or ()), domain=item.get("domain"),
        licence=item.get("licence"), context_length=item.get("context_length"),
        tasks=tuple(item.get("tasks") or DEFAULT_TASKS[family]), description=item.get("description", ""),
        aliases=tuple(str(alias) for alias in item.get("aliases") or ()), config=dict(item.get("config") or {}),
    )


@functools.lru_cache(maxsize=1)
def known_models() -> tuple[CatalogEntry, ...]:
    """The curated list shipped with tuneforge (hub models with their published sizes and licences)."""
    text = resources.files("tuneforge.models").joinpath(KNOWN_MODELS_FILE).read_text(encoding="utf-8")
    return tuple(_entry_from_yaml(item) for item in yaml.safe_load(text))


def _names(entry: CatalogEntry) -> set[str]:
    names = {entry.name, entry.name.split("/")[-1], *entry.aliases}
    return {name.lower() for name in names}


def find_entry(name: str, entries: Iterable[CatalogEntry] | None = None) -> CatalogEntry | None:
    """The catalog entry for a hub id, its last part or an alias (case-insensitive); None when unknown."""
    wanted = name.strip().lower()
    for entry in entries if entries is not None else known_models():
        if wanted in _names(entry):
            return entry
    return None


def suggest(name: str, entries: Iterable[CatalogEntry] | None = None, limit: int = 3) -> list[str]:
    """Catalog names closest to a misspelt one, for 'did you mean' messages."""
    import difflib

    pool = {}
    for entry in entries if entries is not None else known_models():
        for candidate in (entry.name, entry.name.split("/")[-1], *entry.aliases):
            pool.setdefault(candidate.lower(), entry.name)
    close = difflib.get_close_matches(name.strip().lower(), list(pool), n=limit * 3, cutoff=0.5)
    return list(dict.fromkeys(pool[match] for match in close))[:limit]


def family_of(config: dict[str, Any]) -> str | None:
    """encoder / decoder / encoder-decoder from a config.json; None when the type is unfamiliar."""
    model_type = str(config.get("model_type", ""))
    if config.get("is_encoder_decoder") or model_type in _ENCODER_DECODER_TYPES:
        return "encoder-decoder"
    if model_type in _ENCODER_TYPES:
        return "encoder"
    if model_type in _DECODER_TYPES:
        return "decoder"
    architectures = " ".join(config.get("architectures") or [])
    if "CausalLM" in architectures or "LMHeadModel" in architectures:
        return "decoder"
    return None


def _read_config(folder: str) -> dict[str, Any]:
    try:
        return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _offline_entry(info: ModelInfo) -> CatalogEntry:
    """A catalog row for a folder the curated list does not know: what its config says, nothing invented."""
    config = _read_config(info.path)
    family = family_of(config)
    context = config.get("max_position_embeddings") or config.get("n_positions")
    return CatalogEntry(
        name=info.name, family=family, architecture=str(config.get("model_type", info.architecture)),
        parameters=info.parameters, languages=(), domain=None, licence=None,
        context_length=int(context) if isinstance(context, int) else None,
        tasks=DEFAULT_TASKS.get(family or "", ()), description=info.description,
        availability=info.source if info.source in ("bundled", "local", "run", "hub-cache") else "local",  # type: ignore[arg-type]
        path=info.path,
    )


def build_catalog(search_dirs: Iterable[Path] = (), hub_cache: Path | None = None) -> list[CatalogEntry]:
    """The curated models, each marked available offline when bundled or in the hub cache, followed by the
    local folders, runs and cached models the curated list does not know."""
    from dataclasses import replace

    catalog = list(known_models())
    position = {entry.name: index for index, entry in enumerate(catalog)}
    extra: list[CatalogEntry] = []
    bundled_by_hub_id = {model.alias: model.hub_id for model in BUNDLED}
    for info in list_offline_models(search_dirs, hub_cache):
        hub_id = bundled_by_hub_id.get(info.name, info.name) if info.source in ("bundled", "hub-cache") else None
        known = find_entry(hub_id) if hub_id else None
        if known is not None:
            index = position[known.name]
            aliases = known.aliases if info.name in known.aliases or info.name == known.name \
                else (*known.aliases, info.name)
            catalog[index] = replace(catalog[index], availability=info.source, path=info.path,  # type: ignore[arg-type]
                                     aliases=aliases)
        else:
            extra.append(_offline_entry(info))
    return catalog + extra


def filter_catalog(
    entries: Iterable[CatalogEntry],
    family: str | None = None,
    domain: str | None = None,
    language: str | None = None,
    task: str | None = None,
    offline: bool = False,
) -> list[CatalogEntry]:
    """Entries matching every given criterion; a model whose languages are unknown never matches a language."""
    kept = []
    for entry in entries:
        if family and entry.family != family:
            continue
        if domain and entry.domain != domain:
            continue
        if language and not entry.supports_language(language):
            continue
        if task and task not in entry.tasks:
            continue
        if offline and not entry.offline:
            continue
        kept.append(entry)
    return kept
