"""Device-aware choices (issue 15 #9), checked without a GPU: which path a device takes, CPU numbers kept.

A "meta" tensor stands in for a CUDA one (same code path: anything not on the CPU), and a Tensor subclass
models a device tensor whose `.cpu()` is the host transfer, to count host syncs in the loss sampling.
"""

from __future__ import annotations

import torch

from smmcl.losses import SMMCLLoss, anchor_groups, downsample_labels
from smmcl.models import NMF2D, mscan
from smmcl.models.mscan import AttentionModule, use_custom_depthwise_backward


def test_custom_depthwise_backward_only_on_cpu_fast_path():
    cpu = torch.randn(1, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    meta = torch.empty(1, 4, 8, 8, device="meta").contiguous(memory_format=torch.channels_last)
    assert use_custom_depthwise_backward(cpu, fast=True)
    assert not use_custom_depthwise_backward(cpu, fast=False)
    assert not use_custom_depthwise_backward(cpu.contiguous(), fast=True)
    assert not use_custom_depthwise_backward(meta, fast=True)  # CUDA and any other device: native kernels


def test_attention_module_on_a_non_cpu_device_never_takes_the_custom_backward(monkeypatch):
    calls = []
    real = mscan._DepthwiseSame.apply
    monkeypatch.setattr(mscan._DepthwiseSame, "apply", lambda *a: calls.append(a[0].device) or real(*a))
    attn = AttentionModule(8)
    attn.fast = True
    x = torch.randn(1, 8, 16, 16, requires_grad=True).contiguous(memory_format=torch.channels_last)
    attn(x).sum().backward()
    assert calls and all(d.type == "cpu" for d in calls)  # the CPU fast path uses it (4 convs)
    calls.clear()
    attn_meta = AttentionModule(8).to("meta")
    attn_meta.fast = True
    xm = torch.empty(1, 8, 16, 16, device="meta", requires_grad=True).contiguous(
        memory_format=torch.channels_last
    )
    assert attn_meta(xm).shape == (1, 8, 16, 16)
    assert calls == []


def test_nmf_bases_are_drawn_on_the_model_device_without_touching_the_cpu_rng():
    nmf = NMF2D(rank=8)
    torch.manual_seed(5)
    state = torch.random.get_rng_state()
    bases = nmf.draw_bases(2, 16, torch.device("meta"), torch.float32)
    assert bases.device.type == "meta" and bases.shape == (2, 16, 8)
    assert torch.equal(torch.random.get_rng_state(), state)  # no CPU draw + copy per forward
    assert nmf.bases_device(torch.device("meta")).type == "meta"
    # CPU: the official draw on the global CPU generator, unchanged (golden values of spec 10.6)
    torch.manual_seed(5)
    cpu = nmf.draw_bases(2, 16, torch.device("cpu"), torch.float32)
    torch.manual_seed(5)
    ref = torch.nn.functional.normalize(torch.rand((2, 16, 8)), dim=1)
    assert torch.equal(cpu, ref)
    nmf.generator = torch.Generator().manual_seed(1)
    assert nmf.bases_device(torch.device("meta")).type == "cpu"  # a CPU generator draws on the CPU


class _DeviceTensor(torch.Tensor):
    """Pretends to live on an accelerator: records each op that would sync the host; `.cpu()` copies out."""

    syncs: list[str] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if name == "cpu":
            cls.syncs.append("cpu")
            return args[0].as_subclass(torch.Tensor).clone()
        if name in ("nonzero", "item", "tolist", "__bool__", "__int__"):
            cls.syncs.append(name)
        return super().__torch_function__(func, types, args, kwargs or {})


def test_anchor_sampling_syncs_the_host_once_not_per_group():
    label = torch.full((2, 480, 640), 255)
    label[0, :240], label[0, 240:] = 12, 5
    label[1, :, :320], label[1, :, 320:] = 3, 12
    ds = downsample_labels(label, (15, 20)).as_subclass(_DeviceTensor)
    _DeviceTensor.syncs = []
    groups, views = anchor_groups(ds, 14, SMMCLLoss(14).cfg)
    assert len(groups) == 4 and views > 0
    assert _DeviceTensor.syncs == ["cpu"]  # one transfer of the labels; not one nonzero per (image, class)
    assert all(type(g[2]) is torch.Tensor and g[2].device.type == "cpu" for g in groups)
