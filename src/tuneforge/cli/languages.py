"""`tuneforge translate` and `tuneforge crosslingual`: the low-resource language verbs."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.common import quiet_libraries, trust_option
from tuneforge.cli.display import console, fmt
from tuneforge.errors import TuneforgeError


def _language_files(pairs: list[str]) -> dict[str, str]:
    files: dict[str, str] = {}
    for pair in pairs:
        language, separator, path = pair.partition("=")
        if not separator or not language or not path:
            raise TuneforgeError(f"--eval {pair!r} is not LANGUAGE=FILE", fix="e.g. --eval javanese=jv/test.csv")
        if not Path(path).is_file():
            raise TuneforgeError(f"--eval {language}: file {path} not found", fix="check the path")
        files[language] = path
    return files


def _engine_fix(source: str, target: str, model: str | None) -> str:
    """How to get a working translation engine for `tuneforge translate`, in its own options."""
    if model:
        return ("pass --model a local folder or hub id of a sequence-to-sequence translation model with safetensors "
                "weights (e.g. a MarianMT model), or leave out --model to translate with Apertium")
    return (f"install Apertium and the pair: `apt-get install apertium apertium-{source}-{target}` (`apt-cache "
            "search apertium-` lists the pairs; --from and --to are Apertium codes, as in the modes `apertium -l` "
            "prints), or pass --model with a Transformers translation model (a local folder or hub id)")


def register(app: typer.Typer) -> None:
    @app.command()
    def translate(
        data: Path = typer.Option(..., "--data", exists=True, dir_okay=False, help="Table to translate."),
        output: Path = typer.Option(..., "--output", help="CSV to write, every other column unchanged."),
        source: str = typer.Option(..., "--from", help="Language of the texts (Apertium code, e.g. eng)."),
        target: str = typer.Option(..., "--to", help="Language to translate into (Apertium code, e.g. spa)."),
        text_column: list[str] = typer.Option(["text"], "--text-column", help="Column(s) to translate."),
        model: str = typer.Option(None, "--model", help="A Transformers translation model (local folder or hub "
                                                        "id) instead of Apertium."),
        keep_original: bool = typer.Option(False, help="Keep each original text in <column>_original."),
    ) -> None:
        """Translate the text columns of a file: translate-train (translate the training data into the target
        language) or translate-test (translate target-language data into the training language)."""
        quiet_libraries()
        from tuneforge.data.translation import translate_table

        try:
            result = translate_table(data, text_column, output, source, target, model, keep_original)
        except TuneforgeError as error:
            # The engines' advice is written for back-translation, whose recipe option is `models`; here the
            # choice is --model.
            if "`models`" not in error.fix:
                raise
            raise TuneforgeError(error.message, fix=_engine_fix(source, target, model)) from None
        console.print(f"translated {result.translated_cells} texts in {result.rows} rows with {result.engine}; "
                      f"written to {result.output}", highlight=False)

    @app.command()
    def crosslingual(
        run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="A classification run directory."),
        eval_files: list[str] = typer.Option(..., "--eval", help="LANGUAGE=FILE, a labelled file per language "
                                                                 "(repeat the option)."),
        output: Path = typer.Option(None, help="JSON to write (default: RUN_DIR/evaluations/crosslingual.json)."),
        device: str = typer.Option("auto", help="auto, cpu or cuda."),
        trust_run_code: bool = trust_option(),
    ) -> None:
        """Score one run on the same task in several languages: one row per language (zero-shot transfer when
        the run never saw that language)."""
        quiet_libraries()
        from rich.table import Table

        from tuneforge import artifacts
        from tuneforge.evaluate.crosslingual import COLUMNS, evaluate_languages
        from tuneforge.predict import Predictor
        from tuneforge.run import RunLayout

        files = _language_files(eval_files)
        predictor = Predictor.from_run(run_dir, device, trust_run_code=trust_run_code)
        if predictor.labels is None:
            raise TuneforgeError("crosslingual scores classification runs", fix="pass a classification run")
        rows = evaluate_languages(predictor, files)
        table = Table(title=f"Cross-lingual evaluation of {run_dir}")
        for column in ("language", "rows", "detected", *COLUMNS):
            table.add_column(column, justify="left" if column == "language" else "right")
        for row in rows:
            table.add_row(row["language"], fmt(row["rows"]), fmt(row["detected_language"]),
                          *(fmt(row[name]) for name in COLUMNS))
        console.print(table)
        target = output or RunLayout(run_dir).evaluations / "crosslingual.json"
        artifacts.write_json(target, {"run": str(run_dir), "languages": rows})
        console.print(f"written to {target}")
