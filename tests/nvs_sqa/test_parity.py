"""Official-checkpoint parity on the two example NSS (spec nvs_sqa.md §7): features 1e-5, JOD 1e-4."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from nvs_sqa import QualityAssessor, build_model
from nvs_sqa.weights import official_weights_available


@pytest.fixture(scope="module")
def assessor() -> QualityAssessor:
    if not official_weights_available():
        pytest.skip("official weights not fetched: run nvs_sqa.weights.fetch_official_weights()")
    return QualityAssessor()


def test_checkpoint_loads_strictly_with_175_keys(assessor: QualityAssessor) -> None:
    sd = build_model(weights="official").state_dict()
    assert len(sd) == 175
    n_params = sum(p.numel() for p in assessor.model.parameters())
    assert n_params == 4_739_680
    assert int(sd["view_encoder.conv_0.convna.1.num_batches_tracked"]) == 44_830


def test_ridge_matches_reference(assessor: QualityAssessor, shared_data) -> None:
    ref = json.loads((shared_data / "nvs_sqa_reference.json").read_text())["regressor"]
    assert hashlib.sha256(assessor.ridge.coef.astype("<f4").tobytes()).hexdigest() == ref["coef_sha256_f32le"]
    assert assessor.ridge.intercept == pytest.approx(ref["intercept"], abs=1e-6)


@pytest.mark.parametrize("name", ["Giraffe+NeRF", pytest.param("Giraffe+IBRNet-C", marks=pytest.mark.slow)])
def test_example_matches_official_feature_and_score(
    assessor: QualityAssessor, shared_data, name: str
) -> None:
    ref = json.loads((shared_data / "nvs_sqa_reference.json").read_text())["nss"][name]
    (r,) = assessor.score_folder(shared_data / "nvs_sqa_examples" / name)
    assert r.name == name
    np.testing.assert_allclose(r.feature, np.asarray(ref["feature"], dtype=np.float32), atol=1e-5, rtol=0)
    assert isinstance(r.jod, float)
    assert abs(r.jod - ref["jod_pred"]) < 1e-4
    assert (r.n_frames, r.width, r.height) == (120, 960, 768)
    assert not r.out_of_range


def test_channels_last_and_plain_layout_agree(assessor: QualityAssessor, shared_data) -> None:
    torch.manual_seed(0)
    frames = [np.asarray(torch.randint(0, 256, (96, 120, 3), dtype=torch.uint8)) for _ in range(3)]
    plain = QualityAssessor(model=build_model(weights="official"), ridge=assessor.ridge, channels_last=False)
    with pytest.warns(UserWarning):  # noise frames score far outside the label range
        a = assessor.score_frames(frames).feature
        b = plain.score_frames(frames).feature
    np.testing.assert_allclose(a, b, atol=1e-5)
