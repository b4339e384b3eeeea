"""Build Mir-180 for one category: python scripts/make_mir180.py --nmr <NMR root> --category display --out <dir>."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.cli import run_script
from common.io import check_outputs_outside_inputs

# ShapeNet synset ids of the categories the official pretraining script lists.
SYNSETS = {"bench": "02828884", "car": "02958343", "chair": "03001627", "display": "03211117",
           "plane": "02691156", "speaker": "03691459", "lamp": "03636649", "sofa": "04256520"}  # fmt: skip


def main() -> None:
    from smcl.object.data.mir180 import build_mir180

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nmr", type=Path, required=True, help="NMR_Dataset root (<synset>/<obj>/...)")
    p.add_argument("--category", required=True, help=f"name ({', '.join(SYNSETS)}) or a synset id")
    p.add_argument("--out", type=Path, required=True, help="output folder, e.g. Mir-180_Dataset/display")
    p.add_argument("--seed", type=int, default=0, help="object split seed")
    p.add_argument("--flat-export", action="store_true", help="also write the official flat triplet folders")
    p.add_argument("--debug", action="store_true", help="show the traceback of errors")
    a = p.parse_args()
    check_outputs_outside_inputs([a.out], [a.nmr])
    synset = SYNSETS.get(a.category, a.category)
    counts = build_mir180(
        a.nmr, synset, a.out, seed=a.seed, flat_export=a.flat_export, category_name=a.category
    )
    print(f"Mir-180 {a.category} ({synset}) -> {a.out}: {counts} objects, 10 triplets each")


def cli() -> None:
    """Console-script entry point (`tv-make-mir180`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
