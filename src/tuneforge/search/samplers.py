"""The recipe's sampler and pruner names turned into Optuna objects."""

from __future__ import annotations

import math
from typing import Any

from tuneforge.recipe import SearchSpec
from tuneforge.search.space import grid


def build_sampler(spec: SearchSpec, worker: int = 0, parallel: bool = False) -> Any:
    """tpe, random or grid, seeded from the recipe; each worker gets its own seed so parallel workers do not
    propose the same first trials, and TPE lies about running trials (constant liar) so they spread out."""
    import optuna

    seed = spec.seed + worker
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler(grid(spec.space), seed=seed)
    # Optuna's 10 random start-up trials would be most of a small budget; a third of it (2 to 10) is enough
    # for TPE's first density estimate.
    startup = 10 if spec.trials is None else max(2, min(10, math.ceil(spec.trials / 3)))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=parallel)


def build_pruner(spec: SearchSpec) -> Any:
    """Steps are evaluations (one per epoch), so the resources of Hyperband and ASHA are epochs."""
    import optuna

    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.pruner_startup_trials, n_warmup_steps=0)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto", reduction_factor=3)
    if spec.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()
