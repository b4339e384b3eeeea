"""NVS-SQA networks: per-view CNN and the sequence model."""

from __future__ import annotations

from pathlib import Path

import torch

from nvs_sqa.models.sequence_model import SequenceModel, SequenceModelConfig, sinusoidal_encoding
from nvs_sqa.models.view_encoder import ViewEncoder, ViewEncoderConfig


def build_model(cfg: SequenceModelConfig | None = None, weights: str | None = None) -> SequenceModel:
    """Build the sequence model; weights="nvs_sqa.official" loads the released checkpoint strictly."""
    model = SequenceModel(cfg or SequenceModelConfig())
    if weights is not None:
        if weights != "nvs_sqa.official":
            raise ValueError(f"unknown weights tag {weights!r}; known: 'nvs_sqa.official'")
        from nvs_sqa.weights import require_official_weights

        load_state_dict_file(model, require_official_weights()["state_dict"])
    return model


def load_state_dict_file(model: torch.nn.Module, path: Path) -> None:
    """torch.load(weights_only=True) + strict load with an error naming the file and the bad keys."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]  # a training checkpoint of common.engine: keep the encoder, drop the projectors
        if any(k.startswith("encoder.") for k in sd):
            sd = {k[len("encoder.") :]: v for k, v in sd.items() if k.startswith("encoder.")}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        raise RuntimeError(f"{path}: state_dict does not match the model: {err}") from err


BUILDERS = {"nvs_sqa": build_model}

__all__ = [
    "BUILDERS",
    "SequenceModel",
    "SequenceModelConfig",
    "ViewEncoder",
    "ViewEncoderConfig",
    "build_model",
    "load_state_dict_file",
    "sinusoidal_encoding",
]
