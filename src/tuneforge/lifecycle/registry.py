"""Versions of named models, kept in MLflow's tracking store and model registry.

A run directory is logged as an MLflow run: the flattened recipe as params, the numeric leaves of metrics.json
as metrics, the base model, data fingerprint and parent version as tags, and the run directory itself (without
training checkpoints) as artifacts under `run/`. Registering makes that `run/` folder a new version of a named
model. Serving `NAME@champion` only needs the artifacts: they are the run directory, safetensors weights
included, so a local registry serves offline straight from its artifact folder and a remote one is downloaded
once into a cache.

The embedded default is a SQLite database and an artifact folder in a tuneforge home folder
(`Registry.local(home)`); any MLflow tracking server URL works the same way (`Registry(uri)`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import yaml

from tuneforge.errors import TuneforgeError
from tuneforge.redaction import redact_text
from tuneforge.run import RunLayout, read_run_recipe

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG = "tuneforge."
HISTORY_TAG = TAG + "champion_history"
RUN_FOLDER = "run"
SKIPPED = ("checkpoints",)  # resumable training state: large, and nothing after training reads it
DATABASE_FILE = "mlflow.db"
# MLflow waits 120 s for each HTTP answer and retries 7 times with doubling pauses: minutes of silence before an
# unreachable server is reported. These bound one call to about (retries + 1) x timeout seconds.
HTTP_TIMEOUT_SECONDS = 10
HTTP_RETRIES = 2
TIMEOUT_VARIABLE = "MLFLOW_HTTP_REQUEST_TIMEOUT"
RETRIES_VARIABLE = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
BACKOFF_VARIABLE = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"


def parse_model_ref(text: str) -> tuple[str, str]:
    """'name@alias' or 'name@3' -> (name, ref); a bare name means its champion."""
    name, _, ref = text.partition("@")
    if not name.strip():
        raise TuneforgeError(f"'{text}' names no model", fix="write NAME, NAME@champion or NAME@3")
    return name.strip(), (ref.strip() or CHAMPION)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys; lists and scalars are leaves."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers in metrics.json, flattened, as MLflow metric names (lists such as reliability tables skipped)."""
    found = {}
    for key, value in flatten(metrics).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            safe = "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)
            found[safe] = float(value)
    return found


