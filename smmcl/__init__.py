"""SMMCL (Dong & Yokoya, WACV 2024): dual-branch MSCAN RGB-X segmentation with multi-modal contrast."""

from smmcl.data import RGBXDataset, RGBXDatasetConfig
from smmcl.inference import predict
from smmcl.losses import SMMCLLoss, SMMCLLossConfig
from smmcl.models import (
    BUILDERS,
    MODEL_INFO,
    NMF2D,
    WEIGHTS,
    DualMSCAN,
    LightHamHead,
    SegNeXtRGBX,
    SegNeXtRGBXConfig,
    build_model,
    build_segnext_rgbx,
    list_models,
    list_weights,
)

__all__ = [
    "BUILDERS",
    "MODEL_INFO",
    "WEIGHTS",
    "list_models",
    "list_weights",
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
    "predict",
]
