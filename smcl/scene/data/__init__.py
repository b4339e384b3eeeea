"""Scene loaders (NeRF-Synthetic, NSVF / Tanks&Temples, LLFF, COLMAP, nerfstudio) and PAPR-convention rays."""

from smcl.scene.data.captures import load_colmap, load_nerfstudio
from smcl.scene.data.scenes import (
    SceneData,
    SceneFormatError,
    get_rays_papr,
    load_blender,
    load_llff,
    load_nsvf,
    parse_nsvf_intrinsics,
)

__all__ = [
    "SceneData",
    "SceneFormatError",
    "get_rays_papr",
    "load_blender",
    "load_colmap",
    "load_llff",
    "load_nerfstudio",
    "load_nsvf",
    "parse_nsvf_intrinsics",
]
