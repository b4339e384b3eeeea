"""SMMCL (Dong & Yokoya, WACV 2024): dual-branch MSCAN RGB-X segmentation with multi-modal contrast.

The names below are imported on first use (module ``__getattr__``), so ``import smmcl.hha`` (or a
command's ``--help``) does not pay for the models, torchvision or torchmetrics.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "data": ("RGBXDataset", "RGBXDatasetConfig"),
    "inference": ("predict",),
    "losses": ("SMMCLLoss", "SMMCLLossConfig"),
    "models": ("BUILDERS", "MODEL_INFO", "NMF2D", "WEIGHTS", "DualMSCAN", "LightHamHead", "SegNeXtRGBX",
               "SegNeXtRGBXConfig", "build_model", "build_segnext_rgbx", "list_models", "list_weights"),
}  # fmt: skip
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'smmcl' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"smmcl.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
