"""SMCL scene level: point GCL pretraining and the R-MSA (proximity attention) point renderer."""

from smcl.scene.data import SceneData, SceneFormatError, get_rays_papr, load_blender, load_llff, load_nsvf
from smcl.scene.losses import PhotometricLoss
from smcl.scene.models.point_gcl import (
    PointGCL,
    PointGCLConfig,
    compat_last_chunk_tiled_features,
    pretrain_point_gcl,
)
from smcl.scene.models.rmsa import ProximityAttention, RMSAConfig, topk_points_per_ray
from smcl.scene.models.scene_model import SceneModel, SceneModelConfig, init_points
from smcl.scene.models.unet import SmallUNet
from smcl.scene.official import OfficialCheckpointError, load_official_scene
from smcl.scene.points import PointCloudError, prepare_points, read_points

__all__ = [
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
    "compat_last_chunk_tiled_features",
    "get_rays_papr",
    "init_points",
    "load_blender",
    "load_llff",
    "load_nsvf",
    "load_official_scene",
    "prepare_points",
    "pretrain_point_gcl",
    "read_points",
    "topk_points_per_ray",
]
