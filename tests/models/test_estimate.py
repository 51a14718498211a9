"""Memory and time estimates: each component against hand-computed values and against what torch really keeps."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

from tuneforge.cli.main import main
from tuneforge.errors import ModelNotFoundError, TuneforgeError
from tuneforge.models.estimate import (
    CPU_ALLOCATOR_SLACK,
    NF4_BYTES,
    RUNTIME_BYTES,
    TrainingSetup,
    activation_bytes,
    estimate,
    flops_per_token,
    memory_breakdown,
)
from tuneforge.models.hardware import gpu_throughput, parse_size
from tuneforge.models.shapes import build_meta_model, model_config, model_shape, shape_of

TINY_CONFIGS = {
    "bert": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256, vocab_size=1000),
    "gpt2": dict(n_embd=64, n_layer=2, n_head=4, vocab_size=1000),
    "llama": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=256, vocab_size=1000),
    "t5": dict(d_model=64, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=16, d_ff=256, vocab_size=1000,
               decoder_start_token_id=0, pad_token_id=0),
}


@pytest.fixture(scope="module")
def tiny_shape(tiny_model):
    shape, found = model_shape(str(tiny_model), "classification", num_labels=3)
    assert found.source == "local"
    return shape


def real_model(tiny_model, labels: int = 3):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=labels)


def test_meta_shape_matches_the_real_model(tiny_model, tiny_shape):
    model = real_model(tiny_model)
    assert tiny_shape.parameters == sum(p.numel() for p in model.parameters())
    assert tiny_shape.head_parameters == sum(p.numel() for p in model.classifier.parameters()) == 32 * 3 + 3
    assert tiny_shape.hidden == 32 and tiny_shape.layers == 2 and tiny_shape.intermediate == 64
    assert shape_of(model, "real", "classification") == tiny_shape.__class__(
        **{**tiny_shape.__dict__, "name": "real"})


def test_full_training_components_by_hand(tiny_shape):
    setup = TrainingSetup(batch_size=8, max_length=32)
    memory = memory_breakdown(tiny_shape, setup)
    params = tiny_shape.parameters
    assert memory.weights == params * 4  # fp32
    assert memory.gradients == params * 4
    assert memory.optimizer == 2 * params * 4  # AdamW: two fp32 moments
    assert memory.runtime == RUNTIME_BYTES["cpu"]
    assert memory.allocator == int(CPU_ALLOCATOR_SLACK * (memory.activations + memory.workspace))
    overlap = max(memory.activations + memory.workspace, memory.gradients)
    assert memory.peak == memory.weights + memory.optimizer + overlap + memory.allocator + memory.runtime
    assert memory_breakdown(tiny_shape, TrainingSetup(optimizer="sgd")).optimizer == 0
    assert memory_breakdown(tiny_shape, TrainingSetup(optimizer="adamw_8bit")).optimizer == 2 * params


def test_mixed_precision_and_cuda(tiny_shape):
    setup = TrainingSetup(precision="bf16", device="cuda")
    memory = memory_breakdown(tiny_shape, setup)
    assert memory.weights == tiny_shape.parameters * 4 + tiny_shape.matmul_parameters * 2  # + autocast copy
    assert memory.allocator == 0
    half = activation_bytes(tiny_shape, setup)
    assert half < activation_bytes(tiny_shape, TrainingSetup(device="cuda"))


def test_lora_trainable_count_equals_peft(tiny_model, tiny_shape):
    from tuneforge.models.peft import build_peft_config
    from tuneforge.recipe import PeftSpec

    for rank in (4, 8):
        model = real_model(tiny_model)
        from peft import get_peft_model

        wrapped = get_peft_model(model, build_peft_config(model, PeftSpec(method="lora", r=rank)))
        trainable, _ = wrapped.get_nb_trainable_parameters()
        result = estimate(tiny_shape, TrainingSetup(method="lora", lora_r=rank))
        assert result.trainable_parameters == trainable
        memory = result.memory
        assert memory.gradients == trainable * 4 and memory.optimizer == trainable * 8


def test_frozen_body_trains_the_head_only(tiny_model, tiny_shape):
    from tuneforge.models.freezing import apply_freezing
    from tuneforge.recipe import FreezeSpec

    model = real_model(tiny_model)
    apply_freezing(model, FreezeSpec(all_but_head=True))
    result = estimate(tiny_shape, TrainingSetup(method="freeze"))
    assert result.trainable_parameters == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert result.memory.activations == 0  # nothing below a trainable weight needs a gradient


def test_qlora_weights_are_four_bit_in_the_body(tiny_shape):
    setup = TrainingSetup(method="qlora", device="cuda", precision="bf16", lora_r=8)
    result = estimate(tiny_shape, setup)
    body = tiny_shape.body_linear_parameters
    expected = body * NF4_BYTES + (tiny_shape.parameters - body) * 2 + result.trainable_parameters * 4
    assert result.memory.weights == int(expected)
    assert "QLoRA needs a CUDA GPU" in " ".join(estimate(tiny_shape, TrainingSetup(method="qlora")).notes)


def saved_bytes(model, inputs) -> int:
    """Bytes of the tensors autograd keeps for backward, parameters excluded (each storage once)."""
    seen: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(**inputs)
    return sum(size for pointer, size in seen.items() if pointer not in parameters)


@pytest.mark.parametrize(("architecture", "task", "method"), [
    ("bert", "classification", "full"), ("bert", "classification", "lora"), ("gpt2", "generation", "full"),
    ("llama", "generation", "full"), ("llama", "classification", "lora"), ("t5", "generation", "full"),
])
def test_activation_formula_matches_what_autograd_keeps(architecture, task, method):
    from peft import LoraConfig, TaskType, get_peft_model

    from tuneforge.models.peft import detect_target_modules, head_modules

    batch, length = 4, 64
    config = AutoConfig.for_model(architecture, **TINY_CONFIGS[architecture])
    if config.pad_token_id is None:
        config.pad_token_id = 0
    auto = {"classification": AutoModelForSequenceClassification,
            "generation": AutoModelForSeq2SeqLM if architecture == "t5" else AutoModelForCausalLM}[task]
    torch.manual_seed(0)
    model = auto.from_config(config).train()
    shape = shape_of(model, architecture, task)
    if method == "lora":
        targets, _ = detect_target_modules(model, "lora")
        kind = TaskType.SEQ_CLS if task == "classification" else TaskType.CAUSAL_LM
        model = get_peft_model(model, LoraConfig(task_type=kind, r=8, lora_dropout=0.05, target_modules=targets,
                                                 modules_to_save=head_modules(model) if kind == "SEQ_CLS" else None))
    ids = torch.randint(5, 1000, (batch, length))
    labels = ids if task == "generation" else torch.zeros(batch, dtype=torch.long)
    measured = saved_bytes(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    formula = activation_bytes(shape, TrainingSetup(task=task, batch_size=batch, max_length=length, method=method))
    assert formula == pytest.approx(measured, rel=0.15)


def test_gradient_checkpointing_keeps_less(tiny_shape):
    plain = activation_bytes(tiny_shape, TrainingSetup(batch_size=16, max_length=64))
    assert activation_bytes(tiny_shape, TrainingSetup(batch_size=16, max_length=64,
                                                      gradient_checkpointing=True)) < plain


def test_flops_and_time(tiny_shape):
    setup = TrainingSetup(batch_size=8, max_length=32, rows=100)
    n = tiny_shape.matmul_parameters
    attention = 2 * tiny_shape.layers * 32 * tiny_shape.heads * tiny_shape.head_dim
    assert flops_per_token(tiny_shape, setup) == 6 * n + 3 * attention
    lora = TrainingSetup(batch_size=8, max_length=32, rows=100, method="lora")
    assert flops_per_token(tiny_shape, lora) < flops_per_token(tiny_shape, setup)
    result = estimate(tiny_shape, setup, device_flops=1e9, device_source="given")
    assert result.time.tokens_per_epoch == 100 * 32
    assert result.time.seconds_per_epoch == pytest.approx(flops_per_token(tiny_shape, setup) * 3200 / 1e9)
    assert estimate(tiny_shape, TrainingSetup(), device_flops=1e9).time is None  # no rows, no time
    padded = TrainingSetup(max_length=128, rows=10, tokens_per_row=40.4)
    assert estimate(tiny_shape, padded, 1e9).time.tokens_per_epoch == 400


def test_catalog_model_without_download():
    shape, found = model_shape("meta-llama/Llama-3.1-8B", "generation")
    assert found.source == "catalog"
    assert shape.parameters == 8_030_261_248 and shape.kv_heads == 8 and shape.vocab == 128256
    full = estimate(shape, TrainingSetup(task="generation", batch_size=1, max_length=512, precision="bf16",
                                         device="cuda"))
    qlora = estimate(shape, TrainingSetup(task="generation", batch_size=1, max_length=512, precision="bf16",
                                          device="cuda", method="qlora"))
    assert full.memory.peak > 80 * 2**30 > 24 * 2**30 > qlora.memory.peak


def test_unknown_names_and_impossible_tasks():
    with pytest.raises(ModelNotFoundError) as error:
        model_config("robeta-base")
    assert "FacebookAI/roberta-base" in error.value.fix
    with pytest.raises(TuneforgeError) as encoder:
        build_meta_model({"model_type": "bert", **TINY_CONFIGS["bert"]}, "generation")
    assert "decoder" in encoder.value.fix
    with pytest.raises(TuneforgeError):
        TrainingSetup(method="dora")  # type: ignore[arg-type]


def test_sizes_and_gpu_table():
    assert parse_size("16GB") == 16 * 10**9
    assert parse_size("16 GiB") == 16 * 2**30
    assert parse_size("8g") == 8 * 2**30
    assert parse_size("512MB") == 512 * 10**6
    with pytest.raises(TuneforgeError):
        parse_size("lots")
    assert gpu_throughput("NVIDIA H100 80GB HBM3", "bf16").flops == pytest.approx(989e12 * 0.35)
    assert gpu_throughput("NVIDIA H100 PCIe", "bf16").flops == pytest.approx(756e12 * 0.35)
    assert gpu_throughput("Tesla T4", "fp32").flops == pytest.approx(8.1e12 * 0.5)
    assert gpu_throughput("Mystery GPU", "bf16") is None


def test_cli_estimate_json_and_table(tiny_model, tmp_path, capsys):
    data = tmp_path / "train.csv"
    data.write_text("text,label\n" + "".join(f"a short text number {i},x\n" for i in range(40)))
    code = main(["estimate", "--model", str(tiny_model), "--task", "classification", "--batch-size", "8",
                 "--max-length", "64", "--peft", "lora", "--lora-r", "4", "--data", str(data), "--tflops", "0.01",
                 "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["setup"]["method"] == "lora" and result["setup"]["rows"] == 40
    assert result["trainable_parameters"] < result["parameters"]
    assert result["time"]["device_flops"] == pytest.approx(1e10)
    assert main(["estimate", "--model", str(tiny_model), "--rows", "1000", "--tflops", "0.01",
                 "--memory", "16GB"]) == 0
    out = capsys.readouterr().out
    assert "peak memory" in out and "time per epoch" in out and "fits" in out


def test_cli_unknown_model_is_a_clear_error(capsys):
    assert main(["estimate", "--model", "robeta-base"]) == 1
    err = capsys.readouterr().err
    assert "unknown model 'robeta-base'" in err and "did you mean 'FacebookAI/roberta-base'" in err
    assert "Traceback" not in err
    assert main(["estimate", "--model", "minilm", "--peft", "lora", "--freeze"]) == 1
    assert "pick one" in capsys.readouterr().err


def test_cli_estimate_takes_the_task_peft_and_optimizer_names_of_train(tiny_model, capsys):
    def run(*extra: str) -> dict:
        assert main(["estimate", "--model", str(tiny_model), "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    assert run("--task", "ner", "--num-labels", "5")["setup"]["task"] == "token-classification"
    assert run("--task", "pair-classification")["setup"]["task"] == "classification"
    multilabel = run("--task", "multi-label", "--num-labels", "4")
    assert multilabel["setup"]["task"] == "multilabel"
    assert multilabel["parameters"] == run("--num-labels", "4")["parameters"]  # a classifier, one output per label
    states = {name: run("--optimizer", name)["memory_bytes"]["optimizer"]
              for name in ("adamw_torch_fused", "adamw_torch", "adafactor", "adamw_8bit", "paged_adamw_8bit")}
    trainable = run()["trainable_parameters"]
    assert states["adamw_torch_fused"] == states["adamw_torch"] == 8 * trainable
    assert states["adamw_8bit"] == states["paged_adamw_8bit"] == 2 * trainable and states["adafactor"] == 0
    ia3 = run("--peft", "ia3")
    assert ia3["setup"]["method"] == "lora" and any("upper bound" in note for note in ia3["notes"])
    for flags, words in ((["--task", "summarization"], "unknown task 'summarization'"),
                         (["--optimizer", "sgd"], "adamw_torch_fused"), (["--peft", "dora"], "prefix_tuning")):
        assert main(["estimate", "--model", str(tiny_model), *flags]) == 1
        assert words in capsys.readouterr().err
