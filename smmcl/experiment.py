"""Experiment schema and builders: what the SMMCL scripts construct from one YAML (spec sections 3, 5)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.checkpoint import load_checkpoint
from common.distributed import DistInfo
from common.engine import TrainConfig
from common.metrics.segmentation import ConfusionMatrix
from smmcl.data import RGBXDataset, RGBXDatasetConfig
from smmcl.losses import SMMCLLossConfig
from smmcl.models import MAIN_MODEL, SegNeXtRGBX, SegNeXtRGBXConfig, build_model


@dataclass(frozen=True)
class EvalConfig:
    """Official LLRGBD protocol by default: whole image, scale 1, no flip; NMF bases seeded per image."""

    mode: str = "whole"  # whole | slide
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    crop: tuple[int, int] = (480, 640)
    stride_rate: float = 2.0 / 3.0
    seed: int | None = 0  # None: the official non-deterministic random NMF bases
    exclude: tuple[int, ...] = (0,)  # classes left out of the headline mIoU (LLRGBD: void)
    save_overlays: int = 8  # how many colour overlays to write
    precision: str = "fp32"  # fp32 | bf16 (autocast on CPU or GPU; NMF2D and the softmax stay fp32)

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"eval.precision must be 'fp32' or 'bf16', got {self.precision!r}")


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
    imagenet_weights: str | None = None  # older configs: the same as weights mscan_b_in1k + weights_path
    train_layer_scale: bool = True  # False: freeze like the official optimizer groups

    def __post_init__(self) -> None:
        if self.imagenet_weights and self.weights not in (None, "mscan_b_in1k"):
            raise ValueError("give either weights/weights_path or imagenet_weights, not both")

    @property
    def init_weights(self) -> tuple[str | None, str | None]:
        """(tag, path) of the initial weights, with the older `imagenet_weights` path read as mscan_b_in1k."""
        if self.imagenet_weights:
            return "mscan_b_in1k", self.imagenet_weights
        return self.weights, self.weights_path


def build_model_from(cfg: ExperimentConfig, *, pretrained: bool = True) -> SegNeXtRGBX:
    """Model with the configured loss, initial weights (unless `pretrained` is False, e.g. before a
    checkpoint is loaded over them) and layer-scale policy."""
    tag, path = cfg.init_weights if pretrained else (None, None)
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


def build(cfg: ExperimentConfig) -> dict:
    """Keyword arguments for common.engine.Trainer (besides cfg.train)."""
    if cfg.model.num_classes != cfg.data.num_classes:
        raise ValueError(
            f"model.num_classes {cfg.model.num_classes} != data.num_classes {cfg.data.num_classes}"
        )
    return {"model": build_model_from(cfg), "train_data": RGBXDataset(cfg.data, split="train")}


def test_dataset(cfg: ExperimentConfig) -> RGBXDataset:
    """The un-augmented test split (from test_root when given)."""
    data = cfg.data if cfg.test_root is None else replace(cfg.data, root=cfg.test_root)
    return RGBXDataset(data, split="test", train=False)


def autocast_context(device: torch.device, precision: str):
    """torch.autocast for bf16 on the tensor's device type; a no-op context for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


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


def evaluate(
    model: SegNeXtRGBX,
    dataset: RGBXDataset,
    ecfg: EvalConfig,
    num_classes: int,
    info: DistInfo | None = None,
    overlay_dir: Path | None = None,
) -> dict:
    """Dataset-level confusion matrix over this rank's share of images, reduced over ranks."""
    rank, world = (info.rank, info.world_size) if info else (0, 1)
    device = info.device if info else torch.device("cpu")
    cm = ConfusionMatrix(num_classes)
    for i in range(rank, len(dataset), world):
        item = dataset[i]
        probs = predict(model, item["rgb"][None].to(device), item["aux"][None].to(device), ecfg)
        pred = probs.argmax(1).cpu()
        cm.update(pred, item["label"][None])
        if overlay_dir is not None and i < ecfg.save_overlays:
            save_overlay(item, pred[0], overlay_dir / f"{dataset.names[i]}.png", num_classes)
    if info is not None and info.distributed:
        cm.reduce_ddp()
    return cm.compute(exclude=ecfg.exclude or None)


def save_overlay(item: dict[str, Tensor], pred: Tensor, path: Path, num_classes: int) -> Path:
    """RGB | prediction overlay | ground truth, side by side."""
    from common.image_io import write_image
    from common.viz import colorize_labels, default_palette, overlay

    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    rgb = np.clip(item["rgb"].numpy().transpose(1, 2, 0) * std + mean, 0, 1)
    palette = default_palette(max(num_classes, 2))
    over = overlay(rgb, pred.numpy(), palette, 0.5)
    gt = colorize_labels(item["label"].numpy(), palette)
    sheet = np.concatenate([_u8(rgb), _u8(over), _u8(gt)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, sheet)
    return path


def _u8(img: np.ndarray) -> np.ndarray:
    return img if img.dtype == np.uint8 else (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


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
    """Load our `epoch-N.pth` or an official checkpoint (key `model`), strictly."""
    from common.checkpoint import load_state_dict_strict

    state = load_checkpoint(path)
    sd = state.get("model", state)
    sd = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in sd.items()}
    load_state_dict_strict(model, sd, source=str(path))


def overlay_names(rgbs: list[Path]) -> list[str]:
    """One distinct overlay file name per input: `<stem>_overlay.png`, or `<stem>_<i>_overlay.png` (i the
    input's position) for inputs whose file stems collide (e.g. `day/0001.png` and `night/0001.png`)."""
    from collections import Counter

    counts = Counter(Path(p).stem for p in rgbs)
    names: list[str] = []
    for i, path in enumerate(rgbs):
        stem = Path(path).stem
        name = f"{stem}_overlay.png" if counts[stem] == 1 else f"{stem}_{i}_overlay.png"
        while name in names:
            name = name.replace("_overlay.png", "_x_overlay.png")
        names.append(name)
    return names


def predict_files(
    model: SegNeXtRGBX, cfg: ExperimentConfig, rgbs: list[Path], auxs: list[Path | None], out: Path
) -> list[Path]:
    """Overlays for user image pairs read with the dataset's reading rules (no label: shown as ignore).

    The files are read where they are (errors name them); inputs go to the model's device; every input
    gets its own overlay (see overlay_names). aux None: the aux is channel 4 of the RGB file.
    """
    from smmcl.data.rgbx import read_sample, to_tensors

    device, out = next(model.parameters()).device, Path(out)
    written = []
    for (rgb_path, aux_path), name in zip(zip(rgbs, auxs), overlay_names(rgbs)):
        item = to_tensors(*read_sample(Path(rgb_path), aux_path and Path(aux_path), None, cfg.data))
        probs = predict(model, item["rgb"][None].to(device), item["aux"][None].to(device), cfg.eval)
        written.append(save_overlay(item, probs.argmax(1)[0].cpu(), out / name, cfg.model.num_classes))
    return written
