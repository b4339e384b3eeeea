"""Self-supervised training experiment: config schema and builders for common.engine (spec nvs_sqa.md §2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor, nn

from common.checkpoint import CheckpointError, load_checkpoint, load_state_dict_strict
from common.engine import TrainConfig
from nvs_sqa.data.pairs import NSSPairSampler, PairConfig
from nvs_sqa.losses import CosineTargetLoss
from nvs_sqa.models import SequenceModel, SequenceModelConfig, build_model


@dataclass(frozen=True)
class LossConfig:
    # official train.py weights: ssim 1, psnr 0.5, rep 0.2, (st-rred 0), fvvdp 1; fvvdp needs pyfvvdp
    branches: tuple[str, ...] = ("ssim", "psnr", "rep")
    weights: tuple[float, ...] = (1.0, 0.5, 0.2)


@dataclass(frozen=True)
class ExperimentConfig:
    model: SequenceModelConfig = field(default_factory=SequenceModelConfig)
    data: PairConfig = field(default_factory=PairConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-3, optimizer="adam", amsgrad=True))
    weights: str | None = None  # "official" to fine-tune from the released checkpoint


class NVSSQATrainer(nn.Module):
    """Encoder + per-branch projectors; training_step returns the weighted L1 terms."""

    def __init__(self, encoder: SequenceModel, loss: CosineTargetLoss) -> None:
        super().__init__()
        self.encoder, self.loss = encoder, loss

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.encoder.cfg.per_frame_bn:  # official: one encoder call per sequence, one per frame index
            f1, f2 = self.encoder(batch["seq1"]), self.encoder(batch["seq2"])
            return self.loss(f1, f2, batch["targets"])
        b = batch["seq1"].shape[0]
        both = self.encoder(batch_cat(batch["seq1"], batch["seq2"]))
        return self.loss(both[:b], both[b:], batch["targets"])


def batch_cat(a: Tensor, b: Tensor) -> Tensor:
    """Both sequences through one encoder call (one BatchNorm batch, as a pair of calls would mix anyway)."""
    import torch

    return torch.cat([a, b], 0)


def load_encoder_checkpoint(model: SequenceModel, path: str | Path) -> SequenceModel:
    """Load the encoder of an engine checkpoint of this experiment (its "model" holds encoder.* and the
    projectors' loss.*; only the encoder is kept) strictly into `model`."""
    state = load_checkpoint(path)
    sd = state.get("model")
    if not isinstance(sd, dict) or not any(k.startswith("encoder.") for k in sd):
        raise CheckpointError(f"checkpoint {path} holds no NVS-SQA training model (no encoder.* keys)")
    enc = {k[len("encoder.") :]: v for k, v in sd.items() if k.startswith("encoder.")}
    load_state_dict_strict(model, enc, source=str(path))
    return model


def build(cfg: ExperimentConfig) -> dict:
    """Model and data sampler for Trainer(cfg.train, **build(cfg))."""
    encoder = build_model("nvs_sqa", cfg.weights, cfg=cfg.model)
    loss = CosineTargetLoss(cfg.loss.branches, cfg.loss.weights, cfg.model.angular_feat_size)
    sampler = NSSPairSampler(cfg.data, cfg.train.batch_size, cfg.loss.branches)
    return {"model": NVSSQATrainer(encoder, loss), "train_data": sampler}
