"""`tuneforge evaluate` and `tuneforge predict`: use a finished run directory."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from tuneforge.cli.common import quiet_libraries, trust_option
from tuneforge.cli.display import console, errors, show_metrics
from tuneforge.errors import DataError, Problem
from tuneforge.kinds import GENERATIVE, MULTIMODAL, TAGGING


def register(app: typer.Typer) -> None:
    @app.command()
    def evaluate(
        run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="A run directory."),
        data: Path = typer.Option(..., "--data", help="Labelled file with the run's text and label columns."),
        output: Path = typer.Option(None, help="Where to write the metrics JSON "
                                               "(default: RUN_DIR/evaluations/<file>.json)."),
        predictions: Path = typer.Option(None, help="Also write per-row predictions to this CSV (JSON lines for "
                                                    "token classification)."),
        device: str = typer.Option("auto", help="auto, cpu or cuda."),
        task_name: str = typer.Option(None, "--task-name", help="Multi-task runs: the task to score."),
        trust_run_code: bool = trust_option(),
    ) -> None:
        """Score a trained run on a labelled file; prints and writes the metrics, calibration, error analysis and
        the results of the recipe's evaluation plugins."""
        quiet_libraries()
        from rich.markup import escape

        from tuneforge import artifacts
        from tuneforge.evaluate.scoring import score_file, score_tagged_file
        from tuneforge.predict import Predictor
        from tuneforge.predict.io import predictions_frame
        from tuneforge.run import RunLayout

        predictor = Predictor.from_run(run_dir, device, task_name=task_name, trust_run_code=trust_run_code)
        if predictor.kind.name == GENERATIVE:
            _evaluate_generative(predictor, run_dir, data, output, predictions)
            return
        tagging = predictor.kind.name == TAGGING
        if predictor.kind.name == MULTIMODAL:  # rows of typed columns (predict/multimodal.py)
            from tuneforge.predict.multimodal import score_multimodal_file as score_file  # noqa: F811
        metrics, rows = score_tagged_file(predictor, data) if tagging else score_file(predictor, data)
        target = output or RunLayout(run_dir).evaluations / f"{data.stem}.json"
        artifacts.write_json(target, {"data": str(data.resolve()), **metrics})
        show_metrics({"evaluation": metrics}, predictor.recipe.task, title=f"Evaluation on {data.name}")
        for name, result in metrics["plugins"].items():
            if "error" in result:
                errors.print(f"[yellow]warning[/yellow] plugin {escape(name)} failed: {escape(result['error'])}",
                             highlight=False)
            else:
                console.print(f"plugin {name}: " + ", ".join(f"{k}={v}" for k, v in result.items()
                                                              if isinstance(v, (int, float, str, bool))),
                              markup=False, highlight=False)
        if predictions is not None and tagging:
            artifacts.write_text(predictions, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        elif predictions is not None:
            frame = predictions_frame([r["text"] for r in rows], rows, [r["true"] for r in rows])
            artifacts.write_with(predictions, lambda path: frame.to_csv(path, index=False))
        console.print(f"metrics written to {target}")

    @app.command()
    def predict(
        run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="A run directory."),
        data: Path = typer.Option(None, "--data", help="File with a text column; without it, texts are read "
                                                       "from standard input, one per line."),
        output: Path = typer.Option(None, help="CSV to write (JSON lines for token classification); without it, "
                                               "standard output."),
        text_column: str = typer.Option(None, help="Text column in --data (default: the run's)."),
        batch_size: int = typer.Option(64, min=1, help="Texts per batch."),
        device: str = typer.Option("auto", help="auto, cpu or cuda."),
        backend: str = typer.Option("torch", help="torch, or onnx: ONNX Runtime on the CPU over the run's "
                                                  "`tuneforge export RUN --format onnx`."),
        max_new_tokens: int = typer.Option(None, min=1, help="seq2seq, causal-lm: most tokens generated per input "
                                                             "(default: the run's generation.max_new_tokens)."),
        task_name: str = typer.Option(None, "--task-name", help="Multi-task runs: the task to predict."),
        trust_run_code: bool = trust_option(),
    ) -> None:
        """Predict labels (with class probabilities) or scores for new texts; generate text for seq2seq and
        causal-lm runs (a `generated` column)."""
        quiet_libraries()
        from tuneforge import artifacts
        from tuneforge.data.conll import is_conll, read_conll
        from tuneforge.predict import Predictor
        from tuneforge.predict.io import predictions_frame, read_texts

        predictor = Predictor.from_run(run_dir, device, backend=backend, task_name=task_name,
                                         trust_run_code=trust_run_code)
        spec = predictor.recipe.data
        if predictor.kind.name == MULTIMODAL:  # rows of typed columns, not texts (predict/multimodal.py)
            from tuneforge.predict.multimodal import predict_file

            texts, rows = predict_file(predictor, data, batch_size)
            _emit_frame(predictions_frame(texts, rows), output)
            return
        if predictor.kind.name == GENERATIVE:
            _predict_generative(predictor, data, output, text_column, batch_size, max_new_tokens)
            return
        pairs = None
        if data is not None and predictor.kind.name == TAGGING and is_conll(data):
            texts = read_conll(data).tokens  # the tags in the file, if any, are ignored
        elif data is not None:
            texts, pairs = read_texts(data, text_column or spec.text_column, spec.text_pair_column)
        else:
            if sys.stdin.isatty():
                console.print("reading texts from standard input, one per line; end with Ctrl-D")
            texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
            if spec.text_pair_column:
                raise DataError([Problem(where="standard input", message="this run takes text pairs",
                                         fix=f"pass --data with columns {spec.text_column} and "
                                             f"{spec.text_pair_column}")])
        rows = predictor.predict(texts, pairs, batch_size=batch_size)
        if predictor.kind.name == TAGGING:  # one JSON line per text: words, tags, scores, entities
            lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            if output is None:
                sys.stdout.write(lines)
            else:
                artifacts.write_text(output, lines)
                console.print(f"{len(rows)} predictions written to {output}")
            return
        _emit_frame(predictions_frame(texts, rows), output)


