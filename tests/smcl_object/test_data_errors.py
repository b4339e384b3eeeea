"""Bad NMR objects fail when the dataset is built (or the object read), naming the file and the problem.

Views are matched to cameras by the number in their file name; before this check a deleted image/0002.png
silently gave view 3's image view 2's camera (sorted file position), and a NaN pose became a NaN loss.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from common.errors import DataError
from common.image_io import write_image
from smcl.object.data.nmr import NMRDataset, NMRDatasetConfig, write_nmr_object
from tests.smcl_object.ellipsoids import orbit_poses

N = 4


def _object(root: Path) -> Path:
    rng = np.random.default_rng(0)
    imgs = rng.random((N, 8, 8, 3))
    masks = np.zeros((N, 8, 8), bool)
    masks[:, 2:6, 2:6] = True
    obj = root / "s" / "o"
    write_nmr_object(obj, imgs, orbit_poses(N).numpy(), 10.0, masks)
    (root / "s" / "softras_train.lst").write_text("o\n")
    return obj


def _edit_cameras(obj: Path, edit: Callable[[dict], None]) -> None:
    with np.load(obj / "cameras.npz") as z:
        cams = {k: z[k] for k in z.files}
    edit(cams)
    np.savez(obj / "cameras.npz", **cams)


def _nan(c: dict) -> None:
    c["world_mat_inv_1"][0, 3] = np.nan


def _three_by_four(c: dict) -> None:
    c["world_mat_inv_2"] = c["world_mat_inv_2"][:3]


def _bad_last_row(c: dict) -> None:
    c["world_mat_inv_2"][3] = [0.0, 0.0, 1.0, 1.0]


def _gap(c: dict) -> None:
    del c["world_mat_2"]


def _singular(c: dict) -> None:
    del c["world_mat_inv_1"]
    c["world_mat_1"][:, :3] = 0.0


CASES = {
    "missing image": (lambda o: (o / "image" / "0002.png").unlink(), ["image/0002.png", "missing"]),
    "extra image": (lambda o: write_image(o / "image" / "0004.png", np.zeros((8, 8, 3))), ["0004.png", "no camera"]),
    "missing mask": (lambda o: (o / "mask" / "0001.png").unlink(), ["mask/0001.png", "mask of view 1 is missing"]),
    "bad name": (lambda o: write_image(o / "image" / "extra.png", np.zeros((8, 8, 3))), ["extra.png", "view number"]),
    "corrupt cameras": (lambda o: (o / "cameras.npz").write_bytes(b"PK\x03\x04 garbage"), ["cameras.npz", "cannot read the .npz archive"]),
    "missing cameras": (lambda o: (o / "cameras.npz").unlink(), ["cameras.npz", "missing"]),
    "nan pose": (lambda o: _edit_cameras(o, _nan), ["cameras.npz", "world_mat_inv_1", "non-finite"]),
    "3x4 pose": (lambda o: _edit_cameras(o, _three_by_four), ["cameras.npz", "world_mat_inv_2", "3x4", "expected 4x4"]),
    "4x4 bad row": (lambda o: _edit_cameras(o, _bad_last_row), ["world_mat_inv_2", "last row"]),
    "camera gap": (lambda o: _edit_cameras(o, _gap), ["cameras.npz", "world_mat_2 is missing"]),
    "singular": (lambda o: _edit_cameras(o, _singular), ["world_mat_1", "singular"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_broken_object_is_refused_at_start_up_naming_file(tmp_path: Path, case: str) -> None:
    obj = _object(tmp_path)
    NMRDataset(NMRDatasetConfig(root=str(tmp_path)))[0]  # intact: loads
    breaker, words = CASES[case]
    breaker(obj)
    with pytest.raises(DataError) as err:
        NMRDataset(NMRDatasetConfig(root=str(tmp_path)))
    for w in words:
        assert w in str(err.value), (w, str(err.value))
    with pytest.raises(DataError):  # without the start-up check the read of the object fails alike
        NMRDataset(NMRDatasetConfig(root=str(tmp_path), validate=False))[0]


def test_frames_of_mixed_sizes_are_refused_naming_the_file(tmp_path: Path) -> None:
    obj = _object(tmp_path)
    write_image(obj / "image" / "0003.png", np.zeros((10, 8, 3)))
    ds = NMRDataset(NMRDatasetConfig(root=str(tmp_path)))  # names and cameras are fine
    with pytest.raises(DataError, match=r"0003\.png: size 8x10 differs from 0000\.png's 8x8"):
        ds[0]


def test_views_follow_their_numbers_not_file_order(tmp_path: Path) -> None:
    """Unpadded names ('2.png', '10.png') still pair with camera 2 and 10: the number, not the listing order."""
    obj = _object(tmp_path)
    ref = NMRDataset(NMRDatasetConfig(root=str(tmp_path)))[0]
    for sub in ("image", "mask"):
        for i in range(N):
            (obj / sub / f"{i:04d}.png").rename(obj / sub / f"{i}.png")
    got = NMRDataset(NMRDatasetConfig(root=str(tmp_path)))[0]
    assert np.array_equal(got["images"].numpy(), ref["images"].numpy())
    assert np.array_equal(got["poses"].numpy(), ref["poses"].numpy())
