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
    """Every entry point answers --help (run concurrently: most of the cost is importing torch)."""
    import subprocess
    import sys

    scripts = sorted((ROOT / "scripts").glob("*.py")) + sorted((ROOT / "bench").glob("*.py"))
    assert scripts, "no scripts found"
    procs = {
        s: subprocess.Popen(
            [sys.executable, str(s), "--help"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in scripts
    }
    failures = []
    for s, p in procs.items():
        out, err = p.communicate(timeout=300)
        if p.returncode != 0 or "usage" not in out.lower():
            failures.append(f"{s.relative_to(ROOT)}: rc={p.returncode} {err[-300:]}")
    assert not failures, "\n".join(failures)
