"""smcl.object.render_trajectory: novel camera paths around a source view as uint8 frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.trajectories import orbit_around_pose
from common.viz import to_uint8
from smcl.object import render_trajectory
from smcl.object.data.nmr import NMRDataset, NMRDatasetConfig
from smcl.object.metrics import upscale_for
from smcl.object.models.view_synthesizer import ViewSynthesizer, ViewSynthesizerConfig
from smcl.object.render import render_views
from tests.smcl_object.ellipsoids import write_ellipsoid_nmr


@pytest.fixture(scope="module")
def obj(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = write_ellipsoid_nmr(tmp_path_factory.mktemp("nmr"), n_objects=1, image_size=32, seed=2)
    return NMRDataset(NMRDatasetConfig(root=str(root), split="test"))[0]


def test_render_trajectory_frames_equal_dataset_view_renders(obj: dict) -> None:
    torch.manual_seed(0)
    model = ViewSynthesizer(
        ViewSynthesizerConfig(image_size=32, d_hidden=16, n_coarse=6, n_fine=4, n_fine_depth=2)
    )
    c2ws = obj["poses"][[3, 7]]
    torch.manual_seed(1)
    frames = render_trajectory(model, obj["images"][:1], obj["poses"][:1], obj["focal"], c2ws, 32, 32,
                               c=obj["c"], near=float(obj["near"]), far=float(obj["far"]))  # fmt: skip
    assert frames.shape == (2, 32, 32, 3) and frames.dtype == np.uint8
    torch.manual_seed(1)
    ref = render_views(model, obj, [0], [3, 7])
    assert np.array_equal(frames, np.stack([to_uint8(r, chw=True) for r in ref]))


def test_orbit_around_the_source_view_renders_distinct_frames(obj: dict) -> None:
    torch.manual_seed(0)
    model = ViewSynthesizer(
        ViewSynthesizerConfig(image_size=32, d_hidden=16, n_coarse=6, n_fine=0, n_fine_depth=0)
    )
    path = orbit_around_pose(obj["poses"][0].double(), 4, radius_deg=20)
    frames = render_trajectory(model, obj["images"][:1], obj["poses"][:1], obj["focal"], path.float(), 32, 32,
                               c=obj["c"])  # fmt: skip
    assert frames.shape == (4, 32, 32, 3)
    with pytest.raises(ValueError, match=r"\(T, 4, 4\)"):
        render_trajectory(model, obj["images"][:1], obj["poses"][:1], obj["focal"], path[0], 32, 32)
    big = upscale_for(frames, 69)  # NVS-SQA's minimum side: an integer nearest-neighbour factor
    assert big.shape == (4, 96, 96, 3) and np.array_equal(big[:, ::3, ::3], frames)
