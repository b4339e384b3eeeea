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

import copy

from torch import nn

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


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`, sorted."""
    return sorted(BUILDERS)


def list_weights(name: str) -> list[str]:
    """Weights tags of model `name` (e.g. ['official'])."""
    _check_name(name)
    return sorted(WEIGHTS.get(name, {}))


def _check_name(name: str) -> None:
    if name not in BUILDERS:
        raise ValueError(f"unknown SMCL model {name!r}; available: {', '.join(list_models())}")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_model(
    name: str = MAIN_MODEL, weights: str | None = None, *, weights_path=None, **overrides
) -> nn.Module:
    """Build `BUILDERS[name](**overrides)` and, with `weights`, load `WEIGHTS[name][weights]` strictly
    (sha256 checked where recorded; an error lists missing and unexpected keys).

    The official files are downloaded by the user: pass `weights_path`. A tag's training-time config
    (`smcl.object.models.WEIGHTS_CONFIG`, e.g. the official encoder's per-call SE) is applied under
    `overrides`.
    """
    from common.weights import load_weights

    _check_name(name)
    if weights is not None:
        tags = WEIGHTS.get(name, {})
        if weights not in tags:
            raise ValueError(
                f"model {name!r} has no weights {weights!r}; available: {sorted(tags) or 'none'}"
            )
        overrides = _merge(WEIGHTS_CONFIG.get((name, weights), {}), overrides)
    model = BUILDERS[name](**overrides)
    if weights is not None:
        load_weights(model, WEIGHTS[name][weights], weights_path)
    return model


__all__ = ["BUILDERS", "MAIN_MODEL", "MODEL_INFO", "WEIGHTS", "build_model", "list_models", "list_weights"]
