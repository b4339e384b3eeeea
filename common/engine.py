"""One training loop for all papers: devices, DDP, AMP, accumulation, clipping, schedules, logging,
evaluation, checkpoints and bit-exact resume (STYLE 2.5).

Paper packages supply a model with `training_step(batch) -> dict[str, Tensor]` (named, already weighted
loss terms that the engine sums) and optionally `param_groups(cfg) -> list[dict]` (custom optimiser groups).
Anything that acts on the run from outside the model is a `common.callbacks.Callback` (hooks around steps,
Parameter replacement, evaluation and checkpoints, with the trainer at hand; its state is keyed by its
`name` in checkpoints). Callbacks come from the caller (`callbacks=`) and from the config
(`train.callbacks`, built through `common.callbacks.CALLBACKS`).

Run folders and the resume policy (one run per folder, refusal or moving aside, config comparison) live in
`common.runs`. The model state is loaded (from a CPU copy) before the optimizer is built and before the
DDP wrap, so models whose `load_state_dict` resizes Parameters resume at any step.

Stopping: `train.max_seconds`, or SIGTERM / SIGINT / SIGUSR1 (what schedulers send at the time limit and
before pre-emption): the step in progress completes, a checkpoint is written and `fit` raises
`StoppedBySignal` (a SystemExit with status 128 + signum) for a signal; every rank stops at the same step.
Evaluation runs on a fork of the RNG states, so `eval_every` never changes the trained model.

Scripts call `prepare_run(cfg.train, devices, ...)` first, before building data or models: it re-launches
under torchrun for several GPUs, joins the process group, sets the TF32 policy, checks the run folder
and seeds every RNG with `train.seed` (the same on every rank, so models and data built next are
identical everywhere; the Trainer re-seeds with seed + rank before training).
"""

from __future__ import annotations

import json
import logging
import math
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, get_worker_info
from tqdm import tqdm

from common.callbacks import Callback, build_callbacks
from common.checkpoint import (
    CheckpointError,
    get_rng_state,
    git_sha,
    load_checkpoint,
    load_state_dict_strict,
    prune_checkpoints,
    save_checkpoint,
    set_rng_state,
)
from common.config import config_to_dict, save_config
from common.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    init_distributed,
    loader_generator,
    maybe_relaunch,
    move_to,
    parse_devices,
    seed_everything,
)
from common.runs import (
    check_ckpt_name,
    check_resume_config,
    checkpoint_pattern,
    prepare_run_dir,
    release_run_folder,
    resume_path,
)
from common.schedules import ClosedFormLR, ScheduleConfig, build_scheduler

__all__ = [
    "ScheduleConfig",
    "TrainConfig",
    "Trainer",
    "prepare_run",
    "swap_parameter",
    "convert_sync_bn",
    "set_tf32",
    "NonFiniteLossError",
    "StoppedBySignal",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 1000
    batch_size: int = 8  # per process
    num_workers: int = 0
    lr: float = 1e-4
    weight_decay: float = 0.0
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    amsgrad: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9  # sgd only
    schedule: ScheduleConfig = ScheduleConfig()
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # fp16 only on CUDA, with a GradScaler
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
    csv: bool = False  # also append every logged scalar to <out_dir>/metrics.csv (step,name,value rows)
    progress: bool = True
    max_seconds: float | None = None  # wall-clock budget of one invocation: stops, saves, resumable
    # samples per optimizer step over all processes; when set it replaces batch_size:
    # per-process batch = global_batch_size / (world_size * grad_accum), which must divide exactly
    global_batch_size: int | None = None
    tf32: bool = False  # TF32 matmuls / cuDNN convolutions on Ampere+ GPUs (off: full fp32)
    sync_bn: bool = False  # DDP on GPUs: convert BatchNorm layers to SyncBatchNorm
    nccl_timeout_s: int = 1800  # timeout of every collective (NCCL watchdog / gloo)
    callbacks: tuple[dict[str, Any], ...] = ()  # [{name: ema, decay: 0.999}]: common.callbacks.CALLBACKS

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"optimizer {self.optimizer!r} is not one of adam, adamw, sgd")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision {self.precision!r} is not one of fp32, bf16, fp16")
        if self.grad_accum < 1 or self.max_steps < 1 or self.batch_size < 1:
            raise ValueError("grad_accum, max_steps and batch_size must be >= 1")
        if self.global_batch_size is not None and self.global_batch_size < 1:
            raise ValueError(f"global_batch_size must be >= 1, got {self.global_batch_size}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")
        if self.nccl_timeout_s < 1:
            raise ValueError(f"nccl_timeout_s must be >= 1, got {self.nccl_timeout_s}")
        if self.grad_clip is not None and not self.grad_clip > 0:  # 0 zeroes, < 0 reverses every gradient
            raise ValueError(
                f"grad_clip must be > 0 (the largest global gradient norm), got {self.grad_clip}; "
                "null turns clipping off"
            )
        check_ckpt_name(self.ckpt_name)
        build_callbacks(self.callbacks)  # a bad name or argument fails at config load

    def per_process_batch(self, world_size: int) -> int:
        """Micro-batch of one process: batch_size, or global_batch_size / (world_size * grad_accum)."""
        if self.global_batch_size is None:
            return self.batch_size
        parts = world_size * self.grad_accum
        if self.global_batch_size % parts:
            raise ValueError(
                f"train.global_batch_size={self.global_batch_size} does not divide into {world_size} "
                f"process(es) x grad_accum {self.grad_accum}; choose a multiple of {parts}"
            )
        return self.global_batch_size // parts


