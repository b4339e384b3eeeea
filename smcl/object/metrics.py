"""SMCL synthetic-setting evaluation (spec smcl.md 5.1): render non-source views, 8-bit PNG protocol.

Official protocol (calc_metrics): GT PNG and rendered 8-bit PNG /255, PSNR (data_range 1), SSIM with a
uniform 7x7 window and sample covariance, LPIPS-VGG on [-1,1]; mean over views per object, then an
unweighted mean over objects. We also report the standard Gaussian-window SSIM. The metrics are
common.metrics' torchmetrics classes, run by common.evaluation.Evaluator, which writes the project's
report (schema tri-vision.eval/1: one item per object, the per-view scores in the "views" block).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric

from common.errors import DataError
from common.evaluation import EvalResult, Evaluator
from common.image_io import list_images, write_image
from common.io import atomic_write_json, atomic_write_text, read_json
from common.metrics.base import MeanOfItems
from common.metrics.image import PSNR, SSIM
from common.viz import to_uint8
from smcl.object.data.nmr import NMRDataset, load_rgb, read_object_list
from smcl.object.models.view_synthesizer import ViewSynthesizer
from smcl.object.render import render_views

log = logging.getLogger(__name__)
TASK = "smcl.object"
LPIPS_CHUNK = 32  # images per LPIPS call (as the official script batches them)


def read_viewlist(path: Path) -> dict[str, list[int]]:
    """pixelNeRF viewlist: '<synset> <obj> <src> [more]' per line -> {"synset/obj": [src, ...]}."""
    if not Path(path).is_file():
        raise DataError(path, "viewlist file is missing")
    out = {}
    for n, ln in enumerate(Path(path).read_text().splitlines(), start=1):
        parts = ln.split()
        if not parts:
            continue
        if len(parts) < 3 or not all(v.isdigit() for v in parts[2:]):
            raise DataError(f"{path}:{n}", "expected '<synset> <object> <source view> ...'")
        out[f"{parts[0]}/{parts[1]}"] = [int(v) for v in parts[2:]]
    return out


def render_dataset(
    model: ViewSynthesizer,
    ds: NMRDataset,
    viewlist: dict[str, list[int]] | None,
    out_dir: Path,
    seed: int = 0,
) -> int:
    """Write <out>/<synset>_<obj>/<view:06d>.png for every non-source view of every object (8-bit by
    truncation, as the official eval.py). `viewlist` None: source view 0 for every object. torch is seeded
    with `seed` first: the fine pass's importance samples are random, so this makes an evaluation repeatable.

    <out>/renders.json (MANIFEST) lists exactly what this call rendered ("complete": false while it runs),
    so that calc_metrics scores these renders and never stale ones left in the folder by an earlier run."""
    torch.manual_seed(seed)
    manifest = Path(out_dir) / MANIFEST
    atomic_write_json(manifest, {"complete": False, "objects": {}})
    objects: dict[str, dict] = {}
    n = 0
    for i, (s, o) in enumerate(ds.objects):
        key = f"{s}/{o}"
        if viewlist is not None and key not in viewlist:
            raise DataError(key, "object is not in the viewlist (every test object must be listed)")
        obj = ds[i]
        src = viewlist[key] if viewlist is not None else [0]
        views = [v for v in range(obj["images"].shape[0]) if v not in src]
        preds = render_views(model, obj, src, views)
        folder = Path(out_dir) / f"{s}_{o}"
        for v, p in zip(views, preds):
            write_image(folder / f"{v:06d}.png", to_uint8(p, rounding="floor", chw=True))
        atomic_write_text(folder / SOURCES_FILE, " ".join(map(str, src)) + "\n")
        objects[key] = {"folder": folder.name, "views": views, "sources": list(src)}
        n += 1
    atomic_write_json(manifest, {"complete": True, "objects": objects})
    return n


def read_manifest(out_dir: Path) -> dict[str, dict] | None:
    """{"synset/obj": {"folder", "views", "sources"}} of render_dataset's MANIFEST; None without one (renders
    of another tool); an interrupted render_dataset is a DataError."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return None
    m = read_json(path)
    if not isinstance(m, dict) or not m.get("complete"):
        raise DataError(path, "renders of an interrupted eval_smcl.py run; run it again")
    return m["objects"]


