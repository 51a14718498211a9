"""`tuneforge refresh`: re-fine-tune a registered model on its data plus accepted feedback, promote if not worse.

Meant for cron or CI: exit code 0 when the cycle ran (promoted or not, the message says which), non-zero when a
step failed.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import typer

from tuneforge.cli.registry import FEEDBACK_VARIABLE, open_registry, registry_option, tuneforge_home


def register(app: typer.Typer) -> None:
    @app.command()
    def refresh(
        model: str = typer.Argument(..., help="Registered model name; its champion is the one to beat."),
        recipe: Path = typer.Option(..., "--recipe", exists=True, dir_okay=False,
                                    help="The model's recipe: original data, training settings and the refresh: "
                                         "section (gate file, margin, start_from, metric)."),
        sets: list[str] = typer.Option(None, "--set", help="Override a recipe field: --set refresh.margin=0.01"),
        output: Path = typer.Option(None, help="Challenger run directory (default runs/MODEL-refresh-TIMESTAMP)."),
        registry_uri: str = registry_option(),
        feedback_url: str = typer.Option(None, envvar=FEEDBACK_VARIABLE, show_default=False,
                                         help="Feedback store the servers wrote to (default: SQLite feedback.db "
                                              "in the tuneforge home folder)."),
        device: str = typer.Option("auto", help="auto, cpu or cuda, for scoring both versions."),
    ) -> None:
        """Build the next training set (data + accepted feedback, de-duplicated), fine-tune a challenger, score it
        against the champion on the gate set and recent feedback, and promote it unless it is worse by the
        recipe's margin. Every step is recorded in the registry."""
        from tuneforge.cli.common import build_recipe, quiet_libraries
        from tuneforge.cli.display import console
        from tuneforge.lifecycle.feedback import FeedbackStore, default_store_url
        from tuneforge.lifecycle.refresh import refresh as run_refresh
        from tuneforge.lifecycle.registry import parse_model_ref

        quiet_libraries()
        name, _ = parse_model_ref(model)
        built = build_recipe(recipe, sets)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        target = (output or Path("runs") / f"{name}-refresh-{stamp}").resolve()
        store = FeedbackStore.open(feedback_url or default_store_url(tuneforge_home()))
        console.print(f"refreshing {name}: challenger in {target}", highlight=False, soft_wrap=True)
        result = run_refresh(open_registry(registry_uri), store, name, built, target, device=device)
        if result.training_set is not None:
            data = result.training_set
            console.print(f"training set: {data.rows} rows ({data.original} original, {data.feedback} from feedback, "
                          f"{data.replaced} relabelled, {data.duplicates} duplicates dropped; "
                          f"{len(data.holdout)} corrections held out)", highlight=False)
        colour = "green" if result.promoted else "yellow"
        console.print(f"[{colour}]{'promoted' if result.promoted else 'not promoted'}:[/{colour}] {result.reason}",
                      highlight=False, soft_wrap=True)
