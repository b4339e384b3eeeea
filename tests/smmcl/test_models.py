"""Model structure, official key layout and the golden values of spec 10.6 (NMF2D, full model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import smmcl
from common.checkpoint import CheckpointMismatchError
from common.weights import WeightsError
from smmcl.models import NMF2D, SegNeXtRGBXConfig, build_model, build_segnext_rgbx
from tests.golden import seeded_fill


@pytest.fixture(scope="module")
def model14():
    return smmcl.build_model(num_classes=14)  # the documented call


def test_official_state_dict_layout(model14):
    sd = model14.state_dict()
    assert len(sd) == 1782
    assert sum(p.numel() for p in model14.parameters()) == 72_888_722
    shapes = {
        "backbone.module4.Channel.encode.0.weight": (2048, 2048, 1, 1),
        "backbone.module4.Spatial.encode.4.weight": (1, 1024, 1, 1),
        "backbone.fconv4.fusion_conv.0.weight": (512, 1024, 1, 1),
        "backbone.patch_embed1.proj.0.weight": (32, 3, 3, 3),
        "backbone.block_other1.0.mlp.fc1.weight": (512, 64, 1, 1),
        "backbone.block1.0.mlp.dwconv.dwconv.weight": (512, 1, 3, 3),
        "backbone.block1.0.attn.spatial_gating_unit.conv2_1.weight": (64, 1, 1, 21),
        "backbone.projector_color.project.6.weight": (256, 512, 1, 1),
        "decode_head.squeeze.conv.weight": (512, 960, 1, 1),
        "decode_head.hamburger.ham_out.conv.bias": (512,),
        "decode_head.conv_seg.weight": (14, 512, 1, 1),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert "decode_head.squeeze.conv.bias" not in sd and "decode_head.hamburger.ham_out.gn.weight" not in sd
    parts = {
        "backbone.module": 16_956_420,
        "backbone.fconv": 771_072,
        "backbone.projector": 1_317_376,
        "decode_head": 1_288_206,
    }
    for prefix, count in parts.items():
        assert sum(p.numel() for n, p in model14.named_parameters() if n.startswith(prefix)) == count, prefix


def test_param_groups_match_official_group_weight():
    model = build_model(num_classes=14)
    decay, no_decay = model.param_groups()
    assert len(decay["params"]) == 595 and len(no_decay["params"]) == 809 + 84  # layer scales trainable
    model.set_layer_scale_trainable(False)  # compat: the official run never updates them
    decay, no_decay = model.param_groups()
    assert len(decay["params"]) == 595 and len(no_decay["params"]) == 809


@pytest.mark.parametrize(
    ("training", "expected"),
    [
        (True, (35103.8125, 0.42851335, 0.55880135, 0.49524683)),
        (False, (35944.0, 0.43876952, 0.56498122, 0.50822669)),
    ],
)
def test_nmf2d_golden(training, expected):
    torch.manual_seed(0)
    x = torch.relu(torch.randn(2, 512, 8, 10))
    nmf = NMF2D().train(training)
    torch.manual_seed(42)
    y = nmf(x)
    got = (y.sum().item(), y.abs().mean().item(), y[0, 0, 0, 0].item(), y[1, 511, 7, 9].item())
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("fast", [False, True], ids=["reference", "fast"])
def test_full_model_golden_seed0_fill(model14, fast):
    model = model14.eval().set_fast(fast)
    seeded_fill(model)  # spec 10.6
    with torch.no_grad():
        g1 = torch.Generator().manual_seed(1)
        rgb = torch.randn(1, 3, 96, 128, generator=g1)
        aux = torch.randn(1, 3, 96, 128, generator=g1)
        model.backbone.keep_fconv1 = True
        torch.manual_seed(7)
        fused, pc, po = model.backbone(rgb, aux, fast=fast)
        model.backbone.keep_fconv1 = False
        torch.manual_seed(7)
        out = model(rgb, aux)
    assert out.shape == (1, 14, 96, 128)
    assert out.sum().item() == pytest.approx(402.242432, rel=1e-4)
    assert out.abs().mean().item() == pytest.approx(0.02545287, rel=1e-4)
    assert out[0, 0, 0, 0].item() == pytest.approx(0.01536695, rel=1e-4)
    assert out[0, 13, 95, 127].item() == pytest.approx(0.06604241, rel=1e-4)
    assert [f.sum().item() for f in fused] == pytest.approx(
        [252.194, 13.102129, 7.466476, 4.726451], rel=1e-4
    )
    assert (pc.sum().item(), po.sum().item()) == pytest.approx((5.025476, 4.529758), rel=1e-4)


def _imagenet_sd(model) -> dict[str, torch.Tensor]:
    """A synthetic single-branch ImageNet checkpoint in SegNeXt naming, with a classifier head."""
    sd = {
        k[len("backbone.") :]: torch.randn_like(v.float()).to(v.dtype)
        for k, v in model.state_dict().items()
        if k.startswith(("backbone.patch_embed", "backbone.block", "backbone.norm")) and "_other" not in k
    }
    sd["head.weight"] = torch.randn(1000, 512)
    return sd


TINY = {"arch": "mscan_t", "num_classes": 5, "decoder_channels": 64}


@pytest.mark.parametrize("naming", ["segnext", "mmseg"])
def test_imagenet_loading_both_namings_by_tag(naming, tmp_path):
    ref = smmcl.build_model(**TINY)
    sd = _imagenet_sd(ref)
    flat = dict(sd)
    tag = "mscan_b_in1k"
    if naming == "mmseg":
        tag = "mscan_b_in1k_mmseg"
        sd = {
            "state_dict": {
                "backbone." + k.replace(".mlp.dwconv.dwconv.", ".mlp.dwconv."): v for k, v in sd.items()
            }
        }
    torch.save(sd, tmp_path / "mscan.pth")
    model = smmcl.build_model("smmcl_mscan_b", tag, weights_path=tmp_path / "mscan.pth", **TINY)
    own = model.state_dict()
    key = "block2.1.mlp.dwconv.dwconv.weight"
    src = flat[key]
    assert torch.equal(own["backbone." + key], src)
    assert torch.equal(own["backbone." + key.replace("block", "block_other")], src)


def test_wrong_tag_or_damaged_file_fails_listing_the_keys(tmp_path):
    sd = _imagenet_sd(smmcl.build_model(**TINY))
    del sd["block1.0.mlp.dwconv.dwconv.bias"]
    torch.save(sd, tmp_path / "mscan.pth")
    with pytest.raises(CheckpointMismatchError, match=r"block1\.0\.mlp\.dwconv\.dwconv\.bias"):
        smmcl.build_model(weights="mscan_b_in1k", weights_path=tmp_path / "mscan.pth", **TINY)
    # an mmseg file named with the SegNeXt tag is not guessed into shape: unexpected/missing keys listed
    mm = {
        "backbone." + k.replace(".mlp.dwconv.dwconv.", ".mlp.dwconv."): v
        for k, v in _imagenet_sd(smmcl.build_model(**TINY)).items()
    }
    torch.save(mm, tmp_path / "mm.pth")
    with pytest.raises(CheckpointMismatchError, match=r"backbone\.block1\.0"):
        smmcl.build_model(weights="mscan_b_in1k", weights_path=tmp_path / "mm.pth", **TINY)
    with pytest.raises(KeyError, match="unknown weights"):
        smmcl.build_model(weights="mscan_b.in1k", **TINY)
    with pytest.raises(WeightsError, match="download"):
        smmcl.build_model(weights="official", **TINY)  # a user file: its path must be given


def test_registry_lists_models_weights_and_info():
    assert smmcl.list_models() == ["smmcl_mscan_b"] == sorted(smmcl.BUILDERS)
    assert smmcl.list_weights("smmcl_mscan_b") == ["mscan_b_in1k", "mscan_b_in1k_mmseg", "official"]
    assert smmcl.MODEL_INFO["smmcl_mscan_b"]["params"] == 72_888_722
    node = smmcl.MODEL_INFO["smmcl_mscan_b"]["parity"]
    assert node.split("::")[1] in globals()
    for tags in smmcl.WEIGHTS.values():
        for tag, entry in tags.items():
            assert entry.tag == tag and entry.remap is not None and entry.description


def test_builders_forward_backward_and_param_count(model14):
    assert sum(p.numel() for p in model14.parameters()) == smmcl.MODEL_INFO["smmcl_mscan_b"]["params"]
    for name, builder in smmcl.BUILDERS.items():
        torch.manual_seed(0)
        model = builder(**TINY, ham_rank=8)
        batch = {"rgb": torch.randn(1, 3, 64, 64), "aux": torch.randn(1, 3, 64, 64)}
        batch["label"] = torch.randint(0, 5, (1, 64, 64))
        losses = model.training_step(batch)
        sum(losses.values()).backward()
        assert all(torch.isfinite(v) for v in losses.values()), name


@pytest.mark.parametrize("tag", ["official", "mscan_b_in1k", "mscan_b_in1k_mmseg"])
def test_every_weights_entry_maps_the_recorded_official_keys_exactly(model14, tag, tmp_path):
    """Recorded key/shape lists of the official files (tests/smmcl/data) load strictly, nothing left over."""
    recorded = json.loads((Path(__file__).parent / "data" / "official_keys.json").read_text())
    keys = recorded["official" if tag == "official" else "mscan_b_in1k"]
    entry = smmcl.WEIGHTS["smmcl_mscan_b"][tag]
    sd = {k: torch.zeros(shape) for k, shape in keys.items()}
    if tag == "mscan_b_in1k":
        sd["head.weight"] = torch.zeros(1000, 512)  # the classifier is dropped on purpose
    if tag == "mscan_b_in1k_mmseg":
        sd = {"backbone." + k.replace(".mlp.dwconv.dwconv.", ".mlp.dwconv."): v for k, v in sd.items()}
    target = smmcl.models.weights_target(model14, tag)
    mapped = entry.remap(sd)
    assert set(mapped) == set(target.state_dict())
    assert all(tuple(mapped[k].shape) == tuple(v.shape) for k, v in target.state_dict().items())
    assert entry.expected_keys in (None, len(sd))


@pytest.mark.parametrize("arch", ["mscan_t", "mscan_s"])
def test_small_variants_forward_backward(arch):
    torch.manual_seed(0)
    model = build_segnext_rgbx(SegNeXtRGBXConfig(arch=arch, num_classes=4, decoder_channels=64))
    batch = {
        "rgb": torch.randn(2, 3, 64, 64),
        "aux": torch.randn(2, 3, 64, 64),
        "label": torch.randint(0, 4, (2, 64, 64)),
    }
    batch["label"][:, :32] = 1
    losses = model.training_step(batch)
    assert set(losses) == {"ce", "cm", "vis", "aux"}
    sum(losses.values()).backward()
    no_grad = {n for n, p in model.named_parameters() if p.grad is None}
    assert no_grad == {"backbone.fconv1.fusion_conv.0.weight", "backbone.fconv1.fusion_conv.0.bias"}
    model.eval()
    assert model(batch["rgb"], batch["aux"]).shape == (2, 4, 64, 64)