def data_fingerprint(run_dir: Path) -> str:
    """SHA-256 over the data files the run was trained on (names and bytes), so two versions can be compared."""
    recipe = read_run_recipe(run_dir)
    digest = hashlib.sha256()
    for role in ("train", "validation", "test"):
        location = getattr(recipe.data, role)
        if not location:
            continue
        path = Path(location)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        digest.update(f"{role}\0".encode())
        for file in files:
            if not file.is_file():
                digest.update(b"missing")
                continue
            with file.open("rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class VersionInfo:
    """One registered version, with what its MLflow run recorded."""

    name: str
    version: int
    aliases: tuple[str, ...]
    run_id: str
    source: str
    created: datetime
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def base_model(self) -> str | None:
        return self.tags.get(TAG + "base_model")

    @property
    def parent_version(self) -> int | None:
        value = self.tags.get(TAG + "parent_version")
        return int(value) if value else None


@dataclass(frozen=True)
class ModelSummary:
    name: str
    latest_version: int | None
    aliases: dict[str, int]
    description: str


@dataclass(frozen=True)
class VersionDiff:
    """What changed between two versions: recipe fields (flattened keys) and metrics, each (key, a, b)."""

    name: str
    a: int
    b: int
    recipe: list[tuple[str, str | None, str | None]]
    metrics: list[tuple[str, float | None, float | None]]


def _quiet_mlflow() -> None:
    """MLflow and alembic log every schema migration of a new SQLite store at INFO."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def _network_limits(timeout: float | None, retries: int | None) -> tuple[int, int]:
    """Bound MLflow's HTTP calls, which read their timeout and retries from the environment at every request:
    an explicit value is set, otherwise a value the user exported is kept and ours fills the gap."""
    for variable, value, default in ((TIMEOUT_VARIABLE, timeout, HTTP_TIMEOUT_SECONDS),
                                     (RETRIES_VARIABLE, retries, HTTP_RETRIES), (BACKOFF_VARIABLE, None, 1)):
        if value is not None:
            os.environ[variable] = str(max(1, math.ceil(value)) if variable == TIMEOUT_VARIABLE else int(value))
        else:
            os.environ.setdefault(variable, str(default))
    return int(os.environ[TIMEOUT_VARIABLE]), int(os.environ[RETRIES_VARIABLE])


class Registry:
    """Named models and their versions; a thin, typed layer over `mlflow.MlflowClient`.

    `timeout` (seconds per HTTP request) and `retries` bound how long a remote registry may keep a call waiting;
    None keeps MLFLOW_HTTP_REQUEST_TIMEOUT / MLFLOW_HTTP_REQUEST_MAX_RETRIES when set, else 10 s and 2 retries.
    """

    def __init__(self, uri: str, artifact_root: Path | None = None, cache_dir: Path | None = None,
                 timeout: float | None = None, retries: int | None = None) -> None:
        self.uri = uri
        self.artifact_root = artifact_root
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "tuneforge-registry-cache"
        self.timeout, self.retries = timeout, retries
        self._client: Any = None

    @property
    def shown_uri(self) -> str:
        """The URI as messages print it: without a password."""
        return redact_text(self.uri)

    @classmethod
    def local(cls, home: str | Path) -> Registry:
        """The embedded default: SQLite database, artifacts and download cache in one folder."""
        root = Path(home).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{root / DATABASE_FILE}", root / "artifacts", root / "cache")

    @classmethod
    def at(cls, uri: str | None, home: str | Path) -> Registry:
        """`uri` when given (any MLflow tracking URI), else the local registry in `home`."""
        if not uri:
            return cls.local(home)
        root = Path(home).expanduser().resolve()
        artifacts = root / "artifacts" if uri.startswith("sqlite:") else None
        return cls(uri, artifacts, root / "cache")

    @property
    def client(self) -> Any:
        if self._client is None:
            _quiet_mlflow()
            timeout, retries = _network_limits(self.timeout, self.retries)
            from mlflow import MlflowClient

            try:
                client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
                client.search_registered_models(max_results=1)  # connect (and migrate a new database) now
            except Exception as error:  # MLflow raises many types for an unreachable or malformed store
                reason = redact_text(_first_line(error))
                if urlparse(self.uri).scheme in ("http", "https") and _unreachable(error):
                    raise TuneforgeError(
                        f"the model registry at '{self.shown_uri}' could not be reached ({_network_reason(reason)}; "
                        f"{retries + 1} tries of at most {timeout} s each)",
                        fix=f"check that the MLflow server is running and reachable from here; set "
                            f"{TIMEOUT_VARIABLE} / {RETRIES_VARIABLE} to wait longer, or pass --registry-uri "
                            "sqlite:///path/mlflow.db for a local registry") from None
                raise TuneforgeError(f"cannot open the model registry at '{self.shown_uri}': {reason}",
                                     fix="pass --registry-uri sqlite:///path/mlflow.db or an MLflow server URL "
                                         "(http://host:5000), or set TUNEFORGE_REGISTRY_URI") from None
            self._client = client
        return self._client

    # -- logging and registering ---------------------------------------------------------------------------------

    def _experiment(self, name: str) -> str:
        experiment_name = f"tuneforge/{name}"
        found = self.client.get_experiment_by_name(experiment_name)
        if found is not None:
            return found.experiment_id
        location = (self.artifact_root / name).resolve().as_uri() if self.artifact_root else None
        return self.client.create_experiment(experiment_name, artifact_location=location)

    def start_run(self, name: str, run_name: str, tags: Mapping[str, str] | None = None) -> str:
        """An MLflow run in the model's experiment, for steps that are not training runs (refresh, gate)."""
        run = self.client.create_run(self._experiment(name), run_name=run_name, tags=dict(tags or {}))
        return run.info.run_id

    def log_values(self, run_id: str, params: Mapping[str, Any] | None = None,
                   metrics: Mapping[str, float] | None = None, tags: Mapping[str, Any] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(datetime.now(timezone.utc).timestamp() * 1000)
        param_items = [Param(key, _param_value(value)) for key, value in (params or {}).items()]
        metric_items = [Metric(key, float(value), now, 0) for key, value in (metrics or {}).items()]
        tag_items = [RunTag(key, str(value)) for key, value in (tags or {}).items()]
        # MLflow takes at most 100 params and 1000 metrics per batch.
        for start in range(0, max(len(param_items), len(metric_items), len(tag_items), 1), 100):
            chunk = slice(start, start + 100)
            self.client.log_batch(run_id, metrics=metric_items[chunk], params=param_items[chunk], tags=tag_items[chunk])

    def end_run(self, run_id: str, failed: bool = False) -> None:
        self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")

    def log_run(self, run_dir: str | Path, name: str, parent_version: int | None = None,
                tags: Mapping[str, str] | None = None) -> str:
        """Log a finished run directory as an MLflow run (params, metrics, tags, artifacts); returns its id."""
        root = Path(run_dir).resolve()
        layout = RunLayout(root)
        recipe = _check_finished(root)
        metrics = json.loads(layout.metrics.read_text(encoding="utf-8"))
        run_tags = {TAG + "kind": "train", TAG + "run_dir": str(root), TAG + "base_model": recipe.model.name,
                    TAG + "task": recipe.task, TAG + "data_fingerprint": data_fingerprint(root),
                    **({TAG + "parent_version": str(parent_version)} if parent_version is not None else {}),
                    **dict(tags or {})}
        run_id = self.start_run(name, root.name, run_tags)
        try:
            self.log_values(run_id, params=flatten(recipe.model_dump(mode="json")),
                            metrics=numeric_metrics(metrics))
            for entry in sorted(root.iterdir()):
                if entry.name in SKIPPED or entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    self.client.log_artifacts(run_id, str(entry), f"{RUN_FOLDER}/{entry.name}")
                else:
                    self.client.log_artifact(run_id, str(entry), RUN_FOLDER)
        except BaseException:
            self.end_run(run_id, failed=True)
            raise
        self.end_run(run_id)
        return run_id

    def register(self, run_dir: str | Path, name: str, alias: str | None = "auto", parent_version: int | None = None,
                 description: str = "") -> VersionInfo:
        """Log `run_dir` and make it the next version of `name`.

        `alias="auto"` makes the first version the champion and later ones the challenger; None sets no alias.
        """
        _check_name(name)
        _check_finished(Path(run_dir))  # before anything is created in the registry
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name, description=description or None)
        run_id = self.log_run(run_dir, name, parent_version)
        run = self.client.get_run(run_id)
        tags = {key: value for key, value in run.data.tags.items() if key.startswith(TAG)}
        created = self.client.create_model_version(name, f"{run.info.artifact_uri}/{RUN_FOLDER}", run_id,
                                                   tags=tags, description=description or None)
        version = int(created.version)
        if alias == "auto":
            alias = CHALLENGER if self._alias_version(name, CHAMPION) is not None else CHAMPION
        if alias == CHAMPION:
            return self.promote(name, version)
        if alias:
            self.client.set_registered_model_alias(name, alias, str(version))
        return self.version(name, version)

    # -- reading -------------------------------------------------------------------------------------------------

    def models(self) -> list[ModelSummary]:
        found = []
        for model in self.client.search_registered_models(max_results=1000):
            versions = [int(v.version) for v in self.client.search_model_versions(f"name='{model.name}'")]
            found.append(ModelSummary(model.name, max(versions) if versions else None,
                                      {alias: int(v) for alias, v in (model.aliases or {}).items()},
                                      model.description or ""))
        return sorted(found, key=lambda summary: summary.name)

    def versions(self, name: str) -> list[VersionInfo]:
        self._model(name)
        found = self.client.search_model_versions(f"name='{name}'")
        return sorted((self._info(v, with_run=False) for v in found), key=lambda info: info.version)

    def version(self, name: str, ref: str | int) -> VersionInfo:
        """A version by number (3, '3', 'v3') or alias ('champion')."""
        from mlflow.exceptions import MlflowException

        self._model(name)
        text = str(ref).strip()
        number = text[1:] if text[:1] in "vV" and text[1:].isdigit() else text
        try:
            found = self.client.get_model_version(name, number) if number.isdigit() else \
                self.client.get_model_version_by_alias(name, text)
        except MlflowException:
            known = ", ".join(f"{alias} (v{v})" for alias, v in self._model(name).items()) or "none"
            raise TuneforgeError(f"model '{name}' has no version or alias '{ref}'",
                                 fix=f"use a version number (`tuneforge registry show {name}`) or an alias; "
                                     f"aliases: {known}") from None
        return self._info(found)

    def alias_version(self, name: str, alias: str = CHAMPION) -> int | None:
        """The version an alias points at now, or None; cheap enough to poll."""
        return self._alias_version(name, alias)

    def _alias_version(self, name: str, alias: str) -> int | None:
        from mlflow.exceptions import MlflowException

        try:
            return int(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None

    def _model(self, name: str) -> dict[str, int]:
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(name)
        except MlflowException:
            known = ", ".join(summary.name for summary in self.models()) or "none yet"
            raise TuneforgeError(f"no model named '{name}' in the registry at {self.shown_uri}",
                                 fix=f"register a run first (`tuneforge registry register RUN --name {name}` or "
                                     f"`tuneforge train ... --register {name}`); registered: {known}") from None
        return {alias: int(v) for alias, v in (model.aliases or {}).items()}

    def _info(self, version: Any, with_run: bool = True) -> VersionInfo:
        params: dict[str, str] = {}
        metrics: dict[str, float] = {}
        if with_run and version.run_id:
            run = self.client.get_run(version.run_id)
            params, metrics = dict(run.data.params), dict(run.data.metrics)
        created = datetime.fromtimestamp(version.creation_timestamp / 1000, tz=timezone.utc)
        return VersionInfo(version.name, int(version.version), tuple(sorted(version.aliases or ())), version.run_id,
                           version.source, created, dict(version.tags or {}), params, metrics)

    # -- aliases -------------------------------------------------------------------------------------------------

    def promote(self, name: str, version: int | str, alias: str = CHAMPION) -> VersionInfo:
        """Point `alias` at `version`; promoting to champion is remembered so that `rollback` can undo it."""
        info = self.version(name, version)
        self.client.set_registered_model_alias(name, alias, str(info.version))
        if alias == CHAMPION:
            history = self._history(name)
            if not history or history[-1] != info.version:
                history.append(info.version)
            self.client.set_registered_model_tag(name, HISTORY_TAG, ",".join(map(str, history)))
            if self._alias_version(name, CHALLENGER) == info.version:
                self.client.delete_registered_model_alias(name, CHALLENGER)
        return self.version(name, info.version)

    def rollback(self, name: str) -> VersionInfo:
        """Make the previous champion the champion again."""
        history = self._history(name)
        if len(history) < 2:
            raise TuneforgeError(f"model '{name}' has no earlier champion to roll back to",
                                 fix=f"promote a version by number: `tuneforge registry promote {name} VERSION`")
        history.pop()
        previous = history[-1]
        self.client.set_registered_model_alias(name, CHAMPION, str(previous))
        self.client.set_registered_model_tag(name, HISTORY_TAG, ",".join(map(str, history)))
        return self.version(name, previous)

    def _history(self, name: str) -> list[int]:
        model = self.client.get_registered_model(name)
        raw = (model.tags or {}).get(HISTORY_TAG, "")
        return [int(part) for part in raw.split(",") if part.strip().isdigit()]

    def set_version_tags(self, name: str, version: int, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, str(version), key, str(value))

    # -- comparing and loading -----------------------------------------------------------------------------------

    def diff(self, name: str, a: int | str, b: int | str) -> VersionDiff:
        first, second = self.version(name, a), self.version(name, b)
        recipe = [(key, first.params.get(key), second.params.get(key))
                  for key in sorted(set(first.params) | set(second.params))
                  if first.params.get(key) != second.params.get(key)]
        metrics = [(key, first.metrics.get(key), second.metrics.get(key))
                   for key in sorted(set(first.metrics) | set(second.metrics))
                   if first.metrics.get(key) != second.metrics.get(key)]
        return VersionDiff(name, first.version, second.version, recipe, metrics)

    def run_dir(self, name: str, ref: int | str = CHAMPION) -> tuple[VersionInfo, Path]:
        """The version and a local run directory for it: the artifact folder itself when it is on this machine,
        else a copy downloaded once into the cache."""
        info = self.version(name, ref)
        return info, self.local_copy(info)

    def local_copy(self, info: VersionInfo) -> Path:
        parsed = urlparse(info.source)
        if parsed.scheme in ("", "file"):
            local = Path(url2pathname(parsed.path) if parsed.scheme == "file" else info.source)
            if (local / "recipe.yaml").is_file():
                return local
        target = self.cache_dir / info.name / str(info.version)
        if (target / "recipe.yaml").is_file():
            return target
        from mlflow.artifacts import download_artifacts

        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{info.version}-", dir=target.parent))
        try:
            download_artifacts(run_id=info.run_id, artifact_path=RUN_FOLDER, dst_path=str(staging),
                               tracking_uri=self.uri)
            os.replace(staging / RUN_FOLDER, target)  # whole or not at all, for a server reading the cache
        except FileExistsError:
            pass  # another process finished the same download first
        except OSError as error:
            if not (target / "recipe.yaml").is_file():
                raise TuneforgeError(f"cannot download version {info.version} of '{info.name}': "
                                     f"{redact_text(str(error))}",
                                     fix="check the registry's artifact store is reachable") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def recipe_of(self, info: VersionInfo) -> dict[str, Any]:
        return yaml.safe_load((self.local_copy(info) / "recipe.yaml").read_text(encoding="utf-8"))


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."  # MLflow's limit on one param value


def _unreachable(error: BaseException) -> bool:
    """Whether an MLflow failure means the server could not be reached or did not answer in time."""
    text = f"{type(error).__name__} {error}".lower()
    return any(word in text for word in ("timeout", "timed out", "connection", "max retries", "unreachable",
                                         "name or service not known", "failed to resolve"))


def _network_reason(text: str) -> str:
    """The cause at the bottom of urllib3's "Max retries exceeded ... (Caused by ...)" chain, in a few words."""
    lowered = text.lower()
    for words, reason in ((("refused",), "connection refused"), (("timed out", "timeout"), "no answer in time"),
                          (("name or service not known", "failed to resolve", "nodename"), "unknown host name"),
                          (("unreachable",), "network unreachable")):
        if any(word in lowered for word in words):
            return reason
    return text.rsplit("Caused by ", 1)[-1].strip("()") if "Caused by " in text else text


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _check_finished(root: Path) -> Any:
    """The run's recipe, or a clear error for a folder that is not a finished run."""
    recipe = read_run_recipe(root)
    if not RunLayout(root).is_finished():
        raise TuneforgeError(f"run '{root}' has not finished training (no model or no metrics.json)",
                             fix=f"finish it first: `tuneforge train --resume --output {root}`")
    return recipe


def _check_name(name: str) -> None:
    if not name or any(c in name for c in "@/'\"\\") or name != name.strip():
        raise TuneforgeError(f"'{name}' cannot name a model (no '@', '/', quotes or surrounding spaces)",
                             fix="use letters, digits, '-', '_' or '.', e.g. sentiment-en")
