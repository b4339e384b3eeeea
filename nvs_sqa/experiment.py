"""Self-supervised training experiment: config schema and builders for common.engine (spec nvs_sqa.md §2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor, nn

from common.checkpoint import CheckpointError, load_checkpoint, load_state_dict_strict
from common.engine import TrainConfig
from nvs_sqa.data.pairs import NSSPairSampler, OfficialPairSampler, PairConfig, SoftTargets
from nvs_sqa.losses import CosineTargetLoss
from nvs_sqa.models import SequenceModel, SequenceModelConfig, build_model


@dataclass(frozen=True)
class LossConfig:
    # official train.py weights: ssim 1, psnr 0.5, rep 0.2, (st-rred 0), fvvdp 1; fvvdp needs pyfvvdp
    branches: tuple[str, ...] = ("ssim", "psnr", "rep")
    weights: tuple[float, ...] = (1.0, 0.5, 0.2)
    official_ssim: bool = False  # True: the official zero-padded float32 SSIM target (borders averaged in)


@dataclass(frozen=True)
class ExperimentConfig:
    model: SequenceModelConfig = field(default_factory=SequenceModelConfig)
    data: PairConfig = field(default_factory=PairConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-3, optimizer="adam", amsgrad=True))
    weights: str | None = None  # "official" to fine-tune from the released checkpoint


class NVSSQATrainer(nn.Module):
    """Encoder + per-branch projectors; training_step returns the weighted L1 terms.

    The soft targets are computed here, on the device the engine moved the batch to (not in the sampler on
    the main process's CPU); `SoftTargets` is kept outside the module tree, so it adds nothing to the state
    dict or the optimiser. A batch that already holds "targets" (B, K) uses them as given.
    """

    def __init__(
        self, encoder: SequenceModel, loss: CosineTargetLoss, targets: SoftTargets | None = None
    ) -> None:
        super().__init__()
        self.encoder, self.loss = encoder, loss
        object.__setattr__(self, "soft_targets", targets or SoftTargets(loss.branches))

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x1, x2 = batch["seq1"], batch["seq2"]
        t = batch["targets"] if "targets" in batch else self.soft_targets(x1, x2, batch["ratio"])
        if self.encoder.cfg.per_frame_bn:  # official: one encoder call per sequence, one per frame index
            return self.loss(self.encoder(x1), self.encoder(x2), t)
        b = x1.shape[0]
        both = self.encoder(batch_cat(x1, x2))
        return self.loss(both[:b], both[b:], t)


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
    """Model, data sampler and callbacks for Trainer(cfg.train, **build(cfg)).

    `data.official`: the official sampler, a Callback too (its epoch state goes into checkpoints)."""
    if cfg.data.official:
        sampler = OfficialPairSampler(cfg.data, cfg.train.batch_size)
        return {"model": build_trainer(cfg), "train_data": sampler, "callbacks": [sampler]}
    return {"model": build_trainer(cfg), "train_data": NSSPairSampler(cfg.data, cfg.train.batch_size)}


def build_trainer(cfg: ExperimentConfig) -> NVSSQATrainer:
    """Encoder + projectors + soft targets of `cfg` (the module the optimizer is built from)."""
    encoder = build_model("nvs_sqa", cfg.weights, cfg=cfg.model)
    loss = CosineTargetLoss(cfg.loss.branches, cfg.loss.weights, cfg.model.angular_feat_size)
    return NVSSQATrainer(encoder, loss, SoftTargets(cfg.loss.branches, cfg.loss.official_ssim))
