"""The generative fine-tuning path: accumulation-invariant loss, stopping at EOS, a seq2seq model learning a copy
task end to end (run directory, tuneforge.load, predict CLI), chat + LoRA runs, classification as text, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, TrainingArguments

from tests.conftest import make_rows, write_csv
from tests.tiny_generative import copy_rows, echo_rows
from tuneforge.recipe import recipe_from_dict
from tuneforge.tasks import causal_lm
from tuneforge.tasks.generation import generate, text_metrics
from tuneforge.train.pipelines.generative import build_collator, token_loss
from tuneforge.train.skeleton import TrainingInterrupted, fine_tune
from tuneforge.train.trainer import TuneforgeTrainer


def _recipe(task: str, model: Path, files: dict[str, Path], output: Path, **sections: dict):
    recipe = {"task": task, "model": {"name": str(model)},
              "data": {**{role: str(path) for role, path in files.items()}, "cache_dir": str(output.parent / "cache")},
              "train": {"epochs": 1, "batch_size": 8, "learning_rate": 1e-2, "max_length": 32, "warmup_ratio": 0.0,
                        "logging_steps": 5},
              "generation": {"max_new_tokens": 8},
              "output": {"dir": str(output)}}
    for name, values in sections.items():
        recipe[name] = {**recipe.get(name, {}), **values}
    return recipe_from_dict(recipe)


# ------------------------------------------------------------------------------------------------------
# Loss normalisation across gradient accumulation
# ------------------------------------------------------------------------------------------------------

def _one_sgd_step(folder: Path, features: list[dict], tmp: Path, batch: int, accumulation: int, packing: bool
                  ) -> dict[str, torch.Tensor]:
    """Weights after one plain-SGD step (lr 1): their change is exactly the gradient of the step's loss."""
    from datasets import Dataset

    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.config.use_cache = False
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    recipe = recipe_from_dict({"task": "causal-lm", "lm": {"packing": packing}})
    args = TrainingArguments(output_dir=str(tmp), per_device_train_batch_size=batch,
                             gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=1.0, optim="sgd",
                             weight_decay=0.0, max_grad_norm=0.0, lr_scheduler_type="constant", report_to="none",
                             save_strategy="no", use_cpu=True, disable_tqdm=True, remove_unused_columns=False)
    trainer = TuneforgeTrainer(model=model, args=args, train_dataset=Dataset.from_list(features),
                                data_collator=build_collator(recipe, tokenizer, model, torch.device("cpu")),
                                compute_loss_func=token_loss(True), shift_labels=True)
    trainer.train()
    return {name: before[name] - p.detach() for name, p in model.named_parameters()}


@pytest.mark.parametrize("packing", [False, True])
def test_gradient_accumulation_gives_the_same_gradient(tiny_gpt2, tmp_path, packing):
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    pairs = [("repeat: red\n", "red"), ("repeat: cat dog\n", "cat dog bird fish one two"),
             ("repeat: sun\n", "sun moon"), ("repeat: tree\n", "tree rain snow")]  # unequal response lengths
    features = [dict(zip(("input_ids", "labels"), causal_lm.encode_pair(tokenizer, p, r), strict=True))
                for p, r in pairs]
    whole = _one_sgd_step(tiny_gpt2, features, tmp_path / "a", batch=4, accumulation=1, packing=packing)
    accumulated = _one_sgd_step(tiny_gpt2, features, tmp_path / "b", batch=2, accumulation=2, packing=packing)
    for name, change in whole.items():
        assert torch.allclose(change, accumulated[name], atol=1e-6), name
    assert any(change.abs().max() > 1e-4 for change in whole.values())  # a real step was taken


# ------------------------------------------------------------------------------------------------------
# EOS: a model overfit on a few examples stops where its targets stopped
# ------------------------------------------------------------------------------------------------------

