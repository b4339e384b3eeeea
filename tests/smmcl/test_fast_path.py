"""The optimised execution path (channels_last, GEMM 1x1 convs, NHWC NMF2D), activation checkpointing and
bf16 autocast against the straightforward (official-form) path on the same weights."""

from __future__ import annotations

import pytest
import torch

from common.config import ConfigError, load_config
from smmcl.experiment import EvalConfig, predict
from smmcl.models import NMF2D, SegNeXtRGBXConfig, build_segnext_rgbx


def _close(a: torch.Tensor, b: torch.Tensor, rel: float, what: str = "", floor: float = 0.0) -> None:
    """Norm-scaled comparison: |a - b| <= rel * |b| + floor (per-element allclose is wrong for long sums,
    whose rounding depends on the CPU's kernels: AMX/AVX512-BF16 or not, 1 or 2 threads). `floor` covers
    tensors that are zero up to rounding (a conv bias before a BatchNorm has no gradient mathematically)."""
    assert a.shape == b.shape, what
    err, ref = (a.double() - b.double()).norm().item(), b.double().norm().item()
    tol = rel * ref + floor + 1e-12
    assert err <= tol, f"{what}: |a - b| = {err:.3g} > {rel:g} * |b| + {floor:.3g} = {tol:.3g}"


TINY = {"arch": "mscan_t", "num_classes": 5, "decoder_channels": 64, "ham_rank": 8}


def _model(**kw):
    torch.manual_seed(0)
    return build_segnext_rgbx(SegNeXtRGBXConfig(**{**TINY, **kw}))


def _batch(b=2, h=128, w=192):
    g = torch.Generator().manual_seed(3)
    label = torch.randint(0, 3, (b, 1, h // 32, w // 32), generator=g).float()  # ~8 cells per class
    return {
        "rgb": torch.randn(b, 3, h, w, generator=g),
        "aux": torch.randn(b, 3, h, w, generator=g),
        "label": torch.nn.functional.interpolate(label, size=(h, w))[:, 0].long(),
    }


def test_fast_and_reference_logits_agree_and_state_dict_is_unchanged():
    model = _model(fast=False).eval()
    ref_keys = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    batch = _batch(1, 64, 96)
    torch.manual_seed(7)
    with torch.no_grad():
        ref = model(batch["rgb"], batch["aux"])
    model.set_fast(True)
    torch.manual_seed(7)
    with torch.no_grad():
        fast = model(batch["rgb"], batch["aux"])
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == ref_keys
    assert fast.is_contiguous() and fast.shape == ref.shape
    assert ref.abs().max() > 0.1
    _close(fast, ref, 1e-5, "logits")
    # the fast model really runs in channels_last (where the speed comes from)
    feats = {}
    hook = model.backbone.block1[0].attn.spatial_gating_unit.conv2_1.register_forward_hook(
        lambda m, i, o: feats.setdefault("strip", o)
    )
    with torch.no_grad():
        model(batch["rgb"], batch["aux"])
    hook.remove()
    assert feats["strip"].is_contiguous(memory_format=torch.channels_last)


def test_nmf2d_fast_matches_reference_on_channels_last_input():
    torch.manual_seed(0)
    x = torch.relu(torch.randn(2, 512, 8, 10))
    out = []
    for fast in (False, True):
        nmf = NMF2D().eval()
        nmf.fast = fast
        torch.manual_seed(42)
        out.append(nmf(x.contiguous(memory_format=torch.channels_last) if fast else x))
    _close(out[1], out[0], 1e-5, "NMF2D")
    assert out[0].sum().item() == pytest.approx(35944.0, rel=1e-5)  # spec 10.6 golden, eval mode


@pytest.mark.parametrize("variant", ["fast", "checkpoint"])
def test_training_step_losses_and_gradients_match_reference(variant):
    batch = _batch()
    results = []
    for kw in ({"fast": False}, {"fast": True} if variant == "fast" else {"checkpoint_stages": (1, 2, 3, 4)}):
        model = _model(**kw).train()
        torch.manual_seed(11)  # drop-path masks and contrastive sampling
        losses = model.training_step(batch)
        sum(losses.values()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        stats = model.backbone.block1[0].norm1.running_mean.clone()
        results.append((losses, grads, stats))
    (l0, g0, s0), (l1, g1, s1) = results
    assert set(l0) == {"ce", "cm", "vis", "aux"} and all(l0[k] > 0 for k in l0)
    for k in l0:
        _close(l1[k], l0[k], 1e-5, k)
    assert set(g1) == set(g0)
    total = torch.cat([g.flatten() for g in g0.values()]).double().norm().item()
    # 1e-3: the reference path alone moves backbone.patch_embed1's weight gradient by 3.9e-4 (relative)
    # between 1 and 2 threads on AMD EPYC (fp32 sums over 49k pixels); a wrong path is off by O(1).
    for n in g0:
        _close(g1[n], g0[n], 1e-3, n, floor=1e-6 * total)
    _close(
        s1, s0, 1e-5, "BN running mean", floor=1e-5 * s0.numel() ** 0.5
    )  # BN statistics updated once, also when recomputing


def test_checkpoint_stages_validated():
    with pytest.raises(ValueError, match="checkpoint_stages"):
        _model(checkpoint_stages=(5,))


def test_bf16_eval_option_is_close_to_fp32():
    model = _model().eval()
    batch = _batch(1, 64, 96)
    probs = {}
    for precision in ("fp32", "bf16"):
        ecfg = EvalConfig(crop=(64, 96), exclude=(), precision=precision)
        probs[precision] = predict(model, batch["rgb"], batch["aux"], ecfg)
    assert probs["bf16"].dtype == torch.float32
    diff = (probs["bf16"] - probs["fp32"]).abs().max().item()
    assert 0 < diff < 0.05  # really ran in bf16, and stays close
    with pytest.raises(ConfigError, match="precision: 'fp16' is not one of"):
        load_config(None, EvalConfig, ["precision=fp16"])
