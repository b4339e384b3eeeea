"""pyproject.toml lists every package of the source tree and every script as a tv-* console script."""

from __future__ import annotations

from pathlib import Path

import pytest
from setuptools import find_packages

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_is_listed() -> None:
    found = set(find_packages(str(ROOT), include=["common*", "smcl*", "smmcl*", "nvs_sqa*"]))
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"]) - {"tri_vision_scripts"}
    assert found == listed, f"add to / remove from [tool.setuptools] packages: {sorted(found ^ listed)}"


def test_every_script_is_a_console_script_calling_its_cli() -> None:
    scripts = PYPROJECT["project"]["scripts"]
    names = sorted(f.stem for f in (ROOT / "scripts").glob("*.py") if f.stem != "__init__")
    assert sorted(scripts) == sorted(f"tv-{n.replace('_', '-')}" for n in names)
    for n in names:
        assert scripts[f"tv-{n.replace('_', '-')}"] == f"tri_vision_scripts.{n}:cli"
        assert "\ndef cli() -> None:" in (ROOT / "scripts" / f"{n}.py").read_text(), (
            f"scripts/{n}.py has no cli()"
        )
