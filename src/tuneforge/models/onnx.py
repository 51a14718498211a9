"""A run's model in ONNX for fast CPU serving: export with `torch.onnx.export`, inference with ONNX Runtime.

The exported folder (RUN/onnx/) holds `model.onnx`, the tokenizer files, `config.json` (labels, task head) and
`export.json` (inputs, opset, the largest logit difference to PyTorch measured at export). `OnnxModel` answers
`model(**encoded).logits` like a Transformers model, so `Predictor` runs unchanged on top of it (probabilities,
temperature, thresholds, tagging).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from tuneforge import artifacts
from tuneforge.errors import TuneforgeError
from tuneforge.run import RunLayout, read_run_recipe

ONNX_DIR = "onnx"
MODEL_FILE = "model.onnx"
META_FILE = "export.json"
# Logits of ONNX Runtime and PyTorch agree to float32 rounding (about 1e-6 on BERT-sized models); a difference
# above this means the graph is wrong, not rounded differently.
AGREEMENT_TOLERANCE = 1e-4
# Texts of different lengths (and so different padding) that the export is checked on.
CHECK_TEXTS = ["ok", "the service was quick and the food was lovely",
               "a much longer text, with punctuation; numbers like 42 and 3.14, and words the vocabulary may "
               "split into several pieces: antidisestablishmentarianism, unbelievably, reconfiguration."]
EXTRA_HINT = "install the ONNX extra: pip install 'tuneforge[onnx]'"


def onnx_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / ONNX_DIR


def require_onnx(*modules: str) -> None:
    """A clear error naming the extra instead of an ImportError deep in an export."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise TuneforgeError(f"ONNX export and inference need {', '.join(missing)}, which is not installed",
                             fix=EXTRA_HINT)


INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")


