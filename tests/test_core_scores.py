"""AGAD's `anomaly_score` choice: A(x), D's opinion, or both on a common scale (issue 15's score lever).

Normal windows are noisy sines; the labelled type is a sine whose second half runs at a higher
frequency. One fit per score, from the same seed and data, so the three differ only in how
they score.
"""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from agad_stream import AGAD
from agad_stream.estimator import SCORES

TINY = dict(channels=(4, 8, 16), latent_dim=8, max_steps=150, batch_size=32, verbose=False, device="cpu",
            random_state=0)


def sines(n: int, seed: int, chirp: bool = False, length: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length, dtype=np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    frequency = np.where(t < 0.5, 3.0, 5.0 if chirp else 3.0)
    return (np.sin(2 * np.pi * frequency * t + phase) + 0.05 * rng.standard_normal((n, length))).astype(np.float32)


@pytest.fixture(scope="module")
def labelled():
    X = np.concatenate([sines(300, 0), sines(20, 1, chirp=True)])
    y = np.r_[np.zeros(300, np.int8), np.ones(20, np.int8)]
    test = np.concatenate([sines(200, 2), sines(100, 3, chirp=True)])
    y_test = np.r_[np.zeros(200), np.ones(100)]
    return X, y, test, y_test


@pytest.fixture(scope="module")
def fitted(labelled):
    X, y, _, _ = labelled
    return {score: AGAD(anomaly_score=score, **TINY).fit(X, y) for score in SCORES}


def test_an_unknown_score_is_refused():
    with pytest.raises(ValueError, match="anomaly_score must be one of"):
        AGAD(anomaly_score="latent", **TINY).fit(sines(40, 0))


def test_every_score_ranks_the_labelled_type_above_normal_windows(fitted, labelled):
    _, _, test, y_test = labelled
    auroc = {score: roc_auc_score(y_test, model.score_samples(test)) for score, model in fitted.items()}
    assert auroc["reconstruction"] > 0.95 and auroc["combined"] > 0.95, auroc
    assert auroc["discriminator"] > 0.75, auroc  # D learns from 20 labels and the pseudo-anomalies only


def test_the_reconstruction_score_is_the_default_and_unchanged(fitted, labelled):
    _, _, test, _ = labelled
    model = fitted["reconstruction"]
    assert AGAD().anomaly_score == "reconstruction" and model.score_scale_ == {}
    residual_norm = np.linalg.norm(((model.residuals(test)) / model.std_[None, :, None]).reshape(len(test), -1), axis=1)
    assert np.allclose(model.score_samples(test), residual_norm, rtol=1e-4)


def test_the_combined_score_is_the_sum_of_robust_z_scores_of_held_out_normals(fitted, labelled):
    _, _, test, _ = labelled
    combined, reconstruction, discriminator = fitted["combined"], fitted["reconstruction"], fitted["discriminator"]
    # same seed and data: the three models are one fit, scored three ways
    assert np.allclose(reconstruction.score_samples(test), combined._score_normalised(combined._normalise(test[:, None, :]))[0])
    (r_median, r_spread), (d_median, d_spread) = combined.score_scale_["reconstruction"], combined.score_scale_["discriminator"]
    expected = ((reconstruction.score_samples(test) - r_median) / r_spread
                + (discriminator.score_samples(test) - d_median) / d_spread)
    assert np.allclose(combined.score_samples(test), expected, rtol=1e-4, atol=1e-4)
    # the threshold is calibrated on the combined score: about target_fpr of the held-out normals exceed it
    assert np.mean(combined.calibration_scores_ > combined.threshold_) <= 0.1


def test_the_score_and_its_scale_survive_save_and_load(fitted, labelled, tmp_path):
    _, _, test, _ = labelled
    fitted["combined"].save(tmp_path / "model")
    loaded = AGAD.load(tmp_path / "model", device="cpu")
    assert loaded.anomaly_score == "combined" and loaded.score_scale_ == fitted["combined"].score_scale_
    assert np.allclose(loaded.score_samples(test), fitted["combined"].score_samples(test), rtol=1e-5, atol=1e-5)


def test_a_model_scored_by_its_discriminator_is_served_with_torch(fitted, tmp_path):
    from agad_stream.checkpoint import CheckpointError
    from agad_stream.onnx_export import export_checkpoint
    from pipelines.streaming.onnx_engine import OnnxAGAD
    from pipelines.streaming.serving import choose_engine

    fitted["discriminator"].save(tmp_path / "model")
    export_checkpoint(tmp_path / "model", fitted["discriminator"])
    assert choose_engine(tmp_path / "model", "auto", "cpu") == "torch"
    with pytest.raises(CheckpointError, match="--engine torch"):
        OnnxAGAD(tmp_path / "model")


def test_the_scorer_path_gives_the_same_scores_as_score_samples(fitted, labelled):
    """score_and_residuals (what the scorer calls) reuses G's pass for A(x): same scores as score_samples."""
    _, _, test, _ = labelled
    for score, model in fitted.items():
        scores, residuals = model.score_and_residuals(test)
        assert np.allclose(scores, model.score_samples(test), rtol=1e-5, atol=1e-5), score
        assert residuals.shape == (len(test), 1, 64)
