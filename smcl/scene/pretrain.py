"""Point-GCL pretraining (spec smcl.md 2.5, 3.3) through common.engine: config, checkpoints, resume, DDP.

The prepared cloud is cut into blocks (k-NN neighbourhoods, or the official file-order chunks); the
engine samples batches of blocks (shuffled per epoch, sharded over ranks) and optimises the graph-level
InfoNCE of `PointGCL.training_step`. The encoder's plain state dict, the file the renderer's
`points.gcl_weights` names, is written to `<out_dir>/point_gcl.pth` at the end.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from common.callbacks import Callback
from common.engine import TrainConfig
from smcl.scene.models.point_gcl import PointGCL, PointGCLConfig, make_blocks

ENCODER_FILE = "point_gcl.pth"


@dataclass(frozen=True)
class PointPretrainConfig:
    points: str = ""  # prepared cloud (.npy / .pcd / .ply), unscaled scene units
    gcl: PointGCLConfig = field(default_factory=PointGCLConfig)
    max_blocks: int | None = None  # a fixed random subset of blocks (None: all, one per point for knn)
    # official: batch 2 (one negative per anchor), Adam 1e-4, 100 epochs; more negatives help
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=64, lr=1e-4, max_steps=1000))


class PointBlocks(Dataset):
    """Blocks of one cloud: item i = {"xyz": (S, 3) float32 points of block i}."""

    def __init__(self, points: Tensor, cfg: PointGCLConfig, max_blocks: int | None = None, seed: int = 0):
        self.points = points.float()
        blocks = make_blocks(self.points, cfg)
        if max_blocks is not None and blocks.shape[0] > max_blocks:
            g = torch.Generator().manual_seed(seed)
            blocks = blocks[torch.randperm(blocks.shape[0], generator=g)[:max_blocks]]
        self.blocks = blocks

    def __len__(self) -> int:
        return self.blocks.shape[0]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"xyz": self.points[self.blocks[i]]}


def steps_per_epoch(n_blocks: int, batch_size: int, world_size: int = 1) -> int:
    return max(1, (n_blocks // world_size) // batch_size)  # the engine drops incomplete batches


def build(cfg: PointPretrainConfig) -> dict:
    """Trainer keyword arguments: the encoder and the block dataset (the engine builds Adam)."""
    from smcl.scene.points import read_points

    pts = torch.from_numpy(read_points(cfg.points)).float()
    return {
        "model": PointGCL(cfg.gcl),
        "train_data": PointBlocks(pts, cfg.gcl, cfg.max_blocks, cfg.train.seed),
    }


class _EpochLosses(Callback):
    """Mean InfoNCE per epoch (for reports); the engine logs the per-step values itself."""

    def __init__(self, per_epoch: int) -> None:
        self.per_epoch, self.sums, self.hist = per_epoch, 0.0, []

    def after_step(self, trainer, step: int, losses: dict[str, float]) -> None:
        self.sums += losses["infonce"]
        if step % self.per_epoch == 0:
            self.hist.append(self.sums / self.per_epoch)
            self.sums = 0.0


def run(
    cfg: PointPretrainConfig,
    *,
    devices: str = "cpu",
    resume: str | Path | None = None,
    overwrite: bool = False,
    allow_config_change: bool = False,
) -> tuple[PointGCL, list[float]]:
    """Seed, build, train through common.engine, write `<out_dir>/point_gcl.pth` (rank 0).
    Returns the encoder and the per-epoch mean losses of this invocation."""
    from common.distributed import barrier, is_main_process
    from common.engine import Trainer, prepare_run
    from common.io import atomic_torch_save

    opts = dict(resume=resume, overwrite=overwrite, allow_config_change=allow_config_change)
    info = prepare_run(cfg, devices, **opts)
    kw = build(cfg)
    losses = _EpochLosses(steps_per_epoch(len(kw["train_data"]), cfg.train.batch_size, info.world_size))
    model = Trainer(cfg.train, **kw, devices=devices, config=cfg, callbacks=[losses], **opts).fit()
    if is_main_process():
        atomic_torch_save(
            {k: v.cpu() for k, v in model.state_dict().items()}, Path(cfg.train.out_dir) / ENCODER_FILE
        )
    barrier()
    return model, losses.hist


def pretrain_point_gcl(
    points: Tensor,
    cfg: PointGCLConfig | None = None,
    *,
    epochs: int = 1,
    batch_size: int = 64,
    lr: float = 1e-4,
    max_blocks: int | None = None,
    seed: int = 0,
    out_dir: str | Path | None = None,
) -> tuple[PointGCL, list[float]]:
    """Train the GCL encoder on one cloud (N, 3) for `epochs` epochs through common.engine (Adam);
    returns the model and per-epoch mean losses. The run folder (checkpoints, logs, point_gcl.pth) is
    `out_dir`, or a temporary folder removed afterwards. Official: batch_size 2, 100 epochs, lr 1e-4."""
    from smcl.scene.points import write_points

    cfg = cfg or PointGCLConfig()
    n_blocks = PointBlocks(points, cfg, max_blocks, seed).blocks.shape[0]
    batch = max(2, min(batch_size, n_blocks))
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(out_dir) if out_dir is not None else Path(tmp) / "run"
        src = Path(tmp) / "points.npy"
        write_points(src, points.detach().cpu().numpy())
        train = TrainConfig(
            max_steps=epochs * steps_per_epoch(n_blocks, batch),
            batch_size=batch,
            lr=lr,
            seed=seed,
            out_dir=str(run_dir),
            log_every=0,
            tensorboard=False,
            progress=False,
        )
        pcfg = PointPretrainConfig(points=str(src), gcl=cfg, max_blocks=max_blocks, train=train)
        return run(pcfg)
