"""Render and score the test views of an SMCL object-level run: python scripts/eval_smcl.py --checkpoint <run>/checkpoints/step-X.pth [-D <root>] [-L viewlist.txt] [-O eval_out/display] [--nvs-sqa].

The model and evaluation settings come from the config stored in the checkpoint (-c / --set override it,
and the differences are printed); the authors' file: --weights official --weights-path SMCL_latest -c <yaml>.
Writes the PNGs (8-bit, truncated, as the official eval.py), renders.json (the list of what this run
rendered: only these are scored, never stale renders of an earlier run) and the report (tri-vision.eval/1
JSON + CSV). A non-empty -O that is not an earlier eval output is refused unless --overwrite (nothing in it is
deleted).
"""

from __future__ import annotations

from pathlib import Path

from common.cli import run_script
from common.config import ConfigError, build_parser, cli_overrides, load_config
from common.distributed import init_distributed, parse_devices
from common.errors import TriVisionError
from common.io import check_outputs
from common.runtime import keep_freed_memory


def main() -> None:

    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    p = build_parser(__doc__)
    p.add_argument("-D", "--datadir", default=None, help="NMR-layout root (default: the run's data.root)")
    p.add_argument(
        "-L", "--viewlist", type=Path, default=None, help="viewlist 'synset obj src' (default: eval.viewlist)"
    )
    p.add_argument(
        "-O", "--output", type=Path, default=Path("eval_out"), help="output folder for PNGs and report"
    )
    p.add_argument(
        "--weights", choices=["official"], default=None, help="the authors' file instead of --checkpoint"
    )
    p.add_argument("--weights-path", type=Path, default=None, help="path of the --weights file")
    p.add_argument(
        "--nvs-sqa", action="store_true", help="add NVS-SQA no-reference columns (views, novel orbit)"
    )
    p.add_argument("--allow-missing", action="store_true", help="skip missing renders, counted in the report")
    a = p.parse_args()
    from common.checkpoint import load_checkpoint, load_state_dict_strict
    from common.evaluation import model_info
    from smcl import build_model
    from smcl.object.data.nmr import NMRDataset, NMRDatasetConfig
    from smcl.object.experiment import SynthExperiment, synth_config_from_checkpoint
    from smcl.object.metrics import MANIFEST, calc_metrics, no_reference_scores, read_viewlist, render_dataset
    from smcl.object.models.view_synthesizer import ViewSynthesizer

    sets = [f"data.root={a.datadir}"] if a.datadir else []
    if a.checkpoint is not None:
        cfg, _ = synth_config_from_checkpoint(a.checkpoint, a.config, sets + cli_overrides(a))
    elif a.weights is not None:
        cfg = load_config(a.config, SynthExperiment, sets + cli_overrides(a))
    else:
        raise ConfigError(
            "give --checkpoint PATH (one of our runs) or --weights official --weights-path PATH"
        )
    viewlist = a.viewlist or (Path(cfg.eval.viewlist) if cfg.eval.viewlist else None)
    report = a.report or a.output / "eval.json"
    check_outputs([report, report.with_suffix(".csv")], [cfg.data.root, a.checkpoint, a.weights_path, viewlist],
                  dirs=[a.output])  # fmt: skip
    if _foreign_files(a.output) and not a.overwrite:
        raise TriVisionError(
            f"{a.output} holds files that are not an earlier eval_smcl.py output (no {MANIFEST}); "
            "choose an empty -O, or --overwrite to render beside them (only this run's renders are scored)"
        )
    device = init_distributed(parse_devices(a.devices)).device  # -d: the model and rays go there
    if a.checkpoint is not None:
        model = ViewSynthesizer(cfg.model)
        load_state_dict_strict(model, load_checkpoint(a.checkpoint)["model"], source=str(a.checkpoint))
    else:
        model = build_model(
            "smcl_view_synthesizer", "official", weights_path=a.weights_path, **_fields(cfg.model)
        )
    model.to(device).eval()
    ds = NMRDataset(
        NMRDatasetConfig(root=cfg.data.root, split=cfg.eval.split, pixel_centers=cfg.data.pixel_centers)
    )
    views = read_viewlist(viewlist) if viewlist is not None else None
    if a.nvs_sqa:  # loaded before rendering: missing weights stop the run before the work
        from nvs_sqa import QualityAssessor
        from nvs_sqa.frames import MIN_SIDE

        qa = QualityAssessor.from_official(device=device)
    n = render_dataset(model, ds, views, a.output)
    nr, nr_settings = None, None
    if a.nvs_sqa:
        nr = no_reference_scores(
            model, ds, views, a.output, lambda f: qa.score_frames(f).jod, min_side=MIN_SIDE
        )
        nr_settings = {"nvs_sqa_views": "NVS-SQA official JOD of the rendered test views in camera order",
                       "nvs_sqa_trajectory": "NVS-SQA official JOD of a 24-frame 15-degree orbit around the source view"}  # fmt: skip
    info = model_info(
        "smcl_view_synthesizer", weights=a.weights, checkpoint=a.checkpoint or a.weights_path, config=cfg
    )
    res = calc_metrics(ds.root, a.output, f"softras_{cfg.eval.split}", cfg.eval.lpips, allow_missing=a.allow_missing,
                       report_path=report, model_info=info, device=device,
                       nr_scores=nr, nr_settings=nr_settings)  # fmt: skip
    print(
        f"rendered {n} objects into {a.output}: " + " ".join(f"{k} {v:.4f}" for k, v in res.aggregate.items())
    )
    print(f"report: {res.path}")


def _foreign_files(folder: Path) -> bool:
    """True when `folder` holds anything and is not a previous render_dataset output (its manifest)."""
    from smcl.object.metrics import MANIFEST

    return folder.is_dir() and any(folder.iterdir()) and not (folder / MANIFEST).is_file()


def _fields(model_cfg) -> dict:
    """The YAML's model fields, except the input range and SE mode the official weights imply."""
    import dataclasses

    out = {
        f.name: getattr(model_cfg, f.name) for f in dataclasses.fields(model_cfg) if f.name != "input_range"
    }
    enc = dataclasses.asdict(out.pop("encoder"))
    enc.pop("se_mode")
    return {**out, "encoder": enc}


def cli() -> None:
    """Console-script entry point (`tv-eval-smcl`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
