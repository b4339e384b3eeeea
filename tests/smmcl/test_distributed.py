"""Real 2-process gloo run (torch.distributed.run, CPU): SMMCL DDP training with parameters that never get a
gradient (fconv1, and the projectors whenever no anchor group qualifies), then multi-rank evaluation whose
reduced confusion matrix must equal the single-process one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent(
    """
    import sys
    from dataclasses import replace
    from pathlib import Path

    import torch

    from common.config import load_config
    from common.distributed import cleanup_distributed, get_rank, get_world_size
    from common.engine import Trainer
    from smmcl.experiment import ExperimentConfig, build, load_trained, run_evaluation, test_dataset

    torch.set_num_threads(1)
    repo, out = Path(sys.argv[1]), Path(sys.argv[2])
    cfg = load_config(repo / "conf/smmcl/tiny.yaml", ExperimentConfig)
    cfg = replace(cfg, train=replace(cfg.train, max_steps=3, out_dir=str(out / "run")))
    parts = build(cfg)
    init = {k: v.clone() for k, v in parts["model"].state_dict().items()}
    trainer = Trainer(cfg.train, **parts, devices="cpu", config=cfg)
    assert trainer.info.distributed and get_world_size() == 2
    model = trainer.fit()
    params = {n: p.detach().clone() for n, p in model.named_parameters()}

    class Recording(torch.utils.data.Dataset):  # which test images this rank evaluates
        def __init__(self, ds):
            self.ds, self.names, self.seen = ds, ds.names, []
        def __len__(self):
            return len(self.ds)
        def __getitem__(self, i):
            self.seen.append(i)
            return self.ds[i]

    load_trained(model, out / "run" / "checkpoints" / "epoch-3.pth")  # as scripts/eval_smmcl.py does
    ds = Recording(test_dataset(cfg))
    confusion = torch.as_tensor(run_evaluation(model, ds, cfg.eval, cfg.model.num_classes).extra["seg"]["confusion"])
    torch.save({"init": init, "params": params, "seen": ds.seen, "confusion": confusion},
               out / f"rank{get_rank()}.pt")
    cleanup_distributed()
    """
)


def test_two_process_ddp_training_and_evaluation(tmp_path, monkeypatch):
    synthetic = pytest.importorskip("common.synthetic")
    synthetic.write_rgbx_scenes(tmp_path / "synthetic_rgbx", n_train=8, n_test=5, size=(60, 80), seed=0)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    env["DATA_ROOT"] = str(tmp_path)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(script), str(REPO), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))

    # (a) DDP training: every parameter identical on both ranks; trained ones moved, gradient-less ones not
    for name in r0["params"]:
        assert torch.equal(r0["params"][name], r1["params"][name]), name
    key = "backbone.block1.0.mlp.fc1.weight"
    assert not torch.equal(r0["params"][key], r0["init"][key])
    frozen = "backbone.fconv1.fusion_conv.0.weight"  # never gets a gradient (spec 9.1 #4)
    assert torch.equal(r0["params"][frozen], r0["init"][frozen])

    # (b) evaluation: the ranks split the 5 test images, and the reduced matrix equals one process's
    assert sorted(r0["seen"] + r1["seen"]) == list(range(5)) and not set(r0["seen"]) & set(r1["seen"])
    assert torch.equal(r0["confusion"], r1["confusion"])

    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    from common.config import load_config
    from smmcl.experiment import (
        ExperimentConfig,
        build_model_from,
        load_trained,
        run_evaluation,
        test_dataset,
    )

    cfg = load_config(REPO / "conf/smmcl/tiny.yaml", ExperimentConfig)
    cfg = replace(cfg, train=replace(cfg.train, out_dir=str(tmp_path / "run")))
    model = build_model_from(cfg)
    load_trained(model, tmp_path / "run" / "checkpoints" / "epoch-3.pth")
    single = run_evaluation(model, test_dataset(cfg), cfg.eval, cfg.model.num_classes)
    confusion = torch.as_tensor(single.extra["seg"]["confusion"])
    assert confusion.sum() > 0
    assert torch.equal(confusion, r0["confusion"])
