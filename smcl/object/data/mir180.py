"""Mir-180 triplets (spec smcl.md 1.4): anchor view i, mirror view 24-i, 180-degree view i+12.

The index is built directly from (object, view) pairs instead of the official rename-and-list-order scheme.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from common.errors import DataError
from common.io import atomic_write_text
from smcl.object.data.nmr import load_rgb, read_object_list

ANCHOR_VIEWS = (1, 2, 3, 4, 5, 7, 8, 9, 10, 11)
N_VIEWS = 24


def triplet_views(
    n_views: int = N_VIEWS, anchors: tuple[int, ...] = ANCHOR_VIEWS
) -> list[tuple[int, int, int]]:
    """[(anchor, mirror, opposite)] = [(i, n-i, i+n/2)]."""
    return [(i, (n_views - i) % n_views, (i + n_views // 2) % n_views) for i in anchors]


@dataclass(frozen=True)
class Triplet:
    synset: str
    obj: str
    anchor: int
    mirror: int
    opposite: int


def build_triplet_index(root: Path, synset: str, objects: list[str]) -> list[Triplet]:
    """Ten triplets per object, in object order then anchor order (1..5, 7..11)."""
    return [Triplet(synset, o, a, m, q) for o in objects for a, m, q in triplet_views()]


def write_triplet_index(path: Path, triplets: list[Triplet]) -> None:
    lines = ["synset obj anchor mirror opposite"]
    lines += [f"{t.synset} {t.obj} {t.anchor} {t.mirror} {t.opposite}" for t in triplets]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_triplet_index(path: Path) -> list[Triplet]:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "triplet index is missing")
    rows = path.read_text().splitlines()[1:]
    out = []
    for n, ln in enumerate(rows, start=2):
        parts = ln.split()
        if len(parts) != 5:
            raise DataError(f"{path}:{n}", "expected 5 fields 'synset obj anchor mirror opposite'")
        out.append(Triplet(parts[0], parts[1], *map(int, parts[2:])))
    return out


def export_flat_folders(root: Path, triplets: list[Triplet], out: Path) -> None:
    """Official layout: out/{images,mirror_views,180_views}/NNNN.png aligned by position."""
    for sub in ("images", "mirror_views", "180_views"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for k, t in enumerate(triplets):
        base = root / t.synset / t.obj / "image"
        for sub, v in (("images", t.anchor), ("mirror_views", t.mirror), ("180_views", t.opposite)):
            shutil.copyfile(base / f"{v:04d}.png", out / sub / f"{k:04d}.png")


class Mir180Dataset(Dataset):
    """NMR root + split list -> dict anchor/positive/negative (3,H,W) in [0,1] (the mirror is the positive)."""

    def __init__(self, root: str | Path, split: str = "train", synsets: tuple[str, ...] = ()) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(self.root, "dataset root does not exist")
        synsets = synsets or tuple(
            sorted(p.name for p in self.root.iterdir() if (p / f"softras_{split}.lst").is_file())
        )
        self.triplets: list[Triplet] = []
        for s in synsets:
            objs = read_object_list(self.root / s / f"softras_{split}.lst")
            self.triplets += build_triplet_index(self.root, s, objs)
        if not self.triplets:
            raise DataError(self.root, f"no Mir-180 triplets for split {split!r}")

    def __len__(self) -> int:
        return len(self.triplets)

    def _img(self, t: Triplet, view: int) -> Tensor:
        p = self.root / t.synset / t.obj / "image" / f"{view:04d}.png"
        if not p.is_file():
            raise DataError(p, f"view {view} needed by Mir-180 is missing (NMR has 24 views)")
        return torch.from_numpy(np.ascontiguousarray(load_rgb(p))).permute(2, 0, 1)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        t = self.triplets[i]
        return {
            "anchor": self._img(t, t.anchor),
            "positive": self._img(t, t.mirror),
            "negative": self._img(t, t.opposite),
        }


def build_mir180(
    nmr_root: Path,
    synset: str,
    out: Path,
    *,
    split_fractions: tuple[float, float] = (0.8, 0.1),
    seed: int = 0,
    flat_export: bool = False,
    category_name: str = "",
) -> dict[str, int]:
    """Build a Mir-180 category folder from an NMR root (spec 1.4).

    out/For_Synthesis/<synset>/<obj> (symlinks to the NMR objects), softras_{train,val,test}.lst (our
    seeded object split), metadata.yaml; out/triplets_<split>.txt index; out/viewlist_<synset>.txt with
    source view 0 for every test object; with flat_export the official out/<split>/{images,...} folders.
    """
    from smcl.object.data.nmr import write_metadata

    src = Path(nmr_root) / synset
    if not src.is_dir():
        raise DataError(src, "synset folder not found in the NMR root")
    objs = sorted(p.name for p in src.iterdir() if (p / "image").is_dir())
    if not objs:
        raise DataError(src, "no object folders with image/")
    perm = np.random.default_rng(seed).permutation(len(objs))
    n_tr = max(1, int(len(objs) * split_fractions[0]))
    n_va = int(len(objs) * split_fractions[1])
    parts = {"train": perm[:n_tr], "val": perm[n_tr : n_tr + n_va], "test": perm[n_tr + n_va :]}
    fs = Path(out) / "For_Synthesis"
    (fs / synset).mkdir(parents=True, exist_ok=True)
    for o in objs:
        link = fs / synset / o
        if not link.exists():
            link.symlink_to((src / o).resolve(), target_is_directory=True)
    counts = {}
    for split, ids in parts.items():
        names = sorted(objs[i] for i in ids)
        atomic_write_text(fs / synset / f"softras_{split}.lst", "".join(f"{n}\n" for n in names))
        trip = build_triplet_index(fs, synset, names)
        write_triplet_index(Path(out) / f"triplets_{split}.txt", trip)
        if flat_export:
            export_flat_folders(fs, trip, Path(out) / split)
        counts[split] = len(names)
    test = sorted(objs[i] for i in parts["test"])
    atomic_write_text(Path(out) / f"viewlist_{synset}.txt", "".join(f"{synset} {o} 0\n" for o in test))
    write_metadata(fs, {synset: category_name or synset})
    return counts
