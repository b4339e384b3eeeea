"""Object-level models (dual-domain FFC encoder, global-latent view synthesizer), their builders and weights.

`BUILDERS`, `WEIGHTS` and `MODEL_INFO` are written out here (no registry); `smcl.build_model(name,
weights=tag, weights_path=...)` builds `BUILDERS[name]` and loads `WEIGHTS[name][tag]` strictly through
`common.weights.load_weights`. The official files are downloaded by the user (links in the authors'
README) and passed by path. They were trained with the official encoder, whose SE blocks draw fresh weights
at every call and are never saved, and with inputs in [-1, 1]: `WEIGHTS_CONFIG` holds the config values a
weights tag implies, which `smcl.build_model` applies unless the caller overrides them.
"""

from __future__ import annotations

from common.weights import WeightsEntry
from smcl.object.models.ffc import FFC, FFCBNAct, FourierUnit, SpectralTransform
from smcl.object.models.ffc_encoder import (
    DualDomainEncoder,
    DualDomainEncoderConfig,
    FFCOnlyNet,
    build_ffc_encoder,
    remap_official_cnn_ffc,
)
from smcl.object.models.view_synthesizer import (
    ViewSynthesizer,
    ViewSynthesizerConfig,
    build_view_synthesizer,
    mlp_tile_rows,
    remap_official_smcl_net,
)

OFFICIAL_URL = "https://github.com/jubo-neu/SMCL (README: cnn_ffc_weights/encoder_<cat>.pt, checkpoints)"

BUILDERS = {
    "smcl_ffc_encoder": build_ffc_encoder,
    "smcl_view_synthesizer": build_view_synthesizer,
}

WEIGHTS: dict[str, dict[str, WeightsEntry]] = {
    "smcl_ffc_encoder": {
        "official": WeightsEntry(
            tag="official",
            description="authors' pretrained pixel encoder encoder_<cat>.pt (plain cnn_ffc state_dict, spec 7.1)",
            filename=None,
            sha256=None,
            remap=remap_official_cnn_ffc,
            url=OFFICIAL_URL,
            expected_keys=168,
        ),
    },
    "smcl_view_synthesizer": {
        "official": WeightsEntry(
            tag="official",
            description="authors' view synthesizer SMCL_latest / model.pth (plain SMCLNet state_dict, spec 7.2)",
            filename=None,
            sha256=None,
            remap=remap_official_smcl_net,
            url=OFFICIAL_URL,
            expected_keys=232,
        ),
    },
}

# Config values each weights tag was trained with (applied by smcl.build_model under the caller's overrides).
WEIGHTS_CONFIG: dict[tuple[str, str], dict] = {
    ("smcl_ffc_encoder", "official"): {"se_mode": "random_per_call"},
    ("smcl_view_synthesizer", "official"): {
        "encoder": {"se_mode": "random_per_call"},
        "input_range": "signed",
    },
}

MODEL_INFO = {
    "smcl_ffc_encoder": {
        "params": 261_848,  # from the spec 7.1 shapes (the official cnn_ffc has no SE parameters)
        "parity": "tests/smcl_object/test_ffc.py::test_official_encoder_key_layout_matches",
    },
    "smcl_view_synthesizer": {
        "params": 6_221_664,  # from the spec 7.2 shapes: encoder, Linear 2048->128, two ResnetFC (width 512)
        "parity": "tests/smcl_object/test_view_synthesizer.py::test_official_synthesizer_keys_load",
    },
}

__all__ = [
    "BUILDERS", "FFC", "FFCBNAct", "MODEL_INFO", "WEIGHTS", "WEIGHTS_CONFIG", "DualDomainEncoder",
    "DualDomainEncoderConfig", "FFCOnlyNet", "FourierUnit", "SpectralTransform", "ViewSynthesizer",
    "ViewSynthesizerConfig", "build_ffc_encoder", "build_view_synthesizer", "mlp_tile_rows",
    "remap_official_cnn_ffc", "remap_official_smcl_net",
]  # fmt: skip
