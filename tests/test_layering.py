"""Import rules of the monorepo, checked on the source with `ast` (no imports executed)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPERS = {"smcl", "smmcl", "nvs_sqa"}
OUTSIDE = {"scripts", "bench", "tests"}


def _imported_top_levels(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def test_packages_respect_import_rules() -> None:
    bad = []
    for pkg in sorted(PAPERS | {"common"}):
        for f in (ROOT / pkg).rglob("*.py"):
            for line, top in _imported_top_levels(f):
                forbidden = (
                    top in OUTSIDE or (top in PAPERS and top != pkg) or (pkg == "common" and top in PAPERS)
                )
                if forbidden:
                    bad.append(f"{f.relative_to(ROOT)}:{line} imports {top}")
    assert not bad, "forbidden imports:\n" + "\n".join(bad)


def test_layering_check_detects_a_violation(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import smmcl.models\nfrom scripts import x\n")
    assert [t for _, t in _imported_top_levels(f)] == ["smmcl", "scripts"]


def test_every_script_has_help() -> None:
    """Every entry point answers --help (a few at a time: most of the cost is importing torch)."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    scripts = sorted((ROOT / "scripts").glob("*.py")) + sorted((ROOT / "bench").glob("*.py"))
    scripts = [s for s in scripts if s.name != "__init__.py"]
    assert scripts, "no scripts found"

    def run(s: Path) -> str | None:
        p = subprocess.run(
            [sys.executable, str(s), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=600
        )
        if p.returncode != 0 or "usage" not in p.stdout.lower():
            return f"{s.relative_to(ROOT)}: rc={p.returncode} {p.stderr[-300:]}"
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f for f in pool.map(run, scripts) if f]
    assert not failures, "\n".join(failures)


# Reading and writing go through common/ (issue 12 section 1): outside common/, package code does not call
# these directly. `open(..., "w")`-style writes are checked by name of the call; the helpers are
# common.image_io (images, labels, depth, masks, video), common.checkpoint / common.weights (torch.load),
# common.io (atomic writes, JSON), common.viz (GIF, video, plots).
FORBIDDEN_CALLS = {
    ("Image", "open"): "common.image_io.read_image",
    ("cv2", "imread"): "common.image_io.read_image",
    ("cv2", "imwrite"): "common.image_io.write_image",
    ("cv2", "VideoCapture"): "common.image_io.iter_video_frames",
    ("cv2", "VideoWriter"): "common.viz.save_video",
    ("torch", "load"): "common.checkpoint.load_checkpoint / common.weights.load_weights",
    ("torch", "save"): "common.io.atomic_torch_save / common.checkpoint.save_checkpoint",
    ("np", "load"): "common.io / common.weights helpers",
    ("np", "save"): "common.io helpers",
    ("np", "savez"): "common.io helpers",
    ("np", "savez_compressed"): "common.io helpers",
    ("pickle", "load"): "common.weights.restricted_unpickle",
    ("pickle", "loads"): "common.weights.restricted_unpickle",
    ("plt", "savefig"): "common.viz",
    ("imageio", "*"): "common.image_io / common.viz",
}
FORBIDDEN_MODULES = {"imageio", "pickle", "skimage"}  # skimage is a dev-only extra: never at run time


def _forbidden_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in FORBIDDEN_MODULES:
                    bad.append(f"{node.lineno}: import {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                bad.append(f"{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr in ("write_text", "write_bytes"):
                bad.append(f"{node.lineno}: .{f.attr}(...) -> use common.io.atomic_write_text/bytes")
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                key = (f.value.id, f.attr)
                if key in FORBIDDEN_CALLS or (f.value.id, "*") in FORBIDDEN_CALLS:
                    use = FORBIDDEN_CALLS.get(key) or FORBIDDEN_CALLS[(f.value.id, "*")]
                    bad.append(f"{node.lineno}: {f.value.id}.{f.attr}(...) -> use {use}")
            elif isinstance(f, ast.Name) and f.id == "open" and len(node.args) >= 2:
                mode = node.args[1]
                if (
                    isinstance(mode, ast.Constant)
                    and isinstance(mode.value, str)
                    and set(mode.value) & set("wax")
                ):
                    bad.append(f"{node.lineno}: open(..., {mode.value!r}) -> use common.io.atomic_write")
    return bad


def test_packages_read_and_write_through_common() -> None:
    bad = []
    for pkg in sorted(PAPERS):
        for f in sorted((ROOT / pkg).rglob("*.py")):
            bad += [f"{f.relative_to(ROOT)}:{b}" for b in _forbidden_uses(f)]
    assert not bad, "I/O outside the common helpers:\n" + "\n".join(bad)


def test_io_rule_detects_each_pattern(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text(
        "import pickle\nfrom PIL import Image\nimport torch, numpy as np, cv2\n"
        "Image.open('a')\ncv2.imread('a')\ntorch.load('a')\nnp.load('a')\nopen('x', 'w')\n"
        "p.write_text('t')\nopen('x')\n"
    )
    found = _forbidden_uses(f)
    assert len(found) == 7, found  # `open('x')` (read) is allowed
