"""User metric plugins: callables named in `evaluation.plugins` whose results sit beside the built-in metrics.

A plugin is any importable callable, named "package.module:function" or "package.module.function". It is called
with keyword arguments, and receives only those its signature names (all of them if it takes **kwargs), so a
plugin can ask for just what it uses:

    texts          list[str]           the evaluated texts
    labels         np.ndarray (n,)     true class ids (classification) or targets (regression)
    predictions    np.ndarray (n,)     predicted class ids, or predicted values
    probabilities  np.ndarray (n, k)   class probabilities (temperature applied); None for regression
    label_names    list[str]           class names in id order; None for regression

It returns a dict of JSON-serialisable values (numpy scalars and arrays are converted). A plugin that cannot be
imported is a configuration error raised before any scoring; a plugin that raises or returns something else while
scoring is recorded as {"error": "..."} and the evaluation goes on, so one faulty check never costs the others.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tuneforge.errors import Problem, TuneforgeError

PLUGIN_ARGUMENTS = ("texts", "labels", "predictions", "probabilities", "label_names")
_FIX = "write it as 'package.module:function' (or 'package.module.function'), with the package importable " \
       "from where tuneforge runs (installed, or on PYTHONPATH)"


def _import_module(name: str) -> Any:
    """Import `name`; None when `name` itself does not exist (a module it imports being missing still raises)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and (name == error.name or name.startswith(error.name + ".")):
            return None
        raise


def _resolve(path: str) -> Any:
    if ":" in path:
        module_name, _, attribute = path.partition(":")
        candidates = [(module_name, attribute)]
    else:
        parts = path.split(".")
        candidates = [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)]
    if not candidates or not all(module and attribute for module, attribute in candidates):
        raise ValueError("it does not name a module and a callable in it")
    for module_name, attribute in candidates:
        module = _import_module(module_name)
        if module is None:
            continue
        target: Any = module
        for part in attribute.split("."):
            if not hasattr(target, part):
                raise ValueError(f"module '{module_name}' has no attribute '{attribute}'")
            target = getattr(target, part)
        return target
    tried = " or ".join(f"'{module}'" for module, _ in candidates)
    raise ValueError(f"no module {tried} can be imported")


def load_plugin(path: str) -> Callable[..., Any]:
    """Import the callable a dotted path names; raises `TuneforgeError` (with the path in the fix) if it cannot."""
    name = str(path).strip()
    try:
        target = _resolve(name)
    except Exception as error:  # a broken plugin module fails in any way; all are configuration errors
        raise TuneforgeError(f"evaluation plugin '{name}' cannot be loaded: {error}",
                             fix=f"check the dotted path '{name}' in evaluation.plugins; {_FIX}") from None
    if not callable(target):
        raise TuneforgeError(f"evaluation plugin '{name}' is not callable",
                             fix=f"point '{name}' at a function taking keyword arguments among "
                                 f"{', '.join(PLUGIN_ARGUMENTS)}")
    unknown = _required_unknown(target)
    if unknown:
        raise TuneforgeError(f"evaluation plugin '{name}' requires argument(s) tuneforge does not provide: "
                             f"{', '.join(unknown)}",
                             fix=f"give '{name}' parameters among {', '.join(PLUGIN_ARGUMENTS)} (or **kwargs), or "
                                 "defaults for the others")
    return target


def _parameters(function: Callable[..., Any]) -> dict[str, inspect.Parameter] | None:
    """The signature's parameters, or None when it cannot be read (builtins) and everything is passed."""
    try:
        return dict(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return None


def _required_unknown(function: Callable[..., Any]) -> list[str]:
    parameters = _parameters(function)
    if parameters is None:
        return []
    return [name for name, p in parameters.items()
            if p.default is inspect.Parameter.empty and name not in PLUGIN_ARGUMENTS
            and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


def _arguments_for(function: Callable[..., Any], available: dict[str, Any]) -> dict[str, Any]:
    parameters = _parameters(function)
    if parameters is None or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(available)
    return {name: value for name, value in available.items() if name in parameters}


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def load_plugins(paths: Sequence[str]) -> dict[str, Callable[..., Any]]:
    """Every plugin by its path, in order; raises on the first that cannot be loaded (use before scoring)."""
    return {str(path).strip(): load_plugin(path) for path in paths}


def run_plugins(dotted_paths: Sequence[str], texts: Sequence[str], labels: np.ndarray, predictions: np.ndarray,
                probabilities: np.ndarray | None, label_names: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """Each plugin's result dict by its dotted path; a failing plugin's entry is {"error": "..."}."""
    results: dict[str, dict[str, Any]] = {}
    for name, plugin in load_plugins(dotted_paths).items():
        # Fresh copies per plugin: one that modifies its inputs in place cannot change what the next one sees.
        available = {
            "texts": list(texts),
            "labels": np.array(labels, copy=True),
            "predictions": np.array(predictions, copy=True),
            "probabilities": None if probabilities is None else np.array(probabilities, copy=True),
            "label_names": None if label_names is None else list(label_names),
        }
        try:
            result = plugin(**_arguments_for(plugin, available))
            if not isinstance(result, dict):
                raise TypeError(f"returned {type(result).__name__}, not a dict of metrics")
            results[name] = json.loads(json.dumps(result, default=_json_value))
        except Exception as error:  # the plugin's own bug: recorded for the user, the evaluation goes on
            results[name] = {"error": f"{type(error).__name__}: {error}"}
    return results


def validate_plugins(paths: Sequence[str]) -> list[Problem]:
    """One problem per plugin that cannot be loaded, pointing at its place in the recipe (for `tuneforge validate`)."""
    problems = []
    for index, path in enumerate(paths):
        try:
            load_plugin(path)
        except TuneforgeError as error:
            problems.append(Problem(where=f"evaluation.plugins[{index}]", message=error.message, fix=error.fix))
    return problems
