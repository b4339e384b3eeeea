"""Graph contrastive pretraining of the point encoder on one prepared cloud; writes its state dict."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from common.runtime import keep_freed_memory
from smcl.scene.models.point_gcl import PointGCLConfig, pretrain_point_gcl
from smcl.scene.points import read_points


def main() -> None:
    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("points", type=Path, help="prepared cloud (.npy/.pcd/.ply)")
    p.add_argument("out", type=Path, help="output .pth (state dict)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64, help="official: 2 (one negative)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--blocks", choices=["knn", "file_chunks"], default="knn")
    p.add_argument("--edge-mode", choices=["symmetric", "compat_lower_triangular"], default="symmetric")
    p.add_argument("--max-blocks", type=int, default=None, help="random subset of blocks per run")
    a = p.parse_args()
    pts = torch.from_numpy(read_points(a.points)).float()
    cfg = PointGCLConfig(blocks=a.blocks, edge_mode=a.edge_mode)
    model, hist = pretrain_point_gcl(
        pts, cfg, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, max_blocks=a.max_blocks
    )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), a.out)
    print(f"loss {hist[0]:.4f} -> {hist[-1]:.4f}; wrote {a.out}")


if __name__ == "__main__":
    main()
