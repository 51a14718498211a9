"""One check per artifact of a run directory, run by the loaders before a library reads the file.

A damaged run must fail with an error naming the file and how to get a whole one back, never with a library's
traceback or, worse, a silently wrong answer (a fallback tokenizer, thresholds that no longer match the labels,
a truncated weight file read half-way).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuneforge.data.features import FEATURES_FILE, FeatureSpecFile
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.calibration import check_temperature, read_temperature
from tuneforge.kinds import ENSEMBLE, MULTILABEL, TAGGING, TEXT, RunKind, kind_of
from tuneforge.models.multimodal import FUSION_WEIGHTS
from tuneforge.models.multitask import HEADS_FILE
from tuneforge.models.onnx import META_FILE, MODEL_FILE, onnx_dir
from tuneforge.recipe import Recipe
from tuneforge.run import KIND_FILE, RunLayout, read_kind
from tuneforge.tasks.multilabel import DEFAULT_THRESHOLD

RESTORE = "restore the run directory from where it came from (a copy, the registry), or train the run again"
NO_MODEL_FIX = "finish training first; resume an interrupted run with `tuneforge train --resume`"
BACKENDS = ("torch", "onnx")
ONNX_KINDS = (TEXT, MULTILABEL, TAGGING)  # the kinds whose model `tuneforge export --format onnx` writes
# A saved tokenizer is its tokenizer_config.json plus one of these; without them transformers may build another
# tokenizer from the model's config, which scores every text wrongly without a word.
VOCABULARY_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                    "sentencepiece.bpe.model", "sentencepiece.model", "spm.model")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
HEADER_LIMIT = 100_000_000  # the safetensors format caps its JSON header at 100 MB


class RunDamaged(TuneforgeError):
    """A file of a run directory is missing, cut short or does not fit the rest of the run."""


def read_json(path: Path, what: str = "a JSON object") -> Any:
    """The parsed file; missing, unreadable or not a JSON object is a `RunDamaged` naming it."""
    if not path.is_file():
        raise RunDamaged(f"{path} is missing", fix=RESTORE)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RunDamaged(f"{path} cannot be read ({error})", fix=RESTORE) from None
    if not isinstance(data, dict):
        raise RunDamaged(f"{path} must hold {what}; it holds a {type(data).__name__}", fix=RESTORE)
    return data


def _listed(items: Any) -> str:
    return ", ".join(map(str, items)) or "none"


@contextmanager
def loading(what: Path, fix: str = RESTORE) -> Iterator[None]:
    """Whatever a library raises while reading `what` becomes a `RunDamaged` naming it; the checks above catch
    the damage they know of, this catches the rest (a tokenizer file that is not one, weights that do not fit)."""
    try:
        yield
    except TuneforgeError:
        raise
    except Exception as error:  # libraries raise OSError, ValueError, KeyError and their own error types
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        cause = f"it has no {cause} entry" if isinstance(error, KeyError) else cause
        raise RunDamaged(f"{what} could not be loaded ({cause})", fix=fix) from error


# ------------------------------------------------------------------------------------------------------
# The run as a whole
# ------------------------------------------------------------------------------------------------------

def run_kind(root: Path, recipe: Recipe) -> RunKind:
    """The run's kind (run_kind.json, or the recipe for older runs); a file that contradicts the run is refused
    rather than trusted, since every later step would read the run as the wrong kind."""
    path = root / KIND_FILE
    if not path.is_file():
        return read_kind(root, recipe)
    if not isinstance(read_json(path).get("kind"), str):
        raise RunDamaged(f"{path} names no run kind", fix=f"{RESTORE}; or delete it: the recipe decides the kind")
    kind = read_kind(root, recipe)
    has_ensemble = RunLayout(root).ensemble.is_file()
    if kind.name == ENSEMBLE and not has_ensemble:
        raise RunDamaged(f"{path} says this is an ensemble run, but there is no {RunLayout(root).ensemble}",
                         fix=RESTORE)
    if kind.name != ENSEMBLE and not has_ensemble and kind_of(recipe).name != kind.name:
        raise RunDamaged(f"{path} says this is a {kind.name} run, but {RunLayout(root).recipe} makes a "
                         f"{kind_of(recipe).name} run", fix=f"{RESTORE}; or delete it: the recipe decides the kind")
    return kind


def backend(name: str, kind: RunKind) -> None:
    if name not in BACKENDS:
        raise TuneforgeError(f"unknown backend '{name}'", fix="use backend 'torch' or 'onnx'")
    if name == "onnx" and kind.name not in ONNX_KINDS:
        raise TuneforgeError(f"the onnx backend scores {', '.join(ONNX_KINDS)} runs; this is a {kind.name} run",
                             fix="use backend torch")


# ------------------------------------------------------------------------------------------------------
# Weights, configs, tokenizers
# ------------------------------------------------------------------------------------------------------

def safetensors(path: Path) -> set[str]:
    """The tensor names of a safetensors file whose header parses and whose size is what the header says: a
    truncated copy fails here, naming the file, not inside the loader."""
    if not path.is_file():
        raise RunDamaged(f"{path} is missing", fix=RESTORE)
    size = path.stat().st_size
    with path.open("rb") as stream:
        prefix = stream.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else 0
        if not 0 < length <= min(size - 8, HEADER_LIMIT):
            raise RunDamaged(f"{path} is not a whole safetensors file (its header is cut off or missing)",
                             fix=RESTORE)
        try:
            header = json.loads(stream.read(length))
            end = max((int(entry["data_offsets"][1]) for name, entry in header.items() if name != "__metadata__"),
                      default=0)
        except (ValueError, UnicodeDecodeError, KeyError, TypeError, IndexError, AttributeError) as error:
            raise RunDamaged(f"{path} has a damaged safetensors header ({error})", fix=RESTORE) from None
    if 8 + length + end != size:
        raise RunDamaged(f"{path} holds {size} bytes where its header describes {8 + length + end}: the file was "
                         "cut short or written only in part", fix=RESTORE)
    return {name for name in header if name != "__metadata__"}


def weights(folder: Path, stem: str = "model") -> None:
    """`stem`.safetensors (or its sharded index and shards) whole; pickled weights are refused, never loaded."""
    single, index = folder / f"{stem}.safetensors", folder / f"{stem}.safetensors.index.json"
    if single.is_file():
        safetensors(single)
        return
    if index.is_file():
        shards = read_json(index).get("weight_map")
        if not isinstance(shards, dict) or not shards:
            raise RunDamaged(f"{index} has no weight_map", fix=RESTORE)
        for shard in sorted(set(map(str, shards.values()))):
            safetensors(folder / shard)
        return
    pickled = sorted(p.name for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES and p.is_file())
    if pickled:
        raise RunDamaged(f"{folder} holds {', '.join(pickled)} instead of {single.name}: pickled weights, which can "
                         "run code when loaded; tuneforge loads safetensors only",
                         fix="save the model with save_pretrained(folder, safe_serialization=True) in a session you "
                             "trust, or train the run again")
    raise RunDamaged(f"{single} is missing: the run has no weights", fix=RESTORE)


def config(folder: Path) -> dict[str, Any]:
    """A model folder's config.json; no folder at all is a run that has not finished training."""
    if not folder.is_dir():
        raise TuneforgeError(f"run '{folder.parent}' has no trained model yet (no {folder})", fix=NO_MODEL_FIX)
    return read_json(folder / "config.json")


