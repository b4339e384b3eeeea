"""Training callbacks of general use (the `common.engine.Callback` hooks).

`NoReferenceQuality` scores a short rendered novel trajectory every N steps with any no-reference
quality function: a view synthesizer has no ground truth on a novel path, so held-out PSNR cannot see
what this sees. It is generic: the caller supplies `render_fn(model, step) -> frames` and
`score_fn(frames) -> float`; scripts wire the NVS-SQA scorer (`nvs_sqa.NSSQuality`), `common` does not
import it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.utils import make_grid

from common.engine import Callback

__all__ = ["NoReferenceQuality"]


class NoReferenceQuality(Callback):
    """Every `every` optimizer steps (and after the last step unless it was just scored): render frames
    `(T, 3, H, W)` in [0, 1] with `render_fn(model, step)` (model in eval mode, no grad), score them with
    `score_fn(frames)`, and log the score as `tag` (TensorBoard scalar and a line in
    `<out_dir>/metrics.jsonl`, like the engine's own scalars) and up to `grid_frames` frames, picked evenly,
    as one TensorBoard image grid under `<tag>/frames` (TensorBoard videos need moviepy, not a dependency).

    Runs on the main process only; the other ranks go on and wait at the next gradient all-reduce, so a
    scoring event costs its time once per event on every rank. Cost per step = event time / `every`;
    `history` holds `(step, score, seconds)` and goes into checkpoints.
    """

    def __init__(
        self,
        render_fn: Callable[[nn.Module, int], Tensor],
        score_fn: Callable[[Tensor], float],
        every: int,
        *,
        tag: str = "eval/nvs_sqa",
        grid_frames: int = 8,
        at_end: bool = True,
    ) -> None:
        if every < 1:
            raise ValueError(f"NoReferenceQuality: every must be >= 1, got {every}")
        self.render_fn, self.score_fn = render_fn, score_fn
        self.every, self.tag, self.grid_frames, self.at_end = every, tag, grid_frames, at_end
        self.history: list[tuple[int, float, float]] = []

    # ---- engine hooks -----------------------------------------------------------------------------
    def after_step(self, trainer: Any, step: int, losses: dict[str, float]) -> None:
        if step % self.every == 0:
            self.run(trainer, step)

    def on_train_end(self, trainer: Any) -> None:
        if self.at_end and (not self.history or self.history[-1][0] != trainer.step):
            self.run(trainer, trainer.step)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [list(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [(int(s), float(v), float(t)) for s, v, t in state.get("history", [])]

    # ---- work -------------------------------------------------------------------------------------
    def run(self, trainer: Any, step: int) -> float | None:
        """Render, score and log now; returns the score (None on non-main ranks)."""
        info = getattr(trainer, "info", None)
        if info is not None and getattr(info, "rank", 0) != 0:
            return None
        model = trainer.model
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                frames = self.render_fn(model, step)
        finally:
            model.train(was_training)
        frames = self._check(frames)
        score = float(self.score_fn(frames))
        seconds = time.perf_counter() - t0
        self.history.append((int(step), score, seconds))
        self._log(trainer, step, score, seconds, frames)
        return score

    @staticmethod
    def _check(frames: Tensor) -> Tensor:
        if not isinstance(frames, Tensor) or frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] < 1:
            shape = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
            raise ValueError(f"NoReferenceQuality: render_fn must return (T, 3, H, W) frames, got {shape}")
        if frames.dtype == torch.uint8:
            return frames.float() / 255.0
        return frames.detach().float()

    def grid(self, frames: Tensor) -> Tensor:
        """(3, H', W') image grid of up to `grid_frames` frames picked evenly (first and last kept)."""
        t = frames.shape[0]
        k = min(t, self.grid_frames)
        idx = torch.linspace(0, t - 1, k).round().long().unique()
        return make_grid(
            frames[idx].cpu().clamp(0, 1), nrow=max(1, math.ceil(math.sqrt(len(idx)))), padding=2
        )

    def _log(self, trainer: Any, step: int, score: float, seconds: float, frames: Tensor) -> None:
        writer = getattr(trainer, "writer", None)
        if writer is not None:
            writer.add_scalar(self.tag, score, step)
            writer.add_scalar(f"{self.tag}_seconds", seconds, step)
            if self.grid_frames > 0:
                writer.add_image(f"{self.tag}/frames", self.grid(frames), step)
        out_dir = getattr(trainer, "out_dir", None)
        if out_dir is not None:
            with open(Path(out_dir) / "metrics.jsonl", "a") as fh:
                fh.write(
                    json.dumps({"step": int(step), self.tag: score, f"{self.tag}_seconds": seconds}) + "\n"
                )
