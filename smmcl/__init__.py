"""SMMCL (Dong & Yokoya, WACV 2024): dual-branch MSCAN RGB-X segmentation with multi-modal contrast."""

from smmcl.data import RGBXDataset, RGBXDatasetConfig
from smmcl.losses import SMMCLLoss, SMMCLLossConfig
from smmcl.models import (
    NMF2D,
    DualMSCAN,
    LightHamHead,
    SegNeXtRGBX,
    SegNeXtRGBXConfig,
    build_model,
    build_segnext_rgbx,
)

__all__ = [
    "NMF2D",
    "DualMSCAN",
    "LightHamHead",
    "RGBXDataset",
    "RGBXDatasetConfig",
    "SMMCLLoss",
    "SMMCLLossConfig",
    "SegNeXtRGBX",
    "SegNeXtRGBXConfig",
    "build_model",
    "build_segnext_rgbx",
]
