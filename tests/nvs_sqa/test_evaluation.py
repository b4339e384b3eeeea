"""Evaluation protocol arithmetic (spec nvs_sqa.md §4) against the README table and scipy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from nvs_sqa.evaluation import evaluate_features, load_labels, official_table, scene_correlations

# README per-scene (SRCC, PLCC) of the official checkpoint, spec §4
README = {
    "fieldwork": [
        (0.9, 0.7628),
        (0.8, 0.8035),
        (1.0, 0.9944),
        (0.9, 0.9361),
        (0.9, 0.9395),
        (0.9, 0.8370),
        (0.8, 0.7087),
        (1.0, 0.9901),
        (1.0, 0.9734),
    ],
    "llff": [
        (0.0, -0.3679),
        (0.9, 0.7713),
        (0.7, 0.6554),
        (0.9, 0.7288),
        (0.7, 0.8445),
        (0.8, 0.9498),
        (0.7, 0.7369),
        (0.9, 0.8341),
    ],
    "lab": [
        (0.5, 0.2545),
        (0.8, 0.8159),
        (0.1, 0.0470),
        (0.9, 0.9735),
        (0.9, 0.9432),
        (0.8, 0.7438),
        (0.9, 0.9704),
    ],
}


def test_readme_dataset_numbers_are_means_of_scenes() -> None:
    per_scene = {
        ds: {f"s{i}": {"srcc": s, "plcc": p} for i, (s, p) in enumerate(v)} for ds, v in README.items()
    }
    t = official_table(per_scene)
    assert t["fieldwork"]["srcc"] == pytest.approx(0.9111, abs=5e-5)
    assert t["fieldwork"]["plcc"] == pytest.approx(0.8828, abs=5e-5)
    assert t["llff"]["srcc"] == pytest.approx(0.7000, abs=5e-5)
    assert t["llff"]["plcc"] == pytest.approx(0.6441, abs=5e-5)
    assert t["lab"]["srcc"] == pytest.approx(0.7000, abs=5e-5)
    assert t["lab"]["plcc"] == pytest.approx(0.6783, abs=5e-5)
    assert t["Average"]["srcc"] == pytest.approx(np.mean([0.91111, 0.7, 0.7]), abs=1e-4)


def test_scene_correlations_group_by_scene_and_match_scipy() -> None:
    rng = np.random.default_rng(0)
    keys = [f"lab+S{s}+m{m}" for s in range(3) for m in range(5)]
    preds = {k: float(rng.normal()) for k in keys}
    labels = {k: float(rng.normal()) for k in keys}
    out = scene_correlations(preds, labels)
    ks = [k for k in keys if "+S1+" in k]
    x, y = [preds[k] for k in ks], [labels[k] for k in ks]
    assert out["lab"]["S1"]["srcc"] == pytest.approx(stats.spearmanr(x, y)[0])
    assert out["lab"]["S1"]["plcc"] == pytest.approx(stats.pearsonr(x, y)[0])
    assert out["lab"]["S1"]["n"] == 5


def test_end_to_end_on_features_recovers_a_linear_signal() -> None:
    rng = np.random.default_rng(1)
    keys = [f"{ds}+S{s}+m{m}" for ds in ("lab", "llff") for s in range(2) for m in range(6)]
    w = rng.normal(size=4)
    feats = {k: rng.normal(size=4).astype(np.float32) for k in keys}
    labels = {k: float(feats[k] @ w) for k in keys}
    split = {
        "tr_keys": [k for k in keys if int(k[-1]) % 2 == 0],
        "tt_keys": [k for k in keys if int(k[-1]) % 2],
        "labels": labels,
    }
    report, ridge = evaluate_features(feats, split, alpha=1e-3, n_boot=50)
    assert report["official"]["Average"]["srcc"] == pytest.approx(1.0)
    assert report["pooled"]["lab"]["krcc"]["value"] > 0.9


def test_bad_label_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "l.json").write_text(json.dumps({"tr_keys": ["a+b+c"], "tt_keys": [], "labels": {}}))
    with pytest.raises(ValueError, match="l.json"):
        load_labels(tmp_path / "l.json")


def test_eval_script_on_a_synthetic_bank(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from common.synthetic import write_nss_bank
    from nvs_sqa.weights import official_weights_available

    if not official_weights_available():
        pytest.skip("official weights not fetched: run nvs_sqa.weights.fetch_official_weights()")
    write_nss_bank(tmp_path, n_scenes=1, n_methods=4, n_frames=2, size=(72, 80), seed=0)
    bank = tmp_path / "benchmark_bank"
    repo = Path(__file__).resolve().parents[2]
    cmd = [
        sys.executable,
        str(repo / "scripts" / "eval_nvs_sqa.py"),
        "--bank",
        str(bank),
        "--labels",
        str(bank / "labels.json"),
        "--report",
        str(tmp_path / "r.json"),
        "--save-regressor",
        str(tmp_path / "r_ridge.json"),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=repo, env=dict(os.environ, OMP_NUM_THREADS="1")
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["schema"] == "tri-vision.eval/1" and report["model"]["weights"] == "official"
    assert {k.split("/")[0] for k in report["aggregate"]} == {"fieldwork", "lab", "Average"}
    assert len(report["items"]) == len(load_labels(bank / "labels.json")["tt_keys"])
    assert (tmp_path / "r.csv").read_text().startswith("id,")
    assert (tmp_path / "r_ridge.json").exists() and "PLCC" in proc.stdout


def _random_assessor(seed: int):
    import torch

    from nvs_sqa.assessor import QualityAssessor
    from nvs_sqa.models import SequenceModel
    from nvs_sqa.ridge import RidgeReadout

    torch.manual_seed(seed)
    return QualityAssessor(model=SequenceModel(), ridge=RidgeReadout(np.zeros(384, np.float32), 0.0))


def test_features_cache_is_keyed_by_model_weights_and_bank_contents(tmp_path: Path) -> None:
    """Issue 13 §2: a cache built by another model or from another bank is refused, never reused."""
    from common.errors import DataError
    from common.synthetic import write_nss_bank
    from nvs_sqa.evaluation import bank_folder, features_with_cache

    write_nss_bank(tmp_path, n_scenes=1, n_methods=3, n_frames=2, size=(72, 80), seed=0)
    bank = tmp_path / "benchmark_bank"
    split = load_labels(bank / "labels.json")
    keys = split["tr_keys"] + split["tt_keys"]
    cache = tmp_path / "cache.npz"
    qa = _random_assessor(0)
    first = features_with_cache(qa, bank, keys, cache)
    assert cache.is_file()

    class NoExtraction:  # the same model; scoring anything would be a cache miss
        model = qa.model

        def score_nss_folder(self, *a, **k):
            raise AssertionError("the cache should have been used")

    again = features_with_cache(NoExtraction(), bank, keys, cache)
    assert all(np.array_equal(first[k], again[k]) for k in keys)
    with pytest.raises(DataError, match="another model"):
        features_with_cache(_random_assessor(1), bank, keys, cache)
    frame = sorted(bank_folder(bank, keys[0]).iterdir())[0]
    frame.write_bytes(frame.read_bytes()[:-1] + b"\0")  # one byte of one frame changes
    with pytest.raises(DataError, match="bank contents"):
        features_with_cache(qa, bank, keys, cache)


def test_evaluate_from_the_checkpoint_alone_after_deleting_the_yaml(tmp_path: Path) -> None:
    """Issue 12 §3: train tiny (a non-default model), delete its YAML, evaluate with --checkpoint alone."""
    import os
    import shutil
    import subprocess
    import sys

    import torch

    from common.synthetic import write_nss_bank, write_nss_renders
    from nvs_sqa.evaluation import evaluate_features, extract_features
    from nvs_sqa.experiment import load_encoder_checkpoint
    from nvs_sqa.models import SequenceModelConfig, build_model

    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, OMP_NUM_THREADS="1", DATA_ROOT=str(tmp_path))
    write_nss_renders(tmp_path / "nss", n_scenes=2, n_frames=3, size=(72, 80), seed=0)
    yaml = tmp_path / "tiny.yaml"
    shutil.copy(repo / "conf" / "nvs_sqa" / "tiny.yaml", yaml)
    run = tmp_path / "run"
    train = [
        sys.executable,
        str(repo / "scripts" / "train_nvs_sqa.py"),
        "-c",
        str(yaml),
        "-o",
        str(run),
        "--set",
        "model.fusion=attention",
        "--set",
        "model.num_layers=1",
    ]
    proc = subprocess.run(train, capture_output=True, text=True, cwd=repo, env=env, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (ckpt,) = list(run.rglob("*.pth"))
    yaml.unlink()
    for cfg_file in run.rglob("config.yaml"):
        cfg_file.unlink()

    write_nss_bank(tmp_path / "eval", n_scenes=1, n_methods=4, n_frames=2, size=(72, 80), seed=1)
    bank = tmp_path / "eval" / "benchmark_bank"
    ev = [
        sys.executable,
        str(repo / "scripts" / "eval_nvs_sqa.py"),
        "--checkpoint",
        str(ckpt),
        "--bank",
        str(bank),
        "--labels",
        str(bank / "labels.json"),
        "--report",
        str(tmp_path / "r.json"),
    ]
    proc = subprocess.run(ev, capture_output=True, text=True, cwd=repo, env=env, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert (
        report["model"]["checkpoint_sha256"] and report["model"]["config"]["model"]["fusion"] == "attention"
    )

    # the same metrics as the model built by hand with the training config
    torch.set_num_threads(1)
    model = load_encoder_checkpoint(
        build_model(cfg=SequenceModelConfig(fusion="attention", num_layers=1)), ckpt
    )
    from nvs_sqa.assessor import QualityAssessor
    from nvs_sqa.ridge import RidgeReadout

    qa = QualityAssessor(model=model, ridge=RidgeReadout(np.zeros(384, np.float32), 0.0))
    split = load_labels(bank / "labels.json")
    want, _ = evaluate_features(extract_features(qa, bank, split["tr_keys"] + split["tt_keys"]), split)
    for ds, row in want["official"].items():
        for m, v in row.items():
            assert report["aggregate"][f"{ds}/{m}"] == pytest.approx(v, abs=1e-6)
    with pytest.raises(Exception, match="state_dict|missing|unexpected|Mismatch"):
        load_encoder_checkpoint(build_model(), ckpt)  # the default model does not fit: the config mattered
