"""The deterministic initial state of the golden and trajectory tests (one definition, recorded in each
recipe JSON): every float tensor of the state dict in sorted-key order from one Generator, BatchNorm
running statistics at their identity values."""

from __future__ import annotations

import torch


def seeded_fill(
    model: torch.nn.Module,
    seed: int = 0,
    *,
    bn_stats: bool = True,
    params_only: bool = False,
    unit_scales: bool = False,
) -> list[str]:
    """Fill `model` in place; returns the filled keys in fill order.

    Every float tensor gets 0.02 N(0, 1), drawn from Generator(seed) in sorted-key order, except:
    `bn_stats`: running_var 1 and running_mean 0 (no draw); `params_only`: buffers that are not
    parameters keep their values (e.g. positional-encoding frequencies); `unit_scales`: 1-D `weight`s
    (normalisation scales) get 1 + 0.02 N(0, 1).
    """
    gen = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    params = {n for n, _ in model.named_parameters()}
    filled = []
    with torch.no_grad():
        for key in sorted(sd):
            t = sd[key]
            if not t.is_floating_point():
                continue
            filled.append(key)
            if bn_stats and key.endswith("running_var"):
                t.fill_(1.0)
            elif bn_stats and key.endswith("running_mean"):
                t.fill_(0.0)
            elif params_only and key not in params:
                filled.pop()
            elif unit_scales and key.endswith("weight") and t.dim() == 1:
                t.copy_(1.0 + 0.02 * torch.randn(t.shape, generator=gen))
            else:
                t.copy_(0.02 * torch.randn(t.shape, generator=gen))
    return filled
