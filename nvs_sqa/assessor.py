"""QualityAssessor: score neurally synthesized scenes (NSS) with the official NVS-SQA model.

Numerically the path of spec nvs_sqa.md §1.4 (full-resolution frames, float32, all frames, "last" fusion);
faster than the official code because JPEG decoding runs in a thread pool that overlaps the network,
BatchNorm is folded into the convolutions, tensors are channels_last under inference_mode, and frames go
through the CNN two at a time: the official chunks of 10 frames make tensors of tens of MB that glibc
returns to the kernel after every call, so each chunk pays again for page faults (measured 17k minor
faults and 35-55 ms of kernel time per 960x768 frame at chunk 10, none at chunk 2). Never writes into
input folders.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nvs_sqa.frames import (
    VIDEO_EXTS,
    FrameError,
    as_sequences,
    check_same_size,
    iter_video,
    list_frames,
    read_frame,
)
from nvs_sqa.models import SequenceModel, build_model
from nvs_sqa.ridge import LABEL_RANGE, RidgeReadout


@torch.no_grad()
def fold_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d in a Sequential into the conv
    (torch.nn.utils.fusion.fuse_conv_bn_eval; eval-mode BatchNorm is affine)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for seq in module.modules():
        if not isinstance(seq, torch.nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(conv.eval(), bn.eval())
                seq[i + 1] = torch.nn.Identity()
    return module


#: frames per view-CNN call: 2 on CPU (larger chunks page-fault their activations in again, module
#: docstring); 16 on CUDA, where a call's launch overhead dominates small chunks and memory is no issue.
CHUNK = {"cpu": 2, "cuda": 16}


def default_chunk(device: torch.device) -> int:
    return CHUNK.get(torch.device(device).type, CHUNK["cpu"])


def resolve_device(device: str | int | torch.device) -> torch.device:
    """ "cpu", "cuda", "cuda:1", 1 or "1" -> torch.device; a multi-GPU spec ("0-3") is refused with a hint."""
    if isinstance(device, torch.device):
        return device
    text = str(device).strip().lower()
    if text.isdigit():
        return torch.device("cuda", int(text))
    if text == "cpu" or text.startswith("cuda"):
        return torch.device(text)
    raise ValueError(
        f"device {device!r}: a QualityAssessor runs on one device ('cpu', 'cuda:N' or N); "
        "to shard a bank over several GPUs use `nvs_sqa_app.py -d 0-3`"
    )


def model_input(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """(N, 3, H, W) uint8 (read as v / 255, as 8-bit files are) or float in [0, 1] -> float32 on `device`."""
    x = x.to(device)
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@torch.inference_mode()
def encode_sequences(
    view_encoder: torch.nn.Module, model: SequenceModel, frames: torch.Tensor, chunk: int, channels_last: bool
) -> torch.Tensor:
    """(B, T, 3, H, W) checked frames (`as_sequences`) -> (B, 384) features: the CNN `chunk` frames at a
    time, then the sequence model ("last" fusion). The one numerical path of score_frames and NSSQuality."""
    device = next(view_encoder.parameters()).device
    b, t = frames.shape[:2]
    flat = frames.flatten(0, 1)
    tokens = torch.cat(
        [
            view_encoder(model_input(flat[i : i + chunk], device, channels_last))
            for i in range(0, b * t, chunk)
        ]
    )
    tokens = tokens.float().view(b, t, -1).transpose(0, 1).contiguous()  # (T, B, D), sequence-first
    return model.forward_tokens(tokens).float()


@dataclass
class NSSScore:
    """Result for one NSS. `jod` is a Python float (higher is better, reference = 0)."""

    name: str
    n_frames: int
    width: int
    height: int
    jod: float
    feature: np.ndarray = field(repr=False)  # (384,) float32
    out_of_range: bool = False  # score outside the label range the regressor was fitted on


class QualityAssessor:
    """Official model + ridge read-out; `device` is "cpu" or a CUDA index/string."""

    def __init__(
        self,
        device: str | int | torch.device = "cpu",
        model: SequenceModel | None = None,
        ridge: RidgeReadout | None = None,
        chunk: int | None = None,
        decode_threads: int = 1,
        channels_last: bool = True,
        background: tuple[int, int, int] | None = None,
    ) -> None:
        model = model if model is not None else build_model(weights="official")
        ridge = ridge if ridge is not None else RidgeReadout.official()
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        # inference copy of the CNN with BatchNorm folded into the convs (eval-mode BN is affine)
        self.view_encoder = fold_batchnorm(copy.deepcopy(self.model.view_encoder)).eval()
        self.channels_last = channels_last
        if channels_last:
            self.view_encoder.to(memory_format=torch.channels_last)
        self.ridge = ridge
        self.chunk = default_chunk(self.device) if chunk is None else int(chunk)
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.decode_threads = decode_threads
        self.background = background

    @classmethod
    def from_official(cls, device: str | torch.device = "cpu", **kwargs) -> QualityAssessor:
        """The released checkpoint and ridge read-out (fetched by `scripts/fetch_weights.py nvs_sqa`)."""
        return cls(device=device, **kwargs)

    # ---- features -------------------------------------------------------------------------------
    def _batch(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        return model_input(
            torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2), self.device, self.channels_last
        )

    @torch.inference_mode()
    def features_from_stream(
        self, frames: Iterable[np.ndarray], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Iterable of (H, W, 3) uint8 frames -> (384,) float32 feature."""
        tokens: list[torch.Tensor] = []
        buf: list[np.ndarray] = []
        for f in frames:
            buf.append(f)
            if len(buf) == self.chunk:
                tokens.append(self.view_encoder(self._batch(buf)))
                if progress:
                    progress(len(buf))
                buf = []
        if buf:
            tokens.append(self.view_encoder(self._batch(buf)))
            if progress:
                progress(len(buf))
        if not tokens:
            raise FrameError("no frames to score")
        seq = torch.cat(tokens).unsqueeze(1).float().contiguous()  # (N, 1, D)
        return self.model.forward_tokens(seq)[0].float().cpu().numpy()

    def _decoded(self, paths: Sequence[Path]) -> Iterator[np.ndarray]:
        """Decode in a thread pool, yielding in order; validates sizes as they arrive."""
        first: tuple[int, ...] | None = None
        with ThreadPoolExecutor(max(1, self.decode_threads)) as pool:
            window = max(2 * self.chunk, 4)
            futs = [pool.submit(read_frame, p, self.background) for p in paths[:window]]
            nxt = len(futs)
            for i in range(len(paths)):
                arr = futs[i].result()
                futs[i] = None  # free memory
                if nxt < len(paths):
                    futs.append(pool.submit(read_frame, paths[nxt], self.background))
                    nxt += 1
                if first is None:
                    first = arr.shape
                check_same_size([first, arr.shape], [str(paths[0]), str(paths[i])])
                yield arr

    # ---- public API -----------------------------------------------------------------------------
    def score_features(self, feature: np.ndarray) -> tuple[float, bool]:
        jod = float(self.ridge.predict(feature))
        out = not (LABEL_RANGE[0] - 1.0 <= jod <= LABEL_RANGE[1] + 1.0)
        return jod, out

    def _result(self, name: str, n: int, hw: tuple[int, int], feat: np.ndarray) -> NSSScore:
        jod, out = self.score_features(feat)
        if out:
            warnings.warn(
                f"{name}: score {jod:.2f} is outside the label range {LABEL_RANGE} the regressor was fitted "
                "on; the input is probably not a rendered scene (noise, blank frames)",
                stacklevel=3,
            )
        return NSSScore(name, n, hw[1], hw[0], jod, feat, out)

    def score_frames(self, frames, name: str = "frames") -> NSSScore:
        """One sequence -> score. Accepts what `NSSQuality.update` accepts (`nvs_sqa.frames.as_sequences`):
        a (T, 3, H, W) tensor, or (T, H, W, 3) NumPy frames (array or list), uint8 or float in [0, 1]."""
        x = as_sequences(frames, name)
        if x.shape[0] != 1:
            raise FrameError(f"{name}: score_frames scores one sequence, got {x.shape[0]} (use NSSQuality)")
        feat = encode_sequences(self.view_encoder, self.model, x, self.chunk, self.channels_last)
        return self._result(name, x.shape[1], tuple(x.shape[-2:]), feat[0].cpu().numpy())

    def score_stream(
        self, frames: Iterable[np.ndarray], name: str, progress: Callable[[int], None] | None = None
    ) -> NSSScore:
        """Score frames as they arrive (an iterator of (H, W, 3) uint8, e.g. a decoder): bounded memory."""
        count, shape = [0], []

        def counted() -> Iterator[np.ndarray]:
            for arr in frames:
                if not shape:
                    shape.append(arr.shape)
                count[0] += 1
                yield arr

        feat = self.features_from_stream(counted(), progress)
        return self._result(name, count[0], shape[0][:2], feat)

    def iter_nss_folder(self, folder: Path) -> Iterator[np.ndarray]:
        """Decoded frames of one NSS folder, in natural order (thread pool, sizes checked)."""
        paths = list_frames(folder)
        if not paths:
            raise FrameError(f"{folder}: no png/jpg/jpeg frames")
        yield from self._decoded(paths)

    def score_nss_folder(self, folder: Path, progress: Callable[[int], None] | None = None) -> NSSScore:
        """One folder of frames (one NSS)."""
        folder = Path(folder)
        return self.score_stream(self.iter_nss_folder(folder), folder.name, progress)

    def score_video(self, path: Path, progress: Callable[[int], None] | None = None) -> NSSScore:
        """A video file, decoded as a stream."""
        return self.score_stream(iter_video(Path(path)), Path(path).stem, progress)

    def score_folder(self, path: Path, progress: Callable[[int], None] | None = None) -> list[NSSScore]:
        """A video, a single NSS folder of frames, or a folder of NSS sub-folders (sorted by name)."""
        path = Path(path)
        if path.is_file():
            if path.suffix.lower() not in VIDEO_EXTS:
                raise FrameError(f"{path}: not a video ({', '.join(VIDEO_EXTS)}) nor a folder")
            return [self.score_video(path, progress)]
        if not path.is_dir():
            raise FrameError(f"{path}: no such file or folder")
        if list_frames(path):
            return [self.score_nss_folder(path, progress)]
        subs = sorted((p for p in path.iterdir() if p.is_dir()), key=lambda p: p.name)
        if not subs:
            raise FrameError(f"{path}: contains neither frames nor NSS sub-folders")
        return [self.score_nss_folder(s, progress) for s in subs]
