"""The model and weights registry every paper package exposes (timm / torchvision style).

A package writes out `BUILDERS` (name -> builder accepting keyword overrides), `WEIGHTS` (name -> tag ->
`common.weights.WeightsEntry`) and `MODEL_INFO` (name -> {"params", "parity"}) in its `models/__init__.py`,
wraps them in one `ModelRegistry`, and re-exports its `list_models`, `list_weights` and `build_model`.
Weights are chosen by the tag the user names (never guessed from key prefixes) and loaded by
`common.weights.load_weights` (sha256 checked at every load where recorded, strict keys).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from common.errors import TriVisionError
from common.weights import WeightsEntry, load_weights

__all__ = ["ModelRegistry", "UnknownModelError"]


class UnknownModelError(TriVisionError, KeyError, ValueError):
    """A model name or weights tag that the package does not have (the message lists the known ones)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _merge(base: Mapping, over: Mapping) -> dict:
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


class ModelRegistry:
    """`list_models()`, `list_weights(name)` and `build_model(name, weights, *, weights_path, **overrides)`
    over a package's written-out dicts.

    `weights_config[(name, tag)]`: builder overrides a weights file implies (e.g. the official encoder's
    per-call SE), applied under the caller's overrides. `target(model, tag)`: the sub-module a tag's file
    loads into (default the model itself).
    """

    def __init__(
        self,
        package: str,
        builders: Mapping[str, Callable[..., nn.Module]],
        weights: Mapping[str, Mapping[str, WeightsEntry]],
        info: Mapping[str, Mapping[str, Any]],
        main: str,
        *,
        weights_config: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
        target: Callable[[nn.Module, str], nn.Module] | None = None,
    ) -> None:
        unknown = (set(weights) | set(info)) - set(builders)
        if main not in builders or unknown:
            raise ValueError(
                f"{package}: registry names {sorted(unknown | {main} - set(builders))} have no builder"
            )
        self.package, self.builders, self.weights, self.info, self.main = (
            package,
            builders,
            weights,
            info,
            main,
        )
        self.weights_config = weights_config or {}
        self.target = target

    def list_models(self) -> list[str]:
        """Model names of the package, sorted."""
        return sorted(self.builders)

    def _check(self, name: str) -> None:
        if name not in self.builders:
            raise UnknownModelError(
                f"unknown model {name!r} of {self.package}; available: {', '.join(self.list_models())}"
            )

    def list_weights(self, name: str | None = None) -> list[str]:
        """Weights tags of model `name` (default the package's main model)."""
        name = name or self.main
        self._check(name)
        return sorted(self.weights.get(name, {}))

    def entry(self, name: str, tag: str) -> WeightsEntry:
        self._check(name)
        tags = self.weights.get(name, {})
        if tag not in tags:
            raise UnknownModelError(
                f"unknown weights {tag!r} for model {name!r}; available: {sorted(tags) or 'none'}"
            )
        return tags[tag]

    def build_model(
        self,
        name: str | None = None,
        weights: str | None = None,
        *,
        weights_path: str | Path | None = None,
        **overrides: Any,
    ) -> nn.Module:
        """`builders[name](**overrides)`; with `weights`, the tag's file loaded strictly (from the weights
        cache, or `weights_path` for files the user downloaded; the sha256 is checked where recorded)."""
        name = name or self.main
        self._check(name)
        if weights is None:
            if weights_path is not None:
                raise UnknownModelError(
                    f"weights_path needs a weights tag (one of {self.list_weights(name)})"
                )
            return self.builders[name](**overrides)
        entry = self.entry(name, weights)
        overrides = _merge(self.weights_config.get((name, weights), {}), overrides)
        model = self.builders[name](**overrides)
        load_weights(self.target(model, weights) if self.target else model, entry, weights_path)
        return model
