"""Official SMCL (and PAPR) real-world scene checkpoints (spec smcl.md 7.4) as `SceneModel`s.

The file format is named by the weights tag the user gives, never guessed: "official" = `model.pth`
(`{"<step>": state_dict}`), "official_step" = `model_<step>.pth` (the plain state_dict), "papr" = a PAPR
state_dict (no per-point features). The remaps (in `smcl.scene.models.scene_model`) are pure and keep
every key; `common.weights.load_weights` loads strictly, so a wrong file is an error listing the missing
and unexpected keys. The architecture (positional-encoding frequencies, widths, depths, value skip
layer, K, UNet width) can be read from the tensor shapes (`infer_config`) when no scene config is given;
the point count comes from the file.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from torch import Tensor

from common.errors import TriVisionError
from smcl.scene.models.scene_model import SceneModel, SceneModelConfig, build_rmsa_renderer


class OfficialCheckpointError(TriVisionError, RuntimeError):
    pass


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
    path: str | Path, tag: str = "official", base: SceneModelConfig | None = None, *, infer: bool = True
) -> SceneModel:
    """Build a SceneModel from an official file, `tag` "official" (model.pth), "official_step"
    (model_<step>.pth) or "papr". `infer`: the architecture from the tensor shapes over `base` (default
    the source3.yml values); else `base` as given (a mismatch is a strict-load error naming the keys)."""
    from common.checkpoint import load_checkpoint
    from common.weights import load_weights
    from smcl.scene.models import WEIGHTS

    entries = WEIGHTS["smcl_rmsa_renderer"]
    if tag not in entries:
        raise OfficialCheckpointError(f"unknown scene weights tag {tag!r}; known: {sorted(entries)}")
    entry = entries[tag]
    sd = entry.remap(load_checkpoint(path))
    points = sd.get("points")
    if infer and points is None:
        raise OfficialCheckpointError(f"{path}: no 'points' tensor (weights tag {tag!r})")
    cfg = infer_config(sd, base) if infer else (base or SceneModelConfig())
    model = build_rmsa_renderer(cfg, points=points.float() if points is not None else None)
    load_weights(model, entry, path)
    return model
