"""Baselines and report metrics: the pieces evaluate puts side by side with AGAD."""

from __future__ import annotations

import numpy as np
import pytest

from agad_stream import AGAD
from pipelines.offline.baselines import agad_without_adcon, build_baseline, plain_autoencoder
from pipelines.offline.reports import explanation_indices, ranking_metrics, threshold_metrics


def blobs(n_normal: int = 300, n_anomalous: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Windows [N, 2, 16] on a low-dimensional normal pattern; anomalies add a bump."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, 16)
    phase = rng.uniform(0, 0.3, size=(n_normal + n_anomalous, 1, 1))
    X = np.sin(t + phase).repeat(2, axis=1) + rng.normal(0, 0.05, (n_normal + n_anomalous, 2, 16))
    X[n_normal:, :, 4:12] += 2.0
    y = np.r_[np.zeros(n_normal), np.ones(n_anomalous)].astype(np.int8)
    return X.astype(np.float32), y


def test_plain_autoencoder_keeps_only_the_reconstruction_term():
    model = AGAD(channels=(8, 16), latent_dim=4, epochs=3, random_state=7, target_fpr=0.05)
    plain = plain_autoencoder(model)
    params = plain.get_params()
    assert (params["lambda_adv"], params["lambda_adcon"], params["lambda_lat"], params["aux_bn"]) == (0, 0, 0, False)
    assert params["lambda_con"] == model.lambda_con
    for same in ("channels", "latent_dim", "epochs", "max_steps", "batch_size", "random_state", "target_fpr", "generator"):
        assert params[same] == model.get_params()[same]


def test_agad_without_adcon_drops_only_the_pseudo_anomaly_term():
    model = AGAD(channels=(8, 16), latent_dim=4, max_steps=30, random_state=7)
    ablation = agad_without_adcon(model).get_params()
    assert (ablation["lambda_adcon"], ablation["aux_bn"]) == (0, False)
    assert (ablation["lambda_adv"], ablation["lambda_lat"]) == (model.lambda_adv, model.lambda_lat)


@pytest.mark.parametrize("name", ["pca", "isolation-forest", "ecod", "deep-svdd", "pyod-autoencoder"])
def test_pyod_detectors_rank_anomalies_first_and_calibrate_on_held_out_normals(name):
    X, y = blobs()
    model = AGAD(target_fpr=0.05, validation_fraction=0.2, random_state=0)
    detector = build_baseline(name, model).fit(X[y == 0])
    scores = detector.score_samples(X)
    assert ranking_metrics(y, scores)["auroc"] > 0.95
    fpr = threshold_metrics(y, scores, detector.threshold_)["fpr"]
    assert fpr < 0.2


def test_build_baseline_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown baseline"):
        build_baseline("svm", AGAD())


def test_threshold_metrics_count_flags_like_predict():
    y = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.3])
    m = threshold_metrics(y, scores, threshold=0.5)
    assert (m["flagged"], m["precision"], m["recall"], m["fpr"]) == (2, 0.5, 0.5, 1 / 3)
    assert ranking_metrics(np.zeros(3), np.arange(3.0)) == {"auroc": None, "auprc": None}


def test_explanations_show_top_anomalies_and_typical_normals():
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    scores = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 9.0, 7.0])
    chosen = explanation_indices(y, scores, per_class=2)
    assert chosen[:2] == [5, 6] and set(chosen[2:]) <= {1, 2, 3}
