"""Entry points check every output before their first expensive step (issue 21 items 8, 11, 13, 14).

The scripts run in this process with their expensive steps replaced by a function that fails the test: an
output check that only happened after the work would let that function run."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from common.errors import DataError, TriVisionError
from common.io import NotWritableError, OutputInsideInputError

REPO = Path(__file__).resolve().parents[2]


def script(name: str):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def no_work(*_a, **_k):
    raise AssertionError("the work started before the outputs were checked")


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    """A path whose folder cannot be created (its parent is a file)."""
    (tmp_path / "file").write_text("x")
    return tmp_path / "file" / "sub"


def run_main(monkeypatch, mod, *argv: object) -> None:
    monkeypatch.setattr(sys, "argv", [mod.__name__, *map(str, argv)])
    mod.main()


def test_calc_metrics_smcl(monkeypatch, tmp_path: Path, blocked: Path) -> None:
    import smcl.object.metrics

    mod = script("calc_metrics_smcl")
    monkeypatch.setattr(smcl.object.metrics, "calc_metrics", no_work)  # imported by main() (lazy --help)
    with pytest.raises(NotWritableError):
        run_main(monkeypatch, mod, "-D", tmp_path / "d", "-O", tmp_path / "r", "--report", blocked / "m.json")


def test_nvs_sqa_stress(monkeypatch, tmp_path: Path, blocked: Path) -> None:
    import nvs_sqa.stress

    mod = script("nvs_sqa_stress")
    monkeypatch.setattr(nvs_sqa.stress, "load_sequence", no_work)
    with pytest.raises(NotWritableError):
        mod.main([str(tmp_path / "nss"), "--out", str(blocked)])


def test_eval_smmcl(monkeypatch, tmp_path: Path, blocked: Path) -> None:
    from common.config import load_config
    from smmcl.experiment import ExperimentConfig

    mod = script("eval_smmcl")
    sets = [f"train.out_dir={tmp_path / 'run'}", f"data.root={tmp_path / 'data'}"]
    cfg = load_config(REPO / "conf/smmcl/tiny.yaml", ExperimentConfig, sets)
    import smmcl.experiment as exp

    monkeypatch.setattr(exp, "from_checkpoint", lambda *a: (cfg, torch.nn.Identity(), []))
    monkeypatch.setattr(exp, "test_dataset", lambda c: SimpleNamespace(root=tmp_path / "data"))
    monkeypatch.setattr(exp, "run_evaluation", no_work)
    (tmp_path / "ck.pth").write_bytes(b"")
    with pytest.raises(NotWritableError):
        run_main(monkeypatch, mod, "--checkpoint", tmp_path / "ck.pth", "--report", blocked / "r.json")
    ck = tmp_path / "ck.csv"  # a derived output (the report's CSV) over an input
    with pytest.raises(OutputInsideInputError):
        run_main(monkeypatch, mod, "--checkpoint", ck, "--report", tmp_path / "ck.json")


def test_test_smcl_scene(monkeypatch, tmp_path: Path, blocked: Path) -> None:
    from common.config import load_config
    from smcl.scene.experiment import ExperimentConfig

    mod = script("test_smcl_scene")
    sets = [f"train.out_dir={blocked}", f"data.root={tmp_path / 'data'}"]
    cfg = load_config(REPO / "conf/smcl/scene_tiny.yaml", ExperimentConfig, sets)
    import smcl.scene.experiment as exp

    monkeypatch.setattr(exp, "from_checkpoint", lambda *a: (torch.nn.Identity(), cfg))
    monkeypatch.setattr(exp, "evaluate_split", no_work)
    (tmp_path / "ck.pth").write_bytes(b"")  # its digest goes into the report's model block
    with pytest.raises(NotWritableError):  # the render folder <out_dir>/test
        run_main(monkeypatch, mod, "--checkpoint", tmp_path / "ck.pth", "--report", tmp_path / "r.json")


def test_render_smcl_out_inside_the_checkpoints_dataset_is_refused(monkeypatch, tmp_path: Path) -> None:
    """Item 14: only -D was checked; the dataset named in the checkpoint's config is an input too."""
    from common.io import atomic_torch_save

    mod = script("render_smcl")
    data = tmp_path / "data"
    data.mkdir()
    ck = atomic_torch_save({"config": {"data": {"root": str(data)}}}, tmp_path / "ck.pth")
    monkeypatch.setattr(mod, "render_object", no_work)
    for out in (data / "frames", data / "orbit.mp4"):
        with pytest.raises(OutputInsideInputError, match="inside the input"):
            run_main(monkeypatch, mod, "--checkpoint", ck, "--out", out, "--no-score")
    assert list(data.iterdir()) == []


