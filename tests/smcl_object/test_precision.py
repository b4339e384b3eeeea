"""The fused ResnetFC under autocast (train.precision bf16/fp16) and its device-aware tile size (issue 15 #2, #9).

Before the fix the tiled kernel wrote autocast's bf16 GEMM outputs into fp32 `out=` buffers and stopped with
"Found dtype Float but expected BFloat16" at the first training step.
"""

from __future__ import annotations

from pathlib import Path

import torch

from common.engine import TrainConfig, Trainer
from smcl.object.models.view_synthesizer import ViewSynthesizer, ViewSynthesizerConfig, mlp_tile_rows

CFG = ViewSynthesizerConfig(image_size=32, d_hidden=32, n_coarse=6, n_fine=4, n_fine_depth=2)


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sb, n = 2, 24
    origin = torch.tensor([0.0, 0.0, 2.5]) + 0.1 * torch.randn(sb, n, 3, generator=g)
    d = torch.tensor([0.0, 0.0, -1.0]) + 0.2 * torch.randn(sb, n, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    near_far = torch.tensor([1.0, 4.0]).expand(sb, n, 2)
    return {
        "src_images": torch.rand(sb, 1, 3, 32, 32, generator=g),
        "src_poses": torch.eye(4).expand(sb, 1, 4, 4).clone(),
        "rays": torch.cat([origin, d, near_far], dim=-1),
        "rgb": torch.rand(sb, n, 3, generator=g),
    }


def _losses(impl: str, autocast: bool = True) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = ViewSynthesizer(CFG)
    model.set_mlp_impl(impl)
    for p in model.parameters():  # non-trivial residual branches (fc_1 starts at zero)
        if p.ndim == 2:
            p.data.add_(0.05 * torch.randn_like(p))
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        losses = model.training_step(_batch())
    sum(losses.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if n.startswith("mlp_")}
    return {k: v.item() for k, v in losses.items()}, grads


def test_fast_mlp_runs_under_cpu_bf16_autocast_as_accurately_as_the_reference() -> None:
    """Under bf16 autocast the fast path runs, and its distance to the fp32 result is of the order of
    autocast's own reference form (the two round at different points, so they are compared through fp32)."""
    exact, g32 = _losses("reference", autocast=False)
    fast, g_fast = _losses("fast")
    ref, g_ref = _losses("reference")
    for k in exact:
        assert abs(fast[k] - exact[k]) <= 2 * abs(ref[k] - exact[k]) + 1e-3 * abs(exact[k]), k
    err_fast = sum((g_fast[n] - g).norm() ** 2 for n, g in g32.items()) ** 0.5
    err_ref = sum((g_ref[n] - g).norm() ** 2 for n, g in g32.items()) ** 0.5
    total = sum(g.norm() ** 2 for g in g32.values()) ** 0.5
    assert err_fast <= 2 * err_ref + 1e-3 * total, (err_fast, err_ref, total)
    assert err_fast <= 0.5 * total  # bf16 (8-bit mantissa) gradients of a small random model


def test_trainer_bf16_precision_trains_the_fast_mlp(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ViewSynthesizer(CFG)
    cfg = TrainConfig(max_steps=3, lr=1e-3, precision="bf16", log_every=1000, tensorboard=False,
                      progress=False, out_dir=str(tmp_path))  # fmt: skip
    before = model.mlp_fine.lin_in.weight.detach().clone()
    trained = Trainer(cfg, model, lambda step: _batch(step)).fit()
    after = trained.mlp_fine.lin_in.weight.detach()
    assert torch.isfinite(after).all() and not torch.equal(before, after)
    assert after.dtype == torch.float32  # autocast leaves the parameters in fp32


def test_tile_rows_are_device_aware() -> None:
    assert mlp_tile_rows("cpu", 512) == 2048  # 4 MB fp32 activation tiles, the CPU bench's best
    assert mlp_tile_rows("cpu", 8192) == 256
    assert mlp_tile_rows(torch.device("cuda", 0), 512) >= 2**31  # one tile per object on a GPU
    assert mlp_tile_rows("meta", 64) >= 2**31
    model = ViewSynthesizer(CFG)
    assert model.mlp_fine.tile == 0  # mlp_tile 0: chosen per device at each call
    model.set_mlp_impl("fast", tile=100)
    assert model.mlp_fine.tile == 100 and model.mlp_coarse.tile == 100


def test_one_tile_and_cpu_tiles_give_the_same_render() -> None:
    """The GPU choice (one tile per object) computes what the CPU tiling computes (fp32, norm-scaled)."""
    torch.manual_seed(0)
    model = ViewSynthesizer(CFG).eval()
    b = _batch()
    cond = model.encode(b["src_images"], b["src_poses"])
    outs = []
    for tile in (7, mlp_tile_rows("cuda", 32)):
        model.set_mlp_impl("fast", tile=tile)
        torch.manual_seed(2)
        outs.append(model.render_chunked(cond, b["rays"])["rgb_fine"])
    assert (outs[0] - outs[1]).norm() <= 1e-5 * outs[1].norm()
