"""The scene-level model contract: every builder runs forward and backward at a tiny size, parameter
counts match the recorded ones, every weights entry's remap maps the recorded official key list onto
its builder's model with nothing missing or left over (through common.weights.load_weights)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from common.weights import load_weights
from smcl.scene.models import BUILDERS, MODEL_INFO, WEIGHTS
from smcl.scene.models.rmsa import RMSAConfig

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "smcl_point_gcl": {},
    "smcl_rmsa_renderer": {
        "rmsa": RMSAConfig(hidden=16, d_model=16, kq_layers=2, v_layers=2, d_feat=8),
        "unet_width": 8,
        "init_type": "cube",
        "init_num": 64,
        "select_k": 4,
    },
}


def _loss(name: str, model: torch.nn.Module) -> torch.Tensor:
    if name == "smcl_point_gcl":
        return model.training_step({"xyz": torch.randn(4, 20, 3)})["infonce"]
    o = torch.zeros(8, 8, 3)
    o[..., 2] = 30.0
    d = torch.nn.functional.normalize(torch.randn(8, 8, 3) * 0.1 + torch.tensor([0, 0, -1.0]), dim=-1)
    return model(o, d)["rgb"].square().mean()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builder_forward_backward(name):
    torch.manual_seed(0)
    model = BUILDERS[name](**TINY[name])
    loss = _loss(name, model)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    info = MODEL_INFO[name]
    if info["params"] is not None:
        assert sum(p.numel() for p in BUILDERS[name]().parameters()) == info["params"]
    test_file, test_name = info["parity"].split("::")
    assert f"def {test_name}(" in (ROOT / test_file).read_text()


def official_point_gcl_keys(eps: bool = True) -> dict[str, tuple[int, ...]]:
    """spec 7.3, written out: GraphCL Encoder wrapper of a 2-layer GIN (hidden 32) + projection head."""
    keys = {}
    for i, d_in in enumerate((3, 32)):
        keys |= {
            f"encoder.layers.{i}.nn.0.weight": (32, d_in),
            f"encoder.layers.{i}.nn.0.bias": (32,),
            f"encoder.layers.{i}.nn.2.weight": (32, 32),
            f"encoder.layers.{i}.nn.2.bias": (32,),
        }
        if eps:
            keys[f"encoder.layers.{i}.eps"] = (1,)
        keys |= {
            f"encoder.batch_norms.{i}.{k}": (32,) for k in ("weight", "bias", "running_mean", "running_var")
        }
        keys[f"encoder.batch_norms.{i}.num_batches_tracked"] = ()
    for j in (0, 2):
        keys |= {f"encoder.project.{j}.weight": (64, 64), f"encoder.project.{j}.bias": (64,)}
    return keys


def official_scene_keys(m: int = 40) -> dict[str, tuple[int, ...]]:
    """spec 7.4, written out for the source3.yml architecture (L = 6, no value skip, K = 20)."""
    keys = {
        "select_k": (),
        "points": (m, 3),
        "points_influ_scores": (m, 1),
        "pc_feats": (m, 64),
        "bkg_feats": (1, 3),
    }
    convs = {
        "inc.double_conv.0": (128, 32, 3, 3),
        "down1.maxpool_conv.1.double_conv.0": (256, 128, 3, 3),
        "down2.maxpool_conv.1.double_conv.0": (512, 256, 3, 3),
        "up1.up": (512, 256, 2, 2),
        "up1.conv.double_conv.0": (256, 512, 3, 3),
        "up2.up": (256, 128, 2, 2),
        "up2.conv.double_conv.0": (128, 256, 3, 3),
        "outc.conv": (3, 128, 1, 1),
    }
    for k, shape in convs.items():
        out = shape[1] if ".up" in f".{k}" and k.endswith("up") else shape[0]
        keys[f"renderer.{k}.weight"], keys[f"renderer.{k}.bias"] = shape, (out,)
    for name, d_in in (("embed_k", 117), ("embed_q", 39)):
        p = f"proximity_attn.embed.{name}."
        keys |= {
            p + "innorm.a_2": (d_in,),
            p + "innorm.b_2": (d_in,),
            p + "outnorm.a_2": (256,),
            p + "outnorm.b_2": (256,),
        }
        for i in range(5):
            keys[p + f"mlp.model.{2 * i + 1}.weight"] = (256, d_in if i == 0 else 256)
            keys[p + f"mlp.model.{2 * i + 1}.bias"] = (256,)
    for i in range(8):
        p = f"proximity_attn.embed.embed_v.mlp.model.{2 * i + 1}."
        keys[p + "weight"] = (32 if i == 7 else 256, 142 if i == 0 else 256)
        keys[p + "bias"] = (32 if i == 7 else 256,)
    for w in ("w_k", "w_q"):
        keys |= {
            f"proximity_attn.attention_layer.{w}.weight": (256, 256),
            f"proximity_attn.attention_layer.{w}.bias": (256,),
        }
    return keys


def _file(keys: dict, wrap: str | None = None) -> dict:
    sd = {k: torch.randn(s) if s else torch.tensor(20, dtype=torch.int32) for k, s in keys.items()}
    if "encoder.batch_norms.0.num_batches_tracked" in keys:
        for i in (0, 1):
            sd[f"encoder.batch_norms.{i}.num_batches_tracked"] = torch.tensor(7)
            sd[f"encoder.batch_norms.{i}.running_var"] = torch.rand(32) + 0.5
    return {wrap: sd} if wrap else sd


CASES = {
    ("smcl_point_gcl", "official"): [official_point_gcl_keys(), official_point_gcl_keys(eps=False)],
    ("smcl_rmsa_renderer", "official"): [("250000", official_scene_keys())],
    ("smcl_rmsa_renderer", "official_step"): [official_scene_keys(33)],
    ("smcl_rmsa_renderer", "papr"): [
        {
            k: (s if "embed_v.mlp.model.1." not in k else (256, 78)[: len(s)])
            for k, s in official_scene_keys(21).items()
            if k != "pc_feats"
        }
    ],
}


def test_every_weights_entry_has_a_case():
    assert {(n, t) for n, tags in WEIGHTS.items() for t in tags} == set(CASES)


@pytest.mark.parametrize("name,tag", sorted(CASES))
def test_official_weights_remap_onto_builders(name, tag, tmp_path):
    from smcl.scene.models.scene_model import SceneModelConfig

    for i, case in enumerate(CASES[(name, tag)]):
        wrap, keys = case if isinstance(case, tuple) else (None, case)
        sd = _file(keys, wrap)
        path = tmp_path / f"{tag}{i}.pth"
        torch.save(sd, path)
        kw = {}
        if tag == "papr":
            kw = {"cfg": SceneModelConfig(rmsa=RMSAConfig(d_feat=0))}
        model = BUILDERS[name](**kw)
        load_weights(model, WEIGHTS[name][tag], path)  # strict: zero missing / unexpected keys
        flat = sd[wrap] if wrap else sd
        own = model.state_dict()
        assert all(torch.equal(own[k], v) for k, v in flat.items())
        assert set(own) - set(flat) <= {"encoder.layers.0.eps", "encoder.layers.1.eps", "pc_feats"}
