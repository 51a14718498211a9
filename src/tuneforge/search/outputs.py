"""What a study leaves in its directory: leaderboard.csv, best_recipe.yaml, study.json and the plots."""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tuneforge import artifacts
from tuneforge.recipe import Recipe
from tuneforge.search.space import best_recipe, recipe_data

LEADERBOARD = "leaderboard.csv"
BEST_RECIPE = "best_recipe.yaml"
SUMMARY = "study.json"
PLOTS = ("optimization_history", "param_importances", "parallel_coordinate")


@dataclass
class TrialRow:
    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    value: float | None  # the objective (completed) or the last reported validation score (pruned)
    params: dict[str, Any]
    evaluations: int
    duration_s: float | None
    run_dir: str | None
    worker: int | None
    retry_of: int | None


def trial_row(trial: Any) -> TrialRow:
    state = trial.state.name
    value = trial.value if state == "COMPLETE" else (
        trial.intermediate_values[max(trial.intermediate_values)] if trial.intermediate_values else None)
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    retry_of = trial.user_attrs.get("retry_of", trial.system_attrs.get("failed_trial"))
    return TrialRow(trial.number, state, value, dict(trial.params), len(trial.intermediate_values),
                    round(duration, 1) if duration is not None else None, trial.user_attrs.get("run_dir"),
                    trial.user_attrs.get("worker"), retry_of)


def ranked(rows: list[TrialRow], greater_is_better: bool) -> list[TrialRow]:
    """Completed trials best first, then pruned ones by their last score, then the rest by number."""
    order = {"COMPLETE": 0, "PRUNED": 1}

    def key(row: TrialRow) -> tuple[int, float, int]:
        group = order.get(row.state, 2)
        score = row.value if row.value is not None and group < 2 else 0.0
        return group, -score if greater_is_better else score, row.number

    return sorted(rows, key=key)


def write_leaderboard(path: Path, rows: list[TrialRow], metric: str) -> None:
    import pandas as pd

    params = sorted({name for row in rows for name in row.params})
    records = [{"rank": rank, "trial": row.number, "state": row.state.lower(), metric: row.value,
                **{name: row.params.get(name) for name in params}, "evaluations": row.evaluations,
                "duration_s": row.duration_s, "run_dir": row.run_dir}
               for rank, row in enumerate(rows, start=1)]
    frame = pd.DataFrame(records, columns=["rank", "trial", "state", metric, *params, "evaluations", "duration_s",
                                           "run_dir"])
    artifacts.write_with(path, lambda target: frame.to_csv(target, index=False))


def write_best_recipe(path: Path, recipe: Recipe, params: dict[str, Any]) -> None:
    """A complete recipe without the search section, ready for `tuneforge train`."""
    text = yaml.safe_dump(recipe_data(best_recipe(recipe, params)), sort_keys=False, allow_unicode=True)
    header = "# The best trial's recipe, written by `tuneforge search`; run it with `tuneforge train`.\n"
    artifacts.write_text(path, header + text)


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    artifacts.write_json(path, summary)


@dataclass
class Plots:
    files: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def write_plots(study: Any, directory: Path) -> Plots:
    """Optuna's own plots: PNG through matplotlib, and HTML too when plotly is installed (optional, as it is
    large). A plot that needs more trials than the study has is skipped with the reason."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as mpl_plots

    result = Plots()
    completed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    varied = {name for t in completed for name in t.params
              if len({repr(other.params.get(name)) for other in completed}) > 1}
    needs = {"optimization_history": (1, ""), "param_importances": (2, "two completed trials and a varied "
                                                                       "parameter"),
             "parallel_coordinate": (2, "two completed trials")}
    with_plotly = importlib.util.find_spec("plotly") is not None
    for name in PLOTS:
        minimum, reason = needs[name]
        if len(completed) < minimum or (name == "param_importances" and not varied):
            result.skipped[name] = f"needs {reason or 'a completed trial'}"
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)  # e.g. "importances will be equal" on tiny studies
            try:
                axes = getattr(mpl_plots, f"plot_{name}")(study)
                figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
                figure.set_size_inches(9, 5.5)
                artifacts.write_with(directory / f"{name}.png",
                                     lambda target, fig=figure: fig.savefig(target, format="png", dpi=110,
                                                                            bbox_inches="tight"))
                plt.close(figure)
                result.files.append(directory / f"{name}.png")
                if with_plotly:
                    from optuna import visualization

                    html = getattr(visualization, f"plot_{name}")(study)
                    artifacts.write_with(directory / f"{name}.html",
                                         lambda target, fig=html: fig.write_html(str(target)))
                    result.files.append(directory / f"{name}.html")
            except Exception as error:  # noqa: BLE001 - a plot must not cost the user a finished study
                result.skipped[name] = f"{type(error).__name__}: {error}"
                plt.close("all")
    return result


def row_dict(row: TrialRow) -> dict[str, Any]:
    return asdict(row)
