"""Official scene checkpoints (spec 7.4): the weights tag names the format ({"<step>": sd}, plain, PAPR),
the architecture is inferred from the shapes, wrong files are strict-load errors; the official
'last chunk tiled' initial point features."""

from __future__ import annotations

import pytest
import torch

from common.checkpoint import CheckpointMismatchError
from common.weights import WeightsError
from smcl.scene.models.point_gcl import PointGCL, PointGCLConfig, compat_last_chunk_tiled_features
from smcl.scene.models.rmsa import RMSAConfig
from smcl.scene.official import OfficialCheckpointError, load_official_scene


def _official_sd(m=50, skip=True, lf=6):
    """Key names and shapes written out from the spec's list (not from our module)."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g) * 0.05  # noqa: E731
    d_k, d_q, d_v = 9 * (1 + 2 * lf), 3 * (1 + 2 * lf), 6 * (1 + 2 * lf) + 64
    sd = {
        "select_k": torch.tensor(20, dtype=torch.int32),
        "points": r(m, 3) * 100,
        "points_influ_scores": r(m, 1),
        "pc_feats": r(m, 64),
        "bkg_feats": torch.ones(1, 3),
        "renderer.inc.double_conv.0.weight": r(128, 32, 3, 3),
        "renderer.inc.double_conv.0.bias": r(128),
        "renderer.down1.maxpool_conv.1.double_conv.0.weight": r(256, 128, 3, 3),
        "renderer.down1.maxpool_conv.1.double_conv.0.bias": r(256),
        "renderer.down2.maxpool_conv.1.double_conv.0.weight": r(512, 256, 3, 3),
        "renderer.down2.maxpool_conv.1.double_conv.0.bias": r(512),
        "renderer.up1.up.weight": r(512, 256, 2, 2),
        "renderer.up1.up.bias": r(256),
        "renderer.up1.conv.double_conv.0.weight": r(256, 512, 3, 3),
        "renderer.up1.conv.double_conv.0.bias": r(256),
        "renderer.up2.up.weight": r(256, 128, 2, 2),
        "renderer.up2.up.bias": r(128),
        "renderer.up2.conv.double_conv.0.weight": r(128, 256, 3, 3),
        "renderer.up2.conv.double_conv.0.bias": r(128),
        "renderer.outc.conv.weight": r(3, 128, 1, 1),
        "renderer.outc.conv.bias": r(3),
        "proximity_attn.attention_layer.w_k.weight": r(256, 256),
        "proximity_attn.attention_layer.w_k.bias": r(256),
        "proximity_attn.attention_layer.w_q.weight": r(256, 256),
        "proximity_attn.attention_layer.w_q.bias": r(256),
    }
    for name, d_in in (("embed_k", d_k), ("embed_q", d_q)):
        p = f"proximity_attn.embed.{name}."
        sd[p + "innorm.a_2"], sd[p + "innorm.b_2"] = 1 + r(d_in), r(d_in)
        sd[p + "outnorm.a_2"], sd[p + "outnorm.b_2"] = 1 + r(256), r(256)
        for i in range(5):
            sd[p + f"mlp.model.{2 * i + 1}.weight"] = r(256, d_in if i == 0 else 256)
            sd[p + f"mlp.model.{2 * i + 1}.bias"] = r(256)
    p = "proximity_attn.embed.embed_v.mlp.model."
    for i in range(8):
        fan_in = d_v if i == 0 else (256 + d_v if skip and i == 5 else 256)
        sd[p + f"{2 * i + 1}.weight"] = r(32 if i == 7 else 256, fan_in)
        sd[p + f"{2 * i + 1}.bias"] = r(32 if i == 7 else 256)
    return sd


def test_load_official_model_pth(tmp_path):
    sd = _official_sd()
    torch.save({"250000": sd}, tmp_path / "model.pth")
    model = load_official_scene(tmp_path / "model.pth")  # tag "official": {"<step>": state_dict}
    c = model.cfg
    assert c.rmsa.v_skip_layer == 5 and c.rmsa.num_freqs_k == 6 and c.select_k == 20 and c.unet_width == 128
    own = model.state_dict()
    assert set(own) == set(sd) and all(torch.equal(own[k], v) for k, v in sd.items())
    o = torch.zeros(8, 8, 3)
    d = torch.nn.functional.normalize(torch.randn(8, 8, 3) + torch.tensor([0, 0, -3.0]), dim=-1)
    assert torch.isfinite(model(o, d)["rgb"]).all()


def test_builder_plus_load_weights_resizes_points(tmp_path):
    """The generic path (build_model + common.weights.load_weights): any point count loads."""
    from common.weights import load_weights
    from smcl.scene.models import BUILDERS, WEIGHTS

    sd = _official_sd(m=77)
    torch.save({"1000": sd}, tmp_path / "model.pth")
    model = BUILDERS["smcl_rmsa_renderer"](rmsa=RMSAConfig(v_skip_layer=5))
    assert model.points.shape[0] == 10000  # official cube init before loading
    load_weights(model, WEIGHTS["smcl_rmsa_renderer"]["official"], tmp_path / "model.pth")
    assert model.points.shape == (77, 3) and torch.equal(model.points.detach(), sd["points"])


def test_plain_state_dict_tag_l4_no_skip_and_wrong_files(tmp_path):
    sd = _official_sd(m=30, skip=False, lf=4)
    torch.save(sd, tmp_path / "model_250000.pth")
    model = load_official_scene(tmp_path / "model_250000.pth", "official_step")
    assert model.cfg.rmsa.num_freqs_v == 4 and model.cfg.rmsa.v_skip_layer is None
    assert model.points.shape == (30, 3)
    with pytest.raises(WeightsError, match="official_step"):  # the tag names the format: no guessing
        load_official_scene(tmp_path / "model_250000.pth", "official")
    torch.save({**sd, "extra.weight": torch.zeros(2)}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointMismatchError, match="extra.weight"):
        load_official_scene(tmp_path / "extra.pth", "official_step")
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "ddp.pth")  # not an official layout
    with pytest.raises(OfficialCheckpointError, match="no .points. tensor"):
        load_official_scene(tmp_path / "ddp.pth", "official_step")
    with pytest.raises(CheckpointMismatchError, match="unexpected"):
        load_official_scene(tmp_path / "ddp.pth", "official_step", _official_base(), infer=False)


def _official_base():
    from smcl.scene.models.scene_model import SceneModelConfig

    return SceneModelConfig(rmsa=RMSAConfig(num_freqs_k=4, num_freqs_q=4, num_freqs_v=4))


def test_papr_checkpoint_without_point_features(tmp_path):
    sd = _official_sd(m=25)
    del sd["pc_feats"]
    for name in ("weight", "bias"):  # PAPR values: no 64-d point features
        w = sd[f"proximity_attn.embed.embed_v.mlp.model.1.{name}"]
        sd[f"proximity_attn.embed.embed_v.mlp.model.1.{name}"] = w[:, :78] if name == "weight" else w
        w11 = sd[f"proximity_attn.embed.embed_v.mlp.model.11.{name}"]
        sd[f"proximity_attn.embed.embed_v.mlp.model.11.{name}"] = (
            w11[:, : 256 + 78] if name == "weight" else w11
        )
    torch.save(sd, tmp_path / "papr.pth")
    model = load_official_scene(tmp_path / "papr.pth", "papr")
    assert model.pc_feats.shape == (25, 0) and model.cfg.rmsa.d_feat == 0


def test_not_a_scene_checkpoint(tmp_path):
    torch.save({"1000": {"foo": torch.zeros(1)}}, tmp_path / "model.pth")
    with pytest.raises(OfficialCheckpointError):
        load_official_scene(tmp_path / "model.pth")
    with pytest.raises(OfficialCheckpointError, match="unknown scene weights tag"):
        load_official_scene(tmp_path / "model.pth", "guess")


def test_compat_last_chunk_tiled_features():
    torch.manual_seed(0)
    gcl = PointGCL(PointGCLConfig())
    pts = torch.randn(105, 3)
    f = compat_last_chunk_tiled_features(gcl, pts)
    assert f.shape == (105, 64)
    # rows repeat with period 20 and equal the last file-order chunk's (points 85..104) node embeddings
    assert torch.equal(f[0], f[20]) and torch.equal(f[19], f[99])
    ref = PointGCL(PointGCLConfig(blocks="file_chunks"))
    ref.load_state_dict(gcl.state_dict())
    aligned = ref.point_features(pts)
    a, b = f[torch.arange(85, 105) % 20], aligned[85:105]  # same chunk, batched differently
    assert float((a - b).norm()) <= 1e-5 * float(b.norm())  # norm-scaled: GEMM rounding differs per CPU
    assert not torch.allclose(f[:20], aligned[:20])
