"""NSSQuality equals QualityAssessor.score_frames whatever the batching, chunking, device and rank count."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from nvs_sqa import FrameError, QualityAssessor, RidgeReadout, build_model
from nvs_sqa.metric import NSSQuality
from nvs_sqa.weights import official_weights_available
from tests.common.test_distributed import run_two_ranks


def random_assessor(seed: int = 0) -> QualityAssessor:
    """Randomly initialised network and read-out: the same code path as the official weights, no files."""
    torch.manual_seed(seed)
    model = build_model()
    coef = np.random.default_rng(seed).normal(0, 0.1, 384).astype(np.float32)
    return QualityAssessor(model=model, ridge=RidgeReadout(coef=coef, intercept=-2.0))


def sequences(n: int, t: int, h: int = 72, w: int = 80, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (n, 1, 3, h, w), generator=g)
    noise = torch.randint(-20, 21, (n, t, 3, h, w), generator=g)
    return (base + noise).clamp(0, 255).to(torch.uint8)  # (n, t, 3, h, w): correlated frames


def reference(qa: QualityAssessor, seqs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    rs = [qa.score_frames(s.permute(0, 2, 3, 1).numpy()) for s in seqs]
    return np.stack([r.feature for r in rs]), np.array([r.jod for r in rs])


def close(a: np.ndarray | torch.Tensor, b: np.ndarray, tol: float = 1e-5) -> bool:
    a = np.asarray(a, dtype=np.float64)
    return float(np.abs(a - b).max()) <= tol * max(1.0, float(np.abs(b).max()))


@pytest.fixture(scope="module")
def qa() -> QualityAssessor:
    return random_assessor()


@pytest.fixture(scope="module")
def seqs() -> torch.Tensor:
    return sequences(4, 5)


@pytest.fixture(scope="module")
def ref(qa: QualityAssessor, seqs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    return reference(qa, seqs)


@pytest.mark.parametrize("split", [[4], [1, 1, 1, 1], [3, 1], [1, 2, 1]])
def test_batch_composition(qa, seqs, ref, split: list[int]) -> None:
    m = NSSQuality(weights=None, assessor=qa)
    i = 0
    for n in split:
        m.update(seqs[i] if n == 1 else seqs[i : i + n])  # (T,3,H,W) for singles, (B,T,3,H,W) otherwise
        i += n
    out = m.scores()
    assert close(out["features"], ref[0]) and out["features"].shape == (4, 384)
    assert close(out["jod"], ref[1], 1e-4)
    assert out["mean"].item() == pytest.approx(ref[1].mean(), abs=1e-4)
    assert out["keys"].tolist() == [0, 1, 2, 3]


def test_forward_returns_the_batch_mean_and_accumulates(qa, seqs, ref) -> None:
    m = NSSQuality(weights=None, assessor=qa)
    first = m(seqs[:3])
    second = m(seqs[3])
    assert first.ndim == 0 and first.item() == pytest.approx(ref[1][:3].mean(), abs=1e-4)
    assert second.item() == pytest.approx(ref[1][3], abs=1e-4)
    out = m.scores()
    assert out["keys"].tolist() == [0, 1, 2, 3] and close(out["features"], ref[0])


def test_compute_is_a_scalar_that_collections_log_and_plot(qa, seqs, ref) -> None:
    """Issue 20 §2: compute() was a dict of (N,) tensors, which log_dict refuses; plot() raised."""
    from torchmetrics import MetricCollection

    coll = MetricCollection({"nvs_sqa": NSSQuality(weights=None, assessor=qa)})
    coll.update(seqs)
    logged = coll.compute()
    assert list(logged) == ["nvs_sqa"] and logged["nvs_sqa"].ndim == 0
    assert logged["nvs_sqa"].item() == pytest.approx(ref[1].mean(), abs=1e-4)
    fig, ax = coll["nvs_sqa"].plot()
    assert [float(y) for line in ax.lines for y in line.get_ydata()] == [
        pytest.approx(ref[1].mean(), abs=1e-4)
    ]
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_score_frames_accepts_what_update_accepts_with_the_same_messages(qa, seqs, ref) -> None:
    """Issue 20 §2: score_frames took only NumPy uint8 (H, W, 3) frames; tensors and floats were refused."""
    one = seqs[1]  # (T, 3, H, W) uint8
    for frames in (one, one.float() / 255.0, one.permute(0, 2, 3, 1).numpy(), list(one)):
        assert close(qa.score_frames(frames).feature, ref[0][1])
    for bad in (
        torch.full((2, 3, 72, 80), 1.5),
        torch.zeros(2, 3, 68, 80),
        torch.zeros(2, 3, 72, 80, dtype=torch.int32),
    ):
        with pytest.raises(FrameError) as a:
            qa.score_frames(bad, name="NSSQuality.update")
        with pytest.raises(FrameError) as b:
            NSSQuality(weights=None, assessor=qa).update(bad)
        assert str(a.value) == str(b.value)
    with pytest.raises(FrameError, match="one sequence, got 2"):
        qa.score_frames(seqs[:2])


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_chunking(qa, seqs, ref, chunk: int) -> None:
    m = NSSQuality(weights=None, assessor=qa, chunk=chunk)
    m.update(seqs)
    assert close(m.scores()["features"], ref[0])


def test_float_input_equals_uint8_and_keys_order(qa, seqs, ref) -> None:
    m = NSSQuality(weights=None, assessor=qa)
    m.update(seqs[2:].float() / 255.0, keys=[12, 13])
    m.update(seqs[:2], keys=[10, 11])
    out = m.scores()
    assert out["keys"].tolist() == [10, 11, 12, 13]
    assert close(out["features"], ref[0])
    m.reset()
    m.update(seqs[1])
    assert close(m.scores()["features"], ref[0][1:2])


def test_sizes_and_lengths_may_differ_between_updates(qa) -> None:
    a, b = sequences(1, 3, 69, 69, seed=1), sequences(1, 8, 90, 75, seed=2)
    m = NSSQuality(weights=None, assessor=qa)
    m.update(a)
    m.update(b)
    want = np.concatenate([reference(qa, a)[0], reference(qa, b)[0]])
    assert close(m.scores()["features"], want)


def test_training_mode_does_not_change_scores(qa, seqs, ref) -> None:
    m = NSSQuality(weights=None, assessor=qa).train()  # dropout would change the transformer output
    m.update(seqs)
    assert not m.sequence_model.training and close(m.scores()["features"], ref[0])
    assert NSSQuality.higher_is_better is True


def test_networks_stay_out_of_state_dict(qa, seqs, ref) -> None:
    holder = torch.nn.Module()
    holder.lin = torch.nn.Linear(2, 2)
    holder.quality = NSSQuality(weights=None, assessor=qa)
    assert set(holder.state_dict()) == {"lin.weight", "lin.bias"}  # no 4.7M frozen parameters
    holder.quality.to("cpu", non_blocking=True)
    assert next(holder.quality.view_encoder.parameters()).device.type == "cpu"
    holder.quality.update(seqs)
    assert close(holder.quality.scores()["features"], ref[0])


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(2, 3, 68, 80),  # too small
        torch.zeros(2, 4, 72, 80),  # 4 channels
        torch.full((2, 3, 72, 80), 1.5),  # outside [0, 1]
        torch.full((2, 3, 72, 80), float("nan")),
        torch.zeros(2, 3, 72, 80, dtype=torch.int32),
        torch.zeros(3, 72, 80),
    ],
)
def test_rejects_bad_frames(qa, bad: torch.Tensor) -> None:
    with pytest.raises(FrameError):
        NSSQuality(weights=None, assessor=qa).update(bad)


def test_compute_without_update_and_bad_keys(qa, seqs) -> None:
    m = NSSQuality(weights=None, assessor=qa)
    with pytest.raises(ValueError), pytest.warns(UserWarning):  # torchmetrics warns: compute before update
        m.compute()
    with pytest.raises(ValueError, match="2 keys for 4"):
        m.update(seqs, keys=[0, 1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(qa, seqs, ref) -> None:
    m = NSSQuality(weights=None, assessor=random_assessor()).to("cuda")
    m.update(seqs)  # CPU input is moved chunk by chunk
    out = m.scores()
    assert out["jod"].device.type == "cuda"
    assert close(out["features"].cpu(), ref[0], 1e-4)


WORKER = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    from torch.utils.data import DistributedSampler
    from tests.nvs_sqa.test_metric import random_assessor, sequences
    from nvs_sqa.metric import NSSQuality

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    seqs = sequences(5, 4)
    m = NSSQuality(weights=None, assessor=random_assessor())
    mine = list(DistributedSampler(range(5), world, rank, shuffle=False))  # 3 and 2 sequences
    m.update(seqs[mine[0]], keys=mine[:1])
    m.update(seqs[mine[1:]], keys=mine[1:])
    plain = m.scores()
    k = NSSQuality(weights=None, assessor=random_assessor())
    k.update(seqs[mine], keys=[10 - i for i in mine])  # other keys: reversed order
    keyed = k.scores()
    pm = NSSQuality(weights=None, assessor=random_assessor())
    three = list(DistributedSampler(range(3), world, rank, shuffle=False))  # rank 1: [1, 0], 0 is padding
    pm.update(seqs[three], keys=three)
    padded = pm.scores()
    padded["compute"] = pm.compute()
    try:
        NSSQuality(weights=None, assessor=random_assessor()).update(seqs[mine[:1]])
        default = "accepted"
    except ValueError as err:
        default = str(err)
    torch.save({"plain": plain, "keyed": keyed, "padded": padded, "default": default}, f"{sys.argv[1]}/rank{rank}.pt")
    dist.destroy_process_group()
    """
)