def test_overfit_decoder_stops_at_eos(tiny_llama):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    causal_lm.ensure_chat_template(tokenizer)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    chats = [[{"role": "user", "content": f"repeat: {r['target']}"}, {"role": "assistant", "content": r["target"]}]
             for r in copy_rows(4, seed=3, length=2)]
    encoded = [causal_lm.encode_chat(tokenizer, chat) for chat in chats]
    collator = build_collator(recipe_from_dict({"task": "causal-lm"}), tokenizer, model, torch.device("cpu"))
    batch = collator([{"input_ids": ids, "labels": labels} for ids, labels in encoded])
    labels = batch.pop("labels")
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss_of = token_loss(True)
    model.train()
    for _ in range(120):
        optimiser.zero_grad()
        loss = loss_of(model(**batch), labels)
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.05
    prompts = [causal_lm.chat_prompt_ids(tokenizer, chat) for chat in chats]
    spec = recipe_from_dict({"task": "causal-lm", "generation": {"max_new_tokens": 20}}).generation
    with torch.no_grad():
        texts = generate(model, tokenizer, prompts, spec, torch.device("cpu"), decoder_only=True)
        raw = model.generate(input_ids=torch.tensor([prompts[0]]), max_new_tokens=20,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    assert texts == [chat[1]["content"] for chat in chats]
    new = raw[0, len(prompts[0]):].tolist()
    assert new[-1] == tokenizer.eos_token_id and len(new) < 20  # stopped by EOS, not by the token limit


# ------------------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seq2seq_run(tiny_t5, tmp_path_factory):
    root = tmp_path_factory.mktemp("seq2seq")
    files = {"train": write_csv(root / "train.csv", copy_rows(64, seed=1, length=2)),
             "validation": write_csv(root / "val.csv", copy_rows(8, seed=2, length=2)),
             "test": write_csv(root / "test.csv", copy_rows(12, seed=3, length=2))}
    recipe = _recipe("seq2seq", tiny_t5, files, root / "run", train={"epochs": 12, "learning_rate": 2e-2})
    return fine_tune(recipe), files


def test_seq2seq_learns_the_copy_task(seq2seq_run, tiny_t5):
    from transformers import AutoModelForSeq2SeqLM

    run, files = seq2seq_run
    test = pd.read_csv(files["test"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_t5)
    untrained = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5)
    ids = [tokenizer(t)["input_ids"] for t in test["text"]]
    before = text_metrics(generate(untrained, tokenizer, ids, run.recipe.generation, torch.device("cpu"), False),
                          list(test["target"]))
    after = run.metrics["test"]
    assert after["chrf"] > before["chrf"] + 20, (before, after)
    assert after["loss"] < 3.0 and run.metrics["validation"]["examples"] == 8
    for name in ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match", "perplexity"):
        assert name in after


def test_seq2seq_run_directory_round_trip(seq2seq_run):
    import tuneforge

    run, files = seq2seq_run
    layout = run.layout
    assert (layout.model / "model.safetensors").is_file() and (layout.model / "generation_config.json").is_file()
    card = (layout.root / "model_card.md").read_text(encoding="utf-8")
    assert "## Sample generations" in card and "calibration" not in card.lower()
    assert "could not be drawn" not in (layout.root / "report.html").read_text(encoding="utf-8")
    written = pd.read_csv(layout.test_predictions, keep_default_na=False)
    assert list(written.columns) == ["input", "reference", "generated"] and len(written) == 12
    predictor = tuneforge.load(layout.root)
    generated = predictor.generate(list(written["input"]))
    assert generated == list(written["generated"])
    assert predictor.predict(list(written["input"][:2])) == [{"generated": g} for g in generated[:2]]
    assert json.loads(layout.metrics.read_text())["samples"][0]["input"] == written["input"][0]


def test_predict_and_evaluate_cli_on_a_seq2seq_run(seq2seq_run, tmp_path):
    from tuneforge.cli.main import main

    run, files = seq2seq_run
    output = tmp_path / "predictions.csv"
    assert main(["predict", str(run.directory), "--data", str(files["test"]), "--output", str(output)]) == 0
    frame = pd.read_csv(output, keep_default_na=False)
    expected = pd.read_csv(run.layout.test_predictions, keep_default_na=False)
    assert list(frame.columns) == ["text", "generated"] and list(frame["generated"]) == list(expected["generated"])
    metrics = tmp_path / "eval.json"
    assert main(["evaluate", str(run.directory), "--data", str(files["test"]), "--output", str(metrics)]) == 0
    assert json.loads(metrics.read_text())["chrf"] == pytest.approx(run.metrics["test"]["chrf"])


def test_chat_lora_run_saves_adapter_merged_model_and_chat_template(tiny_gpt2, tmp_path):
    import tuneforge

    chats = [{"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["response"]}]}
             for r in echo_rows(24, seed=5)]
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in chats), encoding="utf-8")
    recipe = _recipe("causal-lm", tiny_gpt2, {"train": path}, tmp_path / "run",
                     data={"messages_column": "messages", "test_split": 0.2}, lm={"packing": True},
                     peft={"method": "lora", "r": 4})
    run = fine_tune(recipe)
    layout = run.layout
    assert json.loads((layout.adapter / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
    assert (layout.model / "model.safetensors").is_file()
    saved = AutoTokenizer.from_pretrained(layout.model)
    assert saved.chat_template == causal_lm.DEFAULT_CHAT_TEMPLATE
    assert run.metrics["training"]["packing"] is True and "chrf" in run.metrics["test"]
    predictor = tuneforge.load(layout.root)
    texts = predictor.generate(["repeat: red cat\n", [{"role": "user", "content": "repeat: sun\n"}]],
                               max_new_tokens=3)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_classification_as_text(tiny_gpt2, tmp_path):
    import tuneforge

    files = {"train": write_csv(tmp_path / "train.csv", make_rows(30, seed=2)),
             "test": write_csv(tmp_path / "test.csv", make_rows(9, seed=4))}
    recipe = _recipe("causal-lm", tiny_gpt2, files, tmp_path / "run", lm={"classify": True},
                     data={"validation_split": 0.0})
    run = fine_tune(recipe)
    assert run.metrics["labels"] == ["negative", "neutral", "positive"]
    assert {"accuracy", "f1_macro"} <= set(run.metrics["test"])
    rows = tuneforge.load(run.directory).predict(["good tasty food", "the street"])
    for row in rows:
        assert row["label"] in run.metrics["labels"]
        assert sum(row["probabilities"].values()) == pytest.approx(1.0)


class _StopAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_interrupted_causal_run_resumes(tiny_gpt2, tmp_path):
    files = {"train": write_csv(tmp_path / "train.csv", echo_rows(32, seed=1))}
    recipe = _recipe("causal-lm", tiny_gpt2, files, tmp_path / "run", train={"epochs": 2},
                     data={"validation_split": 0.0}, evaluation={"explain_examples": 0})
    with pytest.raises(TrainingInterrupted):
        fine_tune(recipe, callbacks=[_StopAt(3)])
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-3").is_dir()
    run = fine_tune(recipe, resume=True)
    assert run.metrics["training"]["global_steps"] == 8  # 2 epochs of 4 batches, 3 of them before the stop
    assert (run.layout.model / "model.safetensors").is_file()
    shutil.rmtree(tmp_path / "run")
