"""SMCL synthetic-setting evaluation (spec smcl.md 5.1): render non-source views, 8-bit PNG protocol.

Official protocol (calc_metrics): GT PNG and rendered 8-bit PNG /255, PSNR (data_range 1), SSIM with a
uniform 7x7 window and sample covariance, LPIPS-VGG on [-1,1]; mean over views per object, then an
unweighted mean over objects. We also report the standard Gaussian-window SSIM.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from common.errors import DataError
from common.metrics.image import psnr, ssim
from smcl.object.data.nmr import NMRDataset, load_rgb, pixelnerf_rays, read_object_list
from smcl.object.models.view_synthesizer import ViewSynthesizer

log = logging.getLogger(__name__)


def read_viewlist(path: Path) -> dict[str, list[int]]:
    """pixelNeRF viewlist: '<synset> <obj> <src> [more]' per line -> {"synset/obj": [src, ...]}."""
    if not Path(path).is_file():
        raise DataError(path, "viewlist file is missing")
    out = {}
    for n, ln in enumerate(Path(path).read_text().splitlines(), start=1):
        parts = ln.split()
        if not parts:
            continue
        if len(parts) < 3:
            raise DataError(f"{path}:{n}", "expected '<synset> <object> <source view> ...'")
        out[f"{parts[0]}/{parts[1]}"] = [int(v) for v in parts[2:]]
    return out


def to_uint8(x: Tensor) -> np.ndarray:
    """(3,H,W) float -> HxWx3 uint8 by truncation (x*255).astype(uint8), as the official eval.py."""
    return (x.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)


@torch.no_grad()
def render_views(model: ViewSynthesizer, obj: dict[str, Tensor], src: list[int], views: list[int]) -> Tensor:
    """Fine RGB of `views` rendered from source views `src`: (len(views), 3, H, W) in [0,1]."""
    model.eval()
    imgs, poses = obj["images"], obj["poses"]
    dev = next(model.parameters()).device
    _, _, h, w = imgs.shape
    cond = model.encode(imgs[src][None].to(dev), poses[src][None].to(dev))
    out = []
    for v in views:
        rays = pixelnerf_rays(poses[v], obj["focal"], obj["c"], h, w, float(obj["near"]), float(obj["far"]))
        res = model.render_chunked(cond, rays.reshape(1, -1, 8).to(dev))
        rgb = res.get("rgb_fine", res["rgb_coarse"])
        out.append(rgb.view(h, w, 3).permute(2, 0, 1).clamp(0, 1).cpu())
    return torch.stack(out)


def render_dataset(
    model: ViewSynthesizer, ds: NMRDataset, viewlist: dict[str, list[int]], out_dir: Path
) -> int:
    """Write <out>/<synset>_<obj>/<view:06d>.png for every non-source view of every listed object."""
    n = 0
    for i, (s, o) in enumerate(ds.objects):
        key = f"{s}/{o}"
        if key not in viewlist:
            raise DataError(key, "object is not in the viewlist (every test object must be listed)")
        obj = ds[i]
        src = viewlist[key]
        views = [v for v in range(obj["images"].shape[0]) if v not in src]
        preds = render_views(model, obj, src, views)
        folder = Path(out_dir) / f"{s}_{o}"
        folder.mkdir(parents=True, exist_ok=True)
        for v, p in zip(views, preds):
            Image.fromarray(to_uint8(p)).save(folder / f"{v:06d}.png")
        n += 1
    return n


def _load_lpips(enabled: bool):
    if not enabled:
        return None
    try:
        from common.metrics.lpips import LPIPSMetric

        return LPIPSMetric(net="vgg").eval()
    except Exception as e:  # missing trunk weights: report, keep PSNR/SSIM
        log.warning("LPIPS-VGG unavailable (%s); LPIPS is left out", e)
        return None


@torch.no_grad()
def calc_metrics(datadir: Path, out_dir: Path, list_name: str = "softras_test", lpips: bool = True) -> dict:
    """Official calc_metrics protocol on saved PNGs; writes per-object metrics.txt and all_metrics.txt."""
    datadir, out_dir = Path(datadir), Path(out_dir)
    lp = _load_lpips(lpips)
    rows = {}
    for lst in sorted(datadir.glob(f"*/{list_name}.lst")):
        s = lst.parent.name
        for o in read_object_list(lst):
            folder = out_dir / f"{s}_{o}"
            if not folder.is_dir():
                continue
            gts, preds = [], []
            for gp in sorted((datadir / s / o / "image").glob("*.png")):
                pp = folder / f"{int(gp.stem):06d}.png"
                if pp.is_file():
                    gts.append(torch.from_numpy(load_rgb(gp)).permute(2, 0, 1))
                    preds.append(torch.from_numpy(load_rgb(pp)).permute(2, 0, 1))
            if not gts:
                continue
            g, p = torch.stack(gts).double(), torch.stack(preds).double()
            r = {
                "psnr": psnr(p, g).mean().item(),
                "ssim": ssim(p, g, window="uniform", win_size=7).mean().item(),
                "ssim_gauss": ssim(p, g, window="gaussian").mean().item(),
            }
            if lp is not None:
                r["lpips"] = (
                    torch.cat(
                        [lp(p[i : i + 32].float(), g[i : i + 32].float()) for i in range(0, len(p), 32)]
                    )
                    .mean()
                    .item()
                )
            rows[f"{s}/{o}"] = r
            (folder / "metrics.txt").write_text(" ".join(f"{k} {v:.6f}" for k, v in r.items()) + "\n")
    if not rows:
        raise DataError(out_dir, f"no rendered objects matching {datadir}/*/{list_name}.lst")
    keys = list(next(iter(rows.values())))
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in keys}
    table = ["object " + " ".join(keys)] + [
        f"{o} " + " ".join(f"{r[k]:.4f}" for k in keys) for o, r in rows.items()
    ]
    table.append("mean " + " ".join(f"{mean[k]:.4f}" for k in keys))
    (out_dir / "all_metrics.txt").write_text("\n".join(table) + "\n")
    return {"per_object": rows, "mean": mean}