def _eta_s(cfg: TrainConfig, step: int, steps_per_s: float, elapsed_s: float) -> float:
    """Seconds left: the remaining steps at the measured rate, capped by what is left of max_seconds."""
    left = (cfg.max_steps - step) / max(steps_per_s, 1e-9)
    return max(0.0, min(left, cfg.max_seconds - elapsed_s)) if cfg.max_seconds else left


def _fmt_scalar(key: str, value: float) -> str:
    """`key=value` for the log line; the ETA as H:MM:SS, which a reader takes in at a glance."""
    if key == "time/eta_s":
        return f"eta={timedelta(seconds=round(value))}"
    return f"{key}={value:.4g}"


def swap_parameter(
    optimizer: Optimizer,
    old: nn.Parameter,
    new: nn.Parameter,
    edit: Callable[[Tensor], Tensor] | None = None,
) -> None:
    """Make `optimizer` use `new` where it used `old`: group references and per-parameter state
    (state tensors shaped like `old` are passed through `edit`, e.g. row selection after pruning; other
    state, such as Adam's step counter, is kept as it is)."""
    for group in optimizer.param_groups:
        group["params"] = [new if q is old else q for q in group["params"]]
    state = optimizer.state.pop(old, None)
    if state is None:
        return
    if edit is not None:
        state = {
            k: edit(v) if torch.is_tensor(v) and v.shape == old.shape and v.ndim > 0 else v
            for k, v in state.items()
        }
    optimizer.state[new] = state


def set_tf32(enabled: bool) -> None:
    """TF32 policy, set explicitly (PyTorch's own defaults differ between matmul and cuDNN)."""
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)


