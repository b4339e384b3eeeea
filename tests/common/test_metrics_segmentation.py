"""ConfusionMatrix against the spec's worked example, sklearn, and a two-process gloo reduction."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import confusion_matrix as sk_confusion

from common.metrics.segmentation import ConfusionMatrix


def test_spec_sanity_example() -> None:
    # smmcl.md §5 "Sanity example (verified)"
    gt = torch.tensor([[0, 1, 1, 255], [2, 2, 0, 255]])
    pred = torch.tensor([[1, 1, 1, 0], [2, 0, 0, 2]])
    cm = ConfusionMatrix(3)
    cm.update(pred[None], gt[None])
    r = cm.compute()
    assert r["confusion"].tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert np.allclose(r["iou"].numpy(), [1 / 3, 2 / 3, 0.5])
    assert r["miou"] == pytest.approx(0.5)
    assert cm.compute(exclude=0)["miou"] == pytest.approx(0.5833, abs=1e-4)
    assert r["fw_iou"] == pytest.approx(0.5)
    assert r["mean_acc"] == pytest.approx(2 / 3)
    assert r["pixel_acc"] == pytest.approx(2 / 3)


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
    cm = ConfusionMatrix(k)
    for _ in range(3):  # batches accumulate into one dataset-level matrix
        gt = rng.integers(0, k - 1, (2, 6, 7))  # class 4 never in GT ...
        gt[rng.random(gt.shape) < 0.2] = 255
        logits = torch.randn(2, k, 6, 7)
        logits[:, 4] = -10  # ... nor predicted -> NaN IoU, skipped by nanmean
        pred = logits.argmax(1).numpy()
        cm.update(logits, torch.from_numpy(gt))
        gts.append(gt.ravel())
        preds.append(pred.ravel())
    ref = _reference(np.concatenate(gts), np.concatenate(preds), k)
    r = cm.compute()
    assert np.array_equal(r["confusion"].numpy(), ref["m"])
    assert np.allclose(r["iou"].numpy(), ref["iou"], equal_nan=True) and torch.isnan(r["iou"][4])
    assert r["miou"] == pytest.approx(ref["miou"])
    assert r["pixel_acc"] == pytest.approx(ref["pacc"])
    cm.reset()
    assert int(cm.mat.sum()) == 0


def test_bad_input_is_rejected() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="outside"):
        cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7))
    with pytest.raises(ValueError, match="pred has class ids"):
        cm.update(torch.full((1, 2, 2), 3), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 3))
    lenient = ConfusionMatrix(3, strict=False)  # official behaviour: out-of-range GT is ignored
    lenient.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([[[7, 0], [0, 0]]]))
    assert int(lenient.mat.sum()) == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        cm = ConfusionMatrix(3)
        gt = torch.tensor([[[0, 1, 2, 255]]]) if rank == 0 else torch.tensor([[[2, 2, 1, 0]]])
        pred = torch.tensor([[[0, 2, 2, 1]]]) if rank == 0 else torch.tensor([[[2, 1, 1, 0]]])
        cm.update(pred, gt)
        cm.reduce_ddp()
        torch.save(cm.mat, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_reduce_ddp_uses_all_reduce_when_initialised(tmp_path, monkeypatch) -> None:
    # one-rank gloo group; all_reduce is wrapped to add a second, identical rank's matrix
    calls = []

    def fake_all_reduce(t, op=None):
        calls.append(op)
        t.mul_(2)

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        monkeypatch.setattr(dist, "all_reduce", fake_all_reduce)
        cm = ConfusionMatrix(2)
        cm.update(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 1, 0]]))
        cm.reduce_ddp()
    finally:
        monkeypatch.undo()
        dist.destroy_process_group()
    assert calls == [dist.ReduceOp.SUM]
    assert cm.mat.tolist() == [[2, 2], [0, 2]]


@pytest.mark.slow
def test_reduce_ddp_sums_over_two_ranks(tmp_path) -> None:
    out = str(tmp_path / "mat")
    mp.spawn(_ddp_worker, args=(_free_port(), out), nprocs=2, join=True)
    single = ConfusionMatrix(3)
    single.update(torch.tensor([[0, 2, 2, 1, 2, 1, 1, 0]]), torch.tensor([[0, 1, 2, 255, 2, 2, 1, 0]]))
    for rank in range(2):
        assert torch.equal(torch.load(f"{out}.{rank}", weights_only=True), single.mat)
    single.reduce_ddp()  # no process group here: a no-op
    assert int(single.mat.sum()) == 7


def test_segmentation_metrics_class_equals_confusion_matrix_and_sklearn() -> None:
    from common.metrics import SegmentationMetrics

    rng = np.random.default_rng(1)
    k = 4
    cls, old = SegmentationMetrics(k, exclude=0), ConfusionMatrix(k)
    gts, preds = [], []
    for _ in range(3):
        gt = rng.integers(0, k, (2, 5, 6))
        gt[rng.random(gt.shape) < 0.2] = 255
        logits = torch.randn(2, k, 5, 6)
        cls.update(logits, torch.from_numpy(gt))
        old.update(logits, torch.from_numpy(gt))
        gts.append(gt.ravel())
        preds.append(logits.argmax(1).numpy().ravel())
    a, b = cls.compute(), old.compute(exclude=0)
    assert set(a) == set(b)
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]) or torch.allclose(a[key], b[key], equal_nan=True), key
        else:
            assert a[key] == b[key], key
    ref = _reference(np.concatenate(gts), np.concatenate(preds), k)
    assert np.array_equal(a["confusion"].numpy(), ref["m"])
    assert a["miou_all"] == pytest.approx(ref["miou"])
    assert cls.higher_is_better and cls.score_range == (0.0, 1.0)


def test_segmentation_per_image_miou_by_hand() -> None:
    from common.metrics import SegmentationMetrics

    # image 0 is the spec's sanity example (IoU 1/3, 2/3, 1/2 -> 0.5); image 1: perfect on class 2 only
    gt = torch.tensor([[[0, 1, 1, 255], [2, 2, 0, 255]], [[2, 2, 2, 2], [2, 2, 255, 255]]])
    pred = torch.tensor([[[1, 1, 1, 0], [2, 0, 0, 2]], [[2, 2, 2, 2], [2, 2, 0, 1]]])
    m = SegmentationMetrics(3)
    per = m.update_items(pred, gt)
    assert per.tolist() == pytest.approx([0.5, 1.0])  # classes 0, 1 absent from image 1: skipped
    assert m.compute()["confusion"].tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 7]]
    # the dataset mIoU comes from the summed matrix, not from the mean of the per-image values
    assert m.compute()["miou"] == pytest.approx((1 / 3 + 2 / 3 + 7 / 8) / 3)
    with pytest.raises(ValueError, match="outside"):
        m.update(pred, torch.full_like(gt, 9))
