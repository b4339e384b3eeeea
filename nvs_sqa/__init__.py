"""NVS-SQA: no-reference quality of neurally synthesized scenes (re-implementation, spec nvs_sqa.md).

The names below are imported on first use (module ``__getattr__``), so ``import nvs_sqa`` for the functional
kernels does not pay for torchmetrics' stateful classes, matplotlib or torchvision.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "assessor": ("NSSScore", "QualityAssessor"),
    "data.pairs": ("NSSPairSampler", "PairConfig", "load_renders"),
    "frames": ("FrameError", "list_frames", "read_frame"),
    "losses": ("CosineTargetLoss", "Projector"),
    "metric": ("NSSQuality",),
    "models": ("BUILDERS", "MODEL_INFO", "WEIGHTS", "SequenceModel", "SequenceModelConfig", "ViewEncoder",
               "ViewEncoderConfig", "build_model", "list_models", "list_weights"),
    "ridge": ("RidgeReadout", "fit_ridge"),
    "weights": ("read_ridge_pickle",),
}  # fmt: skip
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'nvs_sqa' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nvs_sqa.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
