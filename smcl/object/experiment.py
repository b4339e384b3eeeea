"""Experiment schemas and builders for SMCL object level: encoder pretraining and view-synthesizer training.

`build_pretrain(cfg)` / `build_synth(cfg)` seed torch with `train.seed`, then return Trainer kwargs (model,
train_data) for common.engine, so that two runs with one seed start from the same weights.
`synth_config_from_checkpoint(path)` rebuilds a run's config (model and evaluation settings) from the
config its checkpoint stores.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from common.checkpoint import CheckpointError, load_checkpoint, load_state_dict_strict
from common.config import config_from_checkpoint
from common.distributed import get_rank, get_world_size, loader_generator, seed_everything
from common.engine import TrainConfig
from smcl.object.data.mir180 import Mir180Dataset
from smcl.object.data.nmr import NMRDataset, NMRDatasetConfig, pixelnerf_rays_at
from smcl.object.losses import InfoNCE, InfoNCECompat, focal_frequency_loss, negative_frequency_loss
from smcl.object.models.ffc_encoder import DualDomainEncoder, DualDomainEncoderConfig, FFCOnlyNet
from smcl.object.models.view_synthesizer import ViewSynthesizer, ViewSynthesizerConfig


# ------------------------------------------------------------------------------------------ pretraining
@dataclass(frozen=True)
class PretrainLossConfig:
    infonce: Literal["vector", "compat"] = "vector"  # vector: intended; compat: official per-channel form
    tau: float = 0.05
    in_batch_negatives: bool = True
    proj_dim: int = 0  # >0 adds a projection head (vector form only)
    ffl: Literal["shared", "separate_nets", "off"] = "shared"  # shared: on the encoder's spectral branch
    w_infonce: float = 1.0
    w_ffl_pos: float = 1.0
    w_ffl_neg: float = 1.0
    neg_margin: float | None = 1.0  # None: official unbounded -log10(FFL)
    aux_lr: float = 1e-4  # lr of the official separate FFC nets
    # official: one encoder call per view (anchor, mirror, 180 degrees), each with its own BatchNorm batch
    # statistics, running-stat update and (se_mode random_per_call) SE draw; False: one call on all three
    per_view_forward: bool = False


@dataclass(frozen=True)
class PretrainDataConfig:
    root: str = ""
    split: str = "train"
    synsets: tuple[str, ...] = ()


@dataclass(frozen=True)
class PretrainExperiment:
    encoder: DualDomainEncoderConfig = field(default_factory=DualDomainEncoderConfig)
    loss: PretrainLossConfig = field(default_factory=PretrainLossConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # official quirk: its validation after epoch 0 leaves every network in eval mode for the rest of the
    # run (BatchNorm on running statistics, never updated again); False trains in train mode throughout
    eval_mode_after_first_epoch: bool = False


def epoch_batch(n: int, batch: int, step: int, seed: int) -> Tensor:
    """Dataset indices of `step`'s batch for this process: items drawn without replacement, a fresh
    permutation per epoch (from `loader_generator(seed, epoch, 0)`, the same on every rank), the last batch
    of an epoch smaller (a shuffling DataLoader without drop_last). `batch` is the global batch; each rank
    takes its contiguous share, as DataParallel scatters the official batch (a rank left without items
    repeats the first). A function of `step` alone, so a resumed run draws what the uninterrupted one would."""
    epoch, k = divmod(step, math.ceil(n / batch))
    chunk = torch.randperm(n, generator=loader_generator(seed, epoch, 0))[k * batch : (k + 1) * batch]
    mine = torch.tensor_split(chunk, get_world_size())[get_rank()]
    return mine if len(mine) else chunk[:1]


class TripletSampler:
    """Callable train_data(step) -> anchor/positive/negative batch (B,3,H,W) of `epoch_batch` triplets (the
    global batch of `train`); `bn_eval` marks the steps the official recipe runs in eval mode (every epoch
    after the first)."""

    def __init__(self, dataset: Mir180Dataset, train: TrainConfig, eval_after_first_epoch: bool) -> None:
        self.ds, self.train, self.eval_later = dataset, train, eval_after_first_epoch

    def __call__(self, step: int) -> dict[str, Tensor | bool]:
        world = get_world_size()
        batch = self.train.per_process_batch(world) * world
        items = [self.ds[i] for i in epoch_batch(len(self.ds), batch, step, self.train.seed).tolist()]
        out: dict[str, Tensor | bool] = {k: torch.stack([it[k] for it in items]) for k in items[0]}
        out["bn_eval"] = self.eval_later and step >= math.ceil(len(self.ds) / batch)
        return out


class EncoderPretrainer(nn.Module):
    """Encoder + contrastive losses; batch: anchor/positive/negative (B,3,H,W) in [0,1]."""

    def __init__(self, enc_cfg: DualDomainEncoderConfig, cfg: PretrainLossConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = DualDomainEncoder(enc_cfg)
        if cfg.infonce == "vector":
            self.infonce: nn.Module = InfoNCE(cfg.tau, cfg.in_batch_negatives, cfg.proj_dim)
        else:
            self.infonce = InfoNCECompat(cfg.tau)
        if cfg.ffl == "separate_nets":
            f, r = enc_cfg.init_features, enc_cfg.ratio
            self.ffc_net1 = FFCOnlyNet(f, r, enc_cfg.se_mode)
            self.ffc_net2 = FFCOnlyNet(f, r, enc_cfg.se_mode)

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """batch["bn_eval"] True: this step runs every module in eval mode (the official quirk)."""
        mode = self.training
        if batch.get("bn_eval"):
            self.eval()
        try:
            return self._losses(batch)
        finally:
            self.train(mode)

    def _losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        views = (batch["anchor"], batch["positive"], batch["negative"])
        if self.cfg.per_view_forward:
            (a, sa), (p, sp), (q, sq) = (self.encoder.forward_features(v) for v in views)
        else:
            out, spec = self.encoder.forward_features(torch.cat(views, dim=0))
            (a, p, q), (sa, sp, sq) = out.chunk(3), spec.chunk(3)
        losses = {"infonce": self.cfg.w_infonce * self.infonce(a, p, q)}
        if self.cfg.ffl == "shared":
            fa, fp, fq = sa, sp, sq
        elif self.cfg.ffl == "separate_nets":
            fa, fp = self.ffc_net1(batch["anchor"]), self.ffc_net1(batch["positive"])
            fa2, fq = self.ffc_net2(batch["anchor"]), self.ffc_net2(batch["negative"])
        if self.cfg.ffl != "off":
            losses["ffl_pos"] = self.cfg.w_ffl_pos * focal_frequency_loss(fa, fp)
            neg_anchor = fa if self.cfg.ffl == "shared" else fa2
            losses["ffl_neg"] = self.cfg.w_ffl_neg * negative_frequency_loss(
                neg_anchor, fq, self.cfg.neg_margin
            )
        return losses

    def param_groups(self, cfg: TrainConfig) -> list[dict]:
        main = [p for n, p in self.named_parameters() if not n.startswith("ffc_net")]
        aux = [p for n, p in self.named_parameters() if n.startswith("ffc_net")]
        groups = [{"params": main, "name": "main"}]
        if aux:
            groups.append({"params": aux, "lr": self.cfg.aux_lr, "name": "ffc"})
        return groups


def build_pretrain(cfg: PretrainExperiment) -> dict:
    seed_everything(cfg.train.seed)  # before anything random is built
    ds = Mir180Dataset(cfg.data.root, cfg.data.split, cfg.data.synsets)
    return {
        "model": EncoderPretrainer(cfg.encoder, cfg.loss),
        "train_data": TripletSampler(ds, cfg.train, cfg.eval_mode_after_first_epoch),
    }


# ------------------------------------------------------------------------------------------ synthesizer
@dataclass(frozen=True)
class SynthDataConfig:
    root: str = ""
    split: str = "train"
    synsets: tuple[str, ...] = ()
    objects_per_step: int = 4  # SB, over all processes (each rank renders its share, as DataParallel)
    rays_per_object: int = 128
    nviews: tuple[int, ...] = (1,)  # number of source views, drawn from this set per step
    no_bbox_step: int = 100_000  # mask-bbox ray sampling before this step, uniform after
    # share of each object's rays drawn inside the mask bbox before no_bbox_step (the rest uniform over the
    # image); 1.0 is pixelNeRF's bbox-only sampling
    bbox_ray_fraction: float = 1.0
    cache: bool = True  # keep decoded objects in memory
    pixel_centers: bool = False  # True for data rendered through pixel centres (NMRDatasetConfig)


@dataclass(frozen=True)
class SynthEvalConfig:
    """How eval_smcl.py / calc_metrics_smcl.py evaluate a run (stored in its checkpoints)."""

    split: str = "test"
    viewlist: str | None = None  # pixelNeRF viewlist (synset obj src...); None: source view 0 of every object
    lpips: bool = True  # LPIPS-VGG (needs the fetched trunk weights)


@dataclass(frozen=True)
class NoReferenceConfig:
    """Optional periodic no-reference score of a novel orbit during training (train_smcl.py wires NVS-SQA
    through common.callbacks.NoReferenceQuality). Off by default. Cost per event: rendering `frames` x H x W
    rays (24 x 64 x 64 = 98k rays, forward only; about the compute of 65 training steps of 4 x 128 rays,
    forward + backward) plus one NVS-SQA pass over the frames; with every=5000 about 1.3 % of training."""

    every: int = 0  # steps between scores; 0: off
    frames: int = 24
    radius_deg: float = 15.0  # cone half-angle of the orbit around the source view
    split: str = "test"  # object 0 of this split, source view 0 (no ground truth is used)


@dataclass(frozen=True)
class SynthExperiment:
    model: ViewSynthesizerConfig = field(default_factory=ViewSynthesizerConfig)
    data: SynthDataConfig = field(default_factory=SynthDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    encoder_weights: str | None = None  # path of the encoder to start from (see encoder_weights_format)
    # pretrain: a checkpoint of scripts/pretrain_smcl_encoder.py; official: the authors' encoder_<cat>.pt
    encoder_weights_format: str = "pretrain"
    freeze_encoder: bool = False  # the encoder and its latent Linear get no gradient (official --freeze_enc)
    # official: the trainer is in eval mode until its first evaluation, so step 0 normalises with the
    # BatchNorm running statistics and does not update them
    first_step_eval: bool = False
    eval: SynthEvalConfig = field(default_factory=SynthEvalConfig)
    no_reference: NoReferenceConfig = field(default_factory=NoReferenceConfig)


class RaySampler:
    """Callable train_data(step) -> batch for ViewSynthesizer.training_step.

    Objects come from `epoch_batch` (without replacement within an epoch, as the official shuffling loader);
    source views and rays from the torch global RNG (which checkpoints restore). With `first_step_eval` the
    batch of step 0 carries bn_eval=True: the official trainer runs its first step in eval mode.
    """

    def __init__(
        self, dataset: NMRDataset, cfg: SynthDataConfig, seed: int = 0, first_step_eval: bool = False
    ) -> None:
        self.ds, self.cfg, self.seed, self.first_step_eval = dataset, cfg, seed, first_step_eval
        self._cache: dict[int, dict[str, Tensor]] = {}

    def _get(self, i: int) -> dict[str, Tensor]:
        if i in self._cache:
            return self._cache[i]
        obj = self.ds[i]
        if self.cfg.cache:
            self._cache[i] = obj
        return obj

    def __call__(self, step: int, bbox: bool | None = None) -> dict[str, Tensor | bool]:
        """The batch of `step`; `bbox` overrides the step-based choice of mask-bbox ray sampling."""
        cfg = self.cfg
        ns = cfg.nviews[int(torch.randint(len(cfg.nviews), ()))]
        idx = epoch_batch(len(self.ds), cfg.objects_per_step, step, self.seed)
        use_bbox = step < cfg.no_bbox_step if bbox is None else bbox
        src_imgs, src_poses, src_views, rays, rgbs = [], [], [], [], []
        for i in idx.tolist():
            obj = self._get(i)
            imgs, poses = obj["images"], obj["poses"]
            nv, _, h, w = imgs.shape
            src = torch.randperm(nv)[:ns]
            src_imgs.append(imgs[src])
            src_poses.append(poses[src])
            src_views.append(src)
            views = torch.randint(nv, (cfg.rays_per_object,))
            # the first n_bb rays inside the view's mask bbox, the rest uniform over the image
            use_bb = use_bbox and "bbox" in obj
            n_bb = round(cfg.bbox_ray_fraction * cfg.rays_per_object) if use_bb else 0
            cols, rows = torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
            if n_bb:
                bb = obj["bbox"][views[:n_bb]]  # cmin rmin cmax rmax
                u = torch.rand(n_bb, 2)
                cols = (bb[:, 0] + u[:, 0] * (bb[:, 2] - bb[:, 0] + 1)).long().clamp(max=w - 1)
                rows = (bb[:, 1] + u[:, 1] * (bb[:, 3] - bb[:, 1] + 1)).long().clamp(max=h - 1)
            if n_bb < cfg.rays_per_object:
                cols = torch.cat([cols, torch.randint(w, (cfg.rays_per_object - n_bb,))])
                rows = torch.cat([rows, torch.randint(h, (cfg.rays_per_object - n_bb,))])
            rays.append(
                pixelnerf_rays_at(
                    poses[views], obj["focal"], obj["c"], rows, cols, float(obj["near"]), float(obj["far"])
                )
            )
            rgbs.append(imgs[views, :, rows, cols])
        return {
            "src_images": torch.stack(src_imgs),
            "src_poses": torch.stack(src_poses),
            "rays": torch.stack(rays),
            "rgb": torch.stack(rgbs),
            "obj_index": idx,  # (SB,) dataset indices and (SB, NS) source view indices
            "src_views": torch.stack(src_views),
            "bn_eval": self.first_step_eval and step == 0,
        }


def load_encoder_weights(encoder: DualDomainEncoder, path: str | Path, fmt: str = "pretrain") -> None:
    """Load `path` into the dual-domain encoder; `fmt` names the file's kind (no guessing from its keys).

    "pretrain": a checkpoint of scripts/pretrain_smcl_encoder.py (the encoder under `model`/`encoder.`);
    "official": the authors' encoder_<cat>.pt through WEIGHTS["smcl_ffc_encoder"]["official"]. The official
    file has no SE weights: with se_mode="learned" those keys (and only those) keep their initialisation,
    which is logged; with "random_per_call" (official behaviour) or "none" the load is fully strict.
    """
    from common.weights import load_weights, resolve_weights_file
    from smcl.object.models import WEIGHTS
    from smcl.object.models.ffc_encoder import OFFICIAL_ABSENT_PREFIXES

    if fmt == "pretrain":
        ckpt = load_checkpoint(path)
        sd = ckpt.get("model") if isinstance(ckpt, dict) else None
        enc = {k.removeprefix("encoder."): v for k, v in (sd or {}).items() if k.startswith("encoder.")}
        if not enc:
            raise CheckpointError(
                f"{path}: not a pretrain_smcl_encoder.py checkpoint (no encoder.* tensors under 'model'); "
                "for the authors' encoder_<cat>.pt set encoder_weights_format=official"
            )
        load_state_dict_strict(encoder, enc, source=str(path))
    elif fmt == "official":
        entry = WEIGHTS["smcl_ffc_encoder"]["official"]
        if encoder.cfg.se_mode != "learned":
            load_weights(encoder, entry, path)
            return
        file = resolve_weights_file(entry, path)
        ignore = ["^" + re.escape(p) for p in OFFICIAL_ABSENT_PREFIXES]  # the SE blocks, absent upstream
        load_state_dict_strict(encoder, entry.remap(load_checkpoint(file)), source=str(file), ignore=ignore)
        logging.getLogger(__name__).warning(
            "%s: official encoder has no SE weights; learned SE blocks keep their initialisation "
            "(encoder.se_mode=random_per_call reproduces the official behaviour)",
            file,
        )
    else:
        raise ValueError(f"encoder_weights_format must be 'pretrain' or 'official', got {fmt!r}")


def build_synthesizer(cfg: SynthExperiment) -> ViewSynthesizer:
    """The view synthesizer of `cfg` (encoder weights loaded, optionally frozen); seeds nothing.

    freeze_encoder freezes cnn_ffc and the 2048 -> 128 latent Linear, as the official --freeze_enc (which
    detaches the latent after that Linear); BatchNorm still updates its running statistics in train mode."""
    model = ViewSynthesizer(cfg.model)
    if cfg.encoder_weights:
        load_encoder_weights(model.encoder.model, cfg.encoder_weights, cfg.encoder_weights_format)
    if cfg.freeze_encoder:
        model.encoder.requires_grad_(False)
    return model


def build_synth(cfg: SynthExperiment) -> dict:
    seed_everything(cfg.train.seed)  # before anything random is built: the same seed, the same weights
    ds = NMRDataset(
        NMRDatasetConfig(
            root=cfg.data.root,
            split=cfg.data.split,
            synsets=cfg.data.synsets,
            pixel_centers=cfg.data.pixel_centers,
        )
    )
    sampler = RaySampler(ds, cfg.data, cfg.train.seed, cfg.first_step_eval)
    return {"model": build_synthesizer(cfg), "train_data": sampler}


def synth_config_from_checkpoint(
    path: str | Path, config_path: str | Path | None = None, overrides: Iterable[str] = ()
) -> tuple[SynthExperiment, list[tuple[str, object, object]]]:
    """The SynthExperiment a checkpoint of train_smcl.py was trained with (model and evaluation settings),
    with an optional YAML and --set overrides on top; returns it and the differences from the stored one."""
    return config_from_checkpoint(path, SynthExperiment, config_path, overrides)


def orbit_renderer(cfg: SynthExperiment):
    """render_fn(model, step) -> (T, 3, H, W) in [0, 1]: the novel orbit of `cfg.no_reference` (for
    common.callbacks.NoReferenceQuality)."""
    from common.trajectories import orbit_around_pose
    from smcl.object.render import render_rgb

    nr = cfg.no_reference
    ds = NMRDataset(
        NMRDatasetConfig(root=cfg.data.root, split=nr.split, pixel_centers=cfg.data.pixel_centers)
    )
    obj = ds[0]
    path = orbit_around_pose(obj["poses"][0].double(), nr.frames, radius_deg=nr.radius_deg).float()
    _, _, h, w = obj["images"].shape

    def render(model: ViewSynthesizer, step: int) -> Tensor:
        return render_rgb(model, obj["images"][:1], obj["poses"][:1], obj["focal"], path, h, w, c=obj["c"],
                          near=float(obj["near"]), far=float(obj["far"]))  # fmt: skip

    return render