class ObjectMean(Metric):
    """Mean over objects of the mean over each object's views of a per-view score (the official protocol).

    ``update(pred, target)`` takes all evaluated views of ONE object, (V, 3, H, W) in [0, 1].
    """

    full_state_update = False

    def __init__(self, per_view: MeanOfItems, chunk: int | None = None) -> None:
        super().__init__()
        self.per_view, self.chunk = per_view, chunk
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.last_views: Tensor | None = None

    def update(self, pred: Tensor, target: Tensor) -> None:
        step = self.chunk or len(pred)
        s = torch.cat(
            [
                self.per_view.scores(pred[i : i + step], target[i : i + step])
                for i in range(0, len(pred), step)
            ]
        )
        self.last_views = s.detach().double().cpu()
        self.total += s.double().mean()
        self.count += 1

    @property
    def higher_is_better(self) -> bool:  # type: ignore[override]
        return self.per_view.higher_is_better

    def compute(self) -> Tensor:
        return self.total / self.count

    def describe(self) -> str:
        return f"mean over objects of the per-object view mean of {self.per_view.describe()}"


def official_metrics(lpips: bool = True) -> dict[str, ObjectMean]:
    """psnr, ssim (uniform 7x7), ssim_gauss (11x11 Gaussian) and, with `lpips`, LPIPS-VGG; LPIPS is left out
    with a warning when its trunk weights are not fetched."""
    out = {
        "psnr": ObjectMean(PSNR(data_range=1.0)),
        "ssim": ObjectMean(SSIM(data_range=1.0, protocol="uniform", win_size=7)),
        "ssim_gauss": ObjectMean(SSIM(data_range=1.0, protocol="gaussian")),
    }
    if lpips:
        from common.errors import TriVisionError
        from common.metrics.lpips import LPIPS

        try:
            out["lpips"] = ObjectMean(LPIPS(net="vgg"), chunk=LPIPS_CHUNK)
        except TriVisionError as e:  # missing trunk weights: report, keep PSNR/SSIM
            log.warning("LPIPS-VGG unavailable (%s); LPIPS is left out", e)
    return out


class RenderedObjects(torch.utils.data.Dataset):
    """The saved renders of eval_smcl.py beside their ground truth: one item per object, ids "synset/obj".

    A listed object without a render folder, or a ground-truth view without its render, is a DataError
    naming it; with `allow_missing` it is skipped and listed in `missing` (objects) / `missing_views`.
    With render_dataset's MANIFEST in `out_dir`, only the objects and views it lists count as rendered.
    """

    def __init__(
        self, datadir: Path, out_dir: Path, list_name: str = "softras_test", allow_missing: bool = False
    ):
        self.datadir, self.out_dir = Path(datadir), Path(out_dir)
        self.items: list[tuple[str, list[tuple[int, Path, Path]]]] = []
        self.missing: list[str] = []
        self.missing_views: list[str] = []
        manifest = read_manifest(self.out_dir)
        lists = sorted(self.datadir.glob(f"*/{list_name}.lst"))
        if not lists:
            raise DataError(self.datadir, f"no <synset>/{list_name}.lst object lists")
        for lst in lists:
            s = lst.parent.name
            for o in read_object_list(lst):
                folder = self.out_dir / f"{s}_{o}"
                listed = None if manifest is None else manifest.get(f"{s}/{o}")
                if not folder.is_dir() or (manifest is not None and listed is None):
                    self._missing(
                        folder, f"no renders for object {s}/{o}", allow_missing, self.missing, f"{s}/{o}"
                    )
                    continue
                rendered = {int(p.stem): p for p in list_images(folder) if p.stem.isdigit()}
                if listed is not None:  # this run's renders only
                    rendered = {v: p for v, p in rendered.items() if v in set(listed["views"])}
                gts = {
                    int(g.stem): g for g in list_images(self.datadir / s / o / "image") if g.stem.isdigit()
                }
                sources = _source_views(folder, sorted(gts), rendered)
                pairs = []
                for v, gp in sorted(gts.items()):
                    if v in rendered:
                        pairs.append((v, gp, rendered[v]))
                    elif v not in sources:
                        self._missing(folder / f"{v:06d}.png", f"render of view {v} of {s}/{o} is missing",
                                      allow_missing, self.missing_views, f"{s}/{o}/{v}")  # fmt: skip
                if not pairs:
                    self._missing(
                        folder, f"no rendered view of {s}/{o}", allow_missing, self.missing, f"{s}/{o}"
                    )
                    continue
                self.items.append((f"{s}/{o}", pairs))
        if not self.items:
            raise DataError(self.out_dir, f"no rendered objects matching {self.datadir}/*/{list_name}.lst")

    @staticmethod
    def _missing(path: Path, why: str, allow: bool, into: list[str], key: str) -> None:
        if not allow:
            raise DataError(path, why + " (--allow-missing skips it and counts it in the report)")
        log.warning("%s: %s; skipped", path, why)
        into.append(key)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        key, pairs = self.items[i]
        gt = torch.stack([torch.from_numpy(load_rgb(g)).permute(2, 0, 1) for _, g, _ in pairs]).double()
        pred = torch.stack([torch.from_numpy(load_rgb(p)).permute(2, 0, 1) for _, _, p in pairs]).double()
        return {"id": key, "views": [v for v, _, _ in pairs], "pred": pred, "gt": gt}


