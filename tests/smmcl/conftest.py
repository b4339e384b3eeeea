"""SMMCL test set-up: one intra-op thread (the shared 2-core machine thrashes with more)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread(_torch_threads):
    torch.set_num_threads(1)
    yield
