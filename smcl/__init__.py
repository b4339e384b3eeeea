"""SMCL: spatial-spectral multi-view contrastive learning for scene representation.

Two settings share the paper's idea and little code, so they live in two subpackages: `smcl.object`
(FFC encoder pretrained on Mir-180 triplets + pixelNeRF-style view synthesizer) and `smcl.scene`
(graph contrastive point module + R-MSA point renderer). The model contract of the project is here:

    import smcl
    smcl.list_models()                      # ['smcl_ffc_encoder', 'smcl_point_gcl', ...]
    smcl.list_weights("smcl_view_synthesizer")          # ['official']
    model = smcl.build_model("smcl_view_synthesizer", weights="official", weights_path="SMCL_latest")

`BUILDERS`, `WEIGHTS` and `MODEL_INFO` merge the written-out dicts of `smcl.object.models` and
`smcl.scene.models`.
"""

from __future__ import annotations

from torch import nn

from common.registry import ModelRegistry
from smcl.object.models import BUILDERS as OBJECT_BUILDERS
from smcl.object.models import MODEL_INFO as OBJECT_MODEL_INFO
from smcl.object.models import WEIGHTS as OBJECT_WEIGHTS
from smcl.object.models import WEIGHTS_CONFIG
from smcl.scene.models import BUILDERS as SCENE_BUILDERS
from smcl.scene.models import MODEL_INFO as SCENE_MODEL_INFO
from smcl.scene.models import WEIGHTS as SCENE_WEIGHTS

BUILDERS = {**OBJECT_BUILDERS, **SCENE_BUILDERS}
WEIGHTS = {**OBJECT_WEIGHTS, **SCENE_WEIGHTS}
MODEL_INFO = {**OBJECT_MODEL_INFO, **SCENE_MODEL_INFO}
MAIN_MODEL = "smcl_view_synthesizer"


REGISTRY = ModelRegistry(
    "smcl", BUILDERS, WEIGHTS, MODEL_INFO, main=MAIN_MODEL, weights_config=WEIGHTS_CONFIG
)
list_models = REGISTRY.list_models
list_weights = REGISTRY.list_weights


def build_model(
    name: str = MAIN_MODEL, weights: str | None = None, *, weights_path=None, **overrides
) -> nn.Module:
    """Build `BUILDERS[name](**overrides)` and, with `weights`, load `WEIGHTS[name][weights]` strictly
    (sha256 checked where recorded; an error lists missing and unexpected keys).

    The official files are downloaded by the user: pass `weights_path`. A tag's training-time config
    (`smcl.object.models.WEIGHTS_CONFIG`, e.g. the official encoder's per-call SE) is applied under
    `overrides`.
    """
    return REGISTRY.build_model(name, weights, weights_path=weights_path, **overrides)


__all__ = ["BUILDERS", "MAIN_MODEL", "MODEL_INFO", "WEIGHTS", "build_model", "list_models", "list_weights"]
