"""Render every non-source view of the test objects: python scripts/eval_smcl.py -c conf/smcl/mir180.yaml -D <root> -n display -L viewlist.txt -O eval_out/display --ckpt <run>/checkpoints/step-X.pth."""

from __future__ import annotations

from pathlib import Path

from common.checkpoint import load_checkpoint, load_state_dict_strict
from common.config import build_parser, cli_overrides, load_config
from common.runtime import keep_freed_memory
from smcl.object.checkpoints import load_official_synthesizer
from smcl.object.data.nmr import NMRDataset, NMRDatasetConfig
from smcl.object.experiment import SynthExperiment
from smcl.object.metrics import read_viewlist, render_dataset
from smcl.object.models.view_synthesizer import ViewSynthesizer


def main() -> None:
    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    p = build_parser(__doc__)
    p.add_argument("-D", "--datadir", required=True, help="NMR-layout root")
    p.add_argument("-n", "--name", default="display", help="experiment name (for messages)")
    p.add_argument("-L", "--viewlist", type=Path, required=True, help="viewlist: synset obj src_view")
    p.add_argument("-O", "--output", type=Path, default=Path("eval_out"), help="output folder for PNGs")
    p.add_argument("--ckpt", type=Path, required=True, help="our engine checkpoint (.pth)")
    p.add_argument("--official", action="store_true", help="--ckpt is an official SMCL_latest state_dict")
    p.add_argument("--split", default="test")
    a = p.parse_args()
    cfg = load_config(a.config, SynthExperiment, [f"data.root={a.datadir}"] + cli_overrides(a))
    model = ViewSynthesizer(cfg.model)
    if a.official:
        load_official_synthesizer(model, a.ckpt)
    else:
        load_state_dict_strict(model, load_checkpoint(a.ckpt)["model"], source=str(a.ckpt))
    ds = NMRDataset(NMRDatasetConfig(root=a.datadir, split=a.split, pixel_centers=cfg.data.pixel_centers))
    n = render_dataset(model, ds, read_viewlist(a.viewlist), a.output)
    print(f"{a.name}: rendered {n} objects into {a.output}")


if __name__ == "__main__":
    main()
