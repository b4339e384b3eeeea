"""SMMCL models: MSCAN branches, cross-modal fusion, projectors, LightHamHead."""

from smmcl.models.ham_head import NMF2D, LightHamHead
from smmcl.models.mscan import MSCAN_VARIANTS, MSCANConfig, remap_upstream_mscan
from smmcl.models.rgbx_segmentor import (
    CrossModu,
    DualMSCAN,
    FusionConv,
    Projector,
    SegNeXtRGBX,
    SegNeXtRGBXConfig,
    build_model,
    build_segnext_rgbx,
)

BUILDERS = {"segnext_rgbx": build_segnext_rgbx}

__all__ = [
    "BUILDERS",
    "MSCAN_VARIANTS",
    "NMF2D",
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
    "remap_upstream_mscan",
]
