"""common.evaluation: per-item rows reproduce the aggregate, one rank and two gloo ranks write the same
report, the JSON/CSV schema, and the model/environment blocks."""

from __future__ import annotations

import csv
import hashlib
import json
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from common.errors import DataError
from common.evaluation import (
    SCHEMA,
    Evaluator,
    environment,
    model_info,
    read_report,
    shard_indices,
    write_report,
)
from common.metrics import PSNR, SRCC, SSIM, SegmentationMetrics
from common.metrics.image import psnr
from common.metrics.segmentation import segmentation_scores
from tests.common.test_distributed import run_two_ranks

K = 3


class ToyData(torch.utils.data.Dataset):
    """n items (7 by default, an odd count: two ranks get 4 and 3) of image, label and a subjective score."""

    def __init__(self, n: int = 7) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(100 + i)
        return {
            "id": f"scene_{i}.png",
            "image": torch.rand(3, 16, 16, generator=g),
            "label": torch.randint(0, K, (16, 16), generator=g),
            "mos": torch.tensor(float((i * 5) % 7)),
        }


class ToyModel(nn.Module):
    """Degrades its input by a learned gain and predicts labels by thresholding the red channel."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(0.8))

    def validation_step(self, batch: dict, metrics) -> list[dict]:
        pred = (batch["image"] * self.gain).clamp(0, 1)
        p = metrics["psnr"].update_items(pred, batch["image"])
        s = metrics["ssim"].update_items(pred, batch["image"])
        seg = (pred[:, 0] * K).long().clamp_max(K - 1)
        iou = metrics["seg"].update_items(seg, batch["label"])
        if "srcc" in metrics:
            metrics["srcc"].update(p, batch["mos"])
        rows = []
        for k, name in enumerate(batch["id"]):
            cm = torch.bincount(batch["label"][k].flatten() * K + seg[k].flatten(), minlength=K * K)
            rows.append({"id": name, "psnr": p[k], "ssim": s[k], "miou": iou[k], "confusion": cm.tolist()})
        return rows


def make_evaluator(srcc: bool = True) -> Evaluator:
    metrics = {"psnr": PSNR(), "ssim": SSIM(protocol="uniform", win_size=7), "seg": SegmentationMetrics(K)}
    if srcc:  # needs >= 2 items
        metrics["srcc"] = SRCC()
    return Evaluator(metrics, task="toy", batch_size=2, settings="split test", progress=False)


def evaluate_toy(report: Path, n: int = 7):
    return make_evaluator(srcc=n > 1).run(
        ToyModel(), ToyData(n), step=5, model_info=model_info("toy"), report_path=report, extra={"note": "n"}
    )


def test_shard_indices_cover_every_item_once() -> None:
    parts = [shard_indices(7, r, 3) for r in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert shard_indices(2, 2, 3) == []  # more ranks than items: no padding duplicates


def test_items_reproduce_the_aggregate_and_report_schema(tmp_path: Path) -> None:
    res = evaluate_toy(tmp_path / "eval.json")
    assert res.path == tmp_path / "eval.json"
    items = res.items
    assert [r["id"] for r in items] == [f"scene_{i}.png" for i in range(7)]
    n = len(items)
    # mean metrics: the aggregate is the mean of the per-item rows
    for key in ("psnr", "ssim"):
        assert res.aggregate[key] == pytest.approx(sum(r[key] for r in items) / n, rel=1e-12)
    ds = ToyData()
    ref = psnr(
        (torch.stack([ds[i]["image"] for i in range(n)]) * 0.8).clamp(0, 1),
        torch.stack([ds[i]["image"] for i in range(n)]),
    )
    assert res.aggregate["psnr"] == pytest.approx(ref.double().mean().item(), rel=1e-6)
    # mIoU: from the summed per-item confusion matrices (not the mean of per-image mIoU)
    summed = torch.tensor([r["confusion"] for r in items]).sum(0).reshape(K, K)
    scores = segmentation_scores(summed)
    assert res.aggregate["seg.miou"] == pytest.approx(scores["miou"], rel=1e-12)
    assert res.aggregate["seg.pixel_acc"] == pytest.approx(scores["pixel_acc"], rel=1e-12)
    assert res.extra["seg"]["confusion"] == summed.tolist()
    assert res.aggregate["seg.miou"] != pytest.approx(sum(r["miou"] for r in items) / n)
    # the JSON file: schema fields in order, strict JSON, extra blocks
    doc = read_report(res.path)
    assert list(doc) == [
        "schema", "task", "created", "model", "settings", "environment", "aggregate", "items", "extra"
    ]  # fmt: skip
    assert doc["schema"] == SCHEMA and doc["task"] == "toy"
    assert set(doc["model"]) == {"name", "weights", "checkpoint", "checkpoint_sha256", "config"}
    assert set(doc["environment"]) == {"torch", "device", "world_size", "git"}
    assert doc["environment"]["world_size"] == 1 and doc["environment"]["torch"] == torch.__version__
    assert (
        "split test; metrics: psnr=PSNR(data_range=1)" in doc["settings"]
        and "protocol=uniform" in doc["settings"]
    )
    assert "\n" not in doc["settings"]
    assert doc["aggregate"] == res.aggregate and doc["items"] == items
    assert doc["extra"]["step"] == 5 and doc["extra"]["note"] == "n" and len(doc["extra"]["seg"]["iou"]) == K
    assert list(doc["aggregate"])[:3] == ["psnr", "ssim", "seg.miou"]  # the caller's order
    # the CSV beside it: one row per item, same values
    with open(tmp_path / "eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [r["id"] for r in items]
    assert list(rows[0]) == ["id", "psnr", "ssim", "miou", "confusion"]
    assert [float(r["psnr"]) for r in rows] == [r["psnr"] for r in items]
    assert json.loads(rows[0]["confusion"]) == items[0]["confusion"]
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes left no temp file


def test_two_gloo_ranks_write_the_same_report_as_one(tmp_path: Path) -> None:
    worker = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        import torch
        from common.distributed import cleanup_distributed, get_rank, init_distributed
        from tests.common.test_evaluation import evaluate_toy

        torch.set_num_threads(1)
        info = init_distributed("cpu")
        assert info.world_size == 2
        res = evaluate_toy(Path(sys.argv[1]) / "two.json")
        evaluate_toy(Path(sys.argv[1]) / "two_n1.json", n=1)  # rank 1 evaluates nothing
        torch.save({"items": len(res.items), "path": str(res.path)}, Path(sys.argv[1]) / f"rank{get_rank()}.pt")
        cleanup_distributed()
        """
    )
    run_two_ranks(worker, tmp_path)
    two = read_report(tmp_path / "two.json")
    one = read_report(evaluate_toy(tmp_path / "one.json").path)
    assert two["environment"]["world_size"] == 2
    for key in ("schema", "task", "model", "settings"):
        assert two[key] == one[key], key
    assert two["extra"] == one["extra"]  # confusion matrix (integers), per-class IoU, step
    assert [r["id"] for r in two["items"]] == [r["id"] for r in one["items"]]
    assert two["items"] == one["items"]  # per-item values do not depend on the rank
    assert list(two["aggregate"]) == list(one["aggregate"])
    for k, v in one["aggregate"].items():  # float sums in another order: equal to rounding
        assert two["aggregate"][k] == pytest.approx(v, rel=1e-12, abs=1e-15), k
    # one item, so rank 1 has none: its empty states still sync, and the report is the one-rank report
    two, one = (
        read_report(tmp_path / "two_n1.json"),
        read_report(evaluate_toy(tmp_path / "one_n1.json", 1).path),
    )
    assert two["items"] == one["items"] and len(one["items"]) == 1
    assert two["aggregate"] == one["aggregate"] and two["extra"] == one["extra"]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["items"] == r1["items"] == 7  # every rank gets the gathered items
    assert r0["path"].endswith("two.json") and r1["path"] == "None"  # rank 0 writes


