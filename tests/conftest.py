"""Shared fixtures: a tiny BERT built locally (no hub) and small learnable datasets."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest

# Nothing in the suite may reach a model hub; fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models gain nothing from several threads and lose much when the cores are shared.
os.environ.setdefault("OMP_NUM_THREADS", "1")

WORDS = {
    "positive": ["good", "great", "excellent", "lovely", "happy", "wonderful", "tasty", "friendly"],
    "negative": ["bad", "awful", "terrible", "rude", "sad", "horrible", "bland", "dirty"],
    "neutral": ["table", "street", "monday", "paper", "window", "train", "number", "office"],
}
FILLER = ["the", "a", "food", "service", "was", "place", "and", "very", "it", "we", "really", "today"]


def make_rows(count: int, seed: int, labels: tuple[str, ...] = ("negative", "neutral", "positive")) -> list[dict]:
    """Texts whose label is given away by its words, so a tiny model can learn it in a few steps."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        label = labels[index % len(labels)]
        words = rng.sample(FILLER, 4) + rng.sample(WORDS[label], 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def make_regression_rows(count: int, seed: int) -> list[dict]:
    """The target counts positive minus negative words, so it is learnable from the text."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        positives, negatives = rng.randint(0, 3), rng.randint(0, 3)
        words = rng.sample(FILLER, 3) + rng.sample(WORDS["positive"], positives) + rng.sample(WORDS["negative"],
                                                                                               negatives)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "score": float(positives - negatives)})
    return rows


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def build_tiny_bert(folder: Path, texts: list[str]) -> Path:
    """A 2-layer BERT (hidden 32) and a WordPiece tokenizer trained on `texts`, saved like a hub model."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, BertTokenizer

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer_model = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    trainer_model.normalizer = normalizers.BertNormalizer(lowercase=True)
    trainer_model.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer_model.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=400, special_tokens=special))
    # A real BertTokenizer over the locally learnt vocabulary, so pairs get segment ids like any BERT's.
    tokenizer = BertTokenizer(vocab=trainer_model.get_vocab(), do_lower_case=True, model_max_length=128)
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [r["text"] for r in make_rows(300, seed=1)] + [r["text"] for r in make_regression_rows(100, seed=1)]
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), texts)


@pytest.fixture()
def classification_files(tmp_path: Path) -> dict[str, Path]:
    return {
        "train": write_csv(tmp_path / "train.csv", make_rows(90, seed=2)),
        "validation": write_csv(tmp_path / "val.csv", make_rows(30, seed=3)),
        "test": write_csv(tmp_path / "test.csv", make_rows(30, seed=4)),
    }


@pytest.fixture()
def regression_files(tmp_path: Path) -> dict[str, Path]:
    return {
        "train": write_csv(tmp_path / "train.csv", make_regression_rows(90, seed=2)),
        "validation": write_csv(tmp_path / "val.csv", make_regression_rows(30, seed=3)),
        "test": write_csv(tmp_path / "test.csv", make_regression_rows(30, seed=4)),
    }


def tiny_recipe(model: Path, files: dict[str, Path], output: Path, **sections: dict) -> dict:
    """A recipe dict for quick CPU runs on the tiny model; `sections` override or add sections."""
    recipe: dict = {
        "model": {"name": str(model)},
        "data": {role: str(path) for role, path in files.items()},
        "train": {"epochs": 4, "batch_size": 8, "learning_rate": 1e-2, "logging_steps": 2, "max_length": 32,
                  "warmup_ratio": 0.0},
        "output": {"dir": str(output)},
    }
    for name, values in sections.items():
        recipe[name] = {**recipe.get(name, {}), **values}
    return recipe


@pytest.fixture()
def data_recipe(tmp_path: Path):
    """Build a validated Recipe around a data section, with the `datasets` cache kept inside tmp_path."""
    from tuneforge.recipe import Recipe

    def build(task: str = "classification", **data: object) -> Recipe:
        data = {"cache_dir": str(tmp_path / "datasets-cache"),
                **{key: str(value) if isinstance(value, Path) else value for key, value in data.items()}}
        return Recipe.model_validate({"task": task, "data": data})

    return build


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_generative import build_tiny_decoder

    return build_tiny_decoder(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_generative import build_tiny_decoder

    return build_tiny_decoder(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_generative import build_tiny_t5

    return build_tiny_t5(tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture(scope="session")
def tiny_llama_chat_run(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama fine-tuned on echo chats, trained once per session (chat, serving and GGUF export tests)."""
    from tests.tiny_generative import train_chat_run

    return train_chat_run(tiny_llama, tmp_path_factory.mktemp("tiny-llama-chat"))
