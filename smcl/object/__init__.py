"""SMCL object level: dual-domain FFC encoder, Mir-180 contrastive pretraining, global-latent view synthesizer."""

from smcl.object.data import Mir180Dataset, NMRDataset, NMRDatasetConfig, SRNDataset, build_mir180
from smcl.object.experiment import (
    EncoderPretrainer,
    PretrainExperiment,
    SynthExperiment,
    build_pretrain,
    build_synth,
)
from smcl.object.losses import FocalFrequencyLoss, InfoNCE, InfoNCECompat, focal_frequency_loss
from smcl.object.models import (
    BUILDERS,
    DualDomainEncoder,
    DualDomainEncoderConfig,
    ViewSynthesizer,
    ViewSynthesizerConfig,
)

__all__ = [
    "BUILDERS", "DualDomainEncoder", "DualDomainEncoderConfig", "EncoderPretrainer", "FocalFrequencyLoss", "InfoNCE",
    "InfoNCECompat", "Mir180Dataset", "NMRDataset", "NMRDatasetConfig", "PretrainExperiment", "SRNDataset",
    "SynthExperiment", "ViewSynthesizer", "ViewSynthesizerConfig", "build_mir180", "build_pretrain", "build_synth",
    "focal_frequency_loss",
]  # fmt: skip