def test_bad_items_are_refused(tmp_path: Path) -> None:
    class NoId(ToyModel):
        def validation_step(self, batch, metrics):
            super().validation_step(batch, metrics)
            return [{"psnr": 1.0}]

    class SameId(ToyModel):
        def validation_step(self, batch, metrics):
            rows = super().validation_step(batch, metrics)
            return [{**r, "id": "x"} for r in rows]

    with pytest.raises(ValueError, match="without an 'id'"):
        make_evaluator().run(NoId(), ToyData())
    with pytest.raises(ValueError, match="unique"):
        make_evaluator().run(SameId(), ToyData())
    with pytest.raises(ValueError, match="no '.'"):
        Evaluator({"a.b": PSNR()}, task="t")
    with pytest.raises(TypeError, match="validation_step"):
        make_evaluator().run(nn.Linear(1, 1), ToyData())


def test_model_mode_restored_and_metrics_reset_between_runs() -> None:
    model, ev = ToyModel(), make_evaluator()
    model.train()
    a = ev.run(model, ToyData())
    assert model.training
    b = ev.run(model, ToyData())
    assert a.aggregate == b.aggregate and a.path is None


def test_write_report_non_finite_values_and_model_info(tmp_path: Path) -> None:
    ck = tmp_path / "model.pth"
    torch.save({"w": torch.ones(3)}, ck)
    info = model_info("toy", weights="official", checkpoint=ck, config={"lr": 0.1})
    assert info["checkpoint_sha256"] == hashlib.sha256(ck.read_bytes()).hexdigest()
    assert info == {"name": "toy", "weights": "official", "checkpoint": str(ck),
                    "checkpoint_sha256": info["checkpoint_sha256"], "config": {"lr": 0.1}}  # fmt: skip
    with pytest.raises(DataError, match="missing.pth: checkpoint file not found"):
        model_info("toy", checkpoint=tmp_path / "missing.pth")
    path = write_report(
        tmp_path / "sub" / "r.json",
        task="t",
        model=info,
        settings="s",
        aggregate={"psnr": float("inf"), "iou": float("nan")},
        items=[{"id": "a", "psnr": float("inf"), "note": None}],
        extra={"iou": torch.tensor([0.5, float("nan")])},
    )
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON: non-finite -> null
    doc = read_report(path)
    assert doc["aggregate"] == {"psnr": None, "iou": None} and doc["extra"]["iou"] == [0.5, None]
    assert (tmp_path / "sub" / "r.csv").read_text() == "id,psnr,note\na,inf,\n"
    with pytest.raises(ValueError, match="lacks 'weights'"):
        write_report(tmp_path / "x.json", task="t", model={"name": "m"}, settings="", aggregate={}, items=[])
    with pytest.raises(DataError, match="must end in .json"):
        write_report(tmp_path / "r.csv", task="t", model=info, settings="", aggregate={}, items=[])
    (tmp_path / "old.json").write_text('{"mean": {"miou": 0.5}}')
    with pytest.raises(DataError, match="not a tri-vision.eval/1 report"):
        read_report(tmp_path / "old.json")
    (tmp_path / "cut.json").write_text(json.dumps({"schema": SCHEMA, "task": "t"}))
    with pytest.raises(DataError, match="lacks"):
        read_report(tmp_path / "cut.json")


def test_environment_block() -> None:
    env = environment()
    assert env["device"] == "cpu" and env["world_size"] == 1 and env["torch"] == torch.__version__
    assert env["git"] is None or len(env["git"]) == 40


def test_engine_periodic_evaluation_logs_the_aggregate(tmp_path: Path) -> None:
    from common.engine import TrainConfig, Trainer

    class Trainable(ToyModel):
        def training_step(self, batch: dict) -> dict:
            return {"l1": ((batch["image"] * self.gain - batch["image"]).abs()).mean()}

    cfg = TrainConfig(max_steps=2, batch_size=2, lr=0.1, out_dir=str(tmp_path), tensorboard=False,
                      progress=False, log_every=0, eval_every=1, seed=0)  # fmt: skip
    model = Trainable()
    Trainer(cfg, model, ToyData(4), evaluator=make_evaluator(), val_data=ToyData(3)).fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/psnr" in r]
    assert [r["step"] for r in evals] == [1, 2] and "eval/seg.miou" in evals[0]
    final = make_evaluator().run(model, ToyData(3))
    assert evals[-1]["eval/psnr"] == pytest.approx(final.aggregate["psnr"], rel=1e-6)
