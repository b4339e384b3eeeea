"""SMMCL (Dong & Yokoya, WACV 2024): dual-branch MSCAN RGB-X segmentation with multi-modal contrast.

The names below are imported on first use (module ``__getattr__``), so ``import smmcl.hha`` (or a
command's ``--help``) does not pay for the models, torchvision or torchmetrics.
"""

from __future__ import annotations

from common.lazy import lazy_exports

_EXPORTS = {
    "data": ("RGBXDataset", "RGBXDatasetConfig"),
    "inference": ("predict",),
    "losses": ("SMMCLLoss", "SMMCLLossConfig"),
    "models": ("BUILDERS", "MODEL_INFO", "NMF2D", "WEIGHTS", "DualMSCAN", "LightHamHead", "SegNeXtRGBX",
               "SegNeXtRGBXConfig", "build_model", "build_segnext_rgbx", "list_models", "list_weights"),
}  # fmt: skip
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
