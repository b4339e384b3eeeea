"""SMCL object-level models."""

from smcl.object.models.ffc import FFC, FFCBNAct, FourierUnit, SpectralTransform
from smcl.object.models.ffc_encoder import (
    DualDomainEncoder,
    DualDomainEncoderConfig,
    FFCOnlyNet,
    build_dual_domain_encoder,
    remap_official_cnn_ffc,
)
from smcl.object.models.view_synthesizer import (
    ViewSynthesizer,
    ViewSynthesizerConfig,
    build_view_synthesizer,
    remap_official_smcl_net,
)

BUILDERS = {"dual_domain_encoder": build_dual_domain_encoder, "view_synthesizer": build_view_synthesizer}

__all__ = [
    "BUILDERS", "FFC", "FFCBNAct", "DualDomainEncoder", "DualDomainEncoderConfig", "FFCOnlyNet", "FourierUnit",
    "SpectralTransform", "ViewSynthesizer", "ViewSynthesizerConfig", "build_dual_domain_encoder",
    "build_view_synthesizer", "remap_official_cnn_ffc", "remap_official_smcl_net",
]  # fmt: skip
