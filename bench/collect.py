"""Merge the per-package benchmark sections (docs/benchmarks_*.md) into docs/benchmarks.md."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = ["nvs_sqa", "nvs_sqa_bank", "smmcl", "smcl_synth", "smcl_scene", "gpu"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", default="docs", help="folder holding benchmarks_*.md")
    args = parser.parse_args()
    docs = Path(args.docs)
    parts = sorted(
        (p for p in docs.glob("benchmarks_*.md") if p.stem != "benchmarks_notes"),
        key=lambda p: (p.stem[11:] not in ORDER, p.stem),
    )
    header = (
        "# Benchmarks\n\nWritten by `bench/*.py` (each writes `docs/benchmarks_<name>.md`; `python bench/collect.py`"
        " merges them here). Official figures and targets: the project's performance spec. Each section says"
        " on what machine and under what conditions it was measured.\n"
    )
    notes = docs / "benchmarks_notes.md"  # hand-written context (machines, caveats), kept at the top
    if notes.exists():
        header += "\n" + notes.read_text(encoding="utf-8").strip() + "\n"
    body = "\n".join(p.read_text(encoding="utf-8").strip() + "\n" for p in parts)
    (docs / "benchmarks.md").write_text(header + "\n" + body, encoding="utf-8")
    print(f"merged {len(parts)} sections into {docs / 'benchmarks.md'}")


if __name__ == "__main__":
    main()
