"""NVS-SQA networks (per-view CNN and the sequence model), their builders and their weights.

`BUILDERS` and `WEIGHTS` are written out here (no registry): `build_model(name, weights=tag)` looks the
name up in `BUILDERS` and loads `WEIGHTS[name][tag]` strictly through `common.weights.load_weights`, which
checks the cached file's sha256 at every load.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from common.registry import ModelRegistry
from common.weights import WeightsEntry
from nvs_sqa.models.sequence_model import SequenceModel, SequenceModelConfig, sinusoidal_encoding
from nvs_sqa.models.view_encoder import ViewEncoder, ViewEncoderConfig
from nvs_sqa.weights import OFFICIAL


def build_nvs_sqa(cfg: SequenceModelConfig | None = None, **overrides) -> SequenceModel:
    """The sequence model; `overrides` replace fields of SequenceModelConfig (e.g. fusion="mean")."""
    cfg = cfg or SequenceModelConfig()
    return SequenceModel(dataclasses.replace(cfg, **overrides) if overrides else cfg)


BUILDERS = {"nvs_sqa": build_nvs_sqa}


# The official checkpoint keeps our key names (spec §5.1): no remap.
WEIGHTS: dict[str, dict[str, WeightsEntry]] = {"nvs_sqa": {"official": OFFICIAL}}

MODEL_INFO = {
    "nvs_sqa": {
        "params": 4_739_680,
        "parity": "tests/nvs_sqa/test_parity.py::test_example_matches_official_feature_and_score",
    },
}


REGISTRY = ModelRegistry("nvs_sqa", BUILDERS, WEIGHTS, MODEL_INFO, main="nvs_sqa")
list_models = REGISTRY.list_models
list_weights = REGISTRY.list_weights


def build_model(
    name: str = "nvs_sqa",
    weights: str | None = None,
    *,
    weights_path: str | Path | None = None,
    cfg: SequenceModelConfig | None = None,
    **overrides,
) -> SequenceModel:
    """Build `name` (only "nvs_sqa"); weights="official" loads the released checkpoint strictly.

    `cfg` and keyword `overrides` (fields of SequenceModelConfig) shape the model; `weights_path` reads the
    tag's file from that path instead of the weights cache (its sha256 is still checked).
    """
    return REGISTRY.build_model(name, weights, weights_path=weights_path, cfg=cfg, **overrides)


__all__ = [
    "BUILDERS",
    "MODEL_INFO",
    "WEIGHTS",
    "SequenceModel",
    "SequenceModelConfig",
    "ViewEncoder",
    "ViewEncoderConfig",
    "build_model",
    "build_nvs_sqa",
    "list_models",
    "list_weights",
    "sinusoidal_encoding",
]
