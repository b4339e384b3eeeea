"""Test helper: tiny analytic NMR-layout objects (mirror-symmetric ellipsoids) without the common renderer.

Each object is an ellipsoid with a colour pattern symmetric under y -> -y (in the model's z-up world),
ray-traced from 24 azimuths (15 degree steps) at 30 degree elevation, white background.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from smcl.object.data.nmr import pixelnerf_rays, write_metadata, write_nmr_object

NMR_RADIUS = 2.732


def orbit_poses(n_views: int = 24, elevation_deg: float = 30.0, radius: float = NMR_RADIUS) -> torch.Tensor:
    """Camera->world (OpenGL axes, z-up world) looking at the origin; view k at azimuth 15k degrees."""
    poses = []
    el = math.radians(elevation_deg)
    for k in range(n_views):
        az = 2 * math.pi * k / n_views
        pos = torch.tensor(
            [
                radius * math.cos(el) * math.cos(az),
                radius * math.cos(el) * math.sin(az),
                radius * math.sin(el),
            ]
        )
        back = pos / pos.norm()  # camera +z points away from the target
        right = torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0]), back)
        right = right / right.norm()
        up = torch.linalg.cross(back, right)
        m = torch.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, back, pos
        poses.append(m)
    return torch.stack(poses)


def render_ellipsoid(
    poses: torch.Tensor, focal: float, size: int, axes: tuple[float, float, float], colors: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Ray-trace an origin-centred ellipsoid; colour from the normal, symmetric under y -> -y only."""
    rays = pixelnerf_rays(poses, focal, torch.tensor([size / 2, size / 2]), size, size, 1.2, 4.0).double()
    a = torch.tensor(axes, dtype=torch.float64)
    o, d = rays[..., :3] / a, rays[..., 3:6] / a
    qa, qb, qc = (d * d).sum(-1), 2 * (o * d).sum(-1), (o * o).sum(-1) - 1
    disc = qb * qb - 4 * qa * qc
    hit = disc > 0
    t = (-qb - disc.clamp(min=0).sqrt()) / (2 * qa)
    n = (o + t[..., None] * d) / a
    n = n / n.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    w = n.abs().numpy() ** 2
    col = np.einsum("...k,kc->...c", w, colors[:3])
    front = np.clip(n[..., 0].numpy(), 0, 1)[..., None]  # breaks the x -> -x symmetry, keeps y -> -y
    col = (1 - front) * col + front * colors[3]
    shade = 0.6 + 0.4 * np.clip(n[..., 2].numpy(), 0, 1)[..., None]
    img = np.where(hit.numpy()[..., None], np.clip(col * shade, 0, 1), 1.0)
    return img.astype(np.float32), hit.numpy()


def write_ellipsoid_nmr(
    root: Path, n_objects: int, image_size: int = 64, seed: int = 0, synset: str = "03211117"
) -> Path:
    """NMR root with `n_objects` objects, split 60/20/20 into softras_{train,val,test}.lst."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    poses = orbit_poses()
    focal = image_size / 2 / math.tan(math.radians(15))  # 30 degree field of view
    names = []
    for i in range(n_objects):
        axes = tuple(rng.uniform(0.35, 0.8, size=3))
        colors = rng.uniform(0.05, 0.95, size=(4, 3))
        img, mask = render_ellipsoid(poses, focal, image_size, axes, colors)
        name = f"obj{i:04d}"
        write_nmr_object(root / synset / name, img, poses.numpy(), focal, mask)
        names.append(name)
    n_tr = max(1, int(round(0.6 * n_objects)))
    n_va = max(0, (n_objects - n_tr) // 2)
    splits = {
        "train": names[:n_tr],
        "val": names[n_tr : n_tr + n_va],
        "test": names[n_tr + n_va :] or names[-1:],
    }
    for s, objs in splits.items():
        (root / synset / f"softras_{s}.lst").write_text("\n".join(objs) + "\n")
    write_metadata(root, {synset: "display,video display"})
    return root
