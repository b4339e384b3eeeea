"""common.registry.ModelRegistry: the one list_models / list_weights / build_model of every package."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from common.registry import ModelRegistry, UnknownModelError
from common.weights import WeightsEntry


def _build(width: int = 3, bias: bool = True) -> nn.Module:
    return nn.Linear(2, width, bias=bias)


def _registry(tmp_path):
    entry = WeightsEntry(tag="mine", description="a user file", filename=None, sha256=None, remap=None)
    return ModelRegistry(
        "toy", {"toy_linear": _build}, {"toy_linear": {"mine": entry}}, {}, main="toy_linear",
        weights_config={("toy_linear", "mine"): {"width": 4}},
    )  # fmt: skip


def test_lists_builds_and_loads_by_tag(tmp_path):
    reg = _registry(tmp_path)
    assert reg.list_models() == ["toy_linear"] and reg.list_weights() == ["mine"]
    assert reg.build_model().out_features == 3 and reg.build_model(width=5).out_features == 5
    src = nn.Linear(2, 4)
    torch.save(src.state_dict(), tmp_path / "w.pth")
    m = reg.build_model(weights="mine", weights_path=tmp_path / "w.pth")  # the tag implies width 4
    assert torch.equal(m.weight, src.weight)
    with pytest.raises(Exception, match="unexpected"):  # strict: a file for another shape/keys is refused
        reg.build_model(weights="mine", weights_path=tmp_path / "w.pth", bias=False)


def test_unknown_names_and_tags_list_the_known_ones(tmp_path):
    reg = _registry(tmp_path)
    with pytest.raises(UnknownModelError, match="unknown model .*available: toy_linear"):
        reg.build_model("nope")
    with pytest.raises(KeyError, match=r"unknown weights 'other'.*available: \['mine'\]"):
        reg.build_model(weights="other")
    with pytest.raises(ValueError, match="needs a weights tag"):
        reg.build_model(weights_path="x.pth")
    with pytest.raises(ValueError, match="no builder"):
        ModelRegistry("bad", {}, {"x": {}}, {}, main="x")
