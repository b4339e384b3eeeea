"""NSSQuality: the NVS-SQA no-reference score as a `torchmetrics.Metric` (issue 14 §1).

The numerical path is `QualityAssessor.score_frames` (spec nvs_sqa.md §1.4): each frame goes through the
BatchNorm-folded view encoder at its own resolution, the per-frame tokens of one sequence go through the
sequence model ("last" fusion) and the ridge read-out maps the 384-d feature to a JOD-like score. Only the
384-d features (and an ordering key) are metric states, so DDP sync moves 1.5 kB per sequence.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from nvs_sqa.assessor import QualityAssessor, encode_sequences
from nvs_sqa.frames import as_sequences
from nvs_sqa.ridge import LABEL_RANGE

__all__ = ["NSSQuality"]


class NSSQuality(Metric):
    """No-reference quality of rendered camera paths (NVS-SQA, JOD scale: 0 = as good as the reference
    video, mostly negative, higher is better).

    `update(frames, keys=None)`: one sequence `(T, 3, H, W)` or a batch `(B, T, 3, H, W)`, float in [0, 1]
    or uint8 in [0, 255] (divided by 255, exactly as the assessor reads 8-bit frames), or NumPy
    `(T, H, W, 3)` frames: what `QualityAssessor.score_frames` takes (one check for both:
    `nvs_sqa.frames.as_sequences`), on any device (moved to the metric's device chunk by chunk). Sequences of different sizes and lengths may go to different
    `update` calls. `keys`: one int per sequence, its dataset index; a key given more than once (the
    repeats a `DistributedSampler` pads the last batch with, or a re-scored sequence) is counted once, with
    its first result. Default keys (update order) only in one process: under DDP `keys` are required, as
    only dataset indices tell padding from data (3 sequences on 2 ranks would otherwise give 4 scores).
    With a `DistributedSampler`, have the dataset return its index and pass it as `keys`.

    `compute()` -> the mean JOD, a scalar tensor (what `MetricCollection`, `self.log_dict` and `plot()`
    take); `scores()` -> dict: `"jod"` (N,) per-sequence scores sorted by key, `"mean"`, `"keys"` (N,)
    int64 (distinct) and `"features"` (N, 384) float32. States are cat states, synced over DDP ranks by
    torchmetrics (both methods).

    Scores equal `QualityAssessor.score_frames` on the same frames (features within 1e-5) whatever the
    batch composition, the `chunk` (frames per CNN call, default the assessor's; memory only), the device
    and the number of ranks.

    Frame size: at least 69x69 pixels (smaller frames cannot pass the encoder's reflect padding); frames are
    never resized, as the official model was trained on full-resolution frames (960x768 in the examples).
    Scores across resolutions are not comparable: compare methods at one resolution.

    Sequence length: any T >= 1 is scored as given (no padding, repetition or resampling). The official
    model and its ridge read-out saw 120-frame camera paths; the frame index enters through the sinusoidal
    positional encoding and the score is read at the last frame, so the score shifts with T. Measured on
    the Giraffe+NeRF example at 960x768 (docs/nvs_sqa_stress.md): 15 to 120 frames of the same path
    agree within 0.08 JOD, 8 frames score 0.13 JOD lower; at 480x384 scores are 0.15-0.27 JOD higher and
    vary by up to 0.17 JOD with T. Compare sequences of one length and one resolution, and prefer
    120-frame paths at full resolution when reading scores against the official JOD scale.

    weights="official": the released checkpoint and ridge (`tv-fetch-weights nvs_sqa`), or
    pass `assessor=` (any `QualityAssessor`, e.g. your own ridge) with `weights=None`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    label_range = LABEL_RANGE

    def __init__(
        self,
        weights: str | None = "official",
        *,
        assessor: QualityAssessor | None = None,
        chunk: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if assessor is None:
            if weights != "official":
                raise ValueError(
                    f"NSSQuality: weights must be 'official' or an assessor given, got {weights!r}"
                )
            assessor = QualityAssessor.from_official()
        elif weights not in (None, "official"):
            raise ValueError(f"NSSQuality: unknown weights tag {weights!r}")
        chunk = assessor.chunk if chunk is None else chunk
        if chunk < 1:
            raise ValueError(f"NSSQuality: chunk must be >= 1, got {chunk}")
        self.chunk = chunk
        self.channels_last = assessor.channels_last
        # not registered as submodules: the frozen networks stay out of state_dict(), so a model that holds
        # the metric keeps its own checkpoint keys; _apply below still moves them with .to() / .cuda()
        object.__setattr__(self, "_view_encoder", assessor.view_encoder.eval().requires_grad_(False))
        object.__setattr__(self, "_sequence_model", assessor.model.eval().requires_grad_(False))
        coef = torch.as_tensor(assessor.ridge.coef, dtype=torch.float32)
        self.register_buffer("ridge_coef", coef, persistent=False)
        self.register_buffer(
            "ridge_intercept", torch.tensor(float(assessor.ridge.intercept)), persistent=False
        )
        self.add_state("features", default=[], dist_reduce_fx="cat")
        self.add_state("keys", default=[], dist_reduce_fx="cat")
        self._count = 0

    @property
    def view_encoder(self) -> torch.nn.Module:
        """The BatchNorm-folded per-frame CNN (frozen, eval mode)."""
        return self._view_encoder

    @property
    def sequence_model(self) -> torch.nn.Module:
        """The sequence model whose `forward_tokens` gives the 384-d feature (frozen, eval mode)."""
        return self._sequence_model

    def _apply(self, fn, *args, **kwargs):  # device / dtype moves reach the unregistered networks
        out = super()._apply(fn, *args, **kwargs)
        self._view_encoder._apply(fn)
        self._sequence_model._apply(fn)
        return out

    def train(self, mode: bool = True) -> NSSQuality:
        """The networks stay in eval mode (no dropout, running BatchNorm statistics) whatever `mode`."""
        super().train(mode)
        self.view_encoder.eval()
        self.sequence_model.eval()
        return self

    def reset(self) -> None:
        super().reset()
        self._count = 0

    # ---- update ---------------------------------------------------------------------------------
    def sequence_features(self, frames) -> Tensor:
        """(T, 3, H, W) or (B, T, 3, H, W) -> (B, 384) features (the same checks as `update`)."""
        x = as_sequences(frames, "NSSQuality.update")
        return encode_sequences(self.view_encoder, self.sequence_model, x, self.chunk, self.channels_last)

    def update(self, frames, keys: Sequence[int] | Tensor | None = None) -> None:
        feats = self.sequence_features(frames)
        n = feats.shape[0]
        if keys is None:
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                raise ValueError(
                    "NSSQuality.update: under DDP pass keys= (the dataset indices), so that the repeats a "
                    "DistributedSampler pads with are counted once"
                )
            k = torch.arange(self._count, self._count + n, dtype=torch.int64, device=feats.device)
        else:
            k = torch.as_tensor(keys, dtype=torch.int64).reshape(-1).to(feats.device)
            if k.numel() != n:
                raise ValueError(f"NSSQuality.update: {k.numel()} keys for {n} sequences")
        self._count += n  # sequences seen (default keys)
        self.features.append(feats)
        self.keys.append(k)

    def forward(self, frames, keys: Sequence[int] | Tensor | None = None) -> Tensor:
        """`update`, and return the mean score of these sequences only (unsynced), as torchmetrics does."""
        self.update(frames, keys)
        return (self.features[-1] @ self.ridge_coef + self.ridge_intercept).mean()

    # ---- compute --------------------------------------------------------------------------------
    def compute(self) -> Tensor:
        """Mean JOD over the distinct sequences: a scalar that `MetricCollection`, `log_dict` and `plot`
        take. Per-sequence scores: `scores()`."""
        return self._scores()["mean"]

    def scores(self) -> dict[str, Tensor]:
        """Synced over DDP ranks: `"jod"` (N,) per-sequence scores sorted by key, `"mean"`, `"keys"` (N,)
        int64 (distinct) and `"features"` (N, 384) float32."""
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync):
            return self._scores()

    def plot(self, val: Tensor | Sequence[Tensor] | None = None, ax=None):
        """Plot `compute()` (or given values, e.g. one per step) with torchmetrics' plotting (matplotlib)."""
        return self._plot(val, ax)

    def _scores(self) -> dict[str, Tensor]:
        if isinstance(self.features, list) and not self.features:
            raise ValueError("NSSQuality: no sequences were given to update()")
        feats = dim_zero_cat(self.features)
        keys = dim_zero_cat(self.keys)
        order = torch.sort(keys, stable=True).indices
        feats, keys = feats[order], keys[order]
        first = torch.ones_like(keys, dtype=torch.bool)
        first[1:] = keys[1:] != keys[:-1]  # a repeated key (sampler padding) counts once: its first result
        feats, keys = feats[first], keys[first]
        jod = feats @ self.ridge_coef + self.ridge_intercept
        lo, hi = LABEL_RANGE
        if bool(((jod < lo - 1.0) | (jod > hi + 1.0)).any()):
            warnings.warn(
                f"NSSQuality: scores {jod.min().item():.2f}..{jod.max().item():.2f} leave the label range "
                f"{LABEL_RANGE} the read-out was fitted on; the input is probably not a rendered scene",
                stacklevel=3,
            )
        return {"jod": jod, "mean": jod.mean(), "keys": keys, "features": feats}
