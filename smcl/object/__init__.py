"""SMCL object level: dual-domain FFC encoder, Mir-180 contrastive pretraining, global-latent view synthesizer.

Novel camera paths around a source view: :func:`render_trajectory`. Evaluation: :mod:`smcl.object.metrics`.
"""

from smcl.object.data import Mir180Dataset, NMRDataset, NMRDatasetConfig, SRNDataset, build_mir180
from smcl.object.experiment import (
    EncoderPretrainer,
    PretrainExperiment,
    SynthExperiment,
    build_pretrain,
    build_synth,
    synth_config_from_checkpoint,
)
from smcl.object.losses import FocalFrequencyLoss, InfoNCE, InfoNCECompat, focal_frequency_loss
from smcl.object.models import (
    BUILDERS,
    MODEL_INFO,
    WEIGHTS,
    DualDomainEncoder,
    DualDomainEncoderConfig,
    ViewSynthesizer,
    ViewSynthesizerConfig,
)
from smcl.object.render import render_trajectory

__all__ = [
    "BUILDERS", "MODEL_INFO", "WEIGHTS", "DualDomainEncoder", "DualDomainEncoderConfig", "EncoderPretrainer",
    "FocalFrequencyLoss", "InfoNCE", "InfoNCECompat", "Mir180Dataset", "NMRDataset", "NMRDatasetConfig",
    "PretrainExperiment", "SRNDataset", "SynthExperiment", "ViewSynthesizer", "ViewSynthesizerConfig",
    "build_mir180", "build_pretrain", "build_synth", "focal_frequency_loss", "render_trajectory",
    "synth_config_from_checkpoint",
]  # fmt: skip
