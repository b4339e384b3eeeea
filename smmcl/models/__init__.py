"""SMMCL models (MSCAN branches, cross-modal fusion, projectors, LightHamHead), builders and weights.

`BUILDERS` and `WEIGHTS` are written out here (no registry). `build_model(name, weights=tag)` builds
`BUILDERS[name]` and loads `WEIGHTS[name][tag]` strictly through `common.weights.load_weights`; the user
names the tag (no format guessing from key prefixes):

* `mscan_b_in1k`: SegNeXt's ImageNet-1K MSCAN-B file (`mscan_b.pth`, SegNeXt naming), one branch copied
  into both (spec 7.1); loaded into `model.backbone.branches()`.
* `mscan_b_in1k_mmseg`: the same backbone as converted by mmsegmentation (renamed depthwise keys).
* `official`: an authors' `epoch-N.pth` (state_dict under "model", our names; spec 7.2).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from common.registry import ModelRegistry
from common.weights import WeightsEntry
from smmcl.models.ham_head import NMF2D, LightHamHead
from smmcl.models.mscan import MSCAN_VARIANTS, MSCANConfig
from smmcl.models.rgbx_segmentor import (
    CrossModu,
    DualMSCAN,
    FusionConv,
    Projector,
    SegNeXtRGBX,
    SegNeXtRGBXConfig,
    build_segnext_rgbx,
    remap_mscan_in1k,
    remap_mscan_in1k_mmseg,
    remap_official_smmcl,
)

MAIN_MODEL = "smmcl_mscan_b"

BUILDERS = {"smmcl_mscan_b": build_segnext_rgbx}

WEIGHTS: dict[str, dict[str, WeightsEntry]] = {
    "smmcl_mscan_b": {
        "mscan_b_in1k": WeightsEntry(
            tag="mscan_b_in1k",
            description="ImageNet-1K MSCAN-B backbone (SegNeXt release, SegNeXt naming), both branches",
            filename="mscan_b.pth",
            sha256=None,
            remap=remap_mscan_in1k,
            url="https://github.com/Visual-Attention-Network/SegNeXt (README: ImageNet MSCAN-B, Tsinghua cloud)",
        ),
        "mscan_b_in1k_mmseg": WeightsEntry(
            tag="mscan_b_in1k_mmseg",
            description="ImageNet-1K MSCAN-B backbone as converted by mmsegmentation (mlp.dwconv renamed)",
            filename=None,
            sha256=None,
            remap=remap_mscan_in1k_mmseg,
            url="https://github.com/open-mmlab/mmsegmentation/tree/main/configs/segnext",
            key="state_dict",
        ),
        "official": WeightsEntry(
            tag="official",
            description="authors' SMMCL checkpoint epoch-N.pth (LLRGBD release: epoch-500.pth)",
            filename=None,
            sha256=None,
            remap=remap_official_smmcl,
            url="https://github.com/palmdong/SMMCL (README: Google Drive link)",
            key="model",
            expected_keys=1782,
        ),
    },
}

MODEL_INFO = {
    "smmcl_mscan_b": {
        "params": 72_888_722,
        "parity": "tests/smmcl/test_models.py::test_full_model_golden_seed0_fill",
    },
}


def weights_target(model: SegNeXtRGBX, tag: str) -> nn.Module:
    """The module a weights tag loads into: both backbone branches for the ImageNet files, else the model."""
    return model.backbone.branches() if tag.startswith("mscan_") else model


REGISTRY = ModelRegistry("smmcl", BUILDERS, WEIGHTS, MODEL_INFO, main=MAIN_MODEL, target=weights_target)
list_models = REGISTRY.list_models
list_weights = REGISTRY.list_weights


def build_model(
    name: str = MAIN_MODEL,
    weights: str | None = None,
    *,
    weights_path: str | Path | None = None,
    cfg: SegNeXtRGBXConfig | None = None,
    **overrides,
) -> SegNeXtRGBX:
    """Build `name` ("smmcl_mscan_b"); keyword `overrides` replace SegNeXtRGBXConfig fields.

    `smmcl.build_model(num_classes=14)` is the paper's model (72,888,722 parameters). `weights` names a tag
    of `list_weights(name)`; `weights_path` is the file (the user-downloaded ones have no cache entry).
    """
    return REGISTRY.build_model(name, weights, weights_path=weights_path, cfg=cfg, **overrides)


__all__ = [
    "BUILDERS",
    "MAIN_MODEL",
    "MODEL_INFO",
    "MSCAN_VARIANTS",
    "NMF2D",
    "WEIGHTS",
    "CrossModu",
    "DualMSCAN",
    "FusionConv",
    "LightHamHead",
    "MSCANConfig",
    "Projector",
    "SegNeXtRGBX",
    "SegNeXtRGBXConfig",
    "build_model",
    "build_segnext_rgbx",
    "list_models",
    "list_weights",
    "remap_mscan_in1k",
    "remap_mscan_in1k_mmseg",
    "remap_official_smmcl",
    "weights_target",
]
