"""pyproject.toml lists every package of the source tree and every script as a tv-* console script; the
wheel stands alone (configs by name, no open3d for NVS-SQA/SMMCL, light --help)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = sorted(f.stem for f in (ROOT / "scripts").glob("*.py") if f.stem != "__init__")
#: Modules that --help of a command must not import (each costs seconds, open3d is an extra).
HEAVY = ("torchmetrics", "matplotlib", "open3d", "torchvision")


def test_every_package_is_listed() -> None:
    found = set(find_packages(str(ROOT), include=["common*", "smcl*", "smmcl*", "nvs_sqa*"]))
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"]) - {"tri_vision_scripts", "tri_vision_conf"}
    assert found == listed, f"add to / remove from [tool.setuptools] packages: {sorted(found ^ listed)}"


def test_every_script_is_a_console_script_calling_its_cli() -> None:
    scripts = PYPROJECT["project"]["scripts"]
    assert sorted(scripts) == sorted(f"tv-{n.replace('_', '-')}" for n in SCRIPTS)
    for n in SCRIPTS:
        assert scripts[f"tv-{n.replace('_', '-')}"] == f"tri_vision_scripts.{n}:cli"
        assert "\ndef cli() -> None:" in (ROOT / "scripts" / f"{n}.py").read_text(), (
            f"scripts/{n}.py has no cli()"
        )


def test_open3d_is_an_extra() -> None:
    deps = " ".join(PYPROJECT["project"]["dependencies"])
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert "open3d" not in deps
    assert any(d.startswith("open3d") for d in extras["points"])
    assert any(d.startswith("open3d") for d in extras["dev"])  # the test suite reads PLY files


def test_ply_without_open3d_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['open3d'] = None\n"
        "from smcl.scene.points import read_points\n"
        f"read_points({str(tmp_path / 'x.ply')!r})\n"
    )
    (tmp_path / "x.ply").write_text("ply\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "PointCloudError" in out.stderr and "pip install 'tri-vision-repro[points]'" in out.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built wheel, unpacked as pip installs it (its files only, outside the checkout)."""
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*cmd, "-w", str(out)], check=True, capture_output=True, cwd=out)
    (wheel,) = out.glob("*.whl")
    site = out / "site"
    zipfile.ZipFile(wheel).extractall(site)
    return site


def _run_installed(site: Path, code: str) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH comes before the editable install of the checkout, -P keeps the cwd off sys.path
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "OMP_NUM_THREADS": "1",
        "DATA_ROOT": "/d",
        "WEIGHTS_DIR": "/w",
    }
    return subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, cwd=site, env=env
    )


def test_wheel_ships_every_config_usable_by_name(installed: Path) -> None:
    shipped = sorted(p.relative_to(installed / "tri_vision_conf") for p in installed.rglob("*.yaml"))
    assert shipped == sorted(p.relative_to(ROOT / "conf") for p in (ROOT / "conf").rglob("*.yaml"))
    code = (
        "import common.config as c\n"
        f"assert c.__file__.startswith({str(installed)!r}), c.__file__\n"
        "for name in ('llrgbd', 'smmcl/llrgbd', 'conf/smmcl/llrgbd.yaml'):\n"
        f"    print(c.resolve_config(name).relative_to({str(installed)!r}))\n"
        "print(len(c._read_yaml(c.resolve_config('llrgbd'))['class_names']))\n"
    )
    code += "import sys; sys.argv = ['tv-train-smmcl', '--list-configs']\n"
    code += "from tri_vision_scripts.train_smmcl import cli; cli()\n"
    out = _run_installed(installed, code)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:4] == ["tri_vision_conf/smmcl/llrgbd.yaml"] * 3 + ["14"]
    assert "  smmcl/llrgbd" in lines and "  smcl/nerf_synthetic/lego" in lines


def test_help_of_every_command_imports_nothing_heavy() -> None:
    # one interpreter imports torch (the parsers' only heavy need), then forks one child per script
    code = f"""
import os, runpy, sys
import torch
for name in {SCRIPTS!r}:
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        sys.argv = [name, "--help"]
        try:
            runpy.run_path("scripts/" + name + ".py", run_name="__main__")
        except SystemExit:
            pass
        heavy = [m for m in {HEAVY!r} if m in sys.modules]
        sys.stderr.write(name + ": " + " ".join(heavy) + "\\n" if heavy else "")
        os._exit(0)
    os.waitpid(pid, 0)
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert out.returncode == 0 and out.stderr == "", out.stderr
