"""Pair construction, distortions, loss arithmetic and a 2-step end-to-end run of the training script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.metrics.image import ssim
from common.synthetic import write_nss_renders
from nvs_sqa.data.pairs import NSSPairSampler, PairConfig, SoftTargets, scale_psnr, scale_ssim
from nvs_sqa.distortions import distort, distort_official
from nvs_sqa.losses import CosineTargetLoss

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def renders(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nss")
    write_nss_renders(root, n_scenes=2, n_frames=4, size=(72, 80), seed=0)
    return root


def test_pairs_share_crop_and_replace_a_fraction(renders: Path) -> None:
    s = NSSPairSampler(PairConfig(root=str(renders), crop=(70, 70), seq_len=4, distort=False), batch_size=2)
    for seed in range(5):
        s1, s2, r = s.sample_pair(seed)
        assert s1.shape == s2.shape == (4, 70, 70, 3)
        same = [np.array_equal(a, b) for a, b in zip(s1, s2)]
        assert sum(not x for x in same) <= int(r * 4)  # only the replaced frames may differ
        assert 0.5 <= r <= 1.0


def test_targets_identical_pair_is_one(renders: Path) -> None:
    x = torch.rand(1, 2, 3, 72, 72)
    t = SoftTargets(("ssim", "psnr", "rep"))(x, x.clone(), torch.tensor([0.0]))
    torch.testing.assert_close(t, torch.ones(1, 3))
    assert scale_ssim(torch.tensor(0.6)).item() == pytest.approx(0.0, abs=1e-6)
    assert scale_psnr(torch.tensor(25.0)).item() == pytest.approx(0.0)


def test_soft_targets_are_computed_in_the_training_step_on_the_batch_device(renders: Path) -> None:
    """Issue 15 #8: the sampler hands out frames only; the model computes the targets where the batch is,
    equal to the per-pair computation (whatever the batch composition) and to the CPU result on a GPU."""
    from nvs_sqa.experiment import NVSSQATrainer
    from nvs_sqa.models import build_model

    torch.manual_seed(0)
    sampler = NSSPairSampler(PairConfig(root=str(renders), crop=(72, 72), seq_len=3), batch_size=3)
    batch = sampler(0)
    assert "targets" not in batch  # nothing is computed per pair in the main process
    soft = SoftTargets(("ssim", "psnr", "rep"))
    whole = soft(batch["seq1"], batch["seq2"], batch["ratio"])
    per_pair = torch.cat(
        [
            soft(batch["seq1"][i : i + 1], batch["seq2"][i : i + 1], batch["ratio"][i : i + 1])
            for i in range(3)
        ]
    )
    assert (whole - per_pair).norm() <= 1e-6 * per_pair.norm()
    seen = []
    loss = CosineTargetLoss(soft.branches, (1.0, 0.5, 0.2))
    loss.forward = lambda f1, f2, t: seen.append(t) or {"l": (f1 - f2).sum() * 0}  # type: ignore[method-assign]
    model = NVSSQATrainer(build_model(), loss, soft)
    assert not any("soft" in k for k in model.state_dict())  # targets add nothing to checkpoints
    model.training_step(batch)
    assert torch.equal(seen[0], whole)
    if torch.cuda.is_available():
        on_gpu = soft(*(batch[k].cuda() for k in ("seq1", "seq2", "ratio")))
        assert on_gpu.device.type == "cuda" and (on_gpu.cpu() - whole).norm() <= 1e-5 * whole.norm()


def test_distortion_fixes_versus_official() -> None:
    """Corrected distortions vs the official ones (issue 18 (17)): the official draws from the global numpy
    RNG on the full uint8 frame and truncates back to uint8."""
    img = np.full((80, 80, 3), 128, np.uint8)
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    assert distort(img, 0, rng()).astype(float).std() > 15  # fixed: sigma 25.5
    assert distort(img, 1, rng()).max() == 255
    assert np.array_equal(distort(img, 7, rng()), img) and np.array_equal(distort_official(img, 7), img)
    np.random.seed(3)
    noise = np.random.normal(0.0, np.sqrt(0.1), img.shape)
    np.random.seed(3)
    got = distort_official(img, 0)  # variance 0.1 in 0-255 units, then truncation (floor here), not rounding
    np.testing.assert_array_equal(got, np.floor(128 + noise))
    assert 0.45 < (got == 127).mean() < 0.55  # half the pixels drop by one: not a no-op
    np.random.seed(4)
    got = distort_official(img, 1)  # 2 % "salt" (= 1) and 2 % pepper per array element, 768 draws each
    n = int(np.ceil(0.04 * img.size * 0.5))
    np.random.seed(4)
    salt = tuple(np.random.randint(0, d, n) for d in img.shape)
    pepper = tuple(np.random.randint(0, d, n) for d in img.shape)
    want = img.copy()
    want[salt], want[pepper] = 1, 0
    np.testing.assert_array_equal(got, want)
    assert got.max() == 128  # no white pixel: the official "salt" is near-black
    ramp = np.arange(80 * 80 * 3).reshape(80, 80, 3).astype(np.uint8)
    np.random.seed(5)
    got = distort_official(ramp, 3)  # Poisson at 256 levels (the ramp has 256 distinct values), truncated
    np.random.seed(5)
    np.testing.assert_array_equal(
        got, np.clip(np.random.poisson(ramp * 256.0) / 256.0, 0, 255).astype(np.uint8)
    )


def test_loss_is_weighted_l1_on_cosine() -> None:
    loss = CosineTargetLoss(("a", "b"), (1.0, 0.5), dim=4).eval()
    f = torch.randn(3, 4)
    out = loss(f, f, torch.tensor([[1.0, 0.0]] * 3))  # identical inputs -> cosine 1
    assert out["loss_a"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["loss_b"].item() == pytest.approx(0.5, abs=1e-6)


def test_train_script_two_steps(renders: Path, tmp_path: Path) -> None:
    env = dict(os.environ, DATA_ROOT=str(renders.parent), OMP_NUM_THREADS="1")
    cfg = REPO / "conf" / "nvs_sqa" / "tiny.yaml"
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "train_nvs_sqa.py"),
        "-c",
        str(cfg),
        "-o",
        str(tmp_path / "run"),
        "--set",
        f"data.root={renders}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpts = list((tmp_path / "run").rglob("*.pth"))
    assert ckpts, "no checkpoint written"
    state = torch.load(ckpts[0], map_location="cpu", weights_only=True)
    assert int(state["step"]) == 2


def test_fvvdp_target_matches_pyfvvdp_and_orders_quality(renders: Path) -> None:
    pyfvvdp = pytest.importorskip("pyfvvdp", reason="optional FovVideoVDP package not installed")
    from nvs_sqa.data.fvvdp_target import jod_to_target

    s = SoftTargets(("ssim", "fvvdp"))
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(1, 3, 3, 72, 72, generator=g)
    noisy = [(ref + a * torch.randn(ref.shape, generator=g)).clamp(0, 1) for a in (0.0, 0.03, 0.3)]
    t = torch.cat([s(ref, x, torch.tensor([0.5]))[:, 1] for x in noisy])
    assert t[0].item() == pytest.approx(1.0, abs=1e-5)  # identical -> JOD 10 -> 1
    assert t[0] > t[1] > t[2] and t.min() >= -1.0
    # the reference library, sequence 1 as reference and sequence 2 as test, 30 fps, standard_fhd display
    direct = pyfvvdp.fvvdp(display_name="standard_fhd", heatmap=None, quiet=True, device=torch.device("cpu"))
    q, _ = direct.predict(noisy[1][0], ref[0], dim_order="FCHW", frames_per_second=30)
    assert t[1].item() == pytest.approx(jod_to_target(torch.as_tensor(q)).item(), abs=1e-5)
    assert jod_to_target(torch.tensor([12.0, 5.0, -1.0])).tolist() == [1.0, 0.0, -1.0]


def test_per_frame_batchnorm_compat_mode() -> None:
    """Official training: one view-CNN call per frame index (BN over the B crops), per sequence."""
    from nvs_sqa.experiment import NVSSQATrainer
    from nvs_sqa.models import SequenceModelConfig, build_model

    torch.manual_seed(0)
    official = build_model(cfg=SequenceModelConfig(per_frame_bn=True, dropout=0.0))
    ours = build_model(cfg=SequenceModelConfig(dropout=0.0))
    ours.load_state_dict(official.state_dict())
    x = torch.rand(3, 4, 3, 72, 72)
    bn = official.view_encoder.conv_0.convna[1]
    before = int(bn.num_batches_tracked)
    f_official = official.train()(x)
    assert int(bn.num_batches_tracked) - before == 4  # one BN batch per frame index
    assert not torch.allclose(f_official, ours.train()(x), atol=1e-4)  # different BN statistics
    # per-frame-index batches equal running each frame slice through the CNN by itself
    ref = build_model(cfg=SequenceModelConfig(dropout=0.0))
    ref.load_state_dict(official.state_dict())
    ref.train()
    tokens = torch.stack([ref.view_encoder(x[:, i]) for i in range(4)])
    official.load_state_dict(ref.state_dict())  # same running stats history is irrelevant in train mode
    torch.testing.assert_close(official.train()(x), ref.forward_tokens(tokens))
    # eval mode: batching does not matter
    ours.load_state_dict(official.state_dict())
    torch.testing.assert_close(official.eval()(x), ours.eval()(x), atol=1e-5, rtol=1e-5)
    # the trainer then calls the encoder once per sequence: 2 x L BN batches per step
    loss = CosineTargetLoss(("ssim",), (1.0,), dim=384)
    trainer = NVSSQATrainer(official.train(), loss).train()
    before = int(bn.num_batches_tracked)
    trainer.training_step({"seq1": x, "seq2": x.flip(1), "targets": torch.zeros(3, 1)})
    assert int(bn.num_batches_tracked) - before == 8


def test_jpeg_distortion_decodes_like_pillow() -> None:
    """Key 5 re-encodes with Pillow and decodes with OpenCV: the pixels Pillow's own decoder gives."""
    import io

    from PIL import Image

    for seed in range(5):
        rng = np.random.default_rng(seed)
        img = rng.integers(0, 256, (72, 90, 3), dtype=np.uint8)
        got = distort(img, 5, np.random.default_rng(seed))
        q = int(np.random.default_rng(seed).integers(10, 76))
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=q)
        np.testing.assert_array_equal(got, np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))


