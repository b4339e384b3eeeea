"""SMCL scene level: point GCL pretraining and the R-MSA (proximity attention) point renderer.

Models, builders and weights: `smcl.scene.models` (`BUILDERS`, `WEIGHTS`, `MODEL_INFO`). Training and
evaluation: `smcl.scene.experiment` (`train`, `from_checkpoint`, `evaluate_split`), point-GCL
pretraining: `smcl.scene.pretrain`; camera paths: `render_trajectory`.
"""

from smcl.scene.data import SceneData, SceneFormatError, get_rays_papr, load_blender, load_llff, load_nsvf
from smcl.scene.losses import PhotometricLoss
from smcl.scene.models import BUILDERS, MODEL_INFO, WEIGHTS
from smcl.scene.models.point_gcl import PointGCL, PointGCLConfig, compat_last_chunk_tiled_features
from smcl.scene.models.rmsa import ProximityAttention, RMSAConfig, topk_points_per_ray
from smcl.scene.models.scene_model import SceneModel, SceneModelConfig, init_points
from smcl.scene.models.unet import SmallUNet
from smcl.scene.official import OfficialCheckpointError, infer_config, load_official_scene
from smcl.scene.points import PointCloudError, prepare_points, read_points
from smcl.scene.pretrain import pretrain_point_gcl
from smcl.scene.render import render_trajectory

__all__ = [
    "BUILDERS",
    "MODEL_INFO",
    "OfficialCheckpointError",
    "PhotometricLoss",
    "PointCloudError",
    "PointGCL",
    "PointGCLConfig",
    "ProximityAttention",
    "RMSAConfig",
    "SceneData",
    "SceneFormatError",
    "SceneModel",
    "SceneModelConfig",
    "SmallUNet",
    "WEIGHTS",
    "compat_last_chunk_tiled_features",
    "get_rays_papr",
    "infer_config",
    "init_points",
    "load_blender",
    "load_llff",
    "load_nsvf",
    "load_official_scene",
    "prepare_points",
    "pretrain_point_gcl",
    "read_points",
    "render_trajectory",
    "topk_points_per_ray",
]
