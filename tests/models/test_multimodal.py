"""The fusion model: every combiner over text, tabular, image and audio inputs, and its save/load round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoModel, AutoTokenizer

from tests.multimodal_fixtures import build_tiny_ast, build_tiny_vit
from tuneforge.errors import TuneforgeError
from tuneforge.models.multimodal import COMBINERS, MultimodalConfig, MultimodalModel, load_multimodal


@pytest.fixture(scope="module")
def encoders(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("encoders")
    return {"text": tiny_model, "image": build_tiny_vit(root / "vit"), "audio": build_tiny_ast(root / "ast")}


def _config(combiner: str, labels: list[str] | None = None) -> MultimodalConfig:
    return MultimodalConfig(task="classification" if labels else "regression", num_labels=len(labels or [0]),
                            labels=labels, combiner=combiner, fusion_hidden=8, numeric_width=4,
                            vocabulary_sizes=[3, 5], categorical_columns=["a", "b"], image_columns=["photo"],
                            audio_columns=["clip", "clip2"])


def _model(encoders: dict[str, Path], config: MultimodalConfig) -> MultimodalModel:
    torch.manual_seed(0)
    return MultimodalModel(config, AutoModel.from_pretrained(encoders["text"]),
                           AutoModel.from_pretrained(encoders["image"]), AutoModel.from_pretrained(encoders["audio"]))


def _batch(rows: int = 3) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {"input_ids": torch.randint(5, 50, (rows, 6)), "attention_mask": torch.ones(rows, 6, dtype=torch.long),
            "numeric": torch.randn(rows, 4), "categorical": torch.tensor([[0, 4], [1, 2], [2, 0]])[:rows],
            "pixel_values": torch.randn(rows, 1, 3, 16, 16), "audio_values": torch.randn(rows, 2, 64, 16)}


def test_modalities_are_named_in_order() -> None:
    assert _config("concat", ["x", "y"]).modalities() == ["text", "numeric", "categorical", "image:photo",
                                                         "audio:clip", "audio:clip2"]


@pytest.mark.parametrize("combiner", COMBINERS)
def test_every_combiner_gives_one_output_per_class_and_trains_every_modality(encoders: dict[str, Path],
                                                                             combiner: str) -> None:
    model = _model(encoders, _config(combiner, ["x", "y", "z"]))
    logits = model(**_batch()).logits
    assert logits.shape == (3, 3)
    logits.sum().backward()
    for name in ("text", "numeric", "categorical", "image", "audio"):
        assert model.projections[name][0].weight.grad is not None, name
    if combiner in ("gated", "attention"):
        assert model.last_weights is not None and model.last_weights.shape == (3, 6)
    if combiner == "attention":
        assert torch.allclose(model.last_weights.sum(dim=1), torch.ones(3))


def test_late_fusion_is_the_mean_of_the_per_modality_heads(encoders: dict[str, Path]) -> None:
    model = _model(encoders, _config("late", ["x", "y"])).eval()
    batch = _batch()
    vectors = model.modality_vectors(**batch)
    expected = torch.stack([head(v) for head, v in zip(model.heads, vectors, strict=True)]).mean(dim=0)
    assert torch.allclose(model(**batch).logits, expected)


def test_frozen_encoders_stay_in_eval_mode_and_get_no_gradient(encoders: dict[str, Path]) -> None:
    model = _model(encoders, _config("concat"))
    for parameter in model.image_encoder.parameters():
        parameter.requires_grad = False
    model.train()
    assert not model.image_encoder.training and model.audio_encoder.training
    model(**_batch()).logits.sum().backward()
    assert all(p.grad is None for p in model.image_encoder.parameters())
    assert any(p.grad is not None for p in model.audio_encoder.parameters())


def test_save_and_load_give_the_same_predictions(encoders: dict[str, Path], tmp_path: Path) -> None:
    model = _model(encoders, _config("gated", ["x", "y"])).eval()
    processors = {"text": AutoTokenizer.from_pretrained(encoders["text"]),
                  "image": AutoImageProcessor.from_pretrained(encoders["image"]),
                  "audio": AutoFeatureExtractor.from_pretrained(encoders["audio"])}
    model.save(tmp_path / "model", processors)
    assert {p.name for p in (tmp_path / "model").iterdir()} == {"config.json", "fusion.safetensors", "text",
                                                                "image", "audio"}
    assert (tmp_path / "model" / "text" / "model.safetensors").is_file()
    assert not list((tmp_path / "model").rglob("*.bin")) and not list((tmp_path / "model").rglob("*.pt"))
    loaded, loaded_processors = load_multimodal(tmp_path / "model")
    batch = _batch()
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, loaded(**batch).logits, atol=1e-6)
    assert set(loaded_processors) == {"text", "image", "audio"}
    assert loaded.config_data == model.config_data


def test_image_columns_without_an_encoder_are_an_error(encoders: dict[str, Path]) -> None:
    with pytest.raises(TuneforgeError, match="image encoder"):
        MultimodalModel(_config("concat"), AutoModel.from_pretrained(encoders["text"]))
