"""One table from run kind to the loader that rebuilds its predictor, and `load`, which reads a run's kind once
(run_kind.json, or its recipe for runs written before that file) and dispatches on it: no sniffing for files.

Each kind's module registers its loader with `@loads(...)`; `tuneforge.predict` imports every one of them, so the
table is whole before anything is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tuneforge import kinds
from tuneforge.errors import TuneforgeError
from tuneforge.predict import checks
from tuneforge.predict.protocol import Loader, LoadRequest, RunPredictor
from tuneforge.run import read_run_recipe
from tuneforge.trust import RunCodeTrust, check_run_code

LOADERS: dict[str, Loader] = {}


def loads(*kind_names: str) -> Callable[[Loader], Loader]:
    """Register the decorated function as the loader of these run kinds (one loader per kind)."""
    def register(loader: Loader) -> Loader:
        for name in kind_names:
            if name not in kinds.KINDS:
                raise ValueError(f"'{name}' is not a run kind; kinds are {', '.join(kinds.KINDS)}")
            if name in LOADERS:
                raise ValueError(f"run kind '{name}' already loads with {LOADERS[name].__qualname__}")
            LOADERS[name] = loader
        return loader
    return register


def load(run_dir: str | Path, device: str = "auto", backend: str = "torch", task_name: str | None = None,
         trust_run_code: bool | RunCodeTrust = False) -> RunPredictor:
    """The predictor of a run directory, whatever its kind, with every artifact it reads checked first.

    The code a run names (domain functions, remote model code) is refused before anything is loaded unless
    `trust_run_code` is True or the user's settings file allows each path (see `tuneforge.trust`); evaluation
    plugins are checked when evaluating."""
    root = Path(run_dir)
    recipe = read_run_recipe(root)
    trust = RunCodeTrust.resolve(trust_run_code)
    check_run_code(root, recipe, trust, plugins=False)
    kind = checks.run_kind(root, recipe)
    checks.backend(backend, kind)
    loader = LOADERS.get(kind.name)
    if loader is None:
        raise TuneforgeError(f"this version of tuneforge cannot load {kind.name} runs for prediction",
                             fix="use the tuneforge version that trained the run")
    return loader(LoadRequest(root, recipe, kind, device, backend, task_name, trust))