class _LogitsOnly(torch.nn.Module):
    """Named tensor inputs, logits out: the shape `torch.onnx.export` traces (no output dataclass)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


def export_onnx(run_dir: str | Path, output: str | Path | None = None, opset: int = 18,
                overwrite: bool = True) -> Path:
    """Export the run's model to ONNX (dynamic batch and sequence axes) with its tokenizer and labels, check that
    ONNX Runtime reproduces the PyTorch logits on texts of several lengths, and return the folder."""
    require_onnx("onnx", "onnxscript", "onnxruntime")
    from tuneforge.models.peft import load_run_model

    layout = RunLayout(Path(run_dir))
    recipe = read_run_recipe(layout.root)
    target = Path(output) if output is not None else onnx_dir(layout.root)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise TuneforgeError(f"{target} already exists and is not empty",
                             fix="choose a new --output folder, or pass --overwrite to replace it")
    model, tokenizer = load_run_model(layout.root)
    if type(model).__name__.startswith("Peft"):
        raise TuneforgeError(f"run '{layout.root}' has a prompt/prefix-tuning adapter, which ONNX export does not "
                             "cover (its virtual tokens live outside the model's graph)",
                             fix="train with peft.method: lora (merged into model/) or without peft to export ONNX")
    model = model.float().eval()
    pairs = CHECK_TEXTS[::-1] if recipe.data.text_pair_column else None
    sample = tokenizer(CHECK_TEXTS[:2], pairs[:2] if pairs else None, padding=True, truncation=True,
                       max_length=recipe.train.max_length, return_tensors="pt")
    names = [name for name in INPUT_ORDER if name in sample]
    if names[0] != "input_ids" or any(name not in INPUT_ORDER for name in tokenizer.model_input_names):
        raise TuneforgeError(f"ONNX export supports tokenizers with inputs {', '.join(INPUT_ORDER)}; this one "
                             f"takes {', '.join(tokenizer.model_input_names)}", fix="use the PyTorch backend")
    wrapper = _LogitsOnly(model)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")

    def write(folder: Path) -> None:
        folder.mkdir(parents=True)
        exporter_log = logging.getLogger("torch.onnx")  # "torchvision is not installed" notes, not for users
        level = exporter_log.level
        exporter_log.setLevel(logging.ERROR)
        try:
            _export(wrapper, sample, names, folder / MODEL_FILE, opset, {0: batch, 1: sequence})
        finally:
            exporter_log.setLevel(level)
        tokenizer.save_pretrained(folder)
        model.config.save_pretrained(folder)
        difference = _max_difference(model, tokenizer, folder / MODEL_FILE, names, recipe.train.max_length, pairs)
        if not difference <= AGREEMENT_TOLERANCE:
            raise TuneforgeError(f"the ONNX graph's logits differ from PyTorch's by {difference:.2e} (more than "
                                 f"{AGREEMENT_TOLERANCE:g}); the export is not trustworthy",
                                 fix="report the model architecture; use the PyTorch backend meanwhile")
        artifacts.write_json(folder / META_FILE, {
            "format": "onnx", "opset": opset, "inputs": names, "outputs": ["logits"], "task": recipe.task,
            "dynamic_axes": {"batch": 0, "sequence": 1}, "torch": torch.__version__,
            "max_abs_logit_difference": difference, "checked_texts": len(CHECK_TEXTS),
        })

    artifacts.write_directory(target, write)
    return target


def _export(wrapper: torch.nn.Module, sample: Any, names: list[str], path: Path, opset: int,
            axes: dict[int, Any]) -> None:
    # The dynamo exporter (torch.export + onnxscript) is the one PyTorch maintains; the TorchScript one is deprecated.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (), str(path), kwargs={n: sample[n] for n in names}, input_names=names,
                          output_names=["logits"], opset_version=opset, dynamo=True,
                          dynamic_shapes={n: axes for n in names}, verbose=False, external_data=False)


def _max_difference(model: Any, tokenizer: Any, path: Path, names: list[str], max_length: int,
                    pairs: list[str] | None) -> float:
    session = _session(path)
    worst = 0.0
    for size in (1, len(CHECK_TEXTS)):  # one text alone (no padding) and all together (padded)
        encoded = tokenizer(CHECK_TEXTS[:size], pairs[:size] if pairs else None, padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
        with torch.inference_mode():
            expected = model(**encoded).logits.float().numpy()
        got = session.run(["logits"], {name: encoded[name].numpy().astype(np.int64) for name in names})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def _session(path: Path, threads: int = 0) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxModel:
    """An ONNX Runtime session behind the slice of the Transformers model interface that `Predictor` uses:
    `config`, `to`, `eval` and `model(**encoded).logits` (a CPU tensor)."""

    def __init__(self, folder: Path, threads: int = 0) -> None:
        from transformers import AutoConfig

        self.folder = folder
        self.config = AutoConfig.from_pretrained(folder)
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        self.input_names: list[str] = list(meta["inputs"])
        self.session = _session(folder / MODEL_FILE, threads)
        self.device = torch.device("cpu")

    def to(self, device: Any) -> OnnxModel:
        return self  # ONNX Runtime's CPU provider; the session owns its placement

    def eval(self) -> OnnxModel:
        return self

    def __call__(self, **encoded: Any) -> SimpleNamespace:
        feeds = {name: np.asarray(encoded[name].cpu() if hasattr(encoded[name], "cpu") else encoded[name],
                                  dtype=np.int64) for name in self.input_names}
        return SimpleNamespace(logits=torch.from_numpy(self.session.run(["logits"], feeds)[0]))


def load_onnx_model(run_dir: str | Path, threads: int = 0) -> tuple[OnnxModel, Any]:
    """The exported ONNX model and tokenizer of a run (RUN/onnx/, or an export folder itself)."""
    require_onnx("onnxruntime")
    from transformers import AutoTokenizer

    root = Path(run_dir)
    folder = root if (root / MODEL_FILE).is_file() else onnx_dir(root)
    if not (folder / MODEL_FILE).is_file() or not (folder / META_FILE).is_file():
        raise TuneforgeError(f"run '{root}' has no ONNX export (no {ONNX_DIR}/{MODEL_FILE})",
                             fix=f"export it first: tuneforge export {root} --format onnx")
    return OnnxModel(folder, threads), AutoTokenizer.from_pretrained(folder)
