"""Logic of scripts/nvs_sqa_app.py: score a bank of NSS, resumably, on one or several processes.

* Inputs: videos, NSS folders (frames) and banks: folders of NSS sub-folders and/or videos (the ns-render
  layout, one video per scene or method). Every NSS gets a key: its name, or,
  when two inputs hold NSS of one name, the shortest tail of their paths that tells them apart
  ("bankA/scene", "bankB/scene").
* One broken NSS is reported by name and the others are still scored; `run_bank` returns the number of
  failures (the script exits non-zero when it is not 0).
* Results are written as they come: each process writes one small JSON record per NSS (atomically, through
  common.io) into the journal folder `.<output>.parts/` beside the first output, and rank 0 rewrites the outputs
  (JSON report of schema tri-vision.eval/1 with per-NSS items and the CSV beside it, `--csv`, `--features`
  NPZ) atomically after each NSS it scores and while it waits for the others. A run killed after k NSS keeps
  them; `resume=True` folds earlier journals into the outputs and scores only the NSS that are missing.
  Results are keyed by content, not by name: each row holds the sha256 of the NSS's frames (names and bytes;
  a video's bytes: `nvs_sqa.frames.nss_sha256`) and the report the digest of the model (weights and read-out), so a resumed run rescores
  an NSS whose frames changed and refuses a report written by another model.
* One run at a time per output: rank 0 holds `common.io.hold_lock` on every output (released by the OS
  when the process dies); a second run refuses with one line instead of taking the live run's journal.
  Outputs are checked before any work (`common.io.check_outputs`: distinct, the CSV derived from --json
  included, none over an input, writable), and temp files of this tool's outputs left by killed processes
  are removed at start-up.
* Several processes (torchrun, `-d 0-3` or `-d cpu --procs N`): NSS i of the to-do list goes to rank
  i mod world_size; the merged outputs list the NSS in input order whatever the number of processes.
* Decoding runs in a background thread (and a pool of `decode_threads` inside it) that stays at most
  `queue_frames` frames ahead of the network, also across NSS boundaries: memory is bounded whatever the
  bank size.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import queue
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import DataError, TriVisionError
from common.io import atomic_savez, load_npz
from nvs_sqa.assessor import QualityAssessor
from nvs_sqa.frames import VIDEO_EXTS, iter_video, list_frames, nss_sha256, source_format
from nvs_sqa.ridge import LABEL_RANGE

TASK = "nvs_sqa.app"
#: per-NSS failures that are reported and skipped; anything else (a bug) stops the run with its traceback
NSS_ERRORS = (TriVisionError, OSError, ValueError, RuntimeError)
FIELDS = ("path", "frames", "width", "height", "jod", "out_of_range", "sha256")


@dataclass(frozen=True)
class NSSItem:
    key: str
    path: Path
    kind: str  # "folder" | "video"


# ---- discovery ----------------------------------------------------------------------------------------
def discover(paths: Sequence[Path]) -> list[NSSItem]:
    """Expand inputs into NSS items (input order; sub-folders by name); a missing input is an error."""
    found: list[tuple[Path, str]] = []
    for p in map(Path, paths):
        if p.is_file():
            if p.suffix.lower() not in VIDEO_EXTS:
                raise DataError(p, f"not a video ({', '.join(VIDEO_EXTS)}) nor a folder")
            found.append((p, "video"))
        elif not p.is_dir():
            raise DataError(p, "no such file or folder")
        elif list_frames(p):
            found.append((p, "folder"))
        else:  # a bank: NSS sub-folders and videos (ns-render writes one video per scene/method)
            subs = sorted(
                (s for s in p.iterdir() if not s.name.startswith(".") and (s.is_dir() or _is_video(s))),
                key=lambda s: s.name,
            )
            if not subs:
                raise DataError(p, "contains neither frames, NSS sub-folders nor videos")
            found += [(s, "video" if s.is_file() else "folder") for s in subs]
    seen: set[Path] = set()
    unique = []
    for p, kind in found:  # the same NSS given twice is scored once
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            unique.append((p, kind))
    keys = unique_keys([p for p, _ in unique])
    return [NSSItem(k, p, kind) for k, (p, kind) in zip(keys, unique)]


def _is_video(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in VIDEO_EXTS


def _name(p: Path) -> str:
    return p.stem if p.is_file() else p.name


def unique_keys(paths: Sequence[Path]) -> list[str]:
    """Names, made unique by the shortest tail of the resolved path that distinguishes equal names."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        groups.setdefault(_name(p), []).append(i)
    keys = [""] * len(paths)
    for name, idx in groups.items():
        if len(idx) == 1:
            keys[idx[0]] = name
            continue
        parts = [Path(paths[i]).resolve().parts for i in idx]
        for k in range(2, max(len(x) for x in parts) + 1):
            tails = ["/".join(x[-k:]) for x in parts]
            if len(set(tails)) == len(tails):
                break
        for i, t in zip(idx, tails):
            keys[i] = t
    return keys


