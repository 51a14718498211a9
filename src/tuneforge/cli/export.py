"""`tuneforge export`: a run's model as a standalone folder (an adapter merged into its base, or copied), as
ONNX for ONNX Runtime (`--format onnx`), or as one GGUF file for llama.cpp and Ollama (`--format gguf`)."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.display import console
from tuneforge.errors import TuneforgeError

FORMATS = ("transformers", "onnx", "gguf")


def register(app: typer.Typer) -> None:
    """Adds the verb to the application."""

    @app.command()
    def export(
        run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="A run directory."),
        output: Path = typer.Option(None, "--output", "-o", help="Folder to write the model into (required for "
                                    "--format transformers; default RUN_DIR/onnx for --format onnx; a .gguf "
                                    "file or a folder for --format gguf, default RUN_DIR/gguf/)."),
        format: str = typer.Option("transformers", "--format", help="transformers (safetensors + tokenizer), "
                                   "onnx (model.onnx + tokenizer + labels, checked against PyTorch) or gguf "
                                   "(llama.cpp, Ollama; Llama-family causal-lm runs)."),
        merge: bool = typer.Option(False, "--merge", help="Merge a LoRA/(IA)3 adapter into its base model and "
                                   "write one standalone Transformers model (safetensors + tokenizer)."),
        opset: int = typer.Option(18, "--opset", min=13, help="ONNX opset version (--format onnx)."),
        quant: str = typer.Option("f16", "--quant", help="GGUF weights (--format gguf): f16, or q8_0 (8-bit, about "
                                  "half the size)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
    ) -> None:
        """Write RUN_DIR's model to OUTPUT: merged with --merge, else the adapter (PEFT runs) or the full model;
        with --format onnx, an ONNX graph with dynamic batch and sequence axes for `predict --backend onnx`."""
        from tuneforge.cli.common import quiet_libraries

        if format not in FORMATS:
            raise TuneforgeError(f"unknown export format '{format}'", fix=f"use --format {' or '.join(FORMATS)}")
        quiet_libraries()
        if format == "gguf":  # one file: weights, tokenizer, chat template (models/gguf.py)
            from tuneforge.models.gguf import export_gguf

            path = export_gguf(run_dir, output, quant=quant, overwrite=overwrite)
            size = path.stat().st_size / 2**20
            console.print(f"[green]GGUF model written:[/green] {path.resolve()} ({size:.1f} MiB, {quant})",
                          soft_wrap=True, highlight=False)
            return
        if format == "onnx":
            import json

            from tuneforge.models.onnx import META_FILE, export_onnx, onnx_dir

            default = onnx_dir(run_dir)
            path = export_onnx(run_dir, output, opset=opset, overwrite=overwrite or output is None)
            meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
            console.print(f"[green]ONNX model written:[/green] {path.resolve()} (logits within "
                          f"{meta['max_abs_logit_difference']:.1e} of PyTorch)", soft_wrap=True, highlight=False)
            if path.resolve() == default.resolve():
                console.print(f"predict with it: tuneforge predict {run_dir} --backend onnx", highlight=False)
            return
        if output is None:
            raise TuneforgeError("--output is required for --format transformers",
                                 fix="pass --output DIR (a new folder outside the run)")
        from tuneforge.models.export import export_run

        path = export_run(run_dir, output, merge=merge, overwrite=overwrite)
        what = "merged model" if merge else "model"
        console.print(f"[green]{what} written:[/green] {path.resolve()}", soft_wrap=True, highlight=False)
