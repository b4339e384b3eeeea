"""Logic of scripts/nvs_sqa_app.py: score paths, print a table, write JSON/CSV/NPZ/plot outputs."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nvs_sqa.assessor import NSSScore, QualityAssessor, count_frames


def score_paths(
    assessor: QualityAssessor, paths: Sequence[Path], show_progress: bool = True
) -> list[NSSScore]:
    """Score every path (video, NSS folder, or folder of NSS folders) with one tqdm bar over frames."""
    from tqdm import tqdm

    total = sum(count_frames(Path(p)) for p in paths) or None
    results: list[NSSScore] = []
    with tqdm(total=total, unit="frame", disable=not show_progress, leave=False) as bar:
        for p in paths:
            results.extend(assessor.score_folder(Path(p), progress=bar.update))
    return results


def format_table(results: Sequence[NSSScore]) -> str:
    """Plain-text table: name, frames, resolution, JOD (flagged when outside the label range)."""
    rows = [("name", "frames", "resolution", "JOD")]
    for r in results:
        rows.append(
            (
                r.name,
                str(r.n_frames),
                f"{r.width}x{r.height}",
                f"{r.jod:.4f}" + (" (!)" if r.out_of_range else ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if any(r.out_of_range for r in results):
        lines.append("(!) outside the JOD range of the training labels: probably not a rendered scene")
    return "\n".join(lines)


def write_outputs(
    results: Sequence[NSSScore],
    json_path: Path | None = None,
    csv_path: Path | None = None,
    features_path: Path | None = None,
    plot_path: Path | None = None,
) -> None:
    """Write the requested outputs (never into the inputs: the caller chooses the paths)."""
    rows = [
        {
            "name": r.name,
            "frames": r.n_frames,
            "width": r.width,
            "height": r.height,
            "jod": r.jod,
            "out_of_range": r.out_of_range,
        }
        for r in results
    ]
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=1))
    if csv_path:
        with open(csv_path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    if features_path:
        np.savez(features_path, **{r.name: r.feature.astype(np.float32) for r in results})
    if plot_path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(results) + 2), 3.5))
        ax.bar([r.name for r in results], [r.jod for r in results], color="tab:blue")
        ax.set_ylabel("predicted JOD (higher is better)")
        ax.tick_params(axis="x", rotation=45)
        fig.tight_layout()
        fig.savefig(plot_path, dpi=100)
        plt.close(fig)
