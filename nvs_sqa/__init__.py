"""NVS-SQA: no-reference quality of neurally synthesized scenes (re-implementation, spec nvs_sqa.md)."""

from nvs_sqa.assessor import NSSScore, QualityAssessor
from nvs_sqa.data.pairs import NSSPairSampler, PairConfig, load_renders
from nvs_sqa.frames import FrameError, list_frames, read_frame
from nvs_sqa.losses import CosineTargetLoss, Projector
from nvs_sqa.metric import NSSQuality
from nvs_sqa.models import (
    BUILDERS,
    MODEL_INFO,
    WEIGHTS,
    SequenceModel,
    SequenceModelConfig,
    ViewEncoder,
    ViewEncoderConfig,
    build_model,
    list_models,
    list_weights,
)
from nvs_sqa.ridge import RidgeReadout, fit_ridge
from nvs_sqa.weights import fetch_official_weights, read_ridge_pickle, require_official_weights

__all__ = [
    "BUILDERS",
    "CosineTargetLoss",
    "MODEL_INFO",
    "NSSPairSampler",
    "NSSQuality",
    "PairConfig",
    "Projector",
    "WEIGHTS",
    "load_renders",
    "FrameError",
    "NSSScore",
    "QualityAssessor",
    "RidgeReadout",
    "SequenceModel",
    "SequenceModelConfig",
    "ViewEncoder",
    "ViewEncoderConfig",
    "build_model",
    "fetch_official_weights",
    "fit_ridge",
    "list_frames",
    "list_models",
    "list_weights",
    "read_frame",
    "read_ridge_pickle",
    "require_official_weights",
]
