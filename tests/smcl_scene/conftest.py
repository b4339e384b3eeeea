"""Shared fixtures of the scene-level tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Small networks: one thread is fastest and immune to OpenMP stalls on a loaded shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def scene_loss():
    """The scene recipes' loss (MSE + 0.01 LPIPS-VGG, v0.0 heads), built once: loading VGG is the slow part."""
    from smcl.scene.losses import PhotometricLoss

    try:
        return PhotometricLoss(0.01)
    except Exception as err:  # LPIPS trunks not fetched on this machine
        pytest.skip(f"LPIPS-VGG weights unavailable: {err}")
