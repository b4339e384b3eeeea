"""View synthesizer: positional encoding, ResnetFC, rendering math vs hand-computed cases, key layout."""

from __future__ import annotations

import math

import pytest
import torch

from smcl.object.models.view_synthesizer import (
    OFFICIAL_SYNTH_ABSENT_PREFIXES,
    PositionalEncoding,
    ResnetBlockFC,
    ResnetFC,
    ViewSynthesizer,
    ViewSynthesizerConfig,
    composite,
    importance_samples,
    remap_official_smcl_net,
    stratified_samples,
)

TINY = ViewSynthesizerConfig(d_hidden=32, n_coarse=8, n_fine=6, n_fine_depth=2)


def test_positional_encoding_frequency_major_order() -> None:
    pe = PositionalEncoding()
    x = torch.tensor([[0.1, -0.2, 0.3]])
    out = pe(x)[0]
    assert out.shape == (39,) and pe.d_out == 39
    expected = [0.1, -0.2, 0.3]
    for k in range(6):
        f = 1.5 * 2**k
        expected += [math.sin(f * v) for v in (0.1, -0.2, 0.3)] + [math.cos(f * v) for v in (0.1, -0.2, 0.3)]
    torch.testing.assert_close(out, torch.tensor(expected), atol=1e-6, rtol=1e-5)


def test_resnet_block_starts_as_identity_and_dims() -> None:
    h = torch.randn(5, 512)
    torch.testing.assert_close(ResnetBlockFC(512)(h), h)
    m = ViewSynthesizer(ViewSynthesizerConfig())
    assert m.mlp_coarse.lin_in.in_features == 42 and len(m.mlp_coarse.lin_z) == 3
    assert m.mlp_coarse.lin_in.in_features + m.mlp_coarse.lin_z[0].in_features == 170
    assert len(m.mlp_fine.blocks) == 5 and m.mlp_fine.blocks[0].fc_0.out_features == 512


def test_composite_hand_computed() -> None:
    t = torch.tensor([1.0, 2.0, 3.0])
    sigma = torch.tensor([0.0, math.log(2.0), 1e9])  # alphas: 0, 1/2, ~1 (delta of last = far - 3 = 1)
    rgb = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    out = composite(rgb, sigma, t, torch.tensor(4.0), white_bkgd=True)
    torch.testing.assert_close(out["weights"], torch.tensor([0.0, 0.5, 0.5]), atol=1e-6, rtol=0)
    torch.testing.assert_close(out["rgb"], torch.tensor([0.0, 0.5, 0.5]), atol=1e-6, rtol=0)
    assert math.isclose(float(out["depth"]), 2.5, rel_tol=1e-6)
    empty = composite(rgb, torch.zeros(3), t, torch.tensor(4.0), white_bkgd=True)
    torch.testing.assert_close(empty["rgb"], torch.ones(3))  # white background fills transparency


def test_stratified_and_importance_sampling() -> None:
    near, far = torch.full((1000, 1), 1.2), torch.full((1000, 1), 4.0)
    t = stratified_samples(near, far, 64)
    bins = torch.floor((t - 1.2) / (2.8 / 64))
    assert torch.equal(bins[0], torch.arange(64.0))  # exactly one sample per bin
    w = torch.zeros(1000, 64)
    w[:, 10] = 1.0
    s = importance_samples(w, near, far, 112)
    lo, hi = 1.2 + 2.8 * 10 / 64, 1.2 + 2.8 * 11 / 64
    inside = ((s >= lo) & (s <= hi)).float().mean()
    assert inside > 0.98  # pdf = w + 1e-5 puts ~99.94 % of the mass in bin 10


def _rays(sb: int, n: int) -> torch.Tensor:
    o = torch.tensor([0.0, -2.5, 0.5]).expand(sb, n, 3)
    d = torch.nn.functional.normalize(torch.tensor([0.0, 1.0, -0.2]) + 0.1 * torch.randn(sb, n, 3), dim=-1)
    return torch.cat([o, d, torch.full((sb, n, 1), 1.2), torch.full((sb, n, 1), 4.0)], dim=-1)


def test_chunked_render_matches_single_pass_and_sample_counts() -> None:
    torch.manual_seed(0)
    m = ViewSynthesizer(TINY).eval()
    cond = m.encode(torch.rand(2, 1, 3, 64, 64), torch.eye(4).expand(2, 1, 4, 4))
    rays = _rays(2, 40)
    full = m.render_rays(cond, rays)
    small = ViewSynthesizer(ViewSynthesizerConfig(**{**TINY.__dict__, "chunk_points": 2 * 16 * 5}))
    small.load_state_dict(m.state_dict())
    chunked = small.eval().render_chunked(cond, rays)
    torch.testing.assert_close(chunked["rgb_coarse"], full["rgb_coarse"])  # coarse is deterministic in eval
    assert chunked["rgb_fine"].shape == (2, 40, 3)


