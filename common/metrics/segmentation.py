"""Dataset-level semantic-segmentation scores from an accumulated confusion matrix (smmcl.md §5).

Rows are ground truth, columns predictions. Pixels whose GT equals ``ignore_index`` are not counted
anywhere. IoU_c = diag / (row + col - diag); mIoU is the nanmean over classes (a class absent from
both GT and prediction gives NaN and is skipped). All scores: higher is better, in [0, 1].
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["ConfusionMatrix"]


class ConfusionMatrix:
    """Accumulates a K x K int64 confusion matrix over batches (and DDP ranks via :meth:`reduce_ddp`)."""

    higher_is_better = True

    def __init__(self, num_classes: int, ignore_index: int = 255, strict: bool = True) -> None:
        """``strict``: GT values outside [0, K) other than ``ignore_index`` raise instead of being ignored."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.strict = strict
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.mat.zero_()

    def update(self, pred: Tensor, target: Tensor) -> None:
        """pred: (B, H, W) class ids or (B, K, H, W) logits; target: (B, H, W) ids with ignore_index."""
        k = self.num_classes
        if pred.ndim == target.ndim + 1:
            if pred.shape[1] != k:
                raise ValueError(f"logits have {pred.shape[1]} channels, expected num_classes={k}")
            pred = pred.argmax(1)
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
        valid = (target >= 0) & (target < k)
        if self.strict:
            bad = ~valid & (target != self.ignore_index)
            if bool(bad.any()):
                raise ValueError(
                    f"target has values {torch.unique(target[bad])[:10].tolist()} outside [0, {k}) "
                    f"that are not ignore_index={self.ignore_index}"
                )
        pred, target = pred[valid], target[valid]
        if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= k):
            raise ValueError(f"pred has class ids outside [0, {k})")
        if self.mat.device != pred.device:
            self.mat = self.mat.to(pred.device)
        self.mat += torch.bincount(target * k + pred, minlength=k * k).reshape(k, k)

    def reduce_ddp(self) -> None:
        """Sum the matrices of all ranks in place (no-op unless torch.distributed is initialised)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        if dist.get_backend() == "nccl" and not self.mat.is_cuda:
            # NCCL reduces only CUDA tensors; callers often accumulate on the CPU
            t = self.mat.to(torch.device("cuda", torch.cuda.current_device()))
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            self.mat = t.cpu()
        else:
            dist.all_reduce(self.mat, op=dist.ReduceOp.SUM)

    def compute(self, exclude: int | Iterable[int] | None = None) -> dict[str, Tensor | float]:
        """Scores from the accumulated matrix.

        ``exclude``: class id(s) left out of ``miou`` (e.g. 0 = LLRGBD's "void"); ``iou`` always lists
        every class and ``miou_all`` is the mean over all of them. Returns miou, miou_all, iou (K,),
        fw_iou, mean_acc, pixel_acc, confusion.
        """
        m = self.mat.double().cpu()
        diag, rows, cols = m.diag(), m.sum(1), m.sum(0)
        with torch.no_grad():
            iou = diag / (rows + cols - diag)  # 0/0 -> nan for absent classes
            acc = diag / rows
        keep = torch.ones(self.num_classes, dtype=torch.bool)
        if exclude is not None:
            ids = [exclude] if isinstance(exclude, int) else list(exclude)
            for i in ids:
                if not 0 <= i < self.num_classes:
                    raise ValueError(f"exclude id {i} outside [0, {self.num_classes})")
                keep[i] = False
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
            "confusion": self.mat.clone().cpu(),
        }
