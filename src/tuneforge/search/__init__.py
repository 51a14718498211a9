"""Hyperparameter studies over a recipe (Optuna): `run_study(recipe)` or `tuneforge search RECIPE`."""

from tuneforge.search.study import StudyResult, run_study, study_directory

__all__ = ["StudyResult", "run_study", "study_directory"]