SOURCES_FILE = "sources.txt"  # written by render_dataset: the source views of the object, not rendered
MANIFEST = "renders.json"  # written by render_dataset: exactly what it rendered


def _source_views(folder: Path, gt_views: list[int], rendered: dict[int, Path]) -> set[int]:
    """The views eval_smcl.py did not render because they were the sources: from sources.txt, else (renders
    of other tools, one source view per object as pixelNeRF's viewlists) the single view without a render."""
    f = folder / SOURCES_FILE
    if f.is_file():
        try:
            return {int(v) for v in f.read_text().split()}
        except ValueError as e:
            raise DataError(f, "expected whitespace-separated view numbers") from e
    absent = [v for v in gt_views if v not in rendered]
    return set(absent) if len(absent) == 1 else set()


class NoReferenceMean(MeanMetric):
    """Mean over objects of a precomputed no-reference score (e.g. NVS-SQA JOD; higher is better)."""

    higher_is_better = True

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def describe(self) -> str:
        return self.what


class _Scorer(nn.Module):
    """validation_step over RenderedObjects items: one report row per object, per-view rows kept aside."""

    def __init__(self, nr_scores: dict[str, dict[str, float]] | None = None) -> None:
        super().__init__()
        self.views: list[dict] = []
        self.nr_scores = nr_scores or {}

    def validation_step(self, batch: dict, metrics) -> list[dict]:
        row: dict = {"id": batch["id"], "views": len(batch["views"])}
        for name, m in metrics.items():
            if isinstance(m, NoReferenceMean):
                v = self.nr_scores[batch["id"]][name]
                m.update(torch.tensor(v, dtype=torch.float64))
                row[name] = float(v)
                continue
            m.update(batch["pred"], batch["gt"])
            row[name] = float(m.last_views.mean())
            for v, s in zip(batch["views"], m.last_views.tolist()):
                self.views.append({"id": f"{batch['id']}/{v}", "metric": name, "value": s})
        return [row]


