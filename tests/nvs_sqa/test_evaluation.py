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
        "--json",
        str(tmp_path / "r.json"),
        "--save-regressor",
        str(tmp_path / "r.npz"),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=repo, env=dict(os.environ, OMP_NUM_THREADS="1")
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["official"]) == {"fieldwork", "lab", "Average"}
    assert len(report["predictions"]) == len(load_labels(bank / "labels.json")["tt_keys"])
    assert (tmp_path / "r.npz").exists() and "PLCC" in proc.stdout
