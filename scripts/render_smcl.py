"""Render a novel camera path with a trained SMCL model and score it without a reference (NVS-SQA).

    python scripts/render_smcl.py --checkpoint RUN/checkpoints/step-X.pth --traj orbit --frames 60 --out orbit.mp4

The level (object or scene) comes from the config stored in the checkpoint. Object level: object
`--index` of the run's evaluation split, conditioned on its view `--source-view`; orbit = the full circle
through the source view, spiral = a small circle around it (`--radius-deg`, pixelNeRF's video path),
interpolate = through the object's dataset views. Scene level: orbit / LLFF spiral / interpolate around
the training cameras (common.trajectories.camera_path), or a nerfstudio camera_path.json
(`--camera-path`, poses in the scene's frame). `--out` ending in .mp4/.mkv/.mov/.avi writes H.264
(browsers play .mp4), .gif a GIF, anything else a folder of frame0000000.png ... (lossless; the
NVS-SQA layout). Frames smaller than NVS-SQA's 69 px are rendered at an integer scale up (the rays
are resampled, not the pixels); `--scale` sets any factor, up or down (0.5: half size). The printed
NVS-SQA score is that of the written file, decoded again
(JOD: 0 = the reference video's quality, higher is better; see `tv-nvs-sqa-app --help`).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from common.cameras import intrinsics_matrix
from common.checkpoint import load_checkpoint, load_state_dict_strict, read_config_from_checkpoint
from common.cli import run_script
from common.config import config_from_checkpoint
from common.distributed import parse_devices
from common.image_io import iter_video_frames, list_images, read_image, write_image
from common.io import check_outputs
from common.runtime import keep_freed_memory
from common.trajectories import camera_path, orbit_around_pose, orbit_through_pose, read_camera_path
from common.viz import save_gif, save_video

MIN_SIDE = 69  # nvs_sqa.frames.MIN_SIDE
VIDEO_EXTS = (".gif", ".mp4", ".avi", ".mov", ".mkv")  # a file output; anything else is a frame folder


def _scale(a: argparse.Namespace, h: int, w: int) -> float:
    return a.scale or max(1, math.ceil(MIN_SIDE / min(h, w)))


def _sized(n: int, s: float) -> int:
    return max(1, round(n * s))


def render_object(a: argparse.Namespace, overrides: list[str], device: torch.device) -> np.ndarray:
    from smcl.object.data.nmr import NMRDataset, NMRDatasetConfig
    from smcl.object.experiment import SynthExperiment
    from smcl.object.models.view_synthesizer import ViewSynthesizer
    from smcl.object.render import render_trajectory

    cfg, _ = config_from_checkpoint(a.checkpoint, SynthExperiment, a.config, overrides)
    model = ViewSynthesizer(cfg.model)
    load_state_dict_strict(model, load_checkpoint(a.checkpoint)["model"], source=str(a.checkpoint))
    model.to(device).eval()
    ds = NMRDataset(
        NMRDatasetConfig(root=cfg.data.root, split=cfg.eval.split, pixel_centers=cfg.data.pixel_centers)
    )
    obj = ds[a.index]
    v = a.source_view
    src = obj["poses"][v]
    if a.traj == "orbit":
        path = orbit_through_pose(src, a.frames, center=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0))
    elif a.traj == "spiral":
        path = orbit_around_pose(src, a.frames, radius_deg=a.radius_deg)
    else:
        path = camera_path(obj["poses"], "interpolate", a.frames, up=(0.0, 0.0, 1.0))
    h, w = obj["images"].shape[-2:]
    s = _scale(a, h, w)
    return render_trajectory(model, obj["images"][v : v + 1], obj["poses"][v : v + 1], obj["focal"] * s, path,
                             _sized(h, s), _sized(w, s), c=obj["c"] * s, near=float(obj["near"]), far=float(obj["far"]))  # fmt: skip


def render_scene(a: argparse.Namespace, overrides: list[str], device: torch.device) -> np.ndarray:
    from smcl.scene.experiment import from_checkpoint, load_scene
    from smcl.scene.render import render_trajectory

    model, cfg = from_checkpoint(a.checkpoint, a.config, overrides)
    model.to(device)
    if a.camera_path is not None:  # nerfstudio camera_path.json, in the scene's own frame
        cp = read_camera_path(a.camera_path)
        s = _scale(a, cp.height, cp.width)
        K = cp.K * torch.tensor([[s], [s], [1.0]])
        h, w = _sized(cp.height, s), _sized(cp.width, s)
        return np.concatenate([render_trajectory(model, cp.c2w[i : i + 1], h, w, K[i], tile=cfg.test_tile)
                               for i in range(len(cp.c2w))])  # fmt: skip
    scene = load_scene(cfg.data, cfg.data.train_split)
    path = camera_path(scene.c2w, a.traj, a.frames)
    h, w = scene.hw
    s = _scale(a, h, w)
    fx, fy = (float(x) * s for x in scene.focal[0])
    hs, ws = _sized(h, s), _sized(w, s)
    K = intrinsics_matrix(fx, fy, ws / 2.0, hs / 2.0)
    return render_trajectory(model, path, hs, ws, K, tile=cfg.test_tile)


def main() -> None:
    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint of train_smcl(_scene).py")
    p.add_argument("--traj", choices=["orbit", "spiral", "interpolate"], default="orbit")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="H.264 video (.mp4/.mkv/.mov/.avi), .gif, or a PNG frame folder",
    )
    p.add_argument("--fps", type=float, default=24.0)
    p.add_argument("-c", "--config", type=Path, default=None, help="YAML overriding the stored config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("-D", "--datadir", default=None, help="data root (default: the run's data.root)")
    p.add_argument("-d", "--devices", default="cpu", help="cpu or one GPU index")
    p.add_argument("--index", type=int, default=0, help="object level: object of the evaluation split")
    p.add_argument("--source-view", type=int, default=0, help="object level: conditioning view")
    p.add_argument("--radius-deg", type=float, default=15.0, help="object level: spiral radius")
    p.add_argument(
        "--camera-path",
        type=Path,
        default=None,
        help="scene level: a nerfstudio camera_path.json (poses in the scene's frame) instead of --traj",
    )
    p.add_argument(
        "--scale", type=float, default=None, help="render at this multiple of the size (0.5: half)"
    )
    p.add_argument("--no-score", action="store_true", help="do not score with NVS-SQA")
    a = p.parse_args()
    if a.scale is not None and not a.scale > 0:
        p.error(f"--scale must be positive, got {a.scale}")
    stored = read_config_from_checkpoint(a.checkpoint)
    is_scene = "points" in stored  # scene configs have a point cloud
    roots = [a.datadir, stored.get("data", {}).get("root")]  # the run's dataset is an input too
    roots += [o.split("=", 1)[1] for o in a.overrides if o.startswith("data.root=")]
    video = a.out.suffix.lower() in VIDEO_EXTS
    check_outputs([a.out] if video else [], [a.checkpoint, *roots], dirs=[] if video else [a.out])
    devs = parse_devices(a.devices)
    device = torch.device("cpu" if devs == "cpu" else f"cuda:{devs[0]}")
    overrides = a.overrides + ([f"data.root={a.datadir}"] if a.datadir else [])
    if not a.no_score:  # loaded before rendering: missing weights stop the run before the work
        from nvs_sqa import NSSQuality

        metric = NSSQuality().to(device)
    frames = (render_scene if is_scene else render_object)(a, overrides, device)
    if a.out.suffix.lower() == ".gif":  # before `video`: a GIF is written by save_gif
        save_gif(list(frames), a.out, fps=a.fps)
    elif video:
        save_video(list(frames), a.out, fps=a.fps)
    else:
        for i, f in enumerate(frames):
            write_image(a.out / f"frame{i:07d}.png", f)
    t, h, w = frames.shape[:3]
    kind = a.camera_path or a.traj
    print(f"{'scene' if is_scene else 'object'} level, {kind}: {t} frames {w}x{h} -> {a.out}")
    if not a.no_score:  # the file as written (codec losses included), not the rendered arrays
        if video:
            written = np.stack(list(iter_video_frames(a.out)))
        else:
            written = np.stack([read_image(p, mode="rgb", dtype="uint8") for p in list_images(a.out)])
        metric.update(torch.from_numpy(written).permute(0, 3, 1, 2))
        jod = metric.compute().item()
        print(
            f"NVS-SQA of {a.out.name}: {jod:.4f} JOD (no reference; 0 = reference quality, higher is better)"
        )


def cli() -> None:
    """Console-script entry point (`tv-render-smcl`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