def test_two_ranks_gloo_equal_one_process_and_padding_counts_once(tmp_path: Path) -> None:
    """Issue 21 item 7: DistributedSampler padding (3 sequences on 2 ranks) gives 3 scores, not 4."""
    run_two_ranks(WORKER, tmp_path)
    qa = random_assessor()
    feats, jod = reference(qa, sequences(5, 4))
    for r in (0, 1):  # every rank gets the synced result
        out = torch.load(tmp_path / f"rank{r}.pt", weights_only=True)
        assert out["plain"]["keys"].tolist() == [0, 1, 2, 3, 4]
        assert close(out["plain"]["features"], feats) and close(out["plain"]["jod"], jod, 1e-4)
        assert out["keyed"]["keys"].tolist() == [6, 7, 8, 9, 10]
        assert close(out["keyed"]["features"], feats[::-1])
        assert out["padded"]["keys"].tolist() == [0, 1, 2]
        assert close(out["padded"]["jod"], jod[:3], 1e-4)
        for key in ("mean", "compute"):  # compute(): the synced scalar
            assert abs(out["padded"][key].item() - jod[:3].astype(np.float64).mean()) <= 1e-4 * max(
                1.0, float(np.abs(jod[:3]).max())
            )
        assert "keys=" in out["default"]  # default keys cannot tell padding from data: refused under DDP


@pytest.mark.skipif(not official_weights_available(), reason="official weights not fetched")
def test_official_weights_match_score_frames(shared_data: Path) -> None:
    from nvs_sqa import read_frame

    folder = shared_data / "nvs_sqa_examples" / "Giraffe+NeRF"
    frames = np.stack([read_frame(p)[::8, ::8] for p in sorted(folder.glob("*.jpg"))[:6]])  # 96x120
    qa = QualityAssessor.from_official()
    want = qa.score_frames(frames)
    m = NSSQuality()  # weights="official"
    m.update(torch.from_numpy(frames).permute(0, 3, 1, 2))
    out = m.scores()
    assert close(out["features"][0].numpy(), want.feature)
    assert out["jod"].item() == pytest.approx(want.jod, abs=1e-4)
