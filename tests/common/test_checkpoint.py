"""common.checkpoint: atomic save, weights_only load, key renaming, strict loading with a report."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from common.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    get_rng_state,
    latest_checkpoint,
    load_checkpoint,
    load_state_dict_strict,
    prune_checkpoints,
    rename_keys,
    save_checkpoint,
    set_rng_state,
)


def test_save_is_atomic_and_loads_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sub" / "ck.pth"
    state = {"step": 3, "model": {"w": torch.arange(4.0)}, "rng": get_rng_state()}
    save_checkpoint(state, path)
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3 and torch.equal(loaded["model"]["w"], torch.arange(4.0))
    assert [p.name for p in path.parent.iterdir()] == ["ck.pth"]  # no temp file left behind

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"step": 4}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 3  # the old file survived the failed save
    assert [p.name for p in path.parent.iterdir()] == ["ck.pth"]


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nope.pth does not exist"):
        load_checkpoint(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth"):
        load_checkpoint(bad)

    evil = tmp_path / "evil.pth"
    torch.save({"x": Path("/etc")}, evil)  # an arbitrary class: refused by the weights_only unpickler
    with pytest.raises(CheckpointError, match="evil.pth.*weights_only"):
        load_checkpoint(evil)


def test_rng_roundtrip_through_weights_only(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    save_checkpoint({"rng": get_rng_state()}, tmp_path / "r.pth")
    expected = (torch.rand(3), np.random.rand(3), random.random(), np.random.standard_normal())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    set_rng_state(load_checkpoint(tmp_path / "r.pth")["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random(), np.random.standard_normal())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2] and got[3] == expected[3]


def test_rename_keys_in_order() -> None:
    sd = {"module.mlp.dwconv.dwconv.weight": 1, "module.head.bias": 2}
    out = rename_keys(sd, [(r"^module\.", ""), (r"\.dwconv\.dwconv\.", ".dwconv.")])
    assert out == {"mlp.dwconv.weight": 1, "head.bias": 2}
    with pytest.raises(KeyError, match="both map to"):
        rename_keys({"a.x": 1, "b.x": 2}, [(r"^[ab]\.", "")])


def test_load_state_dict_strict_reports() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    sd = {k: v.clone() + 1 for k, v in model.state_dict().items()}
    target = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    load_state_dict_strict(target, sd, source="good.pth")
    assert torch.equal(target[0].weight, sd["0.weight"])
    broken = dict(sd)
    del broken["1.running_mean"]
    broken["extra.w"] = torch.zeros(1)
    broken["0.weight"] = torch.zeros(5, 3)
    with pytest.raises(CheckpointMismatchError) as e:
        load_state_dict_strict(target, broken, source="bad.pth")
    msg = str(e.value)
    assert "bad.pth" in msg and "missing (1): 1.running_mean" in msg and "unexpected (1): extra.w" in msg
    assert "0.weight: checkpoint (5, 3) vs model (4, 3)" in msg
    assert e.value.missing == ["1.running_mean"]
    ok = {k: v for k, v in sd.items() if k != "1.num_batches_tracked"}
    load_state_dict_strict(target, ok, source="x", ignore=[r"num_batches_tracked$"])


def test_latest_and_prune_use_natural_order(tmp_path: Path) -> None:
    for e in (9, 10, 100, 300):
        save_checkpoint({"e": e}, tmp_path / f"epoch-{e}.pth")
    assert latest_checkpoint(tmp_path).name == "epoch-300.pth"
    removed = prune_checkpoints(tmp_path, 2)
    assert sorted(p.name for p in removed) == ["epoch-10.pth", "epoch-9.pth"]
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["epoch-100.pth", "epoch-300.pth"]
    assert latest_checkpoint(tmp_path / "absent") is None


def test_prune_only_touches_its_own_run(tmp_path: Path) -> None:
    for step, run in ((1, "a"), (2, "a"), (3, "b"), (4, "a"), (5, None), (6, "a")):
        save_checkpoint({"step": step, **({"run_id": run} if run else {})}, tmp_path / f"step-{step}.pth")
    removed = prune_checkpoints(tmp_path, 2, run_id="a")
    assert sorted(p.name for p in removed) == ["step-1.pth", "step-2.pth"]
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == [f"step-{s}.pth" for s in (3, 4, 5, 6)]


def test_strict_load_lets_the_module_resize() -> None:
    """The shape check used to run before the module could resize (SMCL scene: points (866,3) vs (2000,3))."""

    class Points(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.points = nn.Parameter(torch.zeros(5, 3))
            self.register_load_state_dict_pre_hook(self._resize)

        def _resize(self, module: nn.Module, sd: dict, prefix: str, *args: object) -> None:
            self.points = nn.Parameter(torch.empty_like(sd[prefix + "points"]))

    m = Points()
    load_state_dict_strict(m, {"points": torch.ones(2, 3)}, source="grown.pth")
    assert torch.equal(m.points, torch.ones(2, 3))
    with pytest.raises(CheckpointMismatchError, match=r"weight: checkpoint \(2, 3\) vs model \(4, 3\)"):
        load_state_dict_strict(nn.Linear(3, 4, bias=False), {"weight": torch.ones(2, 3)}, source="x.pth")


def test_load_tensor_reads_one_tensor_and_refuses_other_objects(tmp_path):
    import pytest
    import torch

    from common.checkpoint import CheckpointError, load_tensor

    t = torch.randn(5, 3)
    torch.save(t, tmp_path / "pts.pt")
    assert torch.equal(load_tensor(tmp_path / "pts.pt"), t)
    torch.save({"a": t}, tmp_path / "dict.pt")
    with pytest.raises(CheckpointError, match="dict.pt.*expected a single tensor"):
        load_tensor(tmp_path / "dict.pt")
