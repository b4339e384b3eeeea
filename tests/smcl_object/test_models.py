"""The model contract: smcl.list_models / list_weights / build_model over the object BUILDERS and WEIGHTS."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import smcl
from common.checkpoint import CheckpointMismatchError
from smcl.object.models import BUILDERS, MODEL_INFO, WEIGHTS
from smcl.object.models.ffc_encoder import OFFICIAL_ABSENT_PREFIXES


def test_list_models_merges_object_and_scene() -> None:
    assert {"smcl_ffc_encoder", "smcl_view_synthesizer", "smcl_point_gcl", "smcl_rmsa_renderer"} <= set(
        smcl.list_models()
    )
    assert smcl.list_weights("smcl_ffc_encoder") == ["official"]
    assert set(MODEL_INFO) == set(BUILDERS) == set(WEIGHTS)
    with pytest.raises(ValueError, match="available: .*smcl_ffc_encoder"):
        smcl.build_model("smcl_nope")
    with pytest.raises(ValueError, match="unknown weights 'imagenet'.*official"):
        smcl.build_model("smcl_ffc_encoder", "imagenet")


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builder_forward_backward_tiny_and_official_param_count(name: str) -> None:
    torch.manual_seed(0)
    if name == "smcl_ffc_encoder":
        model = smcl.build_model(name)
        out = model(torch.rand(2, 3, 32, 32))
        assert out.shape == (2, 128, 2, 2)
        out.square().mean().backward()
    else:
        model = smcl.build_model(name, image_size=32, d_hidden=16, n_coarse=4, n_fine=2, n_fine_depth=1,
                                 encoder={"se_mode": "none"})  # fmt: skip
        rays = torch.cat([torch.tensor([0.0, 0.0, 2.5]).expand(2, 5, 3), torch.tensor([0.0, 0.0, -1.0]).expand(2, 5, 3),
                          torch.tensor([1.0, 4.0]).expand(2, 5, 2)], -1)  # fmt: skip
        batch = {"src_images": torch.rand(2, 1, 3, 32, 32), "src_poses": torch.eye(4).expand(2, 1, 4, 4),
                 "rays": rays, "rgb": torch.rand(2, 5, 3)}  # fmt: skip
        losses = model.training_step(batch)
        assert all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad and p.ndim > 1)
    official = BUILDERS[name](**({"se_mode": "random_per_call"} if name == "smcl_ffc_encoder" else
                                 {"encoder": {"se_mode": "random_per_call"}}))  # fmt: skip
    assert sum(p.numel() for p in official.parameters()) == MODEL_INFO[name]["params"]
    assert len(official.state_dict()) == WEIGHTS[name]["official"].expected_keys


def test_official_encoder_file_loads_by_tag_and_a_wrong_file_lists_keys(tmp_path: Path) -> None:
    """A plain cnn_ffc state_dict (spec 7.1: no SE keys) loads strictly under the tag the user names; the
    tag's training config (per-call SE) is applied unless overridden, and a learned-SE encoder refuses it."""
    torch.manual_seed(1)
    src = smcl.build_model("smcl_ffc_encoder")
    sd = {k: v for k, v in src.state_dict().items() if not k.startswith(OFFICIAL_ABSENT_PREFIXES)}
    torch.save(sd, tmp_path / "encoder_display.pt")
    enc = smcl.build_model("smcl_ffc_encoder", "official", weights_path=tmp_path / "encoder_display.pt")
    assert enc.cfg.se_mode == "random_per_call"
    torch.testing.assert_close(enc.bottleneck.bottleneckconv1.weight, src.bottleneck.bottleneckconv1.weight)
    with pytest.raises(CheckpointMismatchError, match="se_cnn"):
        smcl.build_model("smcl_ffc_encoder", "official", weights_path=tmp_path / "encoder_display.pt",
                         se_mode="learned")  # fmt: skip
    # our pretraining checkpoint is not an official file: named missing keys, no silent guess
    torch.save({f"encoder.{k}": v for k, v in sd.items()}, tmp_path / "ours.pt")
    with pytest.raises(Exception, match="168|encoder.bottleneck"):
        smcl.build_model("smcl_ffc_encoder", "official", weights_path=tmp_path / "ours.pt")
