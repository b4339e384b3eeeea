"""Command construction for the nerfstudio dataset builder (nerfstudio itself is not installed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvs_sqa.data.nerfstudio import dataset_commands, render_command, train_command


def test_kplanes_far_plane_and_layout() -> None:
    cmd = train_command(Path("/d"), "stump", "kplanes-100", Path("/o"))
    assert cmd[:2] == ["ns-train", "kplanes"]
    i = cmd.index("--pipeline.model.far-plane")
    assert cmd[i + 1] == "100"
    assert cmd[-3:] == ["nerfstudio-data", "--data", "/d/stump"]
    assert "stump__kplanes-100" in cmd
    r = render_command(Path("/o"), "stump", "kplanes-100", Path("/r"))
    assert r[:2] == ["ns-render", "interpolate"]
    assert r[-1] == "/r/renders/stump__kplanes-100"
    assert "/o/stump__kplanes-100/kplanes/run/config.yml" in r


def test_all_pairs_and_unknown_method() -> None:
    assert len(dataset_commands(Path("d"), Path("o"), Path("r"))) == 17 * 8 * 2
    with pytest.raises(ValueError, match="unknown method"):
        train_command(Path("d"), "stump", "nerf-w", Path("o"))