def tokenizer(folder: Path) -> None:
    """The run's own tokenizer is there: a model scored through any other one gives wrong answers silently."""
    vocabulary = [name for name in VOCABULARY_FILES if (folder / name).is_file()]
    if not (folder / "tokenizer_config.json").is_file() or not vocabulary:
        missing = "tokenizer_config.json" if vocabulary else f"vocabulary file: {', '.join(VOCABULARY_FILES[:3])}..."
        raise RunDamaged(f"the tokenizer in {folder} is incomplete (no {missing}); the model must be read with the "
                         "tokenizer it was trained with", fix=RESTORE)
    for name in ("tokenizer_config.json", "tokenizer.json", "vocab.json"):
        if (folder / name).is_file():
            read_json(folder / name)


def tokenizer_fits(loaded: Any, model_config: Any, folder: Path) -> None:
    """A tokenizer with ids beyond the model's embeddings is not the one the model was trained with."""
    size = getattr(model_config, "vocab_size", None)
    if isinstance(size, int) and len(loaded) > size:
        raise RunDamaged(f"the tokenizer in {folder} has {len(loaded)} tokens but the model embeds {size}: they do "
                         "not belong together", fix=RESTORE)


def processor(folder: Path) -> None:
    read_json(folder / "preprocessor_config.json")


def transformers_model(folder: Path, labelled: bool) -> None:
    """A Transformers model folder: config (with its labels when the run has classes), weights, tokenizer."""
    described = config(folder)
    if labelled and not isinstance(described.get("id2label"), dict):
        raise RunDamaged(f"{folder / 'config.json'} names no labels (id2label)", fix=RESTORE)
    weights(folder)
    tokenizer(folder)


def trained_model(layout: RunLayout, labelled: bool) -> None:
    """What `models.peft.load_run_model` will read: model/ (full or merged), else base + adapter."""
    if layout.has_model() or (layout.model.is_dir() and not layout.has_adapter()):
        transformers_model(layout.model, labelled)
    elif layout.has_adapter():
        adapter(layout)
    else:
        raise TuneforgeError(f"run '{layout.root}' has no trained model yet (no model/ or adapter/ folder)",
                             fix=NO_MODEL_FIX)