def calc_metrics(
    datadir: Path,
    out_dir: Path,
    list_name: str = "softras_test",
    lpips: bool = True,
    *,
    allow_missing: bool = False,
    report_path: Path | None = None,
    model_info: dict | None = None,
    extra: dict | None = None,
    device: str | torch.device = "cpu",
    nr_scores: dict[str, dict[str, float]] | None = None,
    nr_settings: dict[str, str] | None = None,
) -> EvalResult:
    """Official calc_metrics protocol on saved PNGs, through common.evaluation.Evaluator.

    Items: one row per object (its view means; their mean is the aggregate); extra["views"]: per-view
    scores; extra["missing_objects"/"missing_views"]: what `allow_missing` skipped (else it is an error).
    `nr_scores` {object id: {column: value}} (see :func:`no_reference_scores`) adds no-reference columns,
    described by `nr_settings` {column: description}, beside the reference metrics.
    Writes the report (JSON + CSV) to `report_path` when given.
    """
    data = RenderedObjects(datadir, out_dir, list_name, allow_missing)
    metrics: dict[str, Metric] = dict(official_metrics(lpips))
    for col, what in (nr_settings or {}).items():
        metrics[col] = NoReferenceMean(what)
    if nr_scores is not None:
        lost = [d for d, _ in data.items if d not in nr_scores]
        if lost:
            raise DataError(out_dir, f"no no-reference score for objects {lost[:5]}")
    ev = Evaluator(metrics, task=TASK, collate_fn=lambda b: b[0], device=device, progress=False,
                   settings=f"split list {list_name}; 8-bit PNG renders (truncated) vs ground truth; per-object "
                   "view mean, then unweighted mean over objects (pixelNeRF/SMCL calc_metrics)")  # fmt: skip
    scorer = _Scorer(nr_scores)
    blocks = {"missing_objects": data.missing, "missing_views": data.missing_views,
              "objects": len(data), "views_evaluated": sum(len(p) for _, p in data.items)}  # fmt: skip
    res = ev.run(scorer, data, model_info=model_info, extra={**blocks, "views": scorer.views, **(extra or {})},
                 report_path=report_path)  # fmt: skip
    return res


def upscale_for(frames: np.ndarray, min_side: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> repeated by the smallest integer factor that makes both sides >= min_side
    (nearest neighbour: no new detail, only the size a no-reference model accepts)."""
    k = max(1, -(-min_side // min(frames.shape[1:3])))
    return frames if k == 1 else frames.repeat(k, axis=1).repeat(k, axis=2)


def no_reference_scores(
    model: ViewSynthesizer,
    ds: NMRDataset,
    viewlist: dict[str, list[int]] | None,
    out_dir: Path,
    score_frames: Callable[[np.ndarray], float],
    *,
    trajectory_frames: int = 24,
    radius_deg: float = 15.0,
    min_side: int = 1,
) -> dict[str, dict[str, float]]:
    """No-reference scores per object: {"synset/obj": {"nvs_sqa_views": s, "nvs_sqa_trajectory": t}}.

    `nvs_sqa_views` scores the rendered test views (eval_smcl.py's PNGs in `out_dir`) in camera order;
    `nvs_sqa_trajectory` scores a novel orbit of `trajectory_frames` cameras around the source view
    (common.trajectories.orbit_around_pose, `radius_deg`), which has no ground truth. `score_frames` maps
    (T, H, W, 3) uint8 to a score (e.g. NVS-SQA's JOD); frames are upscaled to `min_side` first.
    """
    from common.image_io import read_image
    from common.trajectories import orbit_around_pose
    from smcl.object.render import render_trajectory

    out: dict[str, dict[str, float]] = {}
    manifest = read_manifest(out_dir)
    for i, (s, o) in enumerate(ds.objects):
        key = f"{s}/{o}"
        obj = ds[i]
        src = viewlist[key] if viewlist is not None else [0]
        pngs = [p for p in list_images(Path(out_dir) / f"{s}_{o}") if p.stem.isdigit()]
        if manifest is not None:  # this evaluation's renders only
            pngs = [p for p in pngs if int(p.stem) in set(manifest.get(key, {}).get("views", ()))]
        views = np.stack([read_image(p, mode="rgb", dtype="uint8") for p in pngs])
        path = orbit_around_pose(obj["poses"][src[0]].double(), trajectory_frames, radius_deg=radius_deg)
        _, _, h, w = obj["images"].shape
        traj = render_trajectory(model, obj["images"][src], obj["poses"][src], obj["focal"], path.float(), h, w,
                                 c=obj["c"], near=float(obj["near"]), far=float(obj["far"]))  # fmt: skip
        out[key] = {
            "nvs_sqa_views": float(score_frames(upscale_for(views, min_side))),
            "nvs_sqa_trajectory": float(score_frames(upscale_for(traj, min_side))),
        }
    return out
