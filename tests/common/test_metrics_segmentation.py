"""SegmentationMetrics and its kernels against the spec's worked example, sklearn and hand-derived
per-image values (its two-rank gloo sync: tests/common/test_evaluation.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion

from common.metrics import SegmentationMetrics
from common.metrics.segmentation import confusion_matrix, segmentation_scores


def test_spec_sanity_example() -> None:
    # smmcl.md §5 "Sanity example (verified)"
    gt = torch.tensor([[0, 1, 1, 255], [2, 2, 0, 255]])
    pred = torch.tensor([[1, 1, 1, 0], [2, 0, 0, 2]])
    m = SegmentationMetrics(3)
    m.update(pred[None], gt[None])
    r = m.compute()
    assert r["confusion"].tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert np.allclose(r["iou"].numpy(), [1 / 3, 2 / 3, 0.5])
    assert r["miou"] == pytest.approx(0.5)
    assert segmentation_scores(r["confusion"], exclude=0)["miou"] == pytest.approx(0.5833, abs=1e-4)
    excl = SegmentationMetrics(3, exclude=0)
    excl.update(pred[None], gt[None])
    assert excl.compute()["miou"] == pytest.approx(0.5833, abs=1e-4)
    assert excl.compute()["miou_all"] == pytest.approx(0.5)
    assert r["fw_iou"] == pytest.approx(0.5)
    assert r["mean_acc"] == pytest.approx(2 / 3)
    assert r["pixel_acc"] == pytest.approx(2 / 3)
    assert m.higher_is_better and m.score_range == (0.0, 1.0)


def _reference(gt: np.ndarray, pred: np.ndarray, k: int) -> dict:
    keep = gt != 255
    m = sk_confusion(gt[keep], pred[keep], labels=list(range(k))).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.diag(m) / (m.sum(0) + m.sum(1) - np.diag(m))
    return {"m": m, "iou": iou, "miou": np.nanmean(iou), "pacc": np.trace(m) / m.sum()}


def test_accumulation_logits_and_absent_class_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    k = 5
    gts, preds = [], []
    m = SegmentationMetrics(k)
    for _ in range(3):  # batches accumulate into one dataset-level matrix
        gt = rng.integers(0, k - 1, (2, 6, 7))  # class 4 never in GT ...
        gt[rng.random(gt.shape) < 0.2] = 255
        logits = torch.randn(2, k, 6, 7)
        logits[:, 4] = -10  # ... nor predicted -> NaN IoU, skipped by nanmean
        pred = logits.argmax(1).numpy()
        m.update(logits, torch.from_numpy(gt))
        gts.append(gt.ravel())
        preds.append(pred.ravel())
    ref = _reference(np.concatenate(gts), np.concatenate(preds), k)
    r = m.compute()
    assert np.array_equal(r["confusion"].numpy(), ref["m"])
    assert np.allclose(r["iou"].numpy(), ref["iou"], equal_nan=True) and torch.isnan(r["iou"][4])
    assert r["miou"] == pytest.approx(ref["miou"])
    assert r["pixel_acc"] == pytest.approx(ref["pacc"])
    kernel = confusion_matrix(
        torch.from_numpy(np.concatenate(preds)), torch.from_numpy(np.concatenate(gts)), k
    )
    assert torch.equal(kernel, r["confusion"])
    m.reset()
    assert int(m.confusion.sum()) == 0


def test_bad_input_is_rejected() -> None:
    m = SegmentationMetrics(3)
    with pytest.raises(ValueError, match="outside"):
        m.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7))
    with pytest.raises(ValueError, match="pred has class ids"):
        m.update(torch.full((1, 2, 2), 3), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        m.update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="channels"):
        m.update(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="exclude id"):
        SegmentationMetrics(3, exclude=3)
    lenient = SegmentationMetrics(3, strict=False)  # official behaviour: out-of-range GT is ignored
    lenient.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([[[7, 0], [0, 0]]]))
    assert int(lenient.confusion.sum()) == 3


def test_per_image_miou_by_hand() -> None:
    # image 0 is the spec's sanity example (IoU 1/3, 2/3, 1/2 -> 0.5); image 1: perfect on class 2 only
    gt = torch.tensor([[[0, 1, 1, 255], [2, 2, 0, 255]], [[2, 2, 2, 2], [2, 2, 255, 255]]])
    pred = torch.tensor([[[1, 1, 1, 0], [2, 0, 0, 2]], [[2, 2, 2, 2], [2, 2, 0, 1]]])
    m = SegmentationMetrics(3)
    per = m.update_items(pred, gt)
    assert per.tolist() == pytest.approx([0.5, 1.0])  # classes 0, 1 absent from image 1: skipped
    assert m.compute()["confusion"].tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 7]]
    # the dataset mIoU comes from the summed matrix, not from the mean of the per-image values
    assert m.compute()["miou"] == pytest.approx((1 / 3 + 2 / 3 + 7 / 8) / 3)
    excl = SegmentationMetrics(3, exclude=0)
    assert excl.update_items(pred, gt).tolist() == pytest.approx([(2 / 3 + 1 / 2) / 2, 1.0])
