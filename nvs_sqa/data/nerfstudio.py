"""Commands that build the unlabelled NSS training set with nerfstudio (spec nvs_sqa.md §3.1).

nerfstudio is not installable in this project's environment; these functions only construct the
`ns-train` / `ns-render interpolate` command lines (unit-tested), and scripts/make_nss_dataset.py runs them.
"""

from __future__ import annotations

from pathlib import Path

from nvs_sqa.constants import METHODS, SCENES


def train_command(data_root: Path, scene: str, method: str, out_root: Path) -> list[str]:
    """ns-train <method> ... nerfstudio-data --data <scene>, experiment named <scene>__<method>."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {sorted(METHODS)}")
    ns_method, extra = METHODS[method]
    return [
        "ns-train",
        ns_method,
        "--output-dir",
        str(out_root),
        "--experiment-name",
        f"{scene}__{method}",
        "--timestamp",
        "run",
        "--pipeline.datamanager.images-on-gpu",
        "True",
        "--viewer.quit-on-train-completion",
        "True",
        *extra,
        "nerfstudio-data",
        "--data",
        str(Path(data_root) / scene),
    ]


def render_command(out_root: Path, scene: str, method: str, renders_root: Path, fps: int = 30) -> list[str]:
    """ns-render interpolate writing PNG frames to renders/<scene>__<method>/00000.png ..."""
    ns_method = METHODS[method][0]
    config = Path(out_root) / f"{scene}__{method}" / ns_method / "run" / "config.yml"
    return [
        "ns-render",
        "interpolate",
        "--load-config",
        str(config),
        "--output-format",
        "images",
        "--image-format",
        "png",
        "--frame-rate",
        str(fps),
        "--output-path",
        str(Path(renders_root) / "renders" / f"{scene}__{method}"),
    ]


def dataset_commands(
    data_root: Path, out_root: Path, renders_root: Path, scenes=SCENES, methods=tuple(METHODS)
) -> list[list[str]]:
    """Train + render commands for every scene x method, in order."""
    cmds: list[list[str]] = []
    for s in scenes:
        for m in methods:
            cmds += [train_command(data_root, s, m, out_root), render_command(out_root, s, m, renders_root)]
    return cmds
