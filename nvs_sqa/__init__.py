"""NVS-SQA: no-reference quality of neurally synthesized scenes (re-implementation, spec nvs_sqa.md).

The names below are imported on first use (module ``__getattr__``), so ``import nvs_sqa`` for the functional
kernels does not pay for torchmetrics' stateful classes, matplotlib or torchvision.
"""

from __future__ import annotations

from common.lazy import lazy_exports

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
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
