"""`tuneforge augment`: preview or export the variants a recipe's augment section (or a few flags) adds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tuneforge.cli.common import build_recipe, quiet_libraries
from tuneforge.cli.display import console
from tuneforge.errors import DataError, TuneforgeError
from tuneforge.recipe import AugmentSpec, Recipe

METHOD_COLUMN = "augmentation"  # names the method that made a row; "original" for the input rows
DEFAULT_PREVIEW = 10


def _method_overrides(recipe: Recipe, methods: list[str] | None, ratio: float | None, model: str | None = None
                      ) -> list[str]:
    """--method / --ratio / --model as one `augment.methods` override, so the recipe's validation (and errors)
    apply; --model goes to the methods that take a model (generation, contextual)."""
    import yaml

    if methods:
        items: list[dict[str, Any]] = [
            {"method": name, "ratio": ratio or 1.0,
             **({"model": model} if model and name in ("generation", "contextual") else {})} for name in methods]
    elif ratio is not None:
        items = [{**spec.model_dump(mode="json", exclude_unset=True), "ratio": ratio}
                 for spec in recipe.augment.methods]
    else:
        return []
    return ["augment.methods=" + yaml.safe_dump(items, default_flow_style=True, width=10_000).strip()]


def _rows_to_augment(recipe: Recipe, from_recipe: bool) -> tuple[Any, list[str]]:
    """(rows as a DataFrame, held-out texts): the recipe's training split as training would see it, or the
    whole --data file."""
    spec = recipe.data
    if from_recipe:
        from tuneforge.data.prepare import LABEL_FIELD, WEIGHT_FIELD, prepare_data

        plain = recipe.model_copy(deep=True)
        plain.augment = AugmentSpec()  # the split before augmentation, without fairness mitigation's rows
        plain.fairness.mitigation = "none"
        prepared = prepare_data(plain)
        held = [str(t) for split in (prepared.validation, prepared.test) if split is not None
                for t in split[spec.text_column]]
        frame = prepared.train.to_pandas()
        return frame.drop(columns=[c for c in (LABEL_FIELD, WEIGHT_FIELD) if c in frame.columns]), held

    from tuneforge.data import validation as checks
    from tuneforge.data.loading import read_table

    assert spec.train is not None
    dataset = read_table(spec.train, "train", spec.cache_dir)
    problems = checks.check_columns(spec.train, dataset.column_names, [spec.text_column, spec.label_column])
    if not problems:
        problems = checks.check_texts(spec.train, spec.text_column, dataset[spec.text_column])
    if problems:
        raise DataError(problems)
    return dataset.to_pandas(), []


def _preview(frame: Any, added: Any, text_column: str, label_column: str, count: int) -> None:
    from rich.table import Table
    from rich.text import Text

    by_origin: dict[int, list[tuple[str, str]]] = {}
    for text, origin, method in zip(added.texts, added.origins, added.methods, strict=True):
        by_origin.setdefault(origin, []).append((method, text))
    table = Table(title=f"Augmentation preview ({min(count, len(by_origin))} of {len(by_origin)} augmented rows)")
    for column in ("label", "original", "method", "variant"):
        table.add_column(column, overflow="fold")
    for origin in sorted(by_origin)[:count]:
        variants = by_origin[origin]
        for position, (method, text) in enumerate(variants):
            first = position == 0
            table.add_row(Text(str(frame[label_column].iloc[origin]) if first else ""),
                          Text(str(frame[text_column].iloc[origin]) if first else ""), Text(method), Text(text),
                          end_section=position == len(variants) - 1)
    console.print(table)


def register(app: typer.Typer) -> None:
    @app.command()
    def augment(
        recipe: Path = typer.Argument(None, exists=True, dir_okay=False,
                                      help="Recipe YAML: augments its training split with its augment section."),
        data: Path = typer.Option(None, "--data", help="Without a recipe: the file to augment (every row)."),
        text_column: str = typer.Option(None, help="Text column (data.text_column)."),
        label_column: str = typer.Option(None, help="Label column (data.label_column), copied to the variants."),
        method: list[str] = typer.Option(None, "--method",
                                         help="synonym, eda, shuffle, back_translation, generation or "
                                              "contextual; repeat for several. Replaces the recipe's augment methods "
                                              "(generation and contextual also need --model)."),
        model: str = typer.Option(None, "--model", help="generation: the generator (causal or seq2seq LM); "
                                                        "contextual: a masked LM. Folder, run directory or hub id."),
        ratio: float = typer.Option(None, help="New examples per original, e.g. 1 or 0.5 (default: 1)."),
        seed: int = typer.Option(None, help="Seed of the variants (augment.seed)."),
        sets: list[str] = typer.Option(None, "--set", help="Override a recipe field: --set augment.seed=3"),
        preview: int = typer.Option(None, "--preview", min=0,
                                    help=f"Show this many originals beside their variants "
                                         f"(default: {DEFAULT_PREVIEW} when there is no --output)."),
        output: Path = typer.Option(None, "--output", help="CSV to write: the original rows, then the new rows, "
                                                           f"with a '{METHOD_COLUMN}' column naming the method."),
    ) -> None:
        """Make label-preserving variants of training texts: preview them, or write them to a CSV."""
        if recipe is None and data is None:
            raise TuneforgeError("nothing to augment", fix="pass a recipe, or --data FILE --method NAME")
        quiet_libraries()
        overrides = list(sets or []) + ([f"augment.seed={seed}"] if seed is not None else [])
        flags = {"data": data, "text_column": text_column, "label_column": label_column}
        built = build_recipe(recipe, overrides, **flags)
        extra = _method_overrides(built, method, ratio, model)
        if extra:
            built = build_recipe(recipe, overrides + extra, **flags)
        if not built.augment.enabled:
            raise TuneforgeError("no augmentation method given",
                                 fix="pass --method synonym (or eda, shuffle, back_translation, generation, "
                                     "contextual), or add an "
                                     "augment section with methods to the recipe")
        if built.data.text_pair_column:
            raise TuneforgeError("augmentation rewrites single texts; this recipe has text pairs",
                                 fix="augment single-text data only")

        from tuneforge.augment.pipeline import augment_texts

        spec = built.data
        frame, held = _rows_to_augment(built, from_recipe=recipe is not None)
        texts = [str(t) for t in frame[spec.text_column]]
        labels = [str(v) for v in frame[spec.label_column]] if spec.label_column in frame.columns else None
        added = augment_texts(texts, built.augment, spec.cache_dir, held, labels)
        summary = ", ".join(f"+{n} {name}" for name, n in added.summary().items())
        for name, detail in added.details.items():
            dropped = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in detail.get("dropped", {}).items())
            console.print(f"{name}: {detail.get('generated', 0)} generated, {detail.get('kept', 0)} kept"
                          f"{'; dropped ' + dropped if dropped else ''}", highlight=False, soft_wrap=True)
        console.print(f"{len(texts)} rows, {len(added.texts)} new ({summary}): {len(texts) + len(added.texts)} "
                      "rows in all", highlight=False, soft_wrap=True)
        if preview or (preview is None and output is None):
            _preview(frame, added, spec.text_column, spec.label_column, preview or DEFAULT_PREVIEW)
        if output is not None:
            import pandas as pd

            from tuneforge import artifacts

            new = frame.iloc[added.origins].copy()
            new[spec.text_column] = added.texts
            new[METHOD_COLUMN] = added.methods
            result = pd.concat([frame.assign(**{METHOD_COLUMN: "original"}), new], ignore_index=True)
            artifacts.write_with(output, lambda path: result.to_csv(path, index=False))
            console.print(f"written to {output}", soft_wrap=True, highlight=False)
