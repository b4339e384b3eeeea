"""Experiment schema and builders: what the SMMCL scripts construct from one YAML (spec sections 3, 5)."""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from common.checkpoint import load_checkpoint
from common.config import ConfigError
from common.engine import TrainConfig
from common.errors import DataError
from smmcl.data import RGBXDataset, RGBXDatasetConfig
from smmcl.losses import SMMCLLossConfig
from smmcl.models import MAIN_MODEL, SegNeXtRGBX, SegNeXtRGBXConfig, build_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """Official LLRGBD protocol by default: whole image, scale 1, no flip; NMF bases seeded per image."""

    mode: Literal["whole", "slide"] = "whole"
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    crop: tuple[int, int] = (480, 640)
    stride_rate: float = 2.0 / 3.0
    seed: int | None = 0  # None: the official non-deterministic random NMF bases
    exclude: tuple[int, ...] = (0,)  # classes left out of the headline mIoU (LLRGBD: void)
    save_overlays: int = 8  # how many colour overlays to write
    precision: Literal["fp32", "bf16"] = (
        "fp32"  # bf16: autocast on CPU or GPU; NMF2D and the softmax stay fp32
    )
    day_night: bool = False  # MFNet: also report day (name suffix D) and night (N) separately


@dataclass(frozen=True)
class ExperimentConfig:
    model: SegNeXtRGBXConfig = field(default_factory=SegNeXtRGBXConfig)
    loss: SMMCLLossConfig = field(default_factory=SMMCLLossConfig)
    data: RGBXDatasetConfig = field(default_factory=RGBXDatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    test_root: str | None = None  # LLRGBD keeps train/ and test/ apart; None: data.root
    class_names: tuple[str, ...] = ()
    weights: str | None = None  # a tag of smmcl.list_weights(): mscan_b_in1k, mscan_b_in1k_mmseg, official
    weights_path: str | None = None  # the tag's file (None: its file in the weights cache, if it has one)
    train_layer_scale: bool = True  # False: freeze like the official optimizer groups

    def __post_init__(self) -> None:
        """The number of classes is written once: class_names, or data.num_classes or model.num_classes;
        the sections left at their default follow it (two different values are a ConfigError)."""
        sections = {"data": RGBXDatasetConfig.num_classes, "model": SegNeXtRGBXConfig.num_classes}  # defaults
        given = {"len(class_names)": len(self.class_names)} if self.class_names else {}
        given |= {
            f"{s}.num_classes": n for s, d in sections.items() if (n := getattr(self, s).num_classes) != d
        }
        if len(set(given.values())) > 1:
            raise ConfigError("number of classes: " + " != ".join(f"{k} {v}" for k, v in given.items()))
        n = next(iter(given.values()), sections["model"])
        for s in sections:
            object.__setattr__(self, s, replace(getattr(self, s), num_classes=n))


def build_model_from(cfg: ExperimentConfig, *, pretrained: bool = True) -> SegNeXtRGBX:
    """Model with the configured loss, initial weights (unless `pretrained` is False, e.g. before a
    checkpoint is loaded over them) and layer-scale policy."""
    tag, path = (cfg.weights, cfg.weights_path) if pretrained else (None, None)
    model = build_model(MAIN_MODEL, tag, weights_path=path, cfg=cfg.model)
    model.criterion.cfg = cfg.loss
    model.set_layer_scale_trainable(cfg.train_layer_scale)
    # Parameters that can never get a gradient are frozen, so DDP needs no find_unused_parameters and
    # AdamW's decoupled decay leaves them alone, exactly as in the official run (spec 9.1 #4).
    model.backbone.fconv1.requires_grad_(False)
    if not cfg.loss.contrastive:
        model.backbone.projector_color.requires_grad_(False)
        model.backbone.projector_other.requires_grad_(False)
    return model


def contrast_groups_per_process(groups: int, world_size: int) -> int:
    """`loss.contrast_groups` counts groups of the global batch (4: the official DataParallel over 4 GPUs,
    4 images each); each of `world_size` processes contrasts its share. 4 groups on 4 processes: 1 each."""
    if world_size <= 1:
        if groups > 1:
            log.warning(
                "loss.contrast_groups=%d on one process: the official loss grouping, but BatchNorm normalises "
                "the whole batch; the official recipe's BatchNorm batches (one per GPU) need -d with %d GPUs",
                groups,
                groups,
            )
        return groups
    if groups < world_size:
        log.warning(
            "loss.contrast_groups=%d < %d processes: each process contrasts its own images (%d groups)",
            groups,
            world_size,
            world_size,
        )
        return 1
    if groups % world_size:
        raise ConfigError(
            f"loss.contrast_groups={groups} does not divide into {world_size} processes; use a multiple"
        )
    return groups // world_size


def build(cfg: ExperimentConfig, world_size: int = 1) -> dict:
    """Keyword arguments for common.engine.Trainer (besides cfg.train); `world_size` splits the contrast
    groups of the global batch over the processes (train.global_batch_size splits the batch itself)."""
    model = build_model_from(cfg)
    groups = contrast_groups_per_process(cfg.loss.contrast_groups, world_size)
    model.criterion.cfg = replace(cfg.loss, contrast_groups=groups)
    return {"model": model, "train_data": RGBXDataset(cfg.data, split="train")}


def from_checkpoint(
    path: str | Path, config_path: str | Path | None = None, overrides: tuple[str, ...] | list[str] = ()
) -> tuple[ExperimentConfig, SegNeXtRGBX, list]:
    """(config, model with the checkpoint's weights, config differences) from a checkpoint alone.

    The config stored in the checkpoint is the base; `config_path` (-c) and `overrides` (--set) are optional
    and their differences are returned (and logged). An authors' checkpoint holds no config: then -c is needed.
    """
    from common.checkpoint import CheckpointError, read_config_from_checkpoint
    from common.config import config_from_checkpoint, load_config

    try:
        read_config_from_checkpoint(path)
    except CheckpointError:
        if config_path is None:
            raise
        cfg, diffs = load_config(config_path, ExperimentConfig, list(overrides)), []
    else:
        cfg, diffs = config_from_checkpoint(path, ExperimentConfig, config_path, list(overrides))
    model = build_model_from(cfg, pretrained=False)  # the checkpoint replaces every weight
    load_trained(model, path)
    return cfg, model, diffs


def test_dataset(cfg: ExperimentConfig) -> RGBXDataset:
    """The un-augmented test split (from test_root when given)."""
    data = cfg.data if cfg.test_root is None else replace(cfg.data, root=cfg.test_root)
    return RGBXDataset(data, split="test", train=False)


def autocast_context(device: torch.device, precision: str):
    """torch.autocast for bf16 on the tensor's device type; a no-op context for fp32 (any device)."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _forward_probs(
    model: SegNeXtRGBX, rgb: Tensor, aux: Tensor, seed: int | None, precision: str = "fp32"
) -> Tensor:
    if seed is not None:
        gen = torch.Generator(device=rgb.device)  # NMF bases drawn where the model runs
        model.decode_head.hamburger.ham.generator = gen.manual_seed(seed)
    try:
        with autocast_context(rgb.device, precision):
            logits = model(rgb, aux)
        return logits.float().softmax(dim=1)
    finally:
        model.decode_head.hamburger.ham.generator = None


def sliding_window(model: SegNeXtRGBX, rgb: Tensor, aux: Tensor, ecfg: EvalConfig) -> Tensor:
    """Correct tiling (rows with the crop height, columns with the crop width) averaged by coverage count."""
    _, _, h, w = rgb.shape
    ch, cw = ecfg.crop
    if h <= ch and w <= cw:
        pad = (0, cw - w, 0, ch - h)
        out = _forward_probs(model, F.pad(rgb, pad), F.pad(aux, pad), ecfg.seed, ecfg.precision)
        return out[:, :, :h, :w]
    sh, sw = max(1, math.ceil(ch * ecfg.stride_rate)), max(1, math.ceil(cw * ecfg.stride_rate))
    rows = max(1, math.ceil((h - ch) / sh) + 1) if h > ch else 1
    cols = max(1, math.ceil((w - cw) / sw) + 1) if w > cw else 1
    total = count = None
    for r in range(rows):
        for c in range(cols):
            y0, x0 = min(r * sh, max(h - ch, 0)), min(c * sw, max(w - cw, 0))
            y1, x1 = min(y0 + ch, h), min(x0 + cw, w)
            tile_r, tile_a = rgb[:, :, y0:y1, x0:x1], aux[:, :, y0:y1, x0:x1]
            pad = (0, cw - (x1 - x0), 0, ch - (y1 - y0))
            prob = _forward_probs(model, F.pad(tile_r, pad), F.pad(tile_a, pad), ecfg.seed, ecfg.precision)[
                :, :, : y1 - y0, : x1 - x0
            ]
            if total is None:
                total = rgb.new_zeros(rgb.shape[0], prob.shape[1], h, w)
                count = rgb.new_zeros(1, 1, h, w)
            total[:, :, y0:y1, x0:x1] += prob
            count[:, :, y0:y1, x0:x1] += 1
    return total / count


@torch.no_grad()
def predict(model: SegNeXtRGBX, rgb: Tensor, aux: Tensor, ecfg: EvalConfig) -> Tensor:
    """Class probabilities (B,K,H,W) summed over scales and flips (normalised inputs (B,3,H,W))."""
    model.eval()
    h, w = rgb.shape[2:]
    score = None
    for s in ecfg.scales:
        size = (int(h * s), int(w * s))
        r = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False) if s != 1 else rgb
        a = F.interpolate(aux, size=size, mode="bilinear", align_corners=False) if s != 1 else aux
        views = [(r, a, False)] + ([(r.flip(-1), a.flip(-1), True)] if ecfg.flip else [])
        for vr, va, flipped in views:
            if ecfg.mode == "slide":
                p = sliding_window(model, vr, va, ecfg)
            elif ecfg.mode == "whole":
                p = _forward_probs(model, vr, va, ecfg.seed, ecfg.precision)
            else:
                raise ValueError(f"eval.mode must be 'whole' or 'slide', got {ecfg.mode!r}")
            p = p.flip(-1) if flipped else p
            p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False) if s != 1 else p
            score = p if score is None else score + p
    return score


DAY_NIGHT = {"D": "day", "N": "night"}
SPLIT_NOTE = (
    "overall mIoU comes from the confusion matrix summed over all test images; it is not the mean of the "
    "day and night mIoUs (the splits differ in size and class frequencies)"
)


def day_night_split(name: str) -> str:
    """MFNet's split of a test image from its file-name suffix: `00001D` -> day, `00001N` -> night."""
    split = DAY_NIGHT.get(Path(name).stem[-1:].upper())
    if split is None:
        raise DataError(name, "eval.day_night needs MFNet names ending in D (day) or N (night)")
    return split


class _NamedItems(Dataset):
    """The test dataset's items with their file stem as "id" (the report's item key)."""

    def __init__(self, dataset: RGBXDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> dict:
        return {**self.dataset[idx], "id": self.dataset.names[idx]}


class SegmentationEval(nn.Module):
    """`validation_step` for common.evaluation.Evaluator: the model with its evaluation protocol.

    Updates "seg" (all images) and, with `day_night`, "seg_day"/"seg_night"; returns per-image rows
    {"id", "miou" (the image's own mIoU), "pixel_acc", ["split"]}. Writes overlays for `overlay_ids`.
    """

    def __init__(
        self,
        model: SegNeXtRGBX,
        ecfg: EvalConfig,
        num_classes: int,
        *,
        overlay_dir: Path | None = None,
        overlay_ids: set[str] = frozenset(),
    ) -> None:
        super().__init__()
        self.model, self.ecfg, self.num_classes = model, ecfg, num_classes
        self.overlay_dir, self.overlay_ids = overlay_dir, set(overlay_ids)

    def validation_step(self, batch: dict, metrics) -> list[dict]:
        probs = predict(self.model, batch["rgb"], batch["aux"], self.ecfg)
        pred, label = probs.argmax(1), batch["label"]
        per_image = metrics["seg"].update_items(pred, label)
        valid = label != metrics["seg"].ignore_index
        correct = ((pred == label) & valid).sum((1, 2)).double() / valid.sum((1, 2)).clamp(min=1)
        rows = []
        for i, name in enumerate(batch["id"]):
            row = {"id": name, "miou": per_image[i], "pixel_acc": correct[i]}
            if self.ecfg.day_night:
                row["split"] = day_night_split(name)
                metrics[f"seg_{row['split']}"].update(pred[i : i + 1], label[i : i + 1])
            rows.append(row)
            if self.overlay_dir is not None and name in self.overlay_ids:
                item = {"rgb": batch["rgb"][i].cpu(), "label": label[i].cpu()}
                path = self.overlay_dir / f"{name}.png"
                save_overlay(item, pred[i].cpu(), path, self.num_classes, 0 in self.ecfg.exclude)
        return rows


def build_evaluator(ecfg: EvalConfig, num_classes: int, *, ignore_index: int = 255, split: str = "test"):
    """The Evaluator with the SMMCL metrics: "seg" (+ "seg_day"/"seg_night" when eval.day_night)."""
    from common.evaluation import Evaluator
    from common.metrics.segmentation import SegmentationMetrics

    exclude = ecfg.exclude or None
    metrics = {"seg": SegmentationMetrics(num_classes, ignore_index, exclude=exclude)}
    if ecfg.day_night:
        for part in DAY_NIGHT.values():
            metrics[f"seg_{part}"] = SegmentationMetrics(num_classes, ignore_index, exclude=exclude)
    settings = (
        f"split {split}; mode {ecfg.mode}; scales {list(ecfg.scales)}; flip {ecfg.flip}; crop "
        f"{list(ecfg.crop)}; NMF bases seed {ecfg.seed}; precision {ecfg.precision}; mIoU excludes classes "
        f"{list(ecfg.exclude)}; ignore index {ignore_index}"
    )
    return Evaluator(metrics, task="smmcl.segmentation", settings=settings, progress=False)


def run_evaluation(
    model: SegNeXtRGBX,
    dataset: RGBXDataset,
    ecfg: EvalConfig,
    num_classes: int,
    *,
    class_names: tuple[str, ...] = (),
    overlay_dir: Path | None = None,
    report_path: Path | None = None,
    model_block: dict | None = None,
):
    """Evaluate through common.evaluation (sharded over ranks) -> EvalResult; with `report_path` the JSON
    report (schema tri-vision.eval/1), its CSV and a confusion-matrix plot `<report>_confusion.png`."""
    names = list(class_names) or [str(i) for i in range(num_classes)]
    wrapped = SegmentationEval(
        model,
        ecfg,
        num_classes,
        overlay_dir=overlay_dir,
        overlay_ids=set(dataset.names[: ecfg.save_overlays]),
    )
    ignore = getattr(getattr(dataset, "cfg", None), "ignore_index", 255)
    evaluator = build_evaluator(ecfg, num_classes, ignore_index=ignore)
    extra: dict = {"class_names": names}
    result = evaluator.run(wrapped, _NamedItems(dataset), model_info=model_block, extra=extra)
    seg = result.extra["seg"]
    result.extra["per_class_iou"] = dict(zip(names, seg["iou"]))
    if ecfg.day_night:
        result.extra["splits"] = {
            part: {
                "miou": result.aggregate.get(f"seg_{part}.miou"),
                "images": sum(1 for r in result.items if r.get("split") == part),
            }
            for part in DAY_NIGHT.values()
        }
        result.extra["splits_note"] = SPLIT_NOTE
    if report_path is not None and (not dist.is_initialized() or dist.get_rank() == 0):
        from common.evaluation import write_report
        from common.viz import confusion_matrix_plot

        report_path = Path(report_path)
        result.path = write_report(
            report_path,
            task=result.report["task"],
            model=result.report["model"],
            settings=result.report["settings"],
            aggregate=result.aggregate,
            items=result.items,
            extra=result.extra,
        )
        plot = report_path.with_name(report_path.stem + "_confusion.png")
        confusion_matrix_plot(
            np.asarray(seg["confusion"]), names, plot, title="SMMCL confusion (row-normalised)"
        )
    return result


def save_overlay(item: dict[str, Tensor], pred: Tensor, path: Path, num_classes: int, void0: bool) -> Path:
    """RGB | prediction overlay | ground truth, side by side (class 0 black only when it is void)."""
    from common.image_io import write_image
    from common.viz import colorize_labels, default_palette, overlay, to_uint8

    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    rgb = np.clip(item["rgb"].numpy().transpose(1, 2, 0) * std + mean, 0, 1)
    palette = default_palette(max(num_classes, 2), background=void0)
    over = overlay(rgb, pred.numpy(), palette, 0.5)
    gt = colorize_labels(item["label"].numpy(), palette)
    sheet = np.concatenate([to_uint8(x, rounding="half_up") for x in (rgb, over, gt)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, sheet)
    return path


def iou_table(metrics: dict, class_names: tuple[str, ...]) -> str:
    """Markdown per-class IoU table plus the summary rows (percentages)."""
    iou = metrics["iou"].tolist() if isinstance(metrics["iou"], Tensor) else list(metrics["iou"])
    names = list(class_names) or [str(i) for i in range(len(iou))]
    lines = ["| class | IoU % |", "|---|---|"]
    lines += [f"| {n} | {100 * v:.3f} |" for n, v in zip(names, iou)]
    for key in ("miou", "miou_all", "pixel_acc", "mean_acc"):
        if key in metrics:
            lines.append(f"| **{key}** | {100 * float(metrics[key]):.3f} |")
    return "\n".join(lines)


def load_trained(model: nn.Module, path: str | Path) -> None:
    """Load our `epoch-N.pth` or an authors' one (the same layout: state_dict under "model"), strictly."""
    from common.checkpoint import CheckpointError, load_state_dict_strict

    state = load_checkpoint(path)
    if "model" not in state:
        raise CheckpointError(f"checkpoint {path} has no 'model' entry (keys: {sorted(state)[:10]})")
    load_state_dict_strict(model, state["model"], source=str(path))
