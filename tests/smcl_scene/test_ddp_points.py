"""Pruning/growth under torch.distributed (2 gloo processes): every rank makes rank 0's edit."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from smcl.scene.models.rmsa import RMSAConfig
from smcl.scene.models.scene_model import SceneModel, SceneModelConfig

CFG = SceneModelConfig(
    rmsa=RMSAConfig(hidden=16, d_model=16, kq_layers=2, v_layers=2),
    unet_width=8,
    select_k=4,
    prune_start=10,
    prune_every=10,
    add_start=10,
    add_every=10,
    add_num=15,
)


def _worker(rank: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(0)
    m = SceneModel(CFG, torch.randn(60, 3))
    torch.manual_seed(100 + rank)  # ranks disagree on the scores and on the growth randomness
    with torch.no_grad():
        m.points_influ_scores[:, 0] = torch.randn(60)
    m.update_points(10)  # prune (score > 0) then add 15
    gathered = [torch.zeros(0)] * 2
    dist.all_gather_object(gathered, m.points.detach())
    if rank == 0:
        torch.save(gathered, out_file)
    dist.destroy_process_group()


def test_prune_and_growth_identical_on_all_ranks(tmp_path):
    out = tmp_path / "points.pt"
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    p0, p1 = torch.load(out, weights_only=True)
    torch.manual_seed(100)
    kept = int((torch.randn(60) > 0).sum())  # rank 0's decision
    assert p0.shape == (kept + 15, 3)
    assert torch.equal(p0, p1)
