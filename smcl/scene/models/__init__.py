"""Scene-level models (point GCL encoder, R-MSA point renderer), their builders and weights.

`BUILDERS`, `WEIGHTS` and `MODEL_INFO` are written out here (no registry); `smcl.build_model(name,
weights=tag, weights_path=...)` builds `BUILDERS[name]` and loads `WEIGHTS[name][tag]` strictly through
`common.weights.load_weights`. The official files are downloaded by the user (OneDrive links in the
authors' README) and passed by path; their keys already have our names, so the remaps only unwrap.
"""

from __future__ import annotations

from common.weights import WeightsEntry
from smcl.scene.models.point_gcl import PointGCL, PointGCLConfig, build_point_gcl, remap_official_point_gcl
from smcl.scene.models.rmsa import ProximityAttention, RMSAConfig
from smcl.scene.models.scene_model import (
    SceneModel,
    SceneModelConfig,
    build_rmsa_renderer,
    remap_official_model_pth,
    remap_official_model_step_pth,
    remap_papr,
)
from smcl.scene.models.unet import SmallUNet

OFFICIAL_URL = "https://github.com/jubo-neu/SMCL (README: 'scene representation module' checkpoints)"

BUILDERS = {
    "smcl_point_gcl": build_point_gcl,
    "smcl_rmsa_renderer": build_rmsa_renderer,
}

WEIGHTS: dict[str, dict[str, WeightsEntry]] = {
    "smcl_point_gcl": {
        "official": WeightsEntry(
            tag="official",
            description="authors' point GCL encoder encoder_<scene>.pth (GraphCL Encoder state_dict, spec 7.3)",
            filename=None,
            sha256=None,
            remap=remap_official_point_gcl,
            url=OFFICIAL_URL,
        ),
    },
    "smcl_rmsa_renderer": {
        "official": WeightsEntry(
            tag="official",
            description="authors' per-scene model.pth ({'<step>': state_dict}, spec 7.4); build with the "
            "scene's config (e.g. conf/smcl/nerf_synthetic/lego.yaml), points resize to the file",
            filename=None,
            sha256=None,
            remap=remap_official_model_pth,
            url=OFFICIAL_URL,
        ),
        "official_step": WeightsEntry(
            tag="official_step",
            description="authors' per-scene model_<step>.pth (plain state_dict, spec 7.4)",
            filename=None,
            sha256=None,
            remap=remap_official_model_step_pth,
            url=OFFICIAL_URL,
        ),
        "papr": WeightsEntry(
            tag="papr",
            description="a PAPR (NeurIPS 2023) scene state_dict: no per-point features (d_feat 0)",
            filename=None,
            sha256=None,
            remap=remap_papr,
            url="https://github.com/zvict/papr",
        ),
    },
}

MODEL_INFO = {
    "smcl_point_gcl": {
        "params": 11744,  # from the spec 7.3 shapes: GIN 3->32->32, 32->32->32, 2 BN(32), head 64->64->64
        "parity": "tests/smcl_scene/test_models.py::test_official_weights_remap_onto_builders",
    },
    "smcl_rmsa_renderer": {
        "params": None,  # grows and shrinks with the scene's point count
        "parity": "tests/smcl_scene/test_official.py::test_load_official_model_pth",
    },
}

__all__ = [
    "BUILDERS",
    "MODEL_INFO",
    "WEIGHTS",
    "PointGCL",
    "PointGCLConfig",
    "ProximityAttention",
    "RMSAConfig",
    "SceneModel",
    "SceneModelConfig",
    "SmallUNet",
    "build_point_gcl",
    "build_rmsa_renderer",
]
