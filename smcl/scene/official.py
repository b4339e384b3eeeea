"""Load official SMCL (and PAPR) real-world scene checkpoints (spec smcl.md 7.4) into `SceneModel`.

`model.pth` is `{"<step>": state_dict}` (one entry); `model_<step>.pth` is the plain state_dict. Our
module layout keeps the official attribute names, so the renaming table only has to undo wrappers
(DDP `module.`) and map the few names that may differ; the architecture (positional-encoding
frequencies, widths, depths, value skip layer, K, point count) is read from the tensor shapes. Every
missing or unexpected key is reported loudly; missing keys other than `pc_feats` (absent in PAPR
checkpoints: zero features are used) are an error.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
from pathlib import Path

import torch
from torch import Tensor

from smcl.scene.models.scene_model import SceneModel, SceneModelConfig

from common.errors import TriVisionError

log = logging.getLogger(__name__)

# (regex, replacement) applied in order to every official key
OFFICIAL_RENAMES: list[tuple[str, str]] = [
    (r"^module\.", ""),  # saved from a DDP-wrapped model
    (r"^model\.", ""),  # some trainers nest the scene model under `model.`
]
# official keys we knowingly drop (none are model state in our implementation)
OFFICIAL_IGNORED = (r"^bkg_score$",)  # not saved by the official code, tolerated if present


class OfficialCheckpointError(TriVisionError, RuntimeError):
    pass


def unwrap_official(state: dict, source: str = "<dict>") -> tuple[dict[str, Tensor], int | None]:
    """`{"<step>": state_dict}` -> (state_dict, step); a plain state_dict -> (it, None)."""
    if not isinstance(state, dict) or not state:
        raise OfficialCheckpointError(f"{source}: expected a non-empty dict, got {type(state).__name__}")
    if len(state) == 1:
        ((key, value),) = state.items()
        if isinstance(value, dict) and str(key).isdigit():
            return value, int(key)
    if "model" in state and isinstance(state["model"], dict) and "points" in state["model"]:
        return state["model"], None  # our engine checkpoint
    if not all(torch.is_tensor(v) for v in state.values()):
        raise OfficialCheckpointError(
            f"{source}: neither {{'<step>': state_dict}} nor a state_dict (keys: {list(state)[:5]})"
        )
    return state, None


def rename_official(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        new = key
        for pat, rep in OFFICIAL_RENAMES:
            new = re.sub(pat, rep, new)
        if new in out:
            raise OfficialCheckpointError(f"two official keys map to {new!r}")
        out[new] = value
    return out


def _mlp_layers(sd: dict[str, Tensor], prefix: str) -> list[Tensor]:
    idx = sorted(
        int(m.group(1))
        for k in sd
        if (m := re.fullmatch(re.escape(prefix) + r"\.mlp\.model\.(\d+)\.weight", k))
    )
    return [sd[f"{prefix}.mlp.model.{i}.weight"] for i in idx]


def infer_config(sd: dict[str, Tensor], base: SceneModelConfig | None = None) -> SceneModelConfig:
    """Architecture from tensor shapes (spec 2.6/2.7 widths); everything else from `base`."""
    base = base or SceneModelConfig()
    pre = "proximity_attn.embed."
    try:
        k_layers = _mlp_layers(sd, pre + "embed_k")
        q_layers = _mlp_layers(sd, pre + "embed_q")
        v_layers = _mlp_layers(sd, pre + "embed_v")
        d_k, d_q = k_layers[0].shape[1], q_layers[0].shape[1]
        d_model, hidden = k_layers[-1].shape[0], k_layers[0].shape[0]
        d_value = v_layers[-1].shape[0]
        d_feat = sd["pc_feats"].shape[1] if "pc_feats" in sd else 0
    except (KeyError, IndexError) as err:
        raise OfficialCheckpointError(f"not an SMCL/PAPR scene state_dict: cannot find {err}") from err
    lk, lq = (d_k // 9 - 1) // 2, (d_q // 3 - 1) // 2
    if 9 * (1 + 2 * lk) != d_k or 3 * (1 + 2 * lq) != d_q:
        raise OfficialCheckpointError(f"key/query input widths {d_k}/{d_q} are not 3-vector encodings")
    d_v_in = v_layers[0].shape[1]
    lv = ((d_v_in - d_feat) // 6 - 1) // 2
    if 6 * (1 + 2 * lv) + d_feat != d_v_in:
        raise OfficialCheckpointError(
            f"value input width {d_v_in} does not fit 2 encodings + {d_feat} features"
        )
    skip = next((i for i, w in enumerate(v_layers) if i > 0 and w.shape[1] == hidden + d_v_in), None)
    rm = dataclasses.replace(
        base.rmsa,
        d_model=d_model,
        d_value=d_value,
        d_feat=d_feat,
        num_freqs_k=lk,
        num_freqs_q=lq,
        num_freqs_v=lv,
        kq_layers=len(k_layers),
        v_layers=len(v_layers),
        hidden=hidden,
        v_skip_layer=skip,
    )
    unet = sd.get("renderer.inc.double_conv.0.weight")
    return dataclasses.replace(
        base,
        rmsa=rm,
        select_k=int(sd["select_k"]) if "select_k" in sd else base.select_k,
        unet_width=int(unet.shape[0]) if unet is not None else base.unet_width,
        bkg_color=tuple(float(x) for x in sd["bkg_feats"].reshape(-1)[:3])
        if "bkg_feats" in sd
        else base.bkg_color,
    )


def load_official_scene(
    src: str | Path | dict, base: SceneModelConfig | None = None, *, strict: bool = True
) -> tuple[SceneModel, dict]:
    """Build a SceneModel from an official `model.pth` / `model_<step>.pth` (or the loaded dict).

    Returns (model, report) with report keys step, missing, unexpected, config. Missing keys other
    than `pc_feats` raise when strict; every difference is logged and printed to stderr.
    """
    base = base or SceneModelConfig()
    if isinstance(src, dict):
        state, source = src, "<dict>"
    else:
        from common.checkpoint import load_checkpoint

        state, source = load_checkpoint(src), str(src)
    sd, step = unwrap_official(state, source)
    sd = rename_official(sd)
    ignored = [k for k in sd if any(re.search(p, k) for p in OFFICIAL_IGNORED)]
    sd = {k: v for k, v in sd.items() if k not in ignored}
    cfg = infer_config(sd, base)
    if "points" not in sd:
        raise OfficialCheckpointError(f"{source}: no 'points' tensor")
    m = sd["points"].shape[0]
    model = SceneModel(cfg, torch.zeros(m, 3))
    own = model.state_dict()
    missing = sorted(k for k in own if k not in sd)
    unexpected = sorted(k for k in sd if k not in own)
    shapes = sorted(
        f"{k}: {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
        for k in sd
        if k in own and tuple(sd[k].shape) != tuple(own[k].shape)
    )
    report = {"step": step, "missing": missing, "unexpected": unexpected, "ignored": ignored, "config": cfg}
    if missing or unexpected or shapes:
        msg = (
            f"official checkpoint {source}: missing {len(missing)} {missing[:10]}, unexpected "
            f"{len(unexpected)} {unexpected[:10]}, shape mismatches {shapes[:10]}"
        )
        log.warning(msg)
        print(f"WARNING: {msg}", file=sys.stderr)
    fatal = [k for k in missing if k != "pc_feats"]
    if shapes or (strict and (fatal or unexpected)):
        raise OfficialCheckpointError(
            f"{source} does not fit the scene model: missing {fatal}, unexpected {unexpected}, shapes {shapes}"
        )
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return model, report
