"""Ensembles of finished runs: soft and hard voting, fitted weights and stacking.

`combine` holds the arithmetic as pure functions on arrays; `build` turns member runs into an ensemble run
directory; `predictor` reads one back with the interface of `tuneforge.predict.Predictor`.
"""

from tuneforge.ensemble.predictor import ENSEMBLE_FILE, METHODS

__all__ = ["ENSEMBLE_FILE", "METHODS"]
