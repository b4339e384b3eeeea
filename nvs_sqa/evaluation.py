"""Evaluation protocol of spec nvs_sqa.md §4 plus the optional pooled statistics of §6.4.

Official: frozen features -> Ridge(alpha=1, raw features) fitted on tr_keys of all datasets -> predict tt_keys
-> per-scene SRCC / PLCC over that scene's test methods -> mean per dataset -> "Average" = mean of datasets.
Extra (not in the README numbers): pooled per-dataset SRCC / PLCC / KRCC with bootstrap intervals.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from common.errors import DataError
from common.metrics.correlation import bootstrap_ci, krcc, plcc, srcc
from common.weights import state_dict_sha256
from nvs_sqa.frames import nss_sha256
from nvs_sqa.ridge import RidgeReadout, fit_ridge


def load_labels(path: Path) -> dict:
    """Flat split JSON: tr_keys, tt_keys, labels {"<dataset>+<Scene>+<method>": JOD}."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise DataError(path, f"cannot read the label file ({err})") from err
    for k in ("tr_keys", "tt_keys", "labels"):
        if k not in data:
            raise DataError(path, f"missing key {k!r} (expected tr_keys, tt_keys, labels)")
    bad = [k for k in data["tr_keys"] + data["tt_keys"] if k not in data["labels"] or k.count("+") != 2]
    if bad:
        raise DataError(path, f"keys without a label or not '<dataset>+<Scene>+<method>': {bad[:5]}")
    return data


def bank_folder(bank: Path, key: str) -> Path:
    """benchmark_bank/<dataset>/<Scene>/<method>/frames for an item key."""
    ds, scene, method = key.split("+")
    return Path(bank) / ds / scene / method / "frames"


def extract_features(
    assessor, bank: Path, keys: list[str], progress: Callable[[int], None] | None = None
) -> dict:
    """{key: (384,) float32} for every key, from the bank's frame folders."""
    return {k: assessor.score_nss_folder(bank_folder(bank, k), progress).feature for k in keys}


def scene_correlations(preds: Mapping[str, float], labels: Mapping[str, float]) -> dict[str, dict[str, dict]]:
    """{dataset: {scene: {"srcc", "plcc", "n"}}} over the keys in `preds` (the test methods per scene)."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for k in preds:
        ds, scene, _ = k.split("+")
        groups[(ds, scene)].append(k)
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for (ds, scene), ks in sorted(groups.items()):
        x = np.array([preds[k] for k in ks], dtype=np.float64)
        y = np.array([labels[k] for k in ks], dtype=np.float64)
        out[ds][scene] = {"srcc": srcc(x, y), "plcc": plcc(x, y), "n": len(ks)}
    return dict(out)


def official_table(per_scene: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    """Per-dataset means of per-scene SRCC/PLCC, plus "Average" = mean of the dataset means (README table)."""
    table = {
        ds: {m: float(np.mean([s[m] for s in scenes.values()])) for m in ("srcc", "plcc")}
        for ds, scenes in per_scene.items()
    }
    table["Average"] = {m: float(np.mean([table[ds][m] for ds in per_scene])) for m in ("srcc", "plcc")}
    return table


def pooled_table(
    preds: Mapping[str, float], labels: Mapping[str, float], n_boot: int = 1000, seed: int = 0
) -> dict:
    """Pooled per-dataset SRCC / PLCC / KRCC with percentile bootstrap 95 % intervals (not the README protocol)."""
    by_ds: dict[str, list[str]] = defaultdict(list)
    for k in preds:
        by_ds[k.split("+")[0]].append(k)
    out = {}
    for ds, ks in sorted(by_ds.items()):
        x = np.array([preds[k] for k in ks])
        y = np.array([labels[k] for k in ks])
        out[ds] = {
            name: {"value": fn(x, y), "ci95": list(bootstrap_ci(fn, x, y, n=n_boot, seed=seed))}
            for name, fn in (("srcc", srcc), ("plcc", plcc), ("krcc", krcc))
        }
    return out


def evaluate_features(
    feats: Mapping[str, np.ndarray],
    split: dict,
    alpha: float = 1.0,
    standardize: bool = False,
    n_boot: int = 1000,
) -> tuple[dict, RidgeReadout]:
    """Fit the read-out on tr_keys, predict tt_keys, return (report dict, fitted readout)."""
    tr, tt, labels = split["tr_keys"], split["tt_keys"], split["labels"]
    ridge = fit_ridge(np.stack([feats[k] for k in tr]), np.array([labels[k] for k in tr]), alpha, standardize)
    preds = {k: float(v) for k, v in zip(tt, ridge.predict(np.stack([feats[k] for k in tt])))}
    per_scene = scene_correlations(preds, labels)
    report = {
        "official": official_table(per_scene),
        "per_scene": per_scene,
        "pooled": pooled_table(preds, labels, n_boot=n_boot),
        "predictions": preds,
    }
    return report, ridge


def format_report(report: dict) -> str:
    """Markdown tables: the official per-dataset means, then pooled statistics."""
    off = report["official"]
    cols = list(off)
    lines = ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for m in ("srcc", "plcc"):
        lines.append(f"| {m.upper()} | " + " | ".join(f"{off[c][m]:.4f}" for c in cols) + " |")
    lines += ["", "| pooled | SRCC [95% CI] | PLCC [95% CI] | KRCC [95% CI] |", "|---|---|---|---|"]
    for ds, v in report["pooled"].items():
        cells = [
            f"{v[m]['value']:.3f} [{v[m]['ci95'][0]:.2f}, {v[m]['ci95'][1]:.2f}]"
            for m in ("srcc", "plcc", "krcc")
        ]
        lines.append(f"| {ds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- features cache: keyed by the model's weights and the bank's contents --------------------------------
def bank_sha256(bank: Path, keys: list[str]) -> str:
    """sha256 over the keys and each NSS's content digest (`nss_sha256`: what the features are computed from)."""
    h = hashlib.sha256()
    for key in sorted(keys):
        h.update(f"{key}\n{nss_sha256(bank_folder(bank, key))}\n".encode())
    return h.hexdigest()


