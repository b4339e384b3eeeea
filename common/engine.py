"""One training loop for all papers: devices, DDP, AMP, accumulation, clipping, schedules, logging,
evaluation, checkpoints and bit-exact resume (STYLE 2.5).

Paper packages supply a model with `training_step(batch) -> dict[str, Tensor]` (named, already weighted
loss terms that the engine sums) and optionally `param_groups(cfg) -> list[dict]` (custom optimiser groups)
`before_step(step) -> bool` (called before step `step` outside the DDP forward; True means the model
replaced Parameters, e.g. point pruning, and DDP is re-wrapped) and `on_step_end(step)` (called after every
optimizer step with the number of steps done).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset
from tqdm import tqdm

from common.checkpoint import (
    CheckpointError,
    get_rng_state,
    git_sha,
    latest_checkpoint,
    load_checkpoint,
    load_state_dict_strict,
    prune_checkpoints,
    save_checkpoint,
    set_rng_state,
)
from common.config import config_to_dict, save_config
from common.distributed import (
    DistInfo,
    barrier,
    init_distributed,
    maybe_relaunch,
    parse_devices,
    seed_everything,
)
from common.schedules import ScheduleConfig, build_scheduler

__all__ = ["ScheduleConfig", "TrainConfig", "TrainableModel", "Trainer", "NonFiniteLossError"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 1000
    batch_size: int = 8  # per process
    num_workers: int = 0
    lr: float = 1e-4
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | adamw | sgd
    amsgrad: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9  # sgd only
    schedule: ScheduleConfig = ScheduleConfig()
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 only on CUDA, with a GradScaler)
    grad_clip: float | None = None  # max global grad norm
    grad_accum: int = 1
    log_every: int = 10
    eval_every: int = 0
    ckpt_every: int = 0  # 0: only at the end
    keep_last: int = 3  # 0 keeps every checkpoint
    ckpt_name: str = "step-{step:08d}.pth"  # may use {step} and {epoch}; SMMCL: "epoch-{epoch}.pth"
    seed: int = 0
    out_dir: str = "runs/default"
    steps_per_epoch: int | None = None  # for {epoch}; defaults to the loader length / grad_accum
    find_unused_parameters: bool = False  # DDP: models with parameters that may get no gradient
    shuffle: bool = True
    drop_last: bool = True
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"optimizer {self.optimizer!r} is not one of adam, adamw, sgd")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision {self.precision!r} is not one of fp32, bf16, fp16")
        if self.grad_accum < 1 or self.max_steps < 1 or self.batch_size < 1:
            raise ValueError("grad_accum, max_steps and batch_size must be >= 1")


class TrainableModel(Protocol):
    def training_step(self, batch: dict) -> dict[str, Tensor]: ...


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or inf."""


