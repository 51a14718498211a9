"""Recommendations: language, memory budget, data size and task steer the model and the training method."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from tuneforge.cli.main import main
from tuneforge.data.language import detect_language
from tuneforge.data.profile import estimate_tokens, profile_data
from tuneforge.models.catalog import find_entry, known_models
from tuneforge.models.estimate import TrainingSetup, estimate
from tuneforge.models.recommend import RecommendRequest, evaluate_candidate, recommend
from tuneforge.models.shapes import model_shape

GiB = 2**30
SWAHILI = ["Huduma ilikuwa nzuri sana na chakula kilikuwa kitamu", "Sikupenda hoteli hii kwa sababu ni chafu",
           "Watu wa hapa ni wakarimu lakini bei ni ghali sana", "Nitarudi tena kwa kuwa ilikuwa safari nzuri",
           "Chakula kilikuwa kibaya na huduma ilikuwa polepole", "Hii ni sehemu nzuri ya kupumzika na familia"]
ENGLISH = ["The service was lovely and the food was great", "It was a really bad day at the office",
           "We will not come back to this place", "The train was late but the staff were friendly"]


def write_texts(path: Path, texts: list[str], rows: int) -> Path:
    rng = random.Random(0)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for index in range(rows):
            writer.writerow([rng.choice(texts), "a" if index % 2 else "b"])
    return path


def request(**values) -> RecommendRequest:
    return RecommendRequest(**{"task": "classification", "rows": 500, "memory_bytes": 16 * GiB, "language": "en",
                               "device_flops": 5e10, **values})


def test_language_heuristic():
    assert detect_language(SWAHILI).code == "sw"
    assert detect_language(ENGLISH).code == "en"
    assert detect_language(["Le service était très bon et la nourriture délicieuse"]).code == "fr"
    assert detect_language(["الخدمة كانت ممتازة"]).code == "ar"
    assert detect_language(["これはとても良いレストランです"]).code == "ja"
    assert detect_language(["xq zz vv"]).code is None  # unsure rather than wrong
    assert detect_language([]).code is None


def test_profile_counts_rows_and_lengths(tmp_path):
    data = write_texts(tmp_path / "train.csv", ENGLISH, 120)
    profile = profile_data(data)
    assert profile.rows == 120 and profile.language.code == "en" and profile.labels == 2
    assert profile.quantile(1.0) == max(estimate_tokens(text) for text in ENGLISH)
    assert profile.padded_tokens(16, 8) == 8  # capped at max_length
    assert profile.suggested_max_length() == 32


def test_swahili_data_gets_a_multilingual_model(tmp_path):
    profile = profile_data(write_texts(tmp_path / "train.csv", SWAHILI, 300))
    assert profile.language.code == "sw"
    result = recommend(request(language=profile.language.code, rows=profile.rows), known_models())
    top = result.candidates[0]
    assert top.fits and top.entry.supports_language("sw") and top.entry.multilingual
    assert all(candidate.entry.supports_language("sw") for candidate in result.candidates)
    assert "sw" in top.reason


def test_every_fitting_candidate_fits_a_small_budget():
    budget = int(1.2 * GiB)
    result = recommend(request(memory_bytes=budget), known_models(), limit=8)
    fitting = [candidate for candidate in result.candidates if candidate.fits]
    assert fitting, "some small model fits 1.2 GiB"
    assert all(candidate.estimate.memory.peak <= budget for candidate in fitting)
    assert fitting[0].entry.parameters < 70e6


def test_lora_when_full_training_does_not_fit():
    entry = find_entry("google-bert/bert-base-uncased")
    shape, _ = model_shape(entry.name, "classification")
    roomy = evaluate_candidate(entry, shape, request(rows=5000, memory_bytes=32 * GiB))
    assert roomy.method == "full" and roomy.batch_size == 16
    smallest_full = estimate(shape, TrainingSetup(batch_size=4, gradient_checkpointing=True)).memory.peak
    budget = smallest_full - 1  # full training does not fit at any batch size, even checkpointed
    tight = evaluate_candidate(entry, shape, request(rows=5000, memory_bytes=budget))
    assert tight.method == "lora" and tight.estimate.memory.peak <= budget
    assert "lora because full does not fit" in tight.reason


def test_qlora_on_a_small_gpu_for_a_large_decoder():
    entry = find_entry("meta-llama/Llama-3.1-8B")
    shape, _ = model_shape(entry.name, "generation")
    gpu = request(task="generation", rows=20_000, memory_bytes=24 * GiB, device="cuda", precision="bf16",
                  max_length=256)
    candidate = evaluate_candidate(entry, shape, gpu)
    assert candidate.method == "qlora" and candidate.estimate.memory.peak <= 24 * GiB
    cpu = evaluate_candidate(entry, shape, request(task="generation", rows=20_000, memory_bytes=24 * GiB))
    assert cpu.method != "qlora"  # bitsandbytes 4-bit needs CUDA


def test_few_rows_prefer_small_models_or_adapters():
    result = recommend(request(rows=200), known_models(), limit=3)
    for candidate in result.candidates:
        assert candidate.entry.parameters <= 150e6 or candidate.method in ("lora", "freeze")


def test_domain_and_task_steer_the_choice():
    legal = recommend(request(domain="legal", rows=20_000, memory_bytes=64 * GiB), known_models())
    assert legal.candidates[0].entry.name == "nlpaueb/legal-bert-base-uncased"
    generation = recommend(request(task="generation", rows=5000), known_models())
    assert all(candidate.entry.family != "encoder" for candidate in generation.candidates)
    with pytest.raises(Exception) as missing:
        recommend(request(language="xx"), known_models())
    assert "xx" in str(missing.value)


def test_cli_recommend_for_swahili(tmp_path, capsys, monkeypatch):
    from tuneforge.cli.display import console

    monkeypatch.setattr(console, "_width", 200)
    data = write_texts(tmp_path / "train.csv", SWAHILI, 300)
    assert main(["recommend", "--data", str(data), "--memory", "8GB", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "language sw" in out and "heuristic" in out
    assert "next: tuneforge train" in out and "--model" in out
    assert main(["recommend", "--data", str(data), "--memory", "8GB", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["request"]["language"] == "sw" and result["request"]["rows"] == 300
    assert result["candidates"][0]["fits"] and "sw" in result["candidates"][0]["languages"]
    assert result["candidates"][0]["estimate"]["memory_bytes"]["peak"] <= 8 * 10**9


def test_cli_recommend_errors(tmp_path, capsys):
    data = write_texts(tmp_path / "train.csv", ENGLISH, 50)
    assert main(["recommend", "--data", str(data), "--domain", "astrology", "--memory", "8GB"]) == 1
    err = capsys.readouterr().err
    assert "unknown domain" in err and "legal" in err and "Traceback" not in err
    assert main(["recommend", "--data", str(tmp_path / "missing.csv"), "--memory", "8GB"]) == 1
    assert "file not found" in capsys.readouterr().err


def test_cli_recommend_takes_the_task_names_of_train(tmp_path, capsys, monkeypatch):
    from tuneforge.cli.display import console

    monkeypatch.setattr(console, "_width", 400)
    data = write_texts(tmp_path / "train.csv", ENGLISH, 300)
    assert main(["recommend", "--data", str(data), "--memory", "8GB", "--task", "multi-label", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["request"]["task"] == "multilabel" and result["candidates"][0]["fits"]
    assert main(["recommend", "--data", str(data), "--memory", "8GB", "--task", "pair-classification",
                 "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "--task pair-classification --text-pair-column" in out
    assert main(["recommend", "--data", str(data), "--memory", "8GB", "--task", "generation"]) == 1
    err = capsys.readouterr().err
    assert "unknown task 'generation'" in err and "causal-lm" in err