def test_global_latent_computed_once_per_object() -> None:
    """Same latent for every point: two objects with identical images give identical fields."""
    m = ViewSynthesizer(TINY).eval()
    img = torch.rand(1, 1, 3, 64, 64).expand(2, 1, 3, 64, 64)
    cond = m.encode(img, torch.eye(4).expand(2, 1, 4, 4))
    assert cond.latent.shape == (2, 1, 128)
    pts = torch.randn(1, 7, 3).expand(2, 7, 3)
    out = m.field(cond, pts, torch.nn.functional.normalize(pts, dim=-1), fine=False)
    torch.testing.assert_close(out[0], out[1])


def test_cached_encoder_features_give_the_same_conditioning_and_loss() -> None:
    """encode(..., src_features=encoder.features(images)) (the demo's cache for a frozen encoder) matches
    encoding the images, and training_step uses the cached features when the batch has them."""
    torch.manual_seed(0)
    m = ViewSynthesizer(TINY).eval()
    imgs, poses = torch.rand(2, 1, 3, 64, 64), torch.eye(4).expand(2, 1, 4, 4)
    feats = m.encoder.features(imgs.flatten(0, 1)).view(2, 1, -1)
    assert feats.shape == (2, 1, 2048)
    a, b = m.encode(imgs, poses), m.encode(imgs * 0, poses, src_features=feats)
    torch.testing.assert_close(b.latent, a.latent)
    torch.testing.assert_close(b.rot, a.rot)
    batch = {"src_images": imgs, "src_poses": poses, "rays": _rays(2, 8), "rgb": torch.rand(2, 8, 3)}
    torch.manual_seed(1)
    ref = m.training_step(batch)
    torch.manual_seed(1)
    cached = m.training_step({**batch, "src_images": imgs * 0, "src_features": feats})
    torch.testing.assert_close(cached["rgb_fine"], ref["rgb_fine"])


def _official_synth_keys() -> dict[str, tuple[int, ...]]:
    """Non-encoder key/shape list of the official SMCL_latest, from spec section 7.2."""
    keys = {"encoder.fc.weight": (128, 2048), "encoder.fc.bias": (128,), "code._freqs": (1, 12, 1),
            "code._phases": (1, 12, 1)}  # fmt: skip
    for mlp in ("mlp_coarse", "mlp_fine"):
        keys |= {f"{mlp}.lin_in.weight": (512, 42), f"{mlp}.lin_in.bias": (512,)}
        keys |= {f"{mlp}.lin_out.weight": (4, 512), f"{mlp}.lin_out.bias": (4,)}
        for b in range(5):
            for fc in ("fc_0", "fc_1"):
                keys |= {f"{mlp}.blocks.{b}.{fc}.weight": (512, 512), f"{mlp}.blocks.{b}.{fc}.bias": (512,)}
        for z in range(3):
            keys |= {f"{mlp}.lin_z.{z}.weight": (512, 128), f"{mlp}.lin_z.{z}.bias": (512,)}
    return keys


def test_official_synthesizer_keys_load(tmp_path) -> None:
    import smcl
    from common.checkpoint import CheckpointMismatchError
    from common.weights import WeightsError

    m = ViewSynthesizer(ViewSynthesizerConfig(encoder=ViewSynthesizerConfig().encoder))
    ours = {k: tuple(v.shape) for k, v in m.state_dict().items() if not k.startswith("encoder.model.")}
    assert ours == _official_synth_keys()
    # a fake official file: our tensors without SE keys (a plain SMCLNet state_dict, spec 7.2)
    sd = {k: v for k, v in m.state_dict().items() if not k.startswith(OFFICIAL_SYNTH_ABSENT_PREFIXES)}
    assert remap_official_smcl_net(sd).keys() == sd.keys()
    torch.save(sd, tmp_path / "SMCL_latest")
    fresh = smcl.build_model("smcl_view_synthesizer", "official", weights_path=tmp_path / "SMCL_latest")
    assert fresh.cfg.encoder.se_mode == "random_per_call" and fresh.cfg.input_range == "signed"
    torch.testing.assert_close(fresh.mlp_fine.lin_out.weight, m.mlp_fine.lin_out.weight)
    del sd["mlp_fine.lin_out.bias"]
    torch.save(sd, tmp_path / "broken")
    with pytest.raises((CheckpointMismatchError, WeightsError), match="231|mlp_fine.lin_out.bias"):
        smcl.build_model("smcl_view_synthesizer", "official", weights_path=tmp_path / "broken")
    with pytest.raises(WeightsError, match="does not exist"):
        smcl.build_model("smcl_view_synthesizer", "official", weights_path=tmp_path / "absent")
    with pytest.raises(WeightsError, match="pass its path"):  # never random weights silently
        smcl.build_model("smcl_view_synthesizer", "official")


