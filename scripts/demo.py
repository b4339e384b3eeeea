"""The main job: generate the synthetic data, run each paper's demo stage, write outputs/demo/report.md."""

from __future__ import annotations

import argparse
import importlib
import time
import traceback
from pathlib import Path

from common.runtime import keep_freed_memory

STAGES = [
    # (title, module with run_demo(out_dir, minutes) -> markdown)
    ("Synthetic data generator", "common.synthetic.demo"),
    ("NVS-SQA: no-reference quality of neurally synthesized scenes", "nvs_sqa.demo"),
    ("SMMCL: RGB-X segmentation of dark scenes", "smmcl.demo"),
    ("SMCL object level: Mir-180, FFC encoder, view synthesizer", "smcl.object.demo"),
    ("SMCL scene level: point GCL and R-MSA renderer", "smcl.scene.demo"),
]


def main() -> None:
    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-o", "--out-dir", default="outputs/demo", help="where the report and images go")
    parser.add_argument("--minutes", type=float, default=2.0, help="training budget per paper stage")
    parser.add_argument(
        "--only", nargs="*", default=None, help="run only stages whose module contains these words"
    )
    args = parser.parse_args()

    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections, summary = [], []
    t_all = time.perf_counter()
    for title, module_name in STAGES:
        if args.only and not any(w in module_name for w in args.only):
            continue
        print(f"== {title} ({module_name})", flush=True)
        t0 = time.perf_counter()
        stage_dir = out / module_name.replace(".", "_")
        try:
            module = importlib.import_module(module_name)
            text = module.run_demo(stage_dir, minutes=args.minutes)
            status = "ok"
        except Exception:  # a failing stage must not hide the others' results
            text = "Stage failed:\n\n```\n" + traceback.format_exc()[-4000:] + "\n```\n"
            status = "FAILED"
            print(text, flush=True)
        dt = time.perf_counter() - t0
        sections.append(f"## {title}\n\n_{status}, {dt:.0f} s_\n\n{text}\n")
        summary.append((title, status, dt))

    total = time.perf_counter() - t_all
    lines = [
        "# Demo report",
        "",
        f"Total time: {total / 60:.1f} min on {torch.get_num_threads()} CPU threads.",
        "",
    ]
    lines += ["| stage | status | seconds |", "|---|---|---|"]
    lines += [f"| {t} | {s} | {d:.0f} |" for t, s, d in summary]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n\n" + "\n".join(sections), encoding="utf-8")
    print(f"report written to {report}")
    if any(s == "FAILED" for _, s, _ in summary):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