class _StepModule(nn.Module):
    """Routes forward() to model.training_step so that DDP's gradient hooks see the call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> dict[str, Tensor]:
        return self.model.training_step(batch)


class ResumableSampler(DistributedSampler):
    """DistributedSampler (also used with one replica) that can start mid-epoch after a resume."""

    def __init__(
        self, dataset: Dataset, *, num_replicas: int, rank: int, shuffle: bool, seed: int, drop_last: bool
    ) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start


def move_to(obj: Any, device: torch.device) -> Any:
    """Tensors inside nested dicts / lists / tuples moved to `device`."""
    if torch.is_tensor(obj):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to(v, device) for v in obj)
    return obj


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> Optimizer:
    """Optimizer from cfg; the model's `param_groups(cfg)` wins over one group of trainable params."""
    if hasattr(model, "param_groups"):
        groups = model.param_groups(cfg)
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(
            groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(
            groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad
        )
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class Trainer:
    """Runs `cfg.max_steps` optimizer steps of `model.training_step` on `train_data`."""

    def __init__(
        self,
        cfg: TrainConfig,
        model: nn.Module,
        train_data: Dataset | Callable[[int], dict],
        *,
        evaluate: Callable[[nn.Module, int], dict[str, float]] | None = None,
        optimizer: Optimizer | None = None,
        scheduler: Any = None,
        devices: str | list[int] = "cpu",
        collate_fn: Callable | None = None,
        image_logger: Callable[[nn.Module, int], dict[str, Tensor]] | None = None,
        resume: str | None = None,
        config: Any = None,
    ) -> None:
        if not callable(getattr(model, "training_step", None)):
            raise TypeError(f"{type(model).__name__} has no training_step(batch) -> dict[str, Tensor]")
        self.cfg, self.model, self.train_data = cfg, model, train_data
        self.evaluate, self.image_logger, self.resume = evaluate, image_logger, resume
        self.collate_fn = collate_fn
        self.config = config if config is not None else cfg  # what goes into config.yaml / checkpoints
        self.devices = parse_devices(devices)
        maybe_relaunch(self.devices)
        self.info: DistInfo = init_distributed(self.devices)
        self.main = self.info.rank == 0
        self.out_dir = Path(cfg.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        seed_everything(cfg.seed, self.info.rank)
        self.model.to(self.info.device)
        self.optimizer = optimizer or build_optimizer(self.model, cfg)
        self.scheduler = (
            scheduler
            if scheduler is not None
            else build_scheduler(self.optimizer, cfg.schedule, cfg.max_steps)
        )
        cuda = self.info.device.type == "cuda"
        if cfg.precision == "fp16" and not cuda:
            log.warning("precision fp16 needs CUDA; running fp32 on %s", self.info.device)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16 if cuda else None}.get(cfg.precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cuda and cfg.precision == "fp16")
        self.step_module: nn.Module = self._wrap_model()
        self.loader: DataLoader | None = None
        self.sampler: ResumableSampler | None = None
        if not callable(train_data) or isinstance(train_data, Dataset):
            self._build_loader(train_data)
        self.step = 0
        self.writer = None

    def _wrap_model(self) -> nn.Module:
        """The module the step calls: DDP around the model when distributed (rebuilt when the model
        replaces Parameters, since DDP's gradient hooks are bound to the Parameter objects)."""
        step_module = _StepModule(self.model)
        if not self.info.distributed:
            return step_module
        ids = [self.info.device.index] if self.info.device.type == "cuda" else None
        return DistributedDataParallel(
            step_module, device_ids=ids, find_unused_parameters=self.cfg.find_unused_parameters
        )

    # ------------------------------------------------------------------------------------------ data
    def _build_loader(self, dataset: Dataset) -> None:
        if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
            raise TypeError(
                f"train_data {type(dataset).__name__} must be a map-style Dataset (with __len__) or a "
                "callable step -> batch dict; iterable datasets cannot be resumed at a position"
            )
        self.sampler = ResumableSampler(
            dataset,
            num_replicas=self.info.world_size,
            rank=self.info.rank,
            shuffle=self.cfg.shuffle,
            seed=self.cfg.seed,
            drop_last=self.cfg.drop_last,
        )
        self.loader = DataLoader(
            dataset,
            batch_size=self.cfg.batch_size,
            sampler=self.sampler,
            num_workers=self.cfg.num_workers,
            collate_fn=self.collate_fn,
            drop_last=True,
            pin_memory=self.info.device.type == "cuda",
        )
        self.batches_per_epoch = self.sampler.num_samples // self.cfg.batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"dataset of {len(dataset)} items gives no full batch of {self.cfg.batch_size} per process"
            )

    def _batches(self, micro_step: int) -> Iterator[dict]:
        """Endless batches starting at global micro-batch index `micro_step` (epoch, offset derived)."""
        if self.loader is None:
            while True:
                yield self.train_data(micro_step)
                micro_step += 1
        epoch, offset = divmod(micro_step, self.batches_per_epoch)
        while True:
            self.sampler.set_position(epoch, offset * self.cfg.batch_size)
            # A per-epoch generator makes worker seeds reproducible; with num_workers=0 augmentation
            # randomness comes from the global torch RNG, which the checkpoint restores.
            self.loader.generator = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
            yield from self.loader
            epoch, offset = epoch + 1, 0

    @property
    def epoch(self) -> int:
        spe = self.cfg.steps_per_epoch
        if spe is None:
            spe = max(1, self.batches_per_epoch // self.cfg.grad_accum) if self.loader is not None else 1
        return self.step // spe

    # ------------------------------------------------------------------------------------- training
    def fit(self) -> nn.Module:
        """Train to cfg.max_steps (continuing from a checkpoint if `resume`); returns the bare model."""
        cfg = self.cfg
        if self.resume:
            self._load(self.resume)
        if self.main:
            if not logging.getLogger().handlers:  # a script that set up no logging still sees progress
                logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.out_dir)
            if cfg.tensorboard:
                from torch.utils.tensorboard import SummaryWriter  # lazy: slow import

                self.writer = SummaryWriter(str(self.out_dir / "tb"))
        batches = self._batches(self.step * cfg.grad_accum)
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.step,
            disable=not (self.main and cfg.progress),
            dynamic_ncols=True,
            desc="train",
        )
        t0 = time.perf_counter()
        try:
            while self.step < cfg.max_steps:
                # optional hook run outside the DDP forward (e.g. point pruning/growth); True = the model
                # replaced Parameters, so the DDP wrapper must hook the new ones
                if hasattr(self.model, "before_step") and self.model.before_step(self.step):
                    self.step_module = self._wrap_model()
                terms, grad_norm = self._train_step(batches)
                self.step += 1
                if hasattr(self.model, "on_step_end"):  # optional hook, e.g. point growth/pruning
                    self.model.on_step_end(self.step)
                bar.update(1)
                if cfg.log_every and (self.step % cfg.log_every == 0 or self.step == cfg.max_steps):
                    total = sum(terms.values())
                    bar.set_postfix(loss=f"{total:.4g}")
                    scalars = {f"loss/{k}": v for k, v in terms.items()} | {"loss/total": total}
                    for i, g in enumerate(self.optimizer.param_groups):
                        scalars[f"lr/group{i}"] = float(g["lr"])
                    if grad_norm is not None:
                        scalars["grad_norm"] = grad_norm
                    scalars["time/steps_per_s"] = cfg.log_every / max(time.perf_counter() - t0, 1e-9)
                    t0 = time.perf_counter()
                    self._log(scalars)
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    self._run_eval()
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0 and self.step != cfg.max_steps:
                    self.save()
            if self.evaluate is not None and cfg.eval_every and self.step % cfg.eval_every != 0:
                self._run_eval()
            self.save()
        finally:
            bar.close()
            if self.writer is not None:
                self.writer.close()
                self.writer = None
        return self.model

    def _train_step(self, batches: Iterator[dict]) -> tuple[dict[str, float], float | None]:
        cfg = self.cfg
        self.step_module.train()
        self.optimizer.zero_grad(set_to_none=True)
        acc: dict[str, Tensor] = {}
        for micro in range(cfg.grad_accum):
            batch = move_to(next(batches), self.info.device)
            sync = micro == cfg.grad_accum - 1 or not isinstance(self.step_module, DistributedDataParallel)
            with nullcontext() if sync else self.step_module.no_sync(), self._autocast():
                losses = self.step_module(batch)
                if not isinstance(losses, dict) or not losses:
                    raise TypeError(
                        f"training_step must return a non-empty dict of loss tensors, got {losses!r}"
                    )
                total = sum(losses.values())
            self.scaler.scale(total.float() / cfg.grad_accum).backward()
            for k, v in losses.items():
                acc[k] = acc.get(k, 0.0) + v.detach().float() / cfg.grad_accum
        terms = self._check_finite(acc)
        grad_norm = None
        if cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return terms, grad_norm

    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.info.device.type, dtype=self.amp_dtype)

    def _check_finite(self, acc: dict[str, Tensor]) -> dict[str, float]:
        """Mean of each term over ranks; NaN/inf on any rank raises on every rank (no DDP hang)."""
        names = list(acc)
        values = torch.stack([acc[k].reshape(()) for k in names])
        if self.info.distributed:
            dist.all_reduce(values)
            values /= self.info.world_size
        values = values.cpu().tolist()
        bad = [(k, v) for k, v in zip(names, values) if not math.isfinite(v)]
        if bad:
            what = ", ".join(f"'{k}' = {v}" for k, v in bad)
            raise NonFiniteLossError(f"non-finite loss at step {self.step}: {what} (all terms: {names})")
        return dict(zip(names, values))

    # ---------------------------------------------------------------------------------- eval / logs
    def _run_eval(self) -> None:
        if self.evaluate is not None:
            self.model.eval()
            with torch.no_grad():
                metrics = self.evaluate(self.model, self.step)
            self.model.train()
            self._log({f"eval/{k}": float(v) for k, v in (metrics or {}).items()})
        if self.image_logger is not None and self.main:
            self.model.eval()
            with torch.no_grad():
                images = self.image_logger(self.model, self.step)
            self.model.train()
            if self.writer is not None:
                for tag, img in images.items():
                    img = img.detach().float().cpu().clamp(0, 1)
                    fmt = "CHW" if img.ndim == 3 and img.shape[0] in (1, 3, 4) else "HWC"
                    self.writer.add_image(tag, img, self.step, dataformats=fmt if img.ndim == 3 else "HW")

    def _log(self, scalars: dict[str, float]) -> None:
        if not self.main or not scalars:
            return
        if self.writer is not None:
            for k, v in scalars.items():
                self.writer.add_scalar(k, v, self.step)
        with open(self.out_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps({"step": self.step, **scalars}) + "\n")
        log.info("step %d: %s", self.step, " ".join(f"{k}={v:.4g}" for k, v in scalars.items()))

    # ---------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-exactly (RNG states of every rank included)."""
        rng = get_rng_state()
        if self.info.distributed:
            gathered: list[Any] = [None] * self.info.world_size
            dist.all_gather_object(gathered, rng)
            rngs = gathered
        else:
            rngs = [rng]
        return {
            "config": config_to_dict(self.config),
            "step": self.step,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rngs,
            "git_sha": git_sha(),
        }

    def save(self) -> Path:
        """Write the checkpoint (rank 0) and prune old ones; every rank must call this."""
        state = self.state_dict()  # collective under DDP
        path = self.ckpt_dir / self.cfg.ckpt_name.format(step=self.step, epoch=self.epoch)
        if self.main:
            save_checkpoint(state, path)
            prune_checkpoints(self.ckpt_dir, self.cfg.keep_last)
        barrier()
        return path

    def _load(self, resume: str) -> None:
        if resume == "auto":
            path = latest_checkpoint(self.ckpt_dir)
            if path is None:
                log.info("resume=auto: no checkpoint in %s, starting from scratch", self.ckpt_dir)
                return
        else:
            path = Path(resume)
        state = load_checkpoint(path, map_location=self.info.device)
        missing = [k for k in ("step", "model", "optimizer", "scheduler", "scaler", "rng") if k not in state]
        if missing:
            raise CheckpointError(f"checkpoint {path} lacks {missing}; it is not a training checkpoint")
        load_state_dict_strict(self.model, state["model"], source=str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        rngs = state["rng"]
        if len(rngs) != self.info.world_size:
            log.warning(
                "checkpoint has RNG states of %d ranks, run has %d: not bit-exact",
                len(rngs),
                self.info.world_size,
            )
        set_rng_state(rngs[self.info.rank % len(rngs)])
        self.step = int(state["step"])
        log.info("resumed from %s at step %d", path, self.step)