def _close(a: torch.Tensor, b: torch.Tensor, rel: float, what: str = "", scale: float = 0.0) -> None:
    """|a - b| <= rel max(|b|, scale) (Frobenius norms): the two forms sum in different orders (and oneDNN
    may use AMX or AVX512 kernels), so single elements of long sums differ by more than their own ulps.
    `scale`: the size of the whole gradient, for parameters whose own gradient is a cancelling sum ~0."""
    err, ref = (a.double() - b.double()).norm().item(), b.double().norm().item()
    assert err <= rel * max(ref, scale) + 1e-12, (what, err, ref)


def _mlp_pair(width: int = 48, tile: int = 37) -> ViewSynthesizer:
    torch.manual_seed(3)
    m = ViewSynthesizer(ViewSynthesizerConfig(d_hidden=width, mlp_tile=tile))
    for mod in m.modules():  # leave the identity start so every block contributes
        if isinstance(mod, ResnetBlockFC):
            torch.nn.init.normal_(mod.fc_1.weight, std=0.1)
            torch.nn.init.normal_(mod.fc_1.bias, std=0.1)
    return m


def test_fast_mlp_matches_official_form_forward_and_gradients() -> None:
    """Tiled fused path (per-object latent, hand-written backward) == official per-sample-latent form."""
    torch.manual_seed(3)
    mlp = ResnetFC(42, 128, 48, 5, 3)
    mlp.tile = 37
    for blk in mlp.blocks:  # leave the identity start so every block contributes
        torch.nn.init.normal_(blk.fc_1.weight, std=0.1)
        torch.nn.init.normal_(blk.fc_1.bias, std=0.1)
    x, z = torch.randn(3, 1, 101, 42, requires_grad=True), torch.randn(3, 1, 128)
    w = torch.randn(3, 101, 4)
    res = {}
    for impl in ("reference", "fast"):
        mlp.impl = impl
        mlp.zero_grad()
        x.grad = None
        out = mlp(x, z)
        (out * w).sum().backward()
        res[impl] = (out.detach(), x.grad.clone(), {n: p.grad.clone() for n, p in mlp.named_parameters()})
    _close(res["fast"][0], res["reference"][0], 1e-5)
    _close(res["fast"][1], res["reference"][1], 1e-5)
    for name, g in res["reference"][2].items():  # sums over all 303 sample rows: norm-scaled
        _close(res["fast"][2][name], g, 1e-4, name)
    with torch.inference_mode():
        _close(mlp(x, z), res["reference"][0], 1e-5)
    # several source views fall back to the broadcast autograd form, still equal to the official form
    x2, z2 = torch.randn(2, 3, 20, 42), torch.randn(2, 3, 128)
    mlp.impl = "reference"
    ref = mlp(x2, z2)
    mlp.impl = "fast"
    _close(mlp(x2, z2), ref, 1e-5)


def test_fast_render_and_training_step_match_reference() -> None:
    m = _mlp_pair(width=32, tile=64)
    m.cfg = ViewSynthesizerConfig(**{**m.cfg.__dict__, "n_coarse": 8, "n_fine": 6, "n_fine_depth": 2})
    cond = m.encode(torch.rand(2, 1, 3, 64, 64), torch.eye(4).expand(2, 1, 4, 4))
    rays = _rays(2, 30)
    out = {}
    for impl in ("reference", "fast"):
        m.set_mlp_impl(impl)
        torch.manual_seed(5)
        out[impl] = m.eval().render_chunked(cond, rays)
    for k in out["reference"]:
        _close(out["fast"][k], out["reference"][k], 1e-4, k)
    batch = {"src_images": torch.rand(2, 1, 3, 64, 64), "src_poses": torch.eye(4).expand(2, 1, 4, 4),
             "rays": rays, "rgb": torch.rand(2, 30, 3)}  # fmt: skip
    grads = {}
    for impl in ("reference", "fast"):
        m.set_mlp_impl(impl)
        m.train().zero_grad()
        torch.manual_seed(6)
        sum(m.training_step(batch).values()).backward()
        grads[impl] = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    assert grads["fast"].keys() == grads["reference"].keys()
    total = sum(g.double().norm() ** 2 for g in grads["reference"].values()).sqrt().item()
    for name, g in grads["reference"].items():
        _close(grads["fast"][name], g, 1e-4, name, scale=1e-2 * total)


def test_bf16_option_is_close_and_opt_in() -> None:
    m = _mlp_pair()
    assert m.mlp_fine.compute_dtype == torch.float32  # fp32 by default
    x, z = torch.randn(2, 1, 80, 42), torch.randn(2, 1, 128)
    ref = m.mlp_fine(x, z)
    m.set_mlp_impl("fast", dtype="bfloat16")
    out = m.mlp_fine(x, z)
    assert out.dtype == torch.float32 and not torch.equal(out, ref)
    assert (out - ref).norm() / ref.norm() < 3e-2
    with pytest.raises(ValueError, match="mlp_dtype"):
        m.set_mlp_impl("fast", dtype="float16")