def _emit_frame(frame: Any, output: Path | None) -> None:
    """Predictions as CSV: to standard output, or atomically to `output`."""
    from tuneforge import artifacts

    if output is None:
        frame.to_csv(sys.stdout, index=False)
    else:
        artifacts.write_with(output, lambda path: frame.to_csv(path, index=False))
        console.print(f"{len(frame)} predictions written to {output}")


def _predict_generative(predictor: Any, data: Path | None, output: Path | None, column: str | None,
                        batch_size: int, max_new_tokens: int | None) -> None:
    """Generated text (or, for classification as text, the label) per input of a seq2seq or causal-lm run."""
    from tuneforge.predict.generative import generate_texts, read_inputs
    from tuneforge.predict.io import predictions_frame

    if data is not None:
        inputs = read_inputs(data, predictor.recipe, column)
    else:
        if sys.stdin.isatty():
            console.print("reading prompts from standard input, one per line; end with Ctrl-D")
        inputs = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if predictor.recipe.lm.classify:
        rows = predictor.predict(inputs, batch_size=batch_size)
    else:
        texts = generate_texts(predictor, inputs, batch_size, max_new_tokens=max_new_tokens)
        rows = [{"generated": text} for text in texts]
    shown = [value if isinstance(value, str) else json.dumps(value, ensure_ascii=False) for value in inputs]
    _emit_frame(predictions_frame(shown, rows), output)


def _evaluate_generative(predictor: Any, run_dir: Path, data: Path, output: Path | None,
                         predictions: Path | None) -> None:
    """Text metrics (BLEU, chrF, ROUGE; accuracy for classification as text) of a generative run on a file."""
    from tuneforge import artifacts
    from tuneforge.predict.generative import evaluate_file
    from tuneforge.run import RunLayout

    metrics, rows = evaluate_file(predictor, data)
    target = output or RunLayout(run_dir).evaluations / f"{data.stem}.json"
    artifacts.write_json(target, {"data": str(data.resolve()), **metrics})
    show_metrics({"evaluation": metrics}, predictor.recipe.task, title=f"Evaluation on {data.name}")
    if predictions is not None:
        import pandas as pd

        frame = pd.DataFrame.from_records(rows)
        artifacts.write_with(predictions, lambda path: frame.to_csv(path, index=False))
    console.print(f"metrics written to {target}")
