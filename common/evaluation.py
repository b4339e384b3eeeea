"""One evaluation layer: shard a dataset over ranks, let the model update the metrics, write one report.

The report is versioned JSON (schema ``tri-vision.eval/1``, documented in docs/evaluation.md) plus a
CSV of its per-item rows beside it::

    evaluator = Evaluator({"psnr": PSNR(), "ssim": SSIM(protocol="uniform", win_size=7)}, task="smcl.object")
    result = evaluator.run(model, dataset, model_info=model_info("smcl_view_synthesizer", checkpoint=ck),
                           report_path=Path("runs/x/eval.json"))

``model.validation_step(batch, metrics)`` updates the metrics (``metrics["psnr"].update_items(...)``
returns the per-item values) and returns a list of per-item dicts ``{"id": <source file or item
key>, <column>: value, ...}``; ``id`` must be unique over the dataset.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from common.checkpoint import git_sha
from common.distributed import all_gather_objects, barrier, get_rank, get_world_size, move_to
from common.errors import DataError
from common.image_io import natural_sort_key
from common.io import atomic_write_json, atomic_write_text
from common.weights import sha256_file

if TYPE_CHECKING:  # torchmetrics is imported when an Evaluator is built: reports alone stay light
    from torchmetrics import Metric

__all__ = [
    "SCHEMA",
    "EvalResult",
    "Evaluator",
    "write_report",
    "read_report",
    "model_info",
    "environment",
    "shard_indices",
    "describe_metric",
    "items_csv",
    "build_report",
]

SCHEMA = "tri-vision.eval/1"
REQUIRED_FIELDS = ("schema", "task", "created", "model", "settings", "environment", "aggregate", "items")


@dataclass
class EvalResult:
    """What :meth:`Evaluator.run` returns (identical on every rank).

    aggregate: scalar metric values (dict-valued metrics flattened to ``"<name>.<key>"``);
    items: per-item rows sorted by id; report: the JSON document; path: where it was written
    (None when no report_path was given, and on ranks other than 0); extra: non-scalar metric
    values (per-class IoU, confusion matrix, ...) by metric name, plus the caller's extra blocks.
    """

    aggregate: dict[str, float]
    items: list[dict]
    report: dict
    path: Path | None
    extra: dict = field(default_factory=dict)


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """Indices rank ``rank`` evaluates: rank, rank + world, ... (every item exactly once, no padding)."""
    return list(range(rank, n, world_size))


def _plain(v: Any) -> Any:
    """Tensors / numpy values -> Python numbers or lists; everything else unchanged."""
    if isinstance(v, Tensor):
        v = v.detach().cpu()
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _json_safe(v: Any) -> Any:
    """Non-finite floats -> None (strict JSON has no NaN/inf)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, Mapping):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    return v


def _check_items(rows: Any, who: str) -> list[dict]:
    if rows is None:
        return []
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence):
        raise TypeError(
            f"{who}.validation_step must return a list of per-item dicts, got {type(rows).__name__}"
        )
    out = []
    for r in rows:
        if not isinstance(r, Mapping) or "id" not in r:
            raise ValueError(f"{who}.validation_step returned an item without an 'id': {r!r}")
        out.append({str(k): _plain(v) for k, v in r.items()})
    return out


def _sort_items(items: list[dict]) -> list[dict]:
    seen: dict[str, int] = {}
    for r in items:
        seen[str(r["id"])] = seen.get(str(r["id"]), 0) + 1
    dup = [k for k, n in seen.items() if n > 1]
    if dup:
        raise ValueError(f"item ids must be unique; repeated: {sorted(dup)[:10]}")
    return sorted(items, key=lambda r: natural_sort_key(str(r["id"])))


def _flatten(name: str, value: Any, aggregate: dict[str, float], extra: dict[str, Any]) -> None:
    """Scalars into aggregate (dict results as "<name>.<key>"), everything else into extra[name]."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            v = _plain(v)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                aggregate[f"{name}.{k}"] = float(v)
            else:
                extra.setdefault(name, {})[str(k)] = v
        return
    v = _plain(value)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        aggregate[name] = float(v)
    else:
        extra[name] = v


def describe_metric(metric: Any) -> str:
    """One-line description of a metric for a report's settings: its ``describe()`` or its class name."""
    describe = getattr(metric, "describe", None)
    return describe() if callable(describe) else type(metric).__name__


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