def test_official_ssim_target_zero_pads_and_averages_the_borders() -> None:
    """Issue 18 (14), hand-derived: constant images a, b. With zero padding a window whose Gaussian mass
    inside the image is S sees mu = aS, var = a^2 (S - S^2), cov = ab (S - S^2); every pixel is averaged."""
    from nvs_sqa.data.pairs import ssim_zero_pad

    h, w, a, b = 20, 26, 0.7, 0.4
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    inside = lambda n: np.array([sum(g[k] for k in range(11) if 0 <= i + k - 5 < n) for i in range(n)])  # noqa: E731
    S = np.outer(inside(h), inside(w))
    c1, c2, v = 0.01**2, 0.03**2, S - S**2
    m = ((2 * a * b * S**2 + c1) * (2 * a * b * v + c2)) / (
        ((a * a + b * b) * S**2 + c1) * ((a * a + b * b) * v + c2)
    )
    x, y = torch.full((1, 3, h, w), a), torch.full((1, 3, h, w), b)
    # float32 as the official: E[x^2] - mu^2 cancels to ~1e-7 relative, against C2 = 9e-4 -> ~1e-4
    assert ssim_zero_pad(x, y).item() == pytest.approx(m.mean(), rel=5e-4)
    # the project's valid-window SSIM sees only interior windows (S = 1): a higher value, as issue 18 says
    interior = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(x, y).item() == pytest.approx(interior, rel=1e-6)  # float64 inside, float32 out
    assert m.mean() < interior