def convert_sync_bn(model: nn.Module, info: DistInfo, enabled: bool) -> nn.Module:
    """BatchNorm layers as SyncBatchNorm (same Parameter objects) when `enabled` and running DDP on GPUs;
    unchanged otherwise (SyncBatchNorm has no CPU/gloo implementation: a warning says so)."""
    if not enabled or not info.distributed:
        return model
    if info.device.type != "cuda":
        log.warning("train.sync_bn needs CUDA devices; BatchNorm stays per process on %s", info.device)
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def prepare_run(
    cfg: Any,
    devices: str | list[int] = "cpu",
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    allow_config_change: bool = False,
) -> DistInfo:
    """First call of a training script, before any data or model is built.

    `cfg` is a TrainConfig or an experiment config with a `.train` TrainConfig. Re-launches under torchrun
    when several GPUs are named (a DeviceError, once, when CUDA is absent), joins the process group (NCCL
    timeout `train.nccl_timeout_s`), sets the TF32 policy (`train.tf32`), checks the run folder
    (`prepare_run_dir`), compares the config with the checkpoint's when resuming (a ConfigChangeError
    before anything is built; a bare TrainConfig with the checkpoint's `train` part) and seeds python, numpy and
    torch with `train.seed` on every rank, so that two runs with the same seed build the same model and
    data. Returns the DistInfo. The Trainer of the same `out_dir` uses it and calls this only when the
    script did not. Takes `**common.cli.run_options(args)`.
    """
    train = cfg.train if isinstance(getattr(cfg, "train", None), TrainConfig) else cfg
    if not isinstance(train, TrainConfig):
        raise TypeError(f"prepare_run needs a TrainConfig or a config with .train, got {type(cfg).__name__}")
    parsed = parse_devices(devices)
    maybe_relaunch(parsed)
    info = init_distributed(parsed, timeout_s=train.nccl_timeout_s)
    set_tf32(train.tf32)
    resume = str(resume) if resume is not None else None
    prepare_run_dir(train.out_dir, resume=resume, overwrite=overwrite, ckpt_name=train.ckpt_name)
    path = resume_path(train.out_dir, resume, train.ckpt_name)
    if path is not None:
        from common.checkpoint import read_config_from_checkpoint

        stored = read_config_from_checkpoint(path)
        if cfg is train and isinstance(stored, dict) and isinstance(stored.get("train"), dict):
            stored = stored["train"]
        check_resume_config(stored, cfg, path, allow=allow_config_change)
    seed_everything(train.seed)
    _PREPARED[Path(train.out_dir).resolve()] = info
    return info


_PREPARED: dict[Path, DistInfo] = {}  # run folders prepare_run has prepared, until their Trainer takes them


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or inf."""


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class StoppedBySignal(SystemExit):
    """fit() stopped on SIGTERM / SIGINT / SIGUSR1 after writing a checkpoint at `step` to `path`; the exit
    status is the shell's 128 + signum (143, 130, 138), so a requeued job continues with --resume auto."""

    def __init__(self, signum: int, step: int, path: Path | None) -> None:
        super().__init__(128 + signum)
        self.signum, self.step, self.path = signum, step, path


class _SignalCatcher:
    """Records the first stop signal instead of dying mid-step (handlers only in the main thread, restored
    afterwards); a second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.signum = 0
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = self.signum or signum

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old = {}


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

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """(epoch, dataset index) pairs: the epoch travels with the index into the workers (_SeededItems)."""
        return iter([(self.epoch, i) for i in list(super().__iter__())[self.start :]])

    def __len__(self) -> int:
        return self.num_samples - self.start


class _SeededItems(Dataset):
    """The training dataset as the DataLoader sees it: `[(epoch, index)]` -> `dataset[index]`.

    In a worker process the item's augmentation draws from torch, numpy and python RNGs seeded with
    (seed, epoch, index), so batches do not depend on which worker loads an item or on what it loaded
    before: a run resumed mid-epoch, or one with another num_workers, sees the same items. Without
    workers (num_workers=0) items draw from the main process's streams, which checkpoints restore.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if get_worker_info() is not None:
            s = ((self.seed * 1_000_003 + epoch) * 1_000_003 + index) % 2**63
            torch.manual_seed(s)
            np.random.seed(s % 2**32)
            random.seed(s)
        return self.dataset[index]


