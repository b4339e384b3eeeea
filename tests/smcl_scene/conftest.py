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