def assessor_sha256(assessor: QualityAssessor) -> str:
    """sha256 of the scoring model: the network's state_dict (common.weights) and the ridge read-out."""
    from common.weights import state_dict_sha256

    h = hashlib.sha256(state_dict_sha256(assessor.model.state_dict()).encode())
    h.update(np.asarray(assessor.ridge.coef, np.float32).tobytes())
    h.update(np.float32(assessor.ridge.intercept).tobytes())
    return h.hexdigest()


# ---- decoding in the background -----------------------------------------------------------------------
class Prefetcher:
    """Decode the items' frames in a background thread, at most `queue_frames` frames ahead."""

    def __init__(
        self,
        items: Sequence[NSSItem],
        open_item: Callable[[NSSItem], Iterator[np.ndarray]],
        queue_frames: int,
    ) -> None:
        self.items = list(items)
        self._open = open_item
        self._q: queue.Queue = queue.Queue(maxsize=max(1, queue_frames))
        self._stop = threading.Event()
        self._pending: tuple | None = None
        self._thread = threading.Thread(target=self._run, name="nss-decode", daemon=True)
        self._thread.start()

    def _put(self, event: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(event, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        for i, item in enumerate(self.items):
            try:
                for frame in self._open(item):
                    if not self._put(("frame", i, frame)):
                        return
                ev = ("end", i, None)
            except BaseException as err:  # noqa: BLE001 - handed to the consumer, which re-raises it
                ev = ("error", i, err)
            if not self._put(ev):
                return

    def _next(self, i: int) -> tuple:
        while True:
            ev = self._pending if self._pending is not None else self._q.get()
            self._pending = None
            if ev[1] >= i:
                return ev
            # left-overs of an item the consumer abandoned

    def frames(self, i: int) -> Iterator[np.ndarray]:
        """Frames of item i, in order; re-raises the decoder's error for that item."""
        while True:
            kind, j, payload = self._next(i)
            if j > i:  # item i ended without an "end" event reaching us (not expected)
                self._pending = (kind, j, payload)
                return
            if kind == "frame":
                yield payload
            elif kind == "error":
                raise payload
            else:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# ---- results: journals and outputs --------------------------------------------------------------------
@dataclass(frozen=True)
class Outputs:
    json: Path | None = None
    csv: Path | None = None
    features: Path | None = None
    plot: Path | None = None

    def files(self) -> list[Path]:
        """Every file the run writes: the CSV derived from --json included (written once when --csv names it)."""
        derived = self.json.with_suffix(".csv") if self.json is not None else None
        csv_ = None if self.csv is not None and derived is not None and _same(self.csv, derived) else self.csv
        return [p for p in (self.json, derived, csv_, self.features, self.plot) if p is not None]

    def anchor(self) -> Path | None:
        return next((p for p in (self.json, self.csv, self.features) if p is not None), None)

    def parts(self) -> Path:
        """The journal folder: one JSON record per scored (or failed) NSS, per rank."""
        a = self.anchor()
        return a.with_name(f".{a.name}.parts")

    def journals(self) -> list[Path]:
        """Records left in the journal folder (a kill mid-write leaves only a hidden temp file)."""
        if self.anchor() is None or not self.parts().is_dir():
            return []
        return sorted(self.parts().glob("r*.json"))


def _same(a: Path, b: Path) -> bool:
    return a.expanduser().resolve() == b.expanduser().resolve()


def read_records(files: Sequence[Path]) -> list[dict]:
    return [json.loads(f.read_text(encoding="utf-8")) for f in files]


def _row(item_key: str, rec: dict) -> dict:
    return {"id": item_key, **{k: rec[k] for k in FIELDS}}


def read_outputs(out: Outputs) -> dict[str, dict]:
    """Results already in the outputs: {key: {"row": ..., "feature": ... or None}}.

    A key counts when every requested output holds it (they are written together); nothing counts when
    one of them is missing."""
    from common.evaluation import read_report

    requested = [p for p in (out.json, out.csv, out.features) if p is not None]
    if not requested or not all(p.is_file() for p in requested):
        return {}
    sets: list[dict[str, dict]] = []
    if out.json is not None and out.json.is_file():
        sets.append({r["id"]: r for r in read_report(out.json)["items"]})
    if out.csv is not None and out.csv.is_file():
        rows = {}
        for r in csv.DictReader(io.StringIO(out.csv.read_text(encoding="utf-8"))):
            try:
                rows[r["id"]] = {
                    "id": r["id"],
                    "path": r["path"],
                    "frames": int(r["frames"]),
                    "width": int(r["width"]),
                    "height": int(r["height"]),
                    "jod": float(r["jod"]),
                    "out_of_range": r["out_of_range"] == "True",
                    "sha256": r["sha256"],
                }
            except (KeyError, ValueError) as err:
                raise DataError(out.csv, f"not a CSV written by nvs_sqa_app ({err})") from err
        sets.append(rows)
    feats = load_npz(out.features) if out.features is not None else None
    keys = set.intersection(*(set(s) for s in sets))
    if feats is not None:
        keys &= set(feats)
    return {k: {"row": sets[0][k], "feature": None if feats is None else feats[k]} for k in keys}


def settings_line(assessor: QualityAssessor) -> str:
    return (
        f"NVS-SQA v0.0.1 representation + ridge read-out; full-resolution frames, all frames, fusion last; "
        f"chunk {assessor.chunk}; device {assessor.device.type}; JOD higher is better (reference scene 0), "
        f"training labels in [{LABEL_RANGE[0]}, {LABEL_RANGE[1]}]"
    )


def write_outputs(
    out: Outputs,
    items: Sequence[NSSItem],
    results: dict[str, dict],
    failed: dict[str, str],
    *,
    model: dict,
    settings: str,
    plot: bool = False,
) -> None:
    """Atomically rewrite the requested outputs from `results` ({key: {"row", "feature"}}), in item order."""
    from common.evaluation import items_csv, write_report
    from common.io import atomic_write_text

    order = [it for it in items if it.key in results]
    rows = [results[it.key]["row"] for it in order]
    if out.json is not None:
        jods = [r["jod"] for r in rows]
        aggregate = {"n_scored": len(rows), "n_failed": len(failed)}
        if jods:
            aggregate["jod_mean"] = float(np.mean(jods))
        fails = [
            {"id": it.key, "path": str(it.path), "error": failed[it.key]} for it in items if it.key in failed
        ]
        write_report(
            out.json,
            task=TASK,
            model=model,
            settings=settings,
            aggregate=aggregate,
            items=rows,
            extra={"failed": fails} if fails else None,
        )
    if out.csv is not None and (out.json is None or not _same(out.csv, out.json.with_suffix(".csv"))):
        atomic_write_text(out.csv, items_csv(rows))
    if out.features is not None:
        atomic_savez(
            out.features, **{it.key: np.asarray(results[it.key]["feature"], np.float32) for it in order}
        )
    if plot and out.plot is not None and rows:
        from common.viz import bar_chart

        bar_chart(
            [r["id"] for r in rows],
            [r["jod"] for r in rows],
            out.plot,
            title="NVS-SQA",
            ylabel="predicted JOD (higher is better)",
        )


#: how to read the score: printed under every table and in `--help` (issue 20 §2)
SCALE_NOTE = (
    f"JOD (just-objectionable differences), predicted without a reference: 0 = the quality of the scene's "
    f"reference video, higher is better; 1 JOD apart = 75% of observers prefer the better of two videos. "
    f"The read-out was fitted on human labels in [{LABEL_RANGE[0]}, {LABEL_RANGE[1]}]. On the published test "
    f"split the official model agrees with the labels at SRCC 0.91 / 0.70 / 0.70 and PLCC 0.88 / 0.64 / 0.68 "
    f"(Fieldwork / LLFF / Lab; per scene over 5 methods, averaged): rank methods of one scene, rendered "
    f"at one resolution and length and stored alike; a mean over scenes mixes their difficulty."
)
#: measured on one scene (issue 20): what a storage difference alone moves the score by
MIX_EFFECTS = (
    "half resolution +0.27 JOD, mp4v instead of the frames +0.16 JOD, H.264 crf 18 +0.10 JOD, "
    "vs 0.06 JOD between the two official example methods"
)


def mix_warnings(rows: Sequence[dict], formats: Sequence[str] | None = None) -> list[str]:
    """One line per storage property the scored NSS do not share (resolution, length, codec/file type)."""
    props = {
        "resolutions": {f"{r['width']}x{r['height']}" for r in rows},
        "lengths": {f"{r['frames']} frames" for r in rows},
        "codecs/file types": set(formats or ()),
    }
    return [
        f"warning: the NSS mix {what} ({', '.join(sorted(v))}): their scores are not comparable "
        f"(measured: {MIX_EFFECTS})"
        for what, v in props.items()
        if len(v) > 1
    ]


def format_table(rows: Sequence[dict], formats: Sequence[str] | None = None) -> str:
    """Plain-text table: key, frames, resolution, format, JOD (flagged outside the label range), then the
    scale note and a warning per storage property the rows do not share. No cross-scene mean."""
    fmts = list(formats) if formats is not None else ["?"] * len(rows)
    table = [("name", "frames", "resolution", "format", "JOD")]
    for r, f in zip(rows, fmts):
        jod = f"{r['jod']:.4f}" + (" (!)" if r["out_of_range"] else "")
        table.append((r["id"], str(r["frames"]), f"{r['width']}x{r['height']}", f, jod))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if any(r["out_of_range"] for r in rows):
        lines.append("(!) outside the JOD range of the training labels: probably not a rendered scene")
    lines += ["", textwrap.fill(SCALE_NOTE, 110), *mix_warnings(rows, formats)]
    return "\n".join(lines)


# ---- the run ------------------------------------------------------------------------------------------
def _remove_parts(out: Outputs) -> None:
    if out.anchor() is None or not out.parts().is_dir():
        return
    for f in out.parts().iterdir():
        f.unlink()
    out.parts().rmdir()


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_bank(
    assessor: QualityAssessor,
    paths: Sequence[Path],
    out: Outputs,
    *,
    resume: bool = False,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] = lambda: None,
    model: dict | None = None,
    show_progress: bool = True,
    queue_frames: int | None = None,
    poll_s: float = 0.5,
) -> int:
    """Score every NSS under `paths`, write `out` incrementally; returns the number of failed NSS.

    Under several processes every rank calls it with its `rank`; `barrier` synchronises the start-up
    (common.distributed.barrier). Rank 0 holds the outputs' lock, prints the table and writes the final
    outputs.
    """
    from common.io import check_outputs, hold_lock

    items = discover(paths)
    check_outputs(out.files(), [Path(p) for p in paths])
    if resume and out.json is None:
        raise DataError(
            "--resume", "needs the --json report of the run to resume (it holds the model digest)"
        )
    if world_size > 1 and out.anchor() is None:
        raise DataError("--procs/-d", "several processes need --json, --csv or --features to merge into")
    with contextlib.ExitStack() as lock:
        if rank == 0:  # before the journal is looked at: it may be a live run's
            for f in out.files():  # every output: two runs sharing only --features would clash as well
                lock.enter_context(hold_lock(f))
            _clean_temp_files(out)
        return _run_locked(
            assessor,
            items,
            out,
            resume,
            rank,
            world_size,
            barrier,
            model,
            show_progress,
            queue_frames,
            poll_s,
        )


def _clean_temp_files(out: Outputs) -> None:
    """Remove the temp files of this tool's outputs and journal left by killed processes (dead pids only)."""
    from common.io import clean_stale_temp_files

    for f in out.files():
        clean_stale_temp_files(f.parent, names=[f.name])
    if out.anchor() is not None:
        clean_stale_temp_files(out.parts())


def _reusable(results: dict[str, dict], items: Sequence[NSSItem], digests: dict[str, str]) -> dict[str, dict]:
    """The results whose NSS still has the frames they were computed from (the row's content digest)."""
    by_key = {it.key: it for it in items}
    kept = {}
    for k, v in results.items():
        if k not in by_key:
            continue
        if k not in digests:
            try:
                digests[k] = nss_sha256(by_key[k].path)
            except OSError:
                continue  # unreadable now: scored again (and reported) below
        if v["row"].get("sha256") == digests[k]:
            kept[k] = {**v, "row": {**v["row"], "path": str(by_key[k].path)}}
    return kept


def _run_locked(
    assessor, items, out, resume, rank, world_size, barrier, model, show_progress, queue_frames, poll_s
) -> int:
    from common.evaluation import model_info, read_report

    for f in out.files():
        f.parent.mkdir(parents=True, exist_ok=True)
    model_sha = assessor_sha256(assessor)
    model = {
        **(model if model is not None else model_info("nvs_sqa", weights="official")),
        "weights_sha256": model_sha,
    }
    settings = settings_line(assessor)
    digests: dict[str, str] = {}
    stale = out.journals()
    if stale and not resume:
        raise DataError(
            out.parts(),
            "journal of an interrupted run; pass --resume to keep its results "
            "(or delete that folder to start afresh)",
        )
    if resume and out.json.is_file():
        old = read_report(out.json)["model"].get("weights_sha256")
        if old != model_sha:
            raise DataError(
                out.json,
                f"scored by another model (weights sha256 {old[:12] + '...' if old else 'not recorded'}, "
                f"now {model_sha[:12]}...); "
                "write to a new --json, or run without --resume to rescore everything",
            )
    barrier()
    if rank == 0 and resume and out.anchor() is not None:  # fold earlier journals into the outputs
        results = read_outputs(out)
        for j in stale:
            for rec in read_records([j]):
                if "jod" in rec and rec.get("model_sha256") == model_sha:
                    results[rec["key"]] = {
                        "row": _row(rec["key"], rec),
                        "feature": np.asarray(rec["feature"], np.float32),
                    }
        write_outputs(out, items, _reusable(results, items, digests), {}, model=model, settings=settings)
        for j in stale:
            j.unlink()
        _remove_parts(out)
    barrier()
    done = _reusable(read_outputs(out), items, digests) if resume else {}
    todo = [it for it in items if it.key not in done]
    mine = todo[rank::world_size]
    if resume and rank == 0:
        _log(
            f"resume: {len(done)} of {len(items)} NSS already scored (same frames, same model), {len(todo)} to score"
        )
    barrier()  # every rank has read the outputs before rank 0 rewrites them

    results: dict[str, dict] = dict(done)
    failed: dict[str, str] = {}
    seq = [0]

    def record(rec: dict) -> None:
        if out.anchor() is not None:
            from common.io import atomic_write_json

            atomic_write_json(out.parts() / f"r{rank}-{seq[0]:07d}.json", rec, indent=None)
            seq[0] += 1

    seen: set[Path] = set()

    def merge_others() -> set[int]:
        """Rank 0: read the other ranks' new records; returns the ranks that wrote their final record."""
        finished = set()
        for r in range(1, world_size):
            new = [f for f in sorted(out.parts().glob(f"r{r}-*.json")) if f not in seen]
            for f, rec in zip(new, read_records(new)):
                seen.add(f)
                if "jod" in rec:
                    results[rec["key"]] = {
                        "row": _row(rec["key"], rec),
                        "feature": np.asarray(rec["feature"], np.float32),
                    }
                elif "error" in rec:
                    failed[rec["key"]] = rec["error"]
            if (out.parts() / f"r{r}-done.json").is_file() and not [
                f for f in out.parts().glob(f"r{r}-*.json") if f not in seen and f.name != f"r{r}-done.json"
            ]:
                finished.add(r)
        return finished

    def flush() -> None:
        if rank == 0 and out.anchor() is not None:
            merge_others()
            write_outputs(out, items, results, failed, model=model, settings=settings)

    from tqdm import tqdm

    def open_item(it: NSSItem) -> Iterator[np.ndarray]:
        return iter_video(it.path) if it.kind == "video" else assessor.iter_nss_folder(it.path)

    total = sum(len(list_frames(it.path)) for it in mine if it.kind == "folder") or None
    qf = queue_frames if queue_frames is not None else max(8, 4 * assessor.chunk)
    pre = Prefetcher(mine, open_item, qf)
    try:
        with tqdm(total=total, unit="frame", disable=not show_progress, leave=False) as bar:
            for i, it in enumerate(mine):
                try:
                    digest = nss_sha256(it.path)
                    s = assessor.score_stream(pre.frames(i), it.key, bar.update)
                except NSS_ERRORS as err:
                    msg = str(err) or type(err).__name__
                    failed[it.key] = msg
                    record({"key": it.key, "path": str(it.path), "error": msg})
                    _log(f"failed: {it.key} ({it.path}): {msg}")
                    continue
                rec = {
                    "key": it.key,
                    "path": str(it.path),
                    "frames": s.n_frames,
                    "width": s.width,
                    "height": s.height,
                    "jod": s.jod,
                    "out_of_range": s.out_of_range,
                    "sha256": digest,
                    "model_sha256": model_sha,
                    "feature": [float(x) for x in s.feature],
                }
                results[it.key] = {"row": _row(it.key, rec), "feature": s.feature}
                record(rec)
                flush()
        if out.anchor() is not None:
            from common.io import atomic_write_json

            atomic_write_json(out.parts() / f"r{rank}-done.json", {"finished": True, "rank": rank})
    finally:
        pre.close()
    if rank != 0:
        return 0
    while world_size > 1 and out.anchor() is not None:
        before = len(seen)
        finished = merge_others()
        if len(finished) == world_size - 1:
            break
        if len(seen) > before:  # the other ranks' new results reach the outputs while rank 0 waits
            write_outputs(out, items, results, failed, model=model, settings=settings)
        time.sleep(poll_s)
    write_outputs(out, items, results, failed, model=model, settings=settings, plot=True)
    _remove_parts(out)
    scored = [it for it in items if it.key in results]
    print(format_table([results[it.key]["row"] for it in scored], [source_format(it.path) for it in scored]))
    if failed:
        _log(f"error: {len(failed)} of {len(items)} NSS failed: " + ", ".join(sorted(failed)))
    return len(failed)