def test_render_smcl_loads_the_scorer_before_rendering(monkeypatch, tmp_path: Path) -> None:
    """Item 11: NVS-SQA weights that are not fetched stop the run before the frames are rendered."""
    import nvs_sqa
    from common.io import atomic_torch_save

    def not_fetched(*_a, **_k):
        raise TriVisionError("NVS-SQA weights not fetched")

    mod = script("render_smcl")
    ck = atomic_torch_save({"config": {"data": {"root": str(tmp_path / "data")}}}, tmp_path / "ck.pth")
    monkeypatch.setattr(mod, "render_object", no_work)
    monkeypatch.setattr(nvs_sqa, "NSSQuality", not_fetched)
    with pytest.raises(TriVisionError, match="not fetched"):
        run_main(monkeypatch, mod, "--checkpoint", ck, "--out", tmp_path / "frames")


# ---- eval_smcl: outputs checked first, stale renders never scored, names from the list stay inside ------
@pytest.fixture(scope="module")
def nmr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from common.synthetic import write_nmr_dataset

    return write_nmr_dataset(tmp_path_factory.mktemp("nmr") / "nmr", n_objects=5, image_size=32, seed=0)


def eval_smcl_patched(monkeypatch, root: Path):
    from common.config import load_config
    from smcl.object.experiment import SynthExperiment

    mod = script("eval_smcl")
    cfg = load_config(REPO / "conf/smcl/object_tiny.yaml", SynthExperiment, [f"data.root={root}"])
    import common.checkpoint
    import smcl.object.experiment as exp

    monkeypatch.setattr(exp, "synth_config_from_checkpoint", lambda *a: (cfg, []))
    monkeypatch.setattr(common.checkpoint, "load_checkpoint", no_work)
    return mod


def test_eval_smcl_checks_outputs_and_refuses_a_foreign_folder(monkeypatch, tmp_path, nmr, blocked) -> None:
    mod = eval_smcl_patched(monkeypatch, nmr)
    ck = tmp_path / "ck.pth"
    with pytest.raises(NotWritableError):
        run_main(monkeypatch, mod, "--checkpoint", ck, "-O", tmp_path / "o", "--report", blocked / "r.json")
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    with pytest.raises(TriVisionError, match="--overwrite"):
        run_main(monkeypatch, mod, "--checkpoint", ck, "-O", user)
    with pytest.raises(AssertionError, match="the work started"):  # --overwrite: goes on (nothing deleted)
        run_main(monkeypatch, mod, "--checkpoint", ck, "-O", user, "--overwrite")
    assert (user / "notes.txt").read_text() == "keep"


def fake_render_views(model, obj, src, views):
    """The ground truth darkened: a deterministic stand-in for the network (the protocol is under test)."""
    return obj["images"][views] * 0.8


def test_stale_renders_of_an_earlier_run_are_not_scored(monkeypatch, tmp_path: Path, nmr: Path) -> None:
    """Item 8: a second evaluation into the same folder with another source view scored 24 views, not 23."""
    import numpy as np

    import smcl.object.metrics as metrics
    import smcl.object.render as render
    from smcl.object.data.nmr import NMRDataset, NMRDatasetConfig

    monkeypatch.setattr(metrics, "render_views", fake_render_views)
    ds = NMRDataset(NMRDatasetConfig(root=str(nmr), split="test"))
    keys = [f"{s}/{o}" for s, o in ds.objects]
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    metrics.render_dataset(None, ds, dict.fromkeys(keys, [0]), out)
    metrics.render_dataset(None, ds, dict.fromkeys(keys, [3]), out)  # view 0's render from before is stale
    metrics.render_dataset(None, ds, dict.fromkeys(keys, [3]), fresh)
    got = metrics.calc_metrics(nmr, out, lpips=False)
    want = metrics.calc_metrics(nmr, fresh, lpips=False)
    assert got.extra["views_evaluated"] == want.extra["views_evaluated"] == 23 * len(keys)
    assert got.aggregate == want.aggregate
    monkeypatch.setattr(render, "render_trajectory", lambda *a, **k: np.zeros((2, 32, 32, 3), np.uint8))
    nr = metrics.no_reference_scores(None, ds, dict.fromkeys(keys, [3]), out, len)  # score = frame count
    assert {v["nvs_sqa_views"] for v in nr.values()} == {23.0}  # the no-reference column too
    (out / metrics.MANIFEST).write_text('{"complete": false, "objects": {}}')  # an interrupted render
    with pytest.raises(DataError, match="interrupted"):
        metrics.calc_metrics(nmr, out, lpips=False)


def test_object_names_that_leave_the_dataset_are_refused(tmp_path: Path, nmr: Path) -> None:
    """Item 13: `../../x` in softras_test.lst made eval_smcl.py write PNGs outside -O."""
    import shutil

    from smcl.object.data.nmr import NMRDataset, NMRDatasetConfig
    from smcl.object.metrics import calc_metrics

    nmr = shutil.copytree(nmr, tmp_path / "nmr")  # this test edits the list
    (lst,) = nmr.glob("*/softras_test.lst")
    lst.write_text(lst.read_text() + "../../../escape\n")
    with pytest.raises(DataError, match=r"softras_test\.lst.*'\.\./\.\./\.\./escape'"):
        NMRDataset(NMRDatasetConfig(root=str(nmr), split="test"))
    with pytest.raises(DataError, match="softras_test.lst"):
        calc_metrics(nmr, tmp_path / "out", lpips=False)
