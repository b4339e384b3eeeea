"""Loading our and the official SMCL object-level checkpoints (spec smcl.md 7.1, 7.2) with strict key checks."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from torch import Tensor

from common.checkpoint import load_checkpoint, load_state_dict_strict
from smcl.object.models.ffc_encoder import OFFICIAL_ABSENT_PREFIXES, DualDomainEncoder, remap_official_cnn_ffc
from smcl.object.models.view_synthesizer import (
    OFFICIAL_SYNTH_ABSENT_PREFIXES,
    ViewSynthesizer,
    remap_official_smcl_net,
)


def _state_dict_of(obj: dict, path: Path) -> dict[str, Tensor]:
    """Our engine checkpoints hold {"model": sd, ...}; official files are a bare state_dict."""
    if "model" in obj and isinstance(obj["model"], dict):
        return obj["model"]
    if all(isinstance(k, str) for k in obj):
        return obj
    raise ValueError(f"{path}: not a state_dict nor a checkpoint with a 'model' entry")


def load_encoder_weights(model: DualDomainEncoder, path: str | Path) -> str:
    """Load a pretraining checkpoint of ours (encoder under `encoder.`) or an official `encoder_<cat>.pt`.

    Returns "ours" or "official". Official files have no SE keys: with se_mode=learned those stay at their
    initialisation, which is logged as a warning.
    """
    path = Path(path)
    sd = _state_dict_of(load_checkpoint(path), path)
    enc = {k.removeprefix("encoder."): v for k, v in sd.items() if k.startswith("encoder.")}
    if enc and not any(k.startswith("encoder.model.") for k in sd):
        load_state_dict_strict(model, enc, source=str(path))
        return "ours"
    official = remap_official_cnn_ffc(sd)
    ignore = ["^" + re.escape(p) for p in OFFICIAL_ABSENT_PREFIXES]
    load_state_dict_strict(model, official, source=str(path), ignore=ignore)
    if model.cfg.se_mode == "learned":
        logging.getLogger(__name__).warning(
            "%s: official encoder has no SE weights; learned SE blocks keep their initialisation "
            "(use encoder.se_mode=random_per_call to reproduce the official behaviour)",
            path,
        )
    return "official"


def load_official_synthesizer(model: ViewSynthesizer, path: str | Path) -> None:
    """Official `SMCL_latest` / `model.pth` -> model; raises CheckpointMismatchError listing every bad key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: official synthesizer checkpoint not found (refusing random weights)"
        )
    sd = remap_official_smcl_net(_state_dict_of(load_checkpoint(path), path))
    ignore = ["^" + re.escape(p) for p in OFFICIAL_SYNTH_ABSENT_PREFIXES]
    load_state_dict_strict(model, sd, source=str(path), ignore=ignore)
