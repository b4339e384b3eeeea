"""Architecture facts of spec nvs_sqa.md §1 and the optional configurations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from common.config import ConfigError, load_config
from nvs_sqa.models import (
    BUILDERS,
    MODEL_INFO,
    WEIGHTS,
    SequenceModel,
    SequenceModelConfig,
    ViewEncoder,
    sinusoidal_encoding,
)


def test_parameter_counts_and_state_dict_size() -> None:
    m = SequenceModel()
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert count(m.view_encoder) == 604_560
    assert count(m.angular_encoder) == 3_996_496
    assert count(m.fc) == 138_624
    assert len(m.state_dict()) == 175


def test_view_encoder_token_and_min_size() -> None:
    enc = ViewEncoder().eval()
    assert enc(torch.rand(1, 3, 69, 69)).shape == (1, 360)
    with pytest.raises(RuntimeError):
        enc(torch.rand(1, 3, 68, 68))


def test_sinusoidal_encoding_formula() -> None:
    pe = sinusoidal_encoding(5, 360)
    p, i = 3, 7
    arg = p * math.exp(-2 * i * math.log(10000) / 360)
    assert pe[p, 2 * i].item() == pytest.approx(math.sin(arg), abs=1e-6)
    assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(arg), abs=1e-6)
    assert pe[p].norm().item() == pytest.approx(math.sqrt(180), abs=1e-4)


@pytest.mark.parametrize(
    ("model_type", "fusion"),
    [
        ("TransEncoder", "last"),
        ("TransEncoder", "mean"),
        ("TransEncoder", "max"),
        ("TransEncoder", "attention"),
        ("LSTM", "last"),
    ],
)
def test_forward_backward_options(model_type: str, fusion: str) -> None:
    torch.manual_seed(0)
    m = SequenceModel(SequenceModelConfig(model_type=model_type, fusion=fusion, grad_checkpoint=True))
    out = m(torch.rand(2, 3, 3, 72, 72))
    assert out.shape == (2, 384) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_last_fusion_uses_last_position_only() -> None:
    m = SequenceModel().eval()
    tok = torch.randn(4, 1, 360)
    with torch.no_grad():
        a = m.forward_tokens(tok)
        # in a transformer every position attends to all, so changing frame 0 changes the last output too;
        # with "last" fusion the output must equal fc(encoder(x)[-1]) exactly
        x = m.angular_encoder(tok + sinusoidal_encoding(4, 360).unsqueeze(1))
        torch.testing.assert_close(a, m.fc(x[-1]))


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ConfigError, match="fusion: 'cls' is not one of"):
        load_config(None, SequenceModelConfig, ["fusion=cls"])


KEYS = Path(__file__).parent / "data" / "official_keys.json"


def test_model_contract_lists_builders_weights_and_info() -> None:
    import nvs_sqa

    assert nvs_sqa.list_models() == ["nvs_sqa"]
    assert nvs_sqa.list_weights("nvs_sqa") == ["official"]
    assert set(nvs_sqa.MODEL_INFO) == set(nvs_sqa.list_models())
    with pytest.raises(KeyError, match="unknown weights"):
        nvs_sqa.build_model("nvs_sqa", weights="nvs_sqa.official")
    with pytest.raises(KeyError, match="unknown model"):
        nvs_sqa.build_model("resnet")
    m = nvs_sqa.build_model(fusion="attention", num_layers=1)
    assert m.cfg.fusion == "attention" and m.cfg.num_layers == 1


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_builder_forward_backward_and_param_count(name: str) -> None:
    torch.manual_seed(0)
    m = BUILDERS[name]()
    assert sum(p.numel() for p in m.parameters()) == MODEL_INFO[name]["params"]
    out = m(torch.rand(2, 2, 3, 69, 69))
    assert out.shape == (2, 384) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


@pytest.mark.parametrize(("name", "tag"), [(n, t) for n in sorted(WEIGHTS) for t in sorted(WEIGHTS[n])])
def test_every_weights_entry_remaps_the_recorded_official_keys(name: str, tag: str) -> None:
    """The recorded key/shape list of the official file maps onto the model: no key missing or left over."""
    entry = WEIGHTS[name][tag]
    recorded = json.loads(KEYS.read_text())["keys"]
    assert entry.sha256 and len(entry.sha256) == 64 and entry.package is not None
    fake = {k: torch.zeros(shape) for k, shape in recorded.items()}
    mapped = entry.remap(fake) if entry.remap else fake  # None: the official names are ours
    ours = BUILDERS[name]().state_dict()
    assert sorted(mapped) == sorted(ours)
    assert all(tuple(mapped[k].shape) == tuple(ours[k].shape) for k in ours)