def adapter(layout: RunLayout) -> None:
    """A PEFT adapter: its config, weights, head description and tokenizer (the base is checked on loading)."""
    read_json(layout.adapter / "adapter_config.json")
    weights(layout.adapter, stem="adapter_model")
    head = read_json(layout.adapter / "head.json")
    if not {"task", "labels", "pad_token_id"} <= set(head):
        raise RunDamaged(f"{layout.adapter / 'head.json'} must name task, labels and pad_token_id", fix=RESTORE)
    tokenizer(layout.adapter)


# ------------------------------------------------------------------------------------------------------
# Files beside the model
# ------------------------------------------------------------------------------------------------------

def calibration(layout: RunLayout) -> float:
    """The run's temperature; 1.0 without calibration.json (an uncalibrated run)."""
    return read_temperature(layout.calibration)


def thresholds(layout: RunLayout, labels: list[str]) -> list[float]:
    """One decision threshold per label, in label order; 0.5 each without thresholds.json (an older run). A
    file whose labels differ from the model's would apply thresholds to the wrong labels: refused."""
    path = layout.thresholds
    if not path.is_file():
        return [DEFAULT_THRESHOLD] * len(labels)
    saved = read_json(path)
    names, values = saved.get("labels"), saved.get("thresholds")
    if not isinstance(names, list) or not isinstance(values, list) or len(names) != len(values):
        raise RunDamaged(f"{path} must hold labels and thresholds, one threshold per label", fix=RESTORE)
    if sorted(map(str, names)) != sorted(labels):
        raise RunDamaged(f"{path} has thresholds for {_listed(names)}, but the model's labels are {_listed(labels)}",
                         fix=RESTORE)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in values):
        raise RunDamaged(f"{path}: every threshold must be a number from 0 to 1; got {_listed(values)}", fix=RESTORE)
    by_label = dict(zip(map(str, names), values, strict=True))
    return [float(by_label[name]) for name in labels]


def features(root: Path) -> Any:
    """A multimodal run's stored preprocessing (features.json), whole."""
    path = root / FEATURES_FILE
    if path.is_file():
        read_json(path)
    with loading(path):
        return FeatureSpecFile.load(path)


def multitask(layout: RunLayout, recipe: Recipe) -> dict[str, dict[str, Any]]:
    """multitask.json's tasks by name: each with its labels (None: regression) and temperature, the same tasks
    as the recipe's, and a head for each in the heads file."""
    path = layout.multitask
    tasks = read_json(path).get("tasks")
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tasks):
        raise RunDamaged(f"{path} must list its tasks, each with a name", fix=RESTORE)
    by_name = {task["name"]: task for task in tasks}
    if sorted(by_name) != sorted(spec.name for spec in recipe.tasks):
        raise RunDamaged(f"{path} lists the tasks {_listed(sorted(by_name))}, but {layout.recipe} has "
                         f"{_listed(sorted(spec.name for spec in recipe.tasks))}", fix=RESTORE)
    for name, task in by_name.items():
        labels = task.get("labels")
        if labels is not None and not (isinstance(labels, list) and labels and all(isinstance(x, str)
                                                                                    for x in labels)):
            raise RunDamaged(f"{path}: the labels of task '{name}' must be a list of names (or null)", fix=RESTORE)
        check_temperature(task.get("temperature", 1.0), f"{path} (task '{name}')")
    heads = safetensors(layout.model / HEADS_FILE)
    missing = sorted(f"{name}.{part}" for name in by_name for part in ("weight", "bias") if f"{name}.{part}"
                     not in heads)
    if missing:
        raise RunDamaged(f"{layout.model / HEADS_FILE} has no {', '.join(missing)}", fix=RESTORE)
    return by_name


def multimodal_model(folder: Path) -> None:
    """model/ of a multimodal run: its config, the text encoder and tokenizer, each media encoder and its
    processor, and the fusion weights."""
    described = config(folder)
    for name, columns in (("image", "image_columns"), ("audio", "audio_columns")):
        if described.get(columns):
            read_json(folder / name / "config.json")
            weights(folder / name)
            processor(folder / name)
    read_json(folder / "text" / "config.json")
    weights(folder / "text")
    tokenizer(folder / "text")
    safetensors(folder / FUSION_WEIGHTS)


def onnx_export(root: Path) -> None:
    """An ONNX export's tokenizer and config; a run without an export is left to the loader, which says how to
    make one."""
    folder = onnx_dir(root)
    if (folder / MODEL_FILE).is_file():
        read_json(folder / META_FILE)
        read_json(folder / "config.json")
        tokenizer(folder)