class Evaluator:
    """Evaluates a model with ``validation_step(batch, metrics) -> list[dict]`` on one or many ranks.

    ``metrics``: name -> ``torchmetrics.Metric`` (names without "."); wrapped in a
    ``MetricCollection`` (no compute groups) and reset at the start of every run. ``settings``: the
    caller's one-line protocol description (split, TTA, ...); the metrics' own descriptions and the
    torchmetrics version are appended to it in the report.
    """

    def __init__(
        self,
        metrics: Mapping[str, Metric],
        *,
        task: str,
        batch_size: int = 1,
        num_workers: int = 0,
        collate_fn=None,
        device: str | torch.device | None = None,
        settings: str = "",
        progress: bool = True,
    ) -> None:
        if not metrics:
            raise ValueError("Evaluator needs at least one metric")
        bad = [k for k in metrics if "." in k or not k]
        if bad:
            raise ValueError(f"metric names must be non-empty and contain no '.': {bad}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        from torchmetrics import MetricCollection

        self.metrics = MetricCollection(dict(metrics), compute_groups=False)
        self._names = list(metrics)  # the caller's order (MetricCollection sorts its keys)
        self.task = task
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.device = torch.device(device) if device is not None else None
        self.settings = settings
        self.progress = progress

    def describe_settings(self) -> str:
        """The report's one-line settings: the caller's text, then each metric, then torchmetrics' version."""
        import torchmetrics

        parts = [self.settings.strip()] if self.settings.strip() else []
        parts.append("metrics: " + ", ".join(f"{k}={describe_metric(self.metrics[k])}" for k in self._names))
        parts.append(f"torchmetrics {torchmetrics.__version__}")
        return "; ".join(parts).replace("\n", " ")

    def run(
        self,
        model: nn.Module,
        dataset: Dataset,
        *,
        step: int | None = None,
        model_info: dict | None = None,
        report_path: str | Path | None = None,
        extra: dict | None = None,
    ) -> EvalResult:
        """Evaluate this rank's share of ``dataset`` (sized, indexable), reduce, and report.

        Every rank must call ``run`` (metric sync and item gathering are collective). The report is
        written by rank 0 when ``report_path`` is given (JSON there, CSV of the items beside it);
        ``step`` and ``extra`` (e.g. day/night blocks) go into the report's "extra" block.
        """
        net = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        if not callable(getattr(net, "validation_step", None)):
            raise TypeError(f"{type(net).__name__} has no validation_step(batch, metrics)")
        n = len(dataset)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError("the evaluation dataset is empty")
        rank, world = get_rank(), get_world_size()
        device = self.device or _model_device(net)
        loader = DataLoader(
            Subset(dataset, shard_indices(n, rank, world)),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
        )
        metrics = self.metrics.to(device)
        metrics.reset()
        was_training = net.training
        net.eval()
        items: list[dict] = []
        batches = loader
        if self.progress and rank == 0:
            from tqdm.auto import tqdm

            batches = tqdm(loader, desc=f"eval {self.task}", leave=False, dynamic_ncols=True)
        try:
            with torch.no_grad():
                for batch in batches:
                    rows = net.validation_step(move_to(batch, device), metrics)
                    items.extend(_check_items(rows, type(net).__name__))
        finally:
            net.train(was_training)
        aggregate: dict[str, float] = {}
        computed: dict[str, Any] = {}
        with warnings.catch_warnings():  # a rank with no items computes from synced states: fine
            warnings.filterwarnings("ignore", message=".*compute.*before the ``update``.*")
            for name in self._names:
                _flatten(name, metrics[name].compute(), aggregate, computed)
        items = _sort_items([r for part in all_gather_objects(items) for r in part])
        blocks = dict(computed)
        if step is not None:
            blocks["step"] = int(step)
        blocks.update(_plain(extra or {}))
        report = build_report(
            task=self.task,
            model=model_info or model_info_from_module(net),
            settings=self.describe_settings(),
            aggregate=aggregate,
            items=items,
            extra=blocks or None,
            environment=environment(device),
        )
        path = None
        if report_path is not None:
            if rank == 0:
                path = _write(Path(report_path), report)
            barrier()
        return EvalResult(aggregate=aggregate, items=items, report=report, path=path, extra=blocks)


def model_info_from_module(model: nn.Module) -> dict:
    """A report's model block when the caller gave none: the class name, nothing else known."""
    return model_info(type(model).__name__)


def model_info(
    name: str,
    weights: str | None = None,
    checkpoint: str | Path | None = None,
    config: Any = None,
) -> dict:
    """A report's model block: {"name", "weights", "checkpoint", "checkpoint_sha256", "config"}.

    ``checkpoint``: the file evaluated (its sha256 is computed here; a missing file is a DataError).
    ``config``: a config path, a dict, or a config dataclass (stored as a dict).
    """
    sha = None
    if checkpoint is not None:
        p = Path(checkpoint)
        if not p.is_file():
            raise DataError(p, "checkpoint file not found")
        sha = sha256_file(p)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        from common.config import config_to_dict

        config = config_to_dict(config)
    return {
        "name": name,
        "weights": weights,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "checkpoint_sha256": sha,
        "config": _plain(config),
    }


def environment(device: str | torch.device | None = None) -> dict:
    """{"torch": version, "device": e.g. "cpu" or "cuda:0 (NVIDIA H200)", "world_size", "git": commit}."""
    return _environment_block(device)


def _environment_block(device: str | torch.device | None) -> dict:
    dev = torch.device(device) if device is not None else torch.device("cpu")
    name = str(dev)
    if dev.type == "cuda" and torch.cuda.is_available():
        name = f"{dev} ({torch.cuda.get_device_name(dev)})"
    return {"torch": torch.__version__, "device": name, "world_size": get_world_size(), "git": git_sha()}


def build_report(
    *,
    task: str,
    model: dict,
    settings: str,
    aggregate: Mapping[str, Any],
    items: Sequence[Mapping[str, Any]],
    extra: dict | None = None,
    environment: dict | None = None,
    created: str | None = None,
) -> dict:
    """The JSON document (a dict) of schema ``tri-vision.eval/1``; see :func:`write_report`."""
    if not task:
        raise ValueError("a report needs a task name")
    for key in ("name", "weights", "checkpoint", "checkpoint_sha256", "config"):
        if key not in model:
            raise ValueError(f"model block lacks {key!r} (build it with common.evaluation.model_info)")
    rows = []
    for r in items:
        if "id" not in r:
            raise ValueError(f"report item without an 'id': {dict(r)!r}")
        rows.append({str(k): _plain(v) for k, v in r.items()})
    report = {
        "schema": SCHEMA,
        "task": task,
        "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": _plain(dict(model)),
        "settings": " ".join(settings.split()),
        "environment": environment if environment is not None else _environment_block(None),
        "aggregate": {str(k): float(_plain(v)) for k, v in aggregate.items()},
        "items": rows,
    }
    if extra:
        report["extra"] = _plain(extra)
    return report


def write_report(
    path: str | Path,
    *,
    task: str,
    model: dict,
    settings: str,
    aggregate: Mapping[str, Any],
    items: Sequence[Mapping[str, Any]],
    extra: dict | None = None,
    environment: dict | None = None,
) -> Path:
    """Write the versioned JSON report to ``path`` and its items as CSV beside it (``.csv``); atomic.

    ``model``: :func:`model_info`'s block; ``settings``: one line (metric versions, data ranges,
    LPIPS net, TTA, split, protocol); ``aggregate``: metric -> value; ``items``: per-item dicts with an
    "id"; ``extra``: further blocks (per-class IoU, confusion matrix, day/night splits, ...).
    ``environment`` defaults to :func:`environment` of this process. Returns the JSON path.
    """
    report = build_report(
        task=task,
        model=model,
        settings=settings,
        aggregate=aggregate,
        items=items,
        extra=extra,
        environment=environment,
    )
    return _write(Path(path), report)


def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, (list, dict)):
        return json.dumps(_json_safe(v), separators=(",", ":"))
    return v


def items_csv(items: Sequence[Mapping[str, Any]]) -> str:
    """CSV text of per-item rows: "id" first, then every other key in order of first appearance."""
    cols = ["id"]
    for r in items:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in items:
        w.writerow([_csv_cell(r.get(c)) for c in cols])
    return buf.getvalue()


def _write(path: Path, report: dict) -> Path:
    if path.suffix.lower() != ".json":
        raise DataError(path, "a report path must end in .json (its items CSV goes beside it as .csv)")
    atomic_write_text(path.with_suffix(".csv"), items_csv(report["items"]))
    atomic_write_json(path, _json_safe(report), indent=1)
    return path


def read_report(path: str | Path) -> dict:
    """Load a report written by :func:`write_report`; DataError when it is not a ``tri-vision.eval/1`` file."""
    p = Path(path)
    try:
        report = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(p, f"cannot read the report ({e})") from e
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        got = report.get("schema") if isinstance(report, dict) else type(report).__name__
        raise DataError(p, f"not a {SCHEMA} report (schema {got!r})")
    missing = [k for k in REQUIRED_FIELDS if k not in report]
    if missing:
        raise DataError(p, f"{SCHEMA} report lacks {missing}")
    return report
