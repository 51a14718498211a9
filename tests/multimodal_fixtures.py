"""Tiny randomly initialised image/audio encoders and generated multimodal tables (images, WAVs, numbers,
categories) for the multimodal tests; nothing comes from a model hub."""

from __future__ import annotations

import random
import wave
from pathlib import Path

import numpy as np

from tests.conftest import FILLER, write_csv

LABELS = ("high", "low")
SIGNALS = ("numeric", "categorical", "image", "audio")
RATE = 8000  # the WAVs are written at 8 kHz; the tiny feature extractor reads 16 kHz, so resampling is exercised


def build_tiny_vit(folder: Path) -> Path:
    """A 1-layer ViT (16x16 images, 8x8 patches, hidden 16) and its image processor, saved like a hub model."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
    return folder


def build_tiny_ast(folder: Path) -> Path:
    """A 1-layer Audio Spectrogram Transformer over 16 log-mel bins x 64 frames, with its feature extractor."""
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    torch.manual_seed(0)
    config = ASTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       num_mel_bins=16, max_length=64, patch_size=16, frequency_stride=8, time_stride=8,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ASTModel(config).save_pretrained(folder)
    ASTFeatureExtractor(num_mel_bins=16, max_length=64, sampling_rate=16000).save_pretrained(folder)
    return folder


def write_image(path: Path, bright: bool, rng: np.random.Generator) -> str:
    from PIL import Image

    base = 220 if bright else 30
    pixels = np.clip(base + rng.normal(0, 15, size=(12, 20, 3)), 0, 255).astype("uint8")
    Image.fromarray(pixels).save(path)
    return path.name


def write_wav(path: Path, loud: bool, rng: np.random.Generator) -> str:
    seconds = 0.4
    t = np.arange(int(RATE * seconds)) / RATE
    amplitude = 0.8 if loud else 0.02
    signal = amplitude * np.sin(2 * np.pi * (1500 if loud else 200) * t) + rng.normal(0, 0.005, size=t.shape)
    samples = (np.clip(signal, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as stream:
        stream.setnchannels(1)
        stream.setsampwidth(2)
        stream.setframerate(RATE)
        stream.writeframes(samples.tobytes())
    return path.name


def make_multimodal_rows(folder: Path, count: int, seed: int, signal: str, media: bool = True,
                         regression: bool = False) -> list[dict]:
    """Rows whose label is given away by the `signal` modality only; text and the others are noise.

    Media files are written next to the CSV and named relatively, as users usually keep them.
    """
    rng = np.random.default_rng(seed)
    words = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        high = index % 2 == 0
        row = {
            "text": " ".join(words.sample(FILLER, 5)),
            "size": float(rng.normal(2.0 if high else -2.0, 0.3)) if signal == "numeric"
            else float(rng.normal(0, 1)),
            "colour": ("red" if high else "blue") if signal == "categorical" else words.choice(["red", "blue"]),
        }
        if index % 7 == 3:
            row["size"] = "" if signal != "numeric" else row["size"]  # blanks are imputed, not errors
        if media:
            bright = high if signal == "image" else bool(rng.integers(2))
            loud = high if signal == "audio" else bool(rng.integers(2))
            row["photo"] = write_image(folder / f"img_{seed}_{index}.png", bright, rng)
            row["clip"] = write_wav(folder / f"clip_{seed}_{index}.wav", loud, rng)
        row["label"] = (3.0 if high else -3.0) if regression else LABELS[0 if high else 1]
        rows.append(row)
    return rows


def write_multimodal_files(folder: Path, signal: str, media: bool = True, regression: bool = False,
                           sizes: tuple[int, int, int] = (64, 24, 24)) -> dict[str, Path]:
    return {role: write_csv(folder / role / f"{role}.csv",
                            make_multimodal_rows(folder / role, size, seed, signal, media, regression))
            for role, size, seed in zip(("train", "validation", "test"), sizes, (1, 2, 3), strict=True)}


def multimodal_recipe(model: Path, files: dict[str, Path], output: Path, features: dict,
                      task: str = "classification", **train: object) -> dict:
    return {
        "task": task,
        "model": {"name": str(model)},
        "data": {role: str(path) for role, path in files.items()},
        "features": features,
        "train": {"epochs": 6, "batch_size": 8, "learning_rate": 1e-2, "max_length": 16, "warmup_ratio": 0.0,
                  "logging_steps": 4, "save_checkpoints": False, **train},
        "early_stopping": {"enabled": False},
        "evaluation": {"explain_examples": 1},
        "output": {"dir": str(output), "tensorboard": "off"},
    }
