"""Dataset-level semantic-segmentation scores from an accumulated confusion matrix (smmcl.md §5).

Rows are ground truth, columns predictions. Pixels whose GT equals ``ignore_index`` are not counted
anywhere. IoU_c = diag / (row + col - diag); mIoU is the nanmean over classes (a class absent from
both GT and prediction gives NaN and is skipped). All scores: higher is better, in [0, 1].

The kernels ``confusion_matrix`` and ``segmentation_scores`` compute everything;
``SegmentationMetrics`` (a ``torchmetrics.Metric``, matrix summed over DDP ranks) is the state around them.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["confusion_matrix", "segmentation_scores", "SegmentationMetrics"]


def _flat_pair(pred: Tensor, target: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """(B,H,W) ids or (B,K,H,W) logits, (B,H,W) ids -> pred ids with target's shape (both long)."""
    if pred.ndim == target.ndim + 1:
        if pred.shape[1] != num_classes:
            raise ValueError(f"logits have {pred.shape[1]} channels, expected num_classes={num_classes}")
        pred = pred.argmax(1)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    return pred.long(), target.long()


def _valid(pred: Tensor, target: Tensor, k: int, ignore_index: int, strict: bool) -> Tensor:
    """Mask of counted pixels; raises on GT outside [0, k) (strict, not ignore) and on bad pred ids."""
    valid = (target >= 0) & (target < k)
    if strict:
        bad = ~valid & (target != ignore_index)
        if bool(bad.any()):
            raise ValueError(
                f"target has values {torch.unique(target[bad])[:10].tolist()} outside [0, {k}) "
                f"that are not ignore_index={ignore_index}"
            )
    p = pred[valid]
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= k):
        raise ValueError(f"pred has class ids outside [0, {k})")
    return valid


def confusion_matrix(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255, strict: bool = True
) -> Tensor:
    """K x K int64 matrix (rows GT, columns prediction) of one batch.

    pred: (B, H, W) class ids or (B, K, H, W) logits; target: (B, H, W) ids, ``ignore_index`` not
    counted. ``strict``: GT values outside [0, K) other than ``ignore_index`` raise (else ignored).
    """
    k = num_classes
    pred, target = _flat_pair(pred, target, k)
    pred, target = pred.reshape(-1), target.reshape(-1)
    valid = _valid(pred, target, k, ignore_index, strict)
    pred, target = pred[valid], target[valid]
    return torch.bincount(target * k + pred, minlength=k * k).reshape(k, k)


def _per_image_confusion(pred: Tensor, target: Tensor, k: int, ignore_index: int, strict: bool) -> Tensor:
    """(B, K, K) int64 confusion matrices, one per image."""
    pred, target = _flat_pair(pred, target, k)
    b = pred.shape[0]
    pred, target = pred.reshape(b, -1), target.reshape(b, -1)
    valid = _valid(pred, target, k, ignore_index, strict)
    img = torch.arange(b, device=pred.device)[:, None].expand_as(pred)
    idx = (img * (k * k) + target * k + pred)[valid]
    return torch.bincount(idx, minlength=b * k * k).reshape(b, k, k)


def _keep_mask(num_classes: int, exclude: int | Iterable[int] | None) -> Tensor:
    keep = torch.ones(num_classes, dtype=torch.bool)
    if exclude is not None:
        ids = [exclude] if isinstance(exclude, int) else list(exclude)
        for i in ids:
            if not 0 <= i < num_classes:
                raise ValueError(f"exclude id {i} outside [0, {num_classes})")
            keep[i] = False
    return keep


def segmentation_scores(mat: Tensor, exclude: int | Iterable[int] | None = None) -> dict[str, Tensor | float]:
    """Scores from a K x K confusion matrix (rows GT).

    ``exclude``: class id(s) left out of ``miou`` (e.g. 0 = LLRGBD's "void"); ``iou`` always lists
    every class and ``miou_all`` is the mean over all of them. Returns miou, miou_all, iou (K,)
    float64, fw_iou, mean_acc, pixel_acc (floats) and confusion (K, K) int64 (CPU).
    """
    num_classes = mat.shape[0]
    m = mat.double().cpu()
    diag, rows, cols = m.diag(), m.sum(1), m.sum(0)
    with torch.no_grad():
        iou = diag / (rows + cols - diag)  # 0/0 -> nan for absent classes
        acc = diag / rows
    keep = _keep_mask(num_classes, exclude)
    total = rows.sum()
    freq = rows / total if total > 0 else torch.zeros_like(rows)
    present = freq > 0
    return {
        "miou": float(torch.nanmean(iou[keep])),
        "miou_all": float(torch.nanmean(iou)),
        "iou": iou,
        "fw_iou": float((freq[present] * iou[present]).sum()),
        "mean_acc": float(torch.nanmean(acc)),
        "pixel_acc": float(diag.sum() / total) if total > 0 else float("nan"),
        "confusion": mat.detach().clone().cpu(),
    }


class SegmentationMetrics(Metric):
    """Dataset-level segmentation scores from a confusion matrix summed over batches and DDP ranks.

    ``update(pred, target)``: pred (B, H, W) class ids or (B, K, H, W) logits, target (B, H, W) ids in
    [0, K) or ``ignore_index`` (other values raise unless ``strict=False``, which ignores them as the
    official SMMCL code does). ``compute()`` -> :func:`segmentation_scores` (miou, miou_all, iou,
    fw_iou, mean_acc, pixel_acc, confusion). ``update_items`` also returns each image's own mIoU (B,)
    (classes absent from both its GT and prediction skipped; NaN when the image has no counted pixel).
    The dataset mIoU comes from the summed matrix: it is not the mean of the per-image values.
    higher is better; every score in [0, 1].
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True
    score_range = (0.0, 1.0)
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        exclude: int | Iterable[int] | None = None,
        strict: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.exclude = exclude if exclude is None or isinstance(exclude, int) else tuple(exclude)
        self._keep = _keep_mask(num_classes, self.exclude)
        self.strict = strict
        self.input_range = (0, num_classes - 1)
        self.add_state(
            "confusion",
            default=torch.zeros(num_classes, num_classes, dtype=torch.int64),
            dist_reduce_fx="sum",
        )
        self._last_scores: Tensor | None = None

    def update(self, pred: Tensor, target: Tensor) -> None:
        per = _per_image_confusion(pred, target, self.num_classes, self.ignore_index, self.strict)
        self.confusion += per.sum(0).to(self.confusion.device)
        m = per.double()
        diag = m.diagonal(dim1=1, dim2=2)
        iou = diag / (m.sum(2) + m.sum(1) - diag)
        self._last_scores = torch.nanmean(iou[:, self._keep.to(iou.device)], dim=1)

    def update_items(self, pred: Tensor, target: Tensor) -> Tensor:
        """``update`` and return each image's mIoU (B,) float64."""
        self.update(pred, target)
        assert self._last_scores is not None
        return self._last_scores

    def compute(self) -> dict[str, Tensor | float]:
        return segmentation_scores(self.confusion, self.exclude)

    def describe(self) -> str:
        ex = f", exclude={self.exclude}" if self.exclude is not None else ""
        return f"SegmentationMetrics(num_classes={self.num_classes}, ignore_index={self.ignore_index}{ex})"
