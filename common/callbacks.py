"""Training callbacks: the `Callback` hooks of `common.engine.Trainer`, the written-out table of callbacks a
config can switch on (`train.callbacks`), and the callbacks of general use.

`EMA` keeps an exponential moving average of the weights, evaluates on it and checkpoints it; any
pipeline switches it on with `train.callbacks: [{name: ema, decay: 0.999}]` (or `--set`).

`NoReferenceQuality` scores a short rendered novel trajectory every N steps with any no-reference
quality function: a view synthesizer has no ground truth on a novel path, so held-out PSNR cannot see
what this sees. It is generic: the caller supplies `render_fn(model, step) -> frames` and
`score_fn(frames) -> float`; scripts wire the NVS-SQA scorer (`nvs_sqa.NSSQuality`), `common` does not
import it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Callback", "EMA", "NoReferenceQuality", "CALLBACKS", "build_callbacks"]

log = logging.getLogger(__name__)


class Callback:
    """Hooks into the training loop; override what you need (every method is optional).

    `trainer` gives `model` (unwrapped), `optimizer`, `scheduler`, `step`, `cfg`, `info` (DistInfo),
    `writer` (TensorBoard SummaryWriter or None), `out_dir` and `log(scalars)`. Steps count optimizer
    steps done. `name` keys the callback's state in checkpoints (default: the class name).
    """

    name: str = ""

    def on_train_start(self, trainer: Any) -> None:
        """Once, before the first step of this invocation (after a resume has restored state)."""

    def before_step(self, trainer: Any, step: int) -> bool:
        """Before step `step` (0-based), outside the DDP forward. Return True when the callback replaced
        Parameters of the model (it moves their optimizer state itself, e.g. with `swap_parameter`);
        the engine then re-wraps DDP, checks the optimizer and calls `after_parameters_replaced`."""
        return False

    def after_parameters_replaced(self, trainer: Any) -> None:
        """After a `before_step` replaced Parameters (e.g. the scene's point pruning / growth)."""

    def after_step(self, trainer: Any, step: int, losses: dict[str, float]) -> None:
        """After optimizer step number `step` (1-based: steps done) with the rank-averaged loss terms."""

    def before_evaluation(self, trainer: Any, step: int) -> None:
        """Before each periodic (and the final) evaluation, on every rank."""

    def after_evaluation(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        """After each evaluation, with the logged metrics (without "eval/"; empty without an evaluator)."""

    def on_train_end(self, trainer: Any) -> None:
        """Once, after the last step and the final checkpoint."""

    def on_save_checkpoint(self, state: dict[str, Any]) -> None:
        """Fill `state`, this callback's entry of the checkpoint being written (tensors, plain types)."""

    def on_load_checkpoint(self, state: dict[str, Any]) -> None:
        """Restore from this callback's entry of the checkpoint a run resumes from."""


class EMA(Callback):
    """Exponential moving average of the trainable Parameters, updated after every optimizer step:
    `ema = d * ema + (1 - d) * p` with `d = decay`, or with `warmup` `d = min(decay, (1 + n) / (10 + n))`
    after n updates (as timm / mmengine), so that early averages do not drag the random initialisation.

    Evaluation runs on the averaged weights (swapped in before, swapped back after: exact copies, so the
    trained weights are bit-identical). The average goes into every checkpoint (a resume continues it
    bit-exactly). When Parameters are replaced (the scene's point pruning / growth), the average of each
    one whose shape changed restarts from the new values (logged)."""

    name = "ema"

    def __init__(self, decay: float = 0.999, warmup: bool = True, evaluate: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema: decay must be in [0, 1), got {decay}")
        self.decay, self.warmup, self.evaluate = float(decay), bool(warmup), bool(evaluate)
        self.updates = 0
        self.shadow: dict[str, Tensor] = {}

    def _params(self, model: nn.Module) -> dict[str, nn.Parameter]:
        return {k: p for k, p in model.named_parameters() if p.requires_grad}

    def current_decay(self) -> float:
        """The decay of the next update."""
        n = self.updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    def on_train_start(self, trainer: Any) -> None:
        params = self._params(trainer.model)
        self.shadow = {k: self.shadow[k].to(p.device) if k in self.shadow else p.detach().clone()
                       for k, p in params.items()}  # fmt: skip
        self.after_parameters_replaced(trainer)

    @torch.no_grad()
    def after_step(self, trainer: Any, step: int, losses: dict[str, float]) -> None:
        d = self.current_decay()
        for k, p in self._params(trainer.model).items():
            self.shadow[k].lerp_(p.detach(), 1.0 - d)
        self.updates += 1

    def after_parameters_replaced(self, trainer: Any) -> None:
        params = self._params(trainer.model)
        for k, p in params.items():
            if k not in self.shadow or self.shadow[k].shape != p.shape:
                old = tuple(self.shadow[k].shape) if k in self.shadow else None
                log.info("ema: average of %s restarts from the current values (shape %s -> %s)",
                         k, old, tuple(p.shape))  # fmt: skip
                self.shadow[k] = p.detach().clone()
        self.shadow = {k: v for k, v in self.shadow.items() if k in params}

    @torch.no_grad()
    def _swap(self, trainer: Any) -> None:
        for k, p in self._params(trainer.model).items():
            tmp = p.detach().clone()
            p.copy_(self.shadow[k])
            self.shadow[k].copy_(tmp)

    def before_evaluation(self, trainer: Any, step: int) -> None:
        if self.evaluate:
            self._swap(trainer)

    def after_evaluation(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        if self.evaluate:
            self._swap(trainer)

    def on_save_checkpoint(self, state: dict[str, Any]) -> None:
        state.update(updates=self.updates, shadow={k: v.detach().cpu() for k, v in self.shadow.items()})

    def on_load_checkpoint(self, state: dict[str, Any]) -> None:
        self.updates, self.shadow = int(state["updates"]), dict(state["shadow"])


class NoReferenceQuality(Callback):
    """Every `every` optimizer steps (and after the last step unless it was just scored): render frames
    `(T, 3, H, W)` in [0, 1] with `render_fn(model, step)` (model in eval mode, no grad), score them with
    `score_fn(frames)`, and log the score as `tag` (`trainer.log`: TensorBoard scalar and a line in
    `<out_dir>/metrics.jsonl`) and up to `grid_frames` frames, picked evenly, as one TensorBoard image
    grid under `<tag>/frames` (TensorBoard videos need moviepy, not a dependency).

    Runs on the main process only; the other ranks go on and wait at the next gradient all-reduce, so a
    scoring event costs its time once per event on every rank. Cost per step = event time / `every`;
    `history` holds `(step, score, seconds)` and goes into checkpoints.
    """

    name = "no_reference_quality"

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

    def on_save_checkpoint(self, state: dict[str, Any]) -> None:
        state["history"] = [list(h) for h in self.history]

    def on_load_checkpoint(self, state: dict[str, Any]) -> None:
        self.history = [(int(s), float(v), float(t)) for s, v, t in state.get("history", [])]

    # ---- work -------------------------------------------------------------------------------------
    def run(self, trainer: Any, step: int) -> float | None:
        """Render, score and log now; returns the score (None on non-main ranks)."""
        if trainer.info.rank != 0:
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
        trainer.log({self.tag: score, f"{self.tag}_seconds": seconds})
        if trainer.writer is not None and self.grid_frames > 0:
            trainer.writer.add_image(f"{self.tag}/frames", self.grid(frames), step)
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
        from torchvision.utils import make_grid  # lazy: the engine imports this module

        t = frames.shape[0]
        k = min(t, self.grid_frames)
        idx = torch.linspace(0, t - 1, k).round().long().unique()
        return make_grid(
            frames[idx].cpu().clamp(0, 1), nrow=max(1, math.ceil(math.sqrt(len(idx)))), padding=2
        )


# The callbacks a config switches on by name (train.callbacks: [{name: ema, decay: 0.999}]); callbacks
# that need code (render or score functions) are passed to the Trainer by the pipeline instead.
CALLBACKS: dict[str, type[Callback]] = {"ema": EMA}


def build_callbacks(specs: Sequence[Mapping[str, Any]]) -> list[Callback]:
    """Callbacks from `train.callbacks` entries `{name: <key of CALLBACKS>, **arguments}`."""
    out = []
    for i, spec in enumerate(specs):
        args = dict(spec)
        name = args.pop("name", None)
        if name not in CALLBACKS:
            raise ValueError(f"train.callbacks[{i}]: name {name!r} is not one of {sorted(CALLBACKS)}")
        try:
            out.append(CALLBACKS[name](**args))
        except TypeError as exc:
            raise ValueError(f"train.callbacks[{i}] ({name}): {exc}") from None
    return out
