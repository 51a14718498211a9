"""Prediction from a run directory alone: one predictor protocol, one loader per run kind.

    predictor = tuneforge.predict.load(run_dir)   # what tuneforge.load(run_dir) returns
    predictor.kind                                # the RunKind: branch on it, not on recipe.task
    predictor.predict([...])

`load` reads the run's kind once (run_kind.json, or the recipe of an older run), refuses code the user has not
trusted, and hands over to that kind's loader in `registry.LOADERS`, which checks every file it reads
(`checks`) before a library touches it. `Predictor` is the text predictor (and `Predictor.from_run` the same
`load`).
"""

from tuneforge.predict import ensemble, generative, multimodal, multitask, preference, text  # noqa: F401 (each registers)
from tuneforge.predict.checks import RunDamaged
from tuneforge.predict.generative import GenerativePredictor
from tuneforge.predict.multimodal import MultimodalPredictor
from tuneforge.predict.protocol import LoadRequest, RunPredictor
from tuneforge.predict.registry import LOADERS, load
from tuneforge.predict.text import Predictor

__all__ = ["LOADERS", "GenerativePredictor", "LoadRequest", "MultimodalPredictor", "Predictor", "RunDamaged",
           "RunPredictor", "load"]