def features_with_cache(assessor, bank: Path, keys: list[str], cache: Path | None) -> dict[str, np.ndarray]:
    """Features of `keys`, read from `cache` when it was built by the same model weights from the same bank
    contents, else extracted (and the cache written). A cache of another model or bank is refused."""
    from common.io import atomic_savez, load_npz

    model_sha = state_dict_sha256(assessor.model.state_dict())
    bank_sha = bank_sha256(bank, keys)
    if cache is not None and Path(cache).is_file():
        z = load_npz(cache)
        meta = {k: str(z.pop(k)) for k in ("__model_sha256__", "__bank_sha256__") if k in z}
        if len(meta) != 2:
            raise DataError(cache, "not a features cache of eval_nvs_sqa.py (no model/bank digests)")
        if meta["__model_sha256__"] != model_sha:
            raise DataError(
                cache,
                f"features cache was built by another model (weights sha256 {meta['__model_sha256__'][:12]}..., "
                f"this model {model_sha[:12]}...); delete it or pass another --features-cache path",
            )
        if meta["__bank_sha256__"] != bank_sha:
            raise DataError(
                cache,
                "features cache was built from other bank contents (frames or keys differ); delete it or pass "
                "another --features-cache path",
            )
        missing = [k for k in keys if k not in z]
        if missing:
            raise DataError(cache, f"features cache lacks {missing[:3]}")
        return {k: z[k] for k in keys}
    feats = extract_features(assessor, bank, keys)
    if cache is not None:
        atomic_savez(cache, **feats, __model_sha256__=np.array(model_sha), __bank_sha256__=np.array(bank_sha))
    return feats


def report_blocks(report: dict, labels: Mapping[str, float]) -> tuple[dict, list[dict], dict]:
    """(aggregate, items, extra) of a common.evaluation report from evaluate_features' report."""
    aggregate = {f"{ds}/{m}": v for ds, row in report["official"].items() for m, v in row.items()}
    items = [
        {"id": k, "dataset": k.split("+")[0], "scene": k.split("+")[1], "pred": v, "label": float(labels[k])}
        for k, v in report["predictions"].items()
    ]
    extra = {"per_scene": report["per_scene"], "pooled": report["pooled"]}
    return aggregate, items, extra