def _start_workers(loader: DataLoader) -> Iterator:
    """iter(loader) with the stop signals blocked while its workers are forked: workers inherit the mask
    and never act on SIGTERM / SIGINT / SIGUSR1 (a scheduler or a terminal signals every process of a job),
    leaving them to the main process, which finishes the step and writes a checkpoint. A signal that
    arrives meanwhile reaches the main process when the mask is lifted."""
    if not loader.num_workers:
        return iter(loader)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> Optimizer:
    """Optimizer from cfg; the model's `param_groups(cfg)` wins over one group of trainable params."""
    if hasattr(model, "param_groups"):
        groups = model.param_groups(cfg)
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "name": "all"}]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(
            groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(
            groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad
        )
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def drop_nonfinite_groups(optimizer: Optimizer) -> list[int]:
    """Clear the gradients of every param group holding an inf/NaN gradient, so that the optimizer step
    skips that group only (as a per-optimizer GradScaler step would); returns the skipped group indices."""
    skipped = []
    for i, group in enumerate(optimizer.param_groups):
        grads = [p.grad for p in group["params"] if p.grad is not None]
        if grads and not all(bool(torch.isfinite(g).all()) for g in grads):
            skipped.append(i)
            for p in group["params"]:
                p.grad = None
    return skipped


class Trainer:
    """Runs `cfg.max_steps` optimizer steps of `model.training_step` on `train_data`.

    `resume`: a checkpoint path or "auto" (newest in `<out_dir>/checkpoints`; a fresh start when there is
    none). `overwrite`: start afresh in a folder holding checkpoints (old files are moved aside).
    `allow_config_change`: resume although the config differs in keys outside RESUMABLE_CHANGES (the new
    values are applied). `evaluator` + `val_data`: every `eval_every` steps (and at the end)
    `evaluator.run(model, val_data, step=step)` runs on every rank and `result.aggregate` is logged under
    `eval/`. `callbacks` run before those of `cfg.callbacks`. `config`: the experiment config stored in
    checkpoints and config.yaml (default: cfg). Calls `prepare_run` unless the script already did.

    A caller-built `optimizer` works, but a model whose `load_state_dict` replaces Parameters then needs
    to update that optimizer itself; let the Trainer build it (`param_groups(cfg)`) where possible.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        model: nn.Module,
        train_data: Dataset | Callable[[int], dict],
        *,
        optimizer: Optimizer | None = None,
        scheduler: Any = None,
        devices: str | list[int] = "cpu",
        collate_fn: Callable | None = None,
        resume: str | Path | None = None,
        config: Any = None,
        callbacks: Sequence[Callback] = (),
        evaluator: Any = None,
        val_data: Any = None,
        overwrite: bool = False,
        allow_config_change: bool = False,
    ) -> None:
        if not callable(getattr(model, "training_step", None)):
            raise TypeError(f"{type(model).__name__} has no training_step(batch) -> dict[str, Tensor]")
        if evaluator is not None and val_data is None:
            raise ValueError("Trainer(evaluator=...) needs val_data")
        self.cfg, self.model, self.train_data = cfg, model, train_data
        self.evaluator, self.val_data = evaluator, val_data
        self.callbacks: list[Callback] = [*callbacks, *build_callbacks(cfg.callbacks)]
        self.resume = str(resume) if resume is not None else None
        self.allow_config_change = allow_config_change
        self.collate_fn = collate_fn
        self.config = config if config is not None else cfg  # what goes into config.yaml / checkpoints
        key = Path(cfg.out_dir).resolve()
        if key not in _PREPARED:
            prepare_run(
                cfg, devices, resume=self.resume, overwrite=overwrite, allow_config_change=allow_config_change
            )
        self.info: DistInfo = _PREPARED.pop(key)
        self.main = self.info.rank == 0
        if self.main and not logging.getLogger().handlers:  # a script without logging still sees progress
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        self.out_dir = Path(cfg.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.batch_size = cfg.per_process_batch(self.info.world_size)
        if cfg.global_batch_size is not None:
            log.info(
                "global batch %d = %d per process x %d process(es) x grad_accum %d",
                cfg.global_batch_size,
                self.batch_size,
                self.info.world_size,
                cfg.grad_accum,
            )
        seed_everything(cfg.seed, self.info.rank)
        self.step = 0
        self.run_id = uuid.uuid4().hex
        self.stopped_early = False
        self.stop_signal = 0  # the signal that stopped fit(), 0 when none did
        self.writer = None
        self._rng_to_restore: Any = None

        # Resume, part 1: the model state, before the optimizer exists and before the DDP wrap (a model
        # may resize Parameters in load_state_dict). Loaded to the CPU; load_state_dict places tensors.
        state, path, diffs = self._read_resume_state()
        if state is not None:
            load_state_dict_strict(self.model, state["model"], source=str(path))
        self.model.to(self.info.device)
        self.model = convert_sync_bn(self.model, self.info, cfg.sync_bn)
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
        if getattr(self.model, "amp_scope", "step") == "model":
            self.model.amp_dtype = self.amp_dtype
        if state is not None:
            self._load_training_state(state, path, diffs)
        self.step_module: nn.Module = self._wrap_model()
        self.loader: DataLoader | None = None
        self.sampler: ResumableSampler | None = None
        if not callable(train_data) or isinstance(train_data, Dataset):
            self._build_loader(train_data)

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

    def _check_optimizer_params(self, who: str) -> None:
        """Every Parameter the optimizer holds must be one of the model's (after a replacement)."""
        current = {id(p) for p in self.model.parameters()}
        stale = sum(1 for g in self.optimizer.param_groups for p in g["params"] if id(p) not in current)
        if stale:
            raise RuntimeError(
                f"{who} replaced Parameters of the model, but the optimizer still holds {stale} old one(s); "
                "move them with common.engine.swap_parameter(optimizer, old, new, edit)"
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
            _SeededItems(dataset, self.cfg.seed),
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=self.cfg.num_workers,
            collate_fn=self.collate_fn,
            drop_last=True,
            pin_memory=self.info.device.type == "cuda",
        )
        self.batches_per_epoch = self.sampler.num_samples // self.batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"dataset of {len(dataset)} items gives no full batch of {self.batch_size} per process"
            )

    def _batches(self, micro_step: int) -> Iterator[dict]:
        """Endless batches starting at global micro-batch index `micro_step` (epoch, offset derived)."""
        if self.loader is None:
            while True:
                yield self.train_data(micro_step)
                micro_step += 1
        epoch, offset = divmod(micro_step, self.batches_per_epoch)
        while True:
            self.sampler.set_position(epoch, offset * self.batch_size)
            # Worker items are seeded by (seed, epoch, index) (_SeededItems); with num_workers=0 augmentation
            # draws from the global RNGs (seed + rank), which the checkpoint restores. The per-epoch,
            # per-rank generator keeps the loader's own base seed off the training stream.
            self.loader.generator = loader_generator(self.cfg.seed, epoch, self.info.rank)
            yield from _start_workers(self.loader)
            epoch, offset = epoch + 1, 0

    @property
    def epoch(self) -> int:
        spe = self.cfg.steps_per_epoch
        if spe is None:
            spe = max(1, self.batches_per_epoch // self.cfg.grad_accum) if self.loader is not None else 1
        return self.step // spe

    # ------------------------------------------------------------------------------------- training
    def fit(self) -> nn.Module:
        """Train to cfg.max_steps (or until cfg.max_seconds); returns the bare model. On SIGTERM / SIGINT /
        SIGUSR1 the step finishes, a checkpoint is written and StoppedBySignal (exit 128 + signum) is raised."""
        cfg = self.cfg
        if self.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.out_dir)
            if cfg.tensorboard:
                from torch.utils.tensorboard import SummaryWriter  # lazy: slow import

                self.writer = SummaryWriter(str(self.out_dir / "tb"))
        if self._rng_to_restore is not None:  # last, so that nothing built above shifts the streams
            set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None
        batches = self._batches(self.step * cfg.grad_accum)
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.step,
            disable=not (self.main and cfg.progress),
            dynamic_ncols=True,
            desc="train",
        )
        start = t0 = time.perf_counter()
        signals = _SignalCatcher()
        path: Path | None = None
        try:
            signals.install()
            for cb in self.callbacks:
                cb.on_train_start(self)
            while self.step < cfg.max_steps:
                self._before_step()
                terms, grad_norm = self._train_step(batches)
                self.step += 1
                for cb in self.callbacks:
                    cb.after_step(self, self.step, terms)
                bar.update(1)
                if cfg.log_every and (self.step % cfg.log_every == 0 or self.step == cfg.max_steps):
                    total = sum(terms.values())
                    bar.set_postfix(loss=f"{total:.4g}")
                    scalars = {f"loss/{k}": v for k, v in terms.items()} | {"loss/total": total}
                    for i, g in enumerate(self.optimizer.param_groups):  # a group's "name": lr/points
                        scalars[f"lr/{g.get('name', f'group{i}')}"] = float(g["lr"])
                    if grad_norm is not None:
                        scalars["grad_norm"] = grad_norm
                    now = time.perf_counter()
                    rate = cfg.log_every / max(now - t0, 1e-9)
                    scalars["time/steps_per_s"] = rate
                    scalars["time/eta_s"] = _eta_s(cfg, self.step, rate, now - start)
                    t0 = now
                    self.log(scalars)
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    self._run_eval()
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0 and self.step != cfg.max_steps:
                    self.save()
                if self.step == cfg.max_steps:
                    break
                late, self.stop_signal = self._should_stop(start, signals.signum)
                if self.stop_signal:
                    self.stopped_early = True
                    break
                if late:
                    self.stopped_early = True
                    log.info(
                        "time budget train.max_seconds=%g reached at step %d of %d; saving a checkpoint "
                        "(continue with --resume auto)",
                        cfg.max_seconds,
                        self.step,
                        cfg.max_steps,
                    )
                    break
            if not self.stopped_early and cfg.eval_every and self.step % cfg.eval_every != 0:
                self._run_eval()
            path = self.save()
            if self.stop_signal and self.main:
                name = signal.Signals(self.stop_signal).name
                log.info("stopped by %s at step %d, checkpoint written to %s", name, self.step, path)
            for cb in self.callbacks:
                cb.on_train_end(self)
        finally:
            signals.restore()
            release_run_folder(self.out_dir)
            bar.close()
            if self.writer is not None:
                self.writer.close()
                self.writer = None
        if self.stop_signal:
            raise StoppedBySignal(self.stop_signal, self.step, path)
        return self.model

    def _should_stop(self, start: float, signum: int) -> tuple[bool, int]:
        """(cfg.max_seconds used up, signal number or 0), the same on every rank: rank 0's clock decides
        the time, a signal on any rank stops all (one small all-reduce per step under DDP)."""
        late = self.cfg.max_seconds is not None and time.perf_counter() - start >= self.cfg.max_seconds
        if not self.info.distributed:
            return late, signum
        flags = torch.tensor([float(late and self.main), float(signum)], device=self.info.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        late_flag, sig = flags.cpu().tolist()
        return bool(late_flag), int(sig)

    def _before_step(self) -> None:
        """Callback hooks before a step; re-wrap DDP and tell the callbacks when Parameters were replaced."""
        replaced = False
        for cb in self.callbacks:
            if cb.before_step(self, self.step):
                replaced = True
                self._check_optimizer_params(type(cb).__name__)
        if replaced:
            self.step_module = self._wrap_model()
            for cb in self.callbacks:
                cb.after_parameters_replaced(self)

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
        self._optimizer_step()
        self.scheduler.step()
        return terms, grad_norm

    def _optimizer_step(self) -> None:
        """One scaler step: an inf/NaN gradient skips the whole step, unless the model sets
        `amp_skip = "group"` (trainers with one GradScaler step per optimizer, e.g. the official SMCL
        scene trainer): then only the param groups holding it are skipped."""
        if getattr(self.model, "amp_skip", "all") == "group" and self.scaler.is_enabled():
            if self.cfg.grad_clip is None:  # (clipping unscaled already)
                self.scaler.unscale_(self.optimizer)  # records found_inf for scaler.update
            drop_nonfinite_groups(self.optimizer)
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
        self.scaler.update()

    def _autocast(self) -> Any:
        """Autocast around the whole training_step, unless the model sets `amp_scope = "model"`: it then
        opens its own autocast regions with `model.amp_dtype` (set by the Trainer; None: fp32)."""
        if self.amp_dtype is None or getattr(self.model, "amp_scope", "step") == "model":
            return nullcontext()
        return torch.autocast(device_type=self.info.device.type, dtype=self.amp_dtype)

    def _check_finite(self, acc: dict[str, Tensor]) -> dict[str, float]:
        """Mean of each term over ranks; NaN/inf on any rank raises on every rank (no DDP hang)."""
        names = list(acc)
        values = torch.stack([acc[k].reshape(()) for k in names])
        if self.info.distributed:
            values = all_reduce_sum(values) / self.info.world_size
        values = values.cpu().tolist()
        bad = [(k, v) for k, v in zip(names, values) if not math.isfinite(v)]
        if bad:
            what = ", ".join(f"'{k}' = {v}" for k, v in bad)
            raise NonFiniteLossError(f"non-finite loss at step {self.step}: {what} (all terms: {names})")
        return dict(zip(names, values))

    # ---------------------------------------------------------------------------------- eval / logs
    def _run_eval(self) -> None:
        """Periodic evaluation on a fork of every RNG (torch CPU + CUDA, numpy, python): evaluation never
        shifts the training streams, so eval_every does not change the trained model."""
        rng = get_rng_state()
        metrics: dict[str, float] = {}
        try:
            for cb in self.callbacks:
                cb.before_evaluation(self, self.step)
            self.model.eval()
            if self.evaluator is not None:
                with torch.no_grad():
                    result = self.evaluator.run(self.model, self.val_data, step=self.step)
                metrics = _flat_floats(result.aggregate)
            self.log({f"eval/{k}": v for k, v in metrics.items()})
            for cb in self.callbacks:
                cb.after_evaluation(self, self.step, metrics)
        finally:
            self.model.train()
            set_rng_state(rng)

    def log(self, scalars: dict[str, float]) -> None:
        """Log scalars at the current step (main rank): TensorBoard, `<out_dir>/metrics.jsonl`, the log."""
        if not self.main or not scalars:
            return
        if self.writer is not None:
            for k, v in scalars.items():
                self.writer.add_scalar(k, v, self.step)
        with open(self.out_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps({"step": self.step, **scalars}) + "\n")
        if self.cfg.csv:  # long format: columns never change, so appending (and resuming) stays valid
            path = self.out_dir / "metrics.csv"
            head = "" if path.exists() else "step,name,value\n"
            with open(path, "a") as fh:  # one write per call: a killed run leaves whole rows
                fh.write(head + "".join(f"{self.step},{k},{v!r}\n" for k, v in scalars.items()))
        log.info("step %d: %s", self.step, " ".join(_fmt_scalar(k, v) for k, v in scalars.items()))

    # ---------------------------------------------------------------------------------- checkpoints
    def _callback_keys(self) -> list[str]:
        """Checkpoint key of each callback: its `name` (class name by default), "#2"... on repeats."""
        keys: list[str] = []
        for cb in self.callbacks:
            name = cb.name or type(cb).__name__
            keys.append(name if name not in keys else f"{name}#{keys.count(name) + 1}")
        return keys

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-exactly (RNG states of every rank included)."""
        rngs = all_gather_objects(get_rng_state())
        return {
            "config": config_to_dict(self.config),
            "step": self.step,
            "epoch": self.epoch,
            "run_id": self.run_id,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "callbacks": {k: _callback_state(cb) for k, cb in zip(self._callback_keys(), self.callbacks)},
            "rng": rngs,
            "git_sha": git_sha(),
        }

    def save(self) -> Path:
        """Write the checkpoint (rank 0) and prune this run's old ones; every rank must call this."""
        state = self.state_dict()  # collective under DDP
        path = self.ckpt_dir / self.cfg.ckpt_name.format(step=self.step, epoch=self.epoch)
        if self.main:
            save_checkpoint(state, path)
            pattern = checkpoint_pattern(self.cfg.ckpt_name)
            prune_checkpoints(self.ckpt_dir, self.cfg.keep_last, run_id=self.run_id, pattern=pattern)
        barrier()
        return path

    def _read_resume_state(self) -> tuple[dict[str, Any] | None, Path | None, list]:
        """Checkpoint to resume from (CPU tensors), its path, and the checked config differences."""
        if self.resume is None:
            return None, None, []
        path = resume_path(self.out_dir, self.resume, self.cfg.ckpt_name)
        if path is None:
            log.info("resume=auto: no checkpoint in %s, starting from scratch", self.ckpt_dir)
            return None, None, []
        state = load_checkpoint(path, map_location="cpu")  # RNG states stay CPU tensors
        missing = [k for k in ("step", "model", "optimizer", "scheduler", "rng") if k not in state]
        if missing:
            raise CheckpointError(f"checkpoint {path} lacks {missing}; it is not a training checkpoint")
        diffs = self._check_config(state.get("config"), path)
        return state, path, diffs

    def _check_config(self, stored: Any, path: Path) -> list[tuple[str, Any, Any]]:
        diffs = check_resume_config(stored, self.config, path, allow=self.allow_config_change)
        if diffs and self.main:
            lines = [f"  {k}: checkpoint {old!r} -> now {new!r}" for k, old, new in diffs]
            log.info("config changes applied on resume from %s:\n%s", path, "\n".join(lines))
        return diffs

    def _retime_scheduler(self, bases: list[float], saved_lrs: list[float]) -> None:
        """After applied config changes: the LR of the current step from the new base LRs and length."""
        sched = self.scheduler
        if isinstance(sched, ClosedFormLR):
            sched.recompute()
            return
        if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
            sched.base_lrs = list(bases)
            lrs = [b * f(sched.last_epoch) for b, f in zip(bases, sched.lr_lambdas)]
        else:  # a chainable scheduler has no closed form to re-evaluate: keep the checkpoint's LRs
            log.warning(
                "%s: the LR of the checkpoint is kept (new base LRs not applied)", type(sched).__name__
            )
            lrs = saved_lrs
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        sched._last_lr = list(lrs)

    def _load_training_state(self, state: dict[str, Any], path: Path, diffs: list) -> None:
        """Resume, part 2: optimizer, scheduler, scaler, callbacks, step and (in fit) the RNG states."""
        if self.optimizer is not None:
            self._check_optimizer_params("loading the checkpoint")
        fresh = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        saved_lrs = [g["lr"] for g in self.optimizer.param_groups]
        sched_state = dict(state["scheduler"])
        bases = [g.get("initial_lr", g["lr"]) for g in fresh]
        if diffs:
            # applied config changes: the hyperparameters of the freshly built optimizer win (lr, betas,
            # weight decay ...); the moments and step counters come from the checkpoint
            for group, new in zip(self.optimizer.param_groups, fresh):
                group.update(new)
            if isinstance(self.scheduler, ClosedFormLR):
                sched_state["total_steps"] = self.scheduler.total_steps
                sched_state["base_lrs"] = bases
        self.scheduler.load_state_dict(sched_state)
        if diffs:
            self._retime_scheduler(bases, saved_lrs)
        scaler_state = state.get("scaler") or {}
        if self.scaler.is_enabled():
            if scaler_state:
                self.scaler.load_state_dict(scaler_state)
            else:
                log.info("checkpoint %s has no GradScaler state (saved without fp16): a fresh scaler", path)
        saved_cbs = state.get("callbacks") or {}
        for i, (key, cb) in enumerate(zip(self._callback_keys(), self.callbacks)):
            old_key = f"{i}:{type(cb).__name__}"  # checkpoints before callbacks had names
            if key in saved_cbs or old_key in saved_cbs:
                cb.on_load_checkpoint(saved_cbs.get(key, saved_cbs.get(old_key)))
            else:
                log.warning("checkpoint %s holds no state for callback %s", path, key)
        rngs = state["rng"]
        if len(rngs) != self.info.world_size:
            log.warning(
                "checkpoint has RNG states of %d ranks, run has %d: not bit-exact",
                len(rngs),
                self.info.world_size,
            )
        self._rng_to_restore = rngs[self.info.rank % len(rngs)]
        self.step = int(state["step"])
        if isinstance(state.get("run_id"), str):
            self.run_id = state["run_id"]
        log.info("resumed from %s at step %d", path, self.step)


def _flat_floats(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """{name: number | 0-d tensor | dict} -> flat {name[/sub]: float}; non-scalar entries are skipped."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat_floats(v, f"{name}/"))
        elif torch.is_tensor(v) and v.numel() == 1:
            out[name] = float(v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[name] = float(v)
    return out


def _callback_state(cb: Callback) -> dict[str, Any]:
    state: dict[str, Any] = {}
    cb.on_save_checkpoint(state)
    return state
